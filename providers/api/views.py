"""The providers API: read provider accounts and MCP servers, test connections, delete.

Creating and changing them goes through the Apply API with their manifests.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.views import principal_of
from accounts.policy import Permission
from gateway_project.manifests import kinds
from providers import selectors, services
from providers.api import serializers as s


def _account_manifest(name: str, kind: str) -> dict[str, object]:
    manifest = kinds()[f"provider-account/{kind}"].current(name)
    return manifest or {}


class ProviderAccountListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("q", str)], responses=s.ManifestItemSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        actor = principal_of(request)
        accounts = selectors.provider_account_list(actor, search=request.query_params.get("q", ""))
        return Response(
            {
                "results": [
                    {
                        "manifest": _account_manifest(a.name, a.kind),
                        "can_manage": selectors.provider_account_can_manage(actor, a),
                    }
                    for a in accounts
                ]
            }
        )


class ProviderAccountDetailApi(APIView):
    @extend_schema(responses=s.ManifestItemSerializer)
    def get(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        account = selectors.provider_account_get_for(actor, name=name)
        return Response(
            {
                "manifest": _account_manifest(account.name, account.kind),
                "can_manage": selectors.provider_account_can_manage(actor, account),
            }
        )

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        services.provider_account_delete(
            actor=actor, account=selectors.provider_account_get_for(actor, name=name)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProviderAccountTestApi(APIView):
    @extend_schema(request=None, responses=s.ConnectionResultSerializer)
    def post(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        account = selectors.provider_account_get_for(actor, name=name)
        result = services.provider_account_test(actor=actor, account=account)
        return Response({"ok": result.ok, "message": result.message})


class McpServerListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("q", str)], responses=s.ManifestItemSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        actor = principal_of(request)
        kind = kinds()["mcp-server/remote"]
        servers = selectors.mcp_server_list(actor, search=request.query_params.get("q", ""))
        return Response(
            {
                "results": [
                    {
                        "manifest": kind.current(srv.name),
                        "can_manage": actor.holds(
                            Permission.MCP_SERVER_MANAGE, resource=("mcp-server", srv.pk)
                        ),
                    }
                    for srv in servers
                ]
            }
        )


class McpServerDetailApi(APIView):
    @extend_schema(responses=s.ManifestItemSerializer)
    def get(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        server = selectors.mcp_server_get_for(actor, name=name)
        return Response(
            {
                "manifest": kinds()["mcp-server/remote"].current(server.name),
                "can_manage": actor.holds(
                    Permission.MCP_SERVER_MANAGE, resource=("mcp-server", server.pk)
                ),
            }
        )

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        services.mcp_server_delete(
            actor=actor, server=selectors.mcp_server_get_for(actor, name=name)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
