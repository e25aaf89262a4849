"""Input and output shapes of the teams API (fields as in the `type: team` manifest)."""

from __future__ import annotations

from rest_framework import serializers

from teams.models import Team, TeamMembership
from teams.selectors import team_members


class TeamOutputSerializer(serializers.ModelSerializer[Team]):
    managers = serializers.SerializerMethodField()
    members = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ("id", "name", "description", "source", "managers", "members", "created_at")

    def get_managers(self, team: Team) -> list[str]:
        return team_members(team, TeamMembership.Role.MANAGER)

    def get_members(self, team: Team) -> list[str]:
        return team_members(team, TeamMembership.Role.MEMBER)


class TeamSummarySerializer(serializers.ModelSerializer[Team]):
    member_count = serializers.IntegerField()
    manager_count = serializers.IntegerField()

    class Meta:
        model = Team
        fields = ("id", "name", "description", "source", "member_count", "manager_count")


class TeamCreateInputSerializer(serializers.Serializer[None]):
    name = serializers.CharField(max_length=36)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    members = serializers.ListField(child=serializers.CharField(max_length=254), default=list)
    managers = serializers.ListField(child=serializers.CharField(max_length=254), default=list)


class TeamUpdateInputSerializer(serializers.Serializer[None]):
    description = serializers.CharField(required=False, allow_blank=True)


class MembershipInputSerializer(serializers.Serializer[None]):
    email = serializers.CharField(max_length=254)
    role = serializers.ChoiceField(
        choices=TeamMembership.Role.values, default=TeamMembership.Role.MEMBER
    )
