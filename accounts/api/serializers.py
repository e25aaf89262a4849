"""Input and output shapes of the accounts API."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import MEMBER, AuditEvent, PersonalAccessToken, Role, RoleBinding, User
from accounts.policy import ALL_PERMISSIONS


class UserOutputSerializer(serializers.ModelSerializer[User]):
    tenant_role = serializers.CharField(source="tenant_role_id")
    subject = serializers.CharField()
    password_set = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = (
            "id",
            "email",
            "display_name",
            "tenant_role",
            "is_active",
            "subject",
            "date_joined",
            "last_login",
            "deactivated_at",
            "password_set",
        )

    def get_password_set(self, user: User) -> bool:
        return user.has_usable_password()


class UserInviteInputSerializer(serializers.Serializer[None]):
    email = serializers.CharField(max_length=254)
    display_name = serializers.CharField(
        max_length=150, required=False, default="", allow_blank=True
    )
    tenant_role = serializers.CharField(max_length=64, required=False, default=MEMBER)


class UserInviteOutputSerializer(serializers.Serializer[None]):
    user = UserOutputSerializer()
    invite_link = serializers.CharField(allow_null=True)
    emailed = serializers.BooleanField()


class UserUpdateInputSerializer(serializers.Serializer[None]):
    display_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    tenant_role = serializers.CharField(max_length=64, required=False)
    is_active = serializers.BooleanField(required=False)


class RoleOutputSerializer(serializers.ModelSerializer[Role]):
    name = serializers.CharField(source="slug")
    displayName = serializers.CharField(source="display_name")
    resourceType = serializers.CharField(source="resource_type")

    class Meta:
        model = Role
        fields = (
            "name",
            "displayName",
            "description",
            "resourceType",
            "permissions",
            "builtin",
            "editable",
        )


class RoleInputSerializer(serializers.Serializer[None]):
    name = serializers.CharField(max_length=64)
    displayName = serializers.CharField(max_length=100, required=False, default="")
    description = serializers.CharField(required=False, default="", allow_blank=True)
    resourceType = serializers.ChoiceField(
        choices=Role.ResourceType.values, required=False, default=Role.ResourceType.TENANT
    )
    permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(p.value for p in ALL_PERMISSIONS)),
        allow_empty=True,
    )


class RoleUpdateInputSerializer(serializers.Serializer[None]):
    displayName = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(p.value for p in ALL_PERMISSIONS)),
        required=False,
        allow_empty=True,
    )


class SubjectSerializer(serializers.Serializer[None]):
    type = serializers.ChoiceField(choices=["user", "team", "virtualaccount"])
    name = serializers.CharField(max_length=254)


class GrantSerializer(serializers.Serializer[None]):
    resourceType = serializers.ChoiceField(choices=Role.ResourceType.values)
    resourceFqn = serializers.CharField(max_length=255)
    role = serializers.CharField(max_length=64)


class RoleBindingInputSerializer(serializers.Serializer[None]):
    name = serializers.CharField(max_length=64)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    subjects = SubjectSerializer(many=True)
    permissions = GrantSerializer(many=True)


class RoleBindingOutputSerializer(serializers.ModelSerializer[RoleBinding]):
    subjects = serializers.SerializerMethodField()
    permissions = serializers.SerializerMethodField()

    class Meta:
        model = RoleBinding
        fields = ("name", "description", "subjects", "permissions")

    def get_subjects(self, binding: RoleBinding) -> list[dict[str, str]]:
        out = []
        for s in binding.subjects.all():
            if s.user is not None:
                out.append({"type": "user", "name": s.user.email})
            elif s.team is not None:
                out.append({"type": "team", "name": s.team.name})
        return sorted(out, key=lambda d: (d["type"], d["name"]))

    def get_permissions(self, binding: RoleBinding) -> list[dict[str, str]]:
        return sorted(
            (
                {
                    "resourceType": g.resource_type,
                    "resourceFqn": g.resource_fqn,
                    "role": g.role.slug,
                }
                for g in binding.grants.all()
            ),
            key=lambda d: (d["resourceType"], d["resourceFqn"], d["role"]),
        )


class PatOutputSerializer(serializers.ModelSerializer[PersonalAccessToken]):
    user = serializers.CharField(source="user.email")
    status = serializers.CharField()

    class Meta:
        model = PersonalAccessToken
        fields = (
            "id",
            "name",
            "prefix",
            "user",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "status",
        )


class PatCreateInputSerializer(serializers.Serializer[None]):
    name = serializers.CharField(max_length=64)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True
    )


class PatCreateOutputSerializer(serializers.Serializer[None]):
    token = serializers.CharField(help_text="Shown once; store it now.")
    personal_access_token = PatOutputSerializer()


class AuditEventOutputSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "created_at",
            "actor",
            "actor_kind",
            "action",
            "target_type",
            "target_id",
            "target",
            "before",
            "after",
            "source",
        )
