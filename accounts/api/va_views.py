"""The virtual accounts API (`/api/v1/virtual-accounts`): tokens are answered once."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from pydantic import ValidationError
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import virtual_accounts as va
from accounts.api.views import principal_of
from accounts.models import TokenSecret, VirtualAccount
from accounts.va_manifests import VirtualAccountManifest, manifest_of, spec_from
from gateway_project.errors import ValidationFailed
from gateway_project.manifests import pydantic_fields


class RegenerateInputSerializer(serializers.Serializer[None]):
    grace_period_days = serializers.IntegerField(min_value=0, max_value=365, required=False)


def _no_store(response: Response) -> Response:
    response["Cache-Control"] = "no-store"
    return response


def account_body(account: VirtualAccount) -> dict[str, Any]:
    """The manifest plus state: tokens (never their values), rotation and sync status."""
    token = account.tokens.order_by("pk").first()
    secrets = token.secrets.exclude(state=TokenSecret.State.RETIRED) if token else []
    return {
        "manifest": manifest_of(account),
        "is_expired": account.is_expired,
        "next_scheduled_rotation": account.rotation_due_at,
        "created_by": account.created_by,
        "last_used_at": account.last_used_at,
        "sync": {"synced_at": account.synced_at, "error": account.sync_error or None},
        "token_id": token.pk if token else None,
        "tokens": [
            {
                "prefix": s.prefix,
                "state": s.state,
                "created_at": s.created_at,
                "expires_at": s.expires_at,
                "last_used_at": s.last_used_at,
                "retrievable": bool(s.undelivered) and s.state == TokenSecret.State.CURRENT,
            }
            for s in secrets
        ],
    }


def _manifest(data: Any) -> VirtualAccountManifest:
    try:
        return VirtualAccountManifest.model_validate(data)
    except ValidationError as exc:
        fields = pydantic_fields(exc)
        first = next(iter(fields.items()))
        raise ValidationFailed(f"{first[0]}: {first[1][0]}", fields) from exc


class VirtualAccountListApi(APIView):
    @extend_schema(responses={200: dict}, summary="Virtual accounts you may read")
    def get(self, request: Request) -> Response:
        accounts = va.va_list(principal_of(request))
        return Response({"results": [account_body(a) for a in accounts]})

    @extend_schema(
        request=dict,
        responses={201: dict},
        summary="Create from a `virtual-account` manifest; answers the token once",
    )
    def post(self, request: Request) -> Response:
        manifest = _manifest(request.data)
        actor = principal_of(request)
        account, raw = va.va_create(actor=actor, spec=spec_from(manifest), created_via="api")
        # Not re-read through va_get_for: a creator without the Read permission would get a
        # 404 for an account that was created, and its token would be lost.
        body = {**account_body(account), "token": raw}
        return _no_store(Response(body, status=status.HTTP_201_CREATED))


class VirtualAccountDetailApi(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request: Request, name: str) -> Response:
        return Response(account_body(va.va_get_for(principal_of(request), name)))

    @extend_schema(request=dict, responses={200: dict}, summary="Update from a manifest")
    def put(self, request: Request, name: str) -> Response:
        manifest = _manifest({**dict(request.data), "name": name})
        actor = principal_of(request)
        account = va.va_update(
            actor=actor, account=va.va_get_for(actor, name), spec=spec_from(manifest)
        )
        return Response(account_body(va.va_get_for(actor, account.name)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        va.va_delete(actor=actor, account=va.va_get_for(actor, name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VirtualAccountRegenerateApi(APIView):
    @extend_schema(
        request=RegenerateInputSerializer,
        responses={200: dict},
        summary="New token now; the old one works for the grace period (0: retire)",
    )
    def post(self, request: Request, name: str) -> Response:
        data = RegenerateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = principal_of(request)
        token, raw = va.va_token_regenerate(
            actor=actor,
            account=va.va_get_for(actor, name),
            grace_period_days=data.validated_data.get("grace_period_days"),
        )
        return _no_store(Response({"token_id": token.pk, "token": raw}))


class VirtualAccountGetTokenApi(APIView):
    @extend_schema(
        request=None,
        responses={200: dict},
        summary="The current token, once, if it was never delivered",
    )
    def post(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        raw = va.va_token_reveal(actor=actor, account=va.va_get_for(actor, name))
        return _no_store(Response({"token": raw}))


class VirtualAccountSyncApi(APIView):
    @extend_schema(request=None, responses={202: dict}, summary="Write the token to its store now")
    def post(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        va.va_sync_request(actor=actor, account=va.va_get_for(actor, name))
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)
