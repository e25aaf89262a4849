"""The teams API: teams, their members and managers."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.views import paginate, principal_of
from accounts.models import User
from gateway_project.errors import ValidationFailed
from teams import selectors, services
from teams.api import serializers as s
from teams.models import TeamMembership

ORDERINGS = {"name", "-name", "created_at", "-created_at"}


def _user_by_email(email: str) -> User:
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise ValidationFailed.field("email", f"no user with email '{email}'")
    return user


class TeamListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("q", str), OpenApiParameter("ordering", str)],
        responses=s.TeamSummarySerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        ordering = request.query_params.get("ordering", "name")
        qs = selectors.team_list(
            principal_of(request),
            search=request.query_params.get("q", ""),
            ordering=ordering if ordering in ORDERINGS else "name",
        )
        return paginate(request, self, qs, s.TeamSummarySerializer)

    @extend_schema(request=s.TeamCreateInputSerializer, responses={201: s.TeamOutputSerializer})
    def post(self, request: Request) -> Response:
        data = s.TeamCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = principal_of(request)
        team = services.team_create(actor=actor, created_via="api", **data.validated_data)
        team = selectors.team_get_for(actor, pk=team.pk)
        return Response(s.TeamOutputSerializer(team).data, status=status.HTTP_201_CREATED)


class TeamDetailApi(APIView):
    @extend_schema(responses=s.TeamOutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        team = selectors.team_get_for(principal_of(request), name=name)
        return Response(s.TeamOutputSerializer(team).data)

    @extend_schema(request=s.TeamUpdateInputSerializer, responses=s.TeamOutputSerializer)
    def patch(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        team = selectors.team_get_for(actor, name=name)
        data = s.TeamUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.team_update(actor=actor, team=team, **data.validated_data)
        return Response(s.TeamOutputSerializer(selectors.team_get_for(actor, name=name)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str) -> Response:
        actor = principal_of(request)
        services.team_delete(actor=actor, team=selectors.team_get_for(actor, name=name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamMembershipApi(APIView):
    @extend_schema(request=s.MembershipInputSerializer, responses={201: s.TeamOutputSerializer})
    def post(self, request: Request, name: str) -> Response:
        """Add a member or manager."""
        actor = principal_of(request)
        team = selectors.team_get_for(actor, name=name)
        data = s.MembershipInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _user_by_email(data.validated_data["email"])
        created = services.team_membership_add(
            actor=actor, team=team, user=user, role=data.validated_data["role"]
        )
        body = s.TeamOutputSerializer(selectors.team_get_for(actor, name=name)).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TeamMembershipDetailApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("role", str, enum=TeamMembership.Role.values)],
        responses={204: None},
    )
    def delete(self, request: Request, name: str, email: str) -> Response:
        """Remove a member (or, with ?role=manager, a manager)."""
        actor = principal_of(request)
        team = selectors.team_get_for(actor, name=name)
        role = request.query_params.get("role", TeamMembership.Role.MEMBER)
        services.team_membership_remove(
            actor=actor, team=team, user=_user_by_email(email), role=role
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
