"""The accounts API: me, users, roles, role bindings, personal access tokens, audit events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api import serializers as s
from accounts.models import User
from accounts.policy import Permission, PolicyDenied, Principal
from accounts.request import request_principal
from gateway_project.api import Pagination


def principal_of(request: Request) -> Principal:
    return request_principal(request._request)


def paginate(request: Request, view: APIView, qs: QuerySet[Any], serializer: Any) -> Response:
    """One page of `qs` in the shared pagination envelope."""
    paginator = Pagination()
    page = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


ORDERINGS_USER = {
    "email",
    "-email",
    "display_name",
    "-display_name",
    "date_joined",
    "-date_joined",
    "tenant_role",
    "-tenant_role",
}


class MeApi(APIView):
    @extend_schema(responses=s.UserOutputSerializer, summary="The calling user")
    def get(self, request: Request) -> Response:
        user = request.user
        if not isinstance(user, User):  # a virtual account token
            principal = principal_of(request)
            return Response({"subject": principal.subject, "kind": principal.kind})
        return Response(s.UserOutputSerializer(user).data)


class UserListApi(APIView):
    policy_permission = (Permission.USER_LIST, Permission.USER_MANAGE)

    @extend_schema(
        parameters=[OpenApiParameter("q", str), OpenApiParameter("ordering", str)],
        responses=s.UserOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        ordering = request.query_params.get("ordering", "email")
        ordering = ordering if ordering in ORDERINGS_USER else "email"
        qs = selectors.user_list(
            principal_of(request), search=request.query_params.get("q", ""), ordering=ordering
        )
        return paginate(request, self, qs, s.UserOutputSerializer)

    @extend_schema(
        request=s.UserInviteInputSerializer,
        responses={201: s.UserInviteOutputSerializer},
        summary="Invite a user (answers the one-time link when no SMTP is configured)",
    )
    def post(self, request: Request) -> Response:
        data = s.UserInviteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.user_invite(
            actor=principal_of(request), created_via="api", **data.validated_data
        )
        body = {
            "user": s.UserOutputSerializer(result.user).data,
            "invite_link": None if result.emailed else result.link,
            "emailed": result.emailed,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class UserDetailApi(APIView):
    @extend_schema(responses=s.UserOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        user = selectors.user_get_for(principal_of(request), pk)
        return Response(s.UserOutputSerializer(user).data)

    @extend_schema(request=s.UserUpdateInputSerializer, responses=s.UserOutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        actor = principal_of(request)
        user = selectors.user_get_for(actor, pk)
        data = s.UserUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = services.user_update(
            actor=actor,
            user=user,
            display_name=values.get("display_name"),
            tenant_role=values.get("tenant_role"),
            is_active=values.get("is_active"),
        )
        return Response(s.UserOutputSerializer(user).data)


class RoleListApi(APIView):
    @extend_schema(responses=s.RoleOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginate(
            request, self, selectors.role_list(principal_of(request)), s.RoleOutputSerializer
        )

    @extend_schema(request=s.RoleInputSerializer, responses={201: s.RoleOutputSerializer})
    def post(self, request: Request) -> Response:
        data = s.RoleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        role = services.role_create(
            actor=principal_of(request),
            slug=v["name"],
            display_name=v["displayName"],
            description=v["description"],
            resource_type=v["resourceType"],
            permissions=v["permissions"],
            created_via="api",
        )
        return Response(s.RoleOutputSerializer(role).data, status=status.HTTP_201_CREATED)


class RoleDetailApi(APIView):
    @extend_schema(responses=s.RoleOutputSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(
            s.RoleOutputSerializer(selectors.role_get_for(principal_of(request), slug)).data
        )

    @extend_schema(request=s.RoleUpdateInputSerializer, responses=s.RoleOutputSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        actor = principal_of(request)
        role = selectors.role_get_for(actor, slug)
        data = s.RoleUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        role = services.role_update(
            actor=actor,
            role=role,
            display_name=v.get("displayName"),
            description=v.get("description"),
            permissions=v.get("permissions"),
        )
        return Response(s.RoleOutputSerializer(role).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        actor = principal_of(request)
        services.role_delete(actor=actor, role=selectors.role_get_for(actor, slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _binding_put(request: Request, name: str | None) -> tuple[Any, bool]:
    data = s.RoleBindingInputSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    v = data.validated_data
    if name is not None and v["name"] != name:
        from gateway_project.errors import ValidationFailed

        raise ValidationFailed.field("name", "does not match the URL")
    return services.role_binding_put(
        actor=principal_of(request),
        name=v["name"],
        description=v["description"],
        subjects=[services.SubjectRef(x["type"], x["name"]) for x in v["subjects"]],
        grants=[
            services.GrantRef(x["resourceType"], x["resourceFqn"], x["role"])
            for x in v["permissions"]
        ],
        created_via="api",
    )


class RoleBindingListApi(APIView):
    @extend_schema(responses=s.RoleBindingOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        qs = selectors.role_binding_list(principal_of(request))
        return paginate(request, self, qs, s.RoleBindingOutputSerializer)

    @extend_schema(
        request=s.RoleBindingInputSerializer, responses={201: s.RoleBindingOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        binding, created = _binding_put(request, None)
        binding = selectors.role_binding_get_for(principal_of(request), binding.name)
        return Response(
            s.RoleBindingOutputSerializer(binding).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class RoleBindingDetailApi(APIView):
    @extend_schema(responses=s.RoleBindingOutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        binding = selectors.role_binding_get_for(principal_of(request), name)
        return Response(s.RoleBindingOutputSerializer(binding).data)

    @extend_schema(request=s.RoleBindingInputSerializer, responses=s.RoleBindingOutputSerializer)
    def put(self, request: Request, name: str) -> Response:
        _binding_put(request, name)
        binding = selectors.role_binding_get_for(principal_of(request), name)
        return Response(s.RoleBindingOutputSerializer(binding).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        services.role_binding_delete(
            actor=actor, binding=selectors.role_binding_get_for(actor, name)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PatListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("all", bool, description="every user's (user managers)")],
        responses=s.PatOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        all_users = request.query_params.get("all") in ("1", "true")
        qs = selectors.pat_list(principal_of(request), all_users=all_users)
        return paginate(request, self, qs, s.PatOutputSerializer)

    @extend_schema(request=s.PatCreateInputSerializer, responses={201: s.PatCreateOutputSerializer})
    def post(self, request: Request) -> Response:
        data = s.PatCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        days = data.validated_data.get("expires_in_days")
        user = request.user
        if not isinstance(user, User):
            raise PolicyDenied("pat:create", "personal access tokens belong to people")
        token, raw = services.pat_create(
            actor=principal_of(request),
            user=user,
            name=data.validated_data["name"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        body = {"token": raw, "personal_access_token": s.PatOutputSerializer(token).data}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class PatDetailApi(APIView):
    @extend_schema(responses=s.PatOutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            s.PatOutputSerializer(selectors.pat_get_for(principal_of(request), pk)).data
        )

    @extend_schema(responses={204: None}, summary="Revoke the token")
    def delete(self, request: Request, pk: int) -> Response:
        actor = principal_of(request)
        services.pat_revoke(actor=actor, token=selectors.pat_get_for(actor, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditEventListApi(APIView):
    policy_permission = (Permission.SETTINGS_LIST,)

    @extend_schema(
        parameters=[
            OpenApiParameter(n, str) for n in ("actor", "action", "target_type", "target", "source")
        ],
        responses=s.AuditEventOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        q = request.query_params
        qs = selectors.audit_event_list(
            principal_of(request),
            actor=q.get("actor", ""),
            action=q.get("action", ""),
            target_type=q.get("target_type", ""),
            target=q.get("target", ""),
            source=q.get("source", ""),
        )
        return paginate(request, self, qs, s.AuditEventOutputSerializer)
