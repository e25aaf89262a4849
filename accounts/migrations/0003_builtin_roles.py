"""Built-in roles: tenant-admin and member (fixed) and the editable team-manager role."""

from django.db import migrations

ALL = [
    "provider-account:CreateProviderAccount", "provider-account:ReadProviderAccount",
    "provider-account:ManageProviderAccount", "provider-account:DeleteProviderAccount",
    "provider-account:UseIntegrations",
    "mcp-server:CreateMcpServer", "mcp-server:ReadMcpServer", "mcp-server:UseMcpServer",
    "mcp-server:ManageMcpServer", "mcp-server:DeleteMcpServer",
    "virtual-account:CreateVirtualAccount", "virtual-account:ReadVirtualAccount",
    "virtual-account:ManageVirtualAccount", "virtual-account:DeleteVirtualAccount",
    "team:CreateTeam", "team:ReadTeam", "team:ManageTeam", "team:DeleteTeam",
    "gateway-controls:ManageGatewayControls", "gateway-controls:ListGatewayControls",
    "user:ManageUsers", "user:ListUsers", "role:ManageRoles", "role:ListRoles",
    "tenant:AssignRole", "settings:ListSettings", "settings:ManageSettings",
    "external-identity:ListExternalIdentities", "external-identity:ManageExternalIdentities",
]

ROLES = [
    {
        "slug": "tenant-admin",
        "display_name": "Tenant Admin",
        "description": "Full control of the organisation.",
        "resource_type": "tenant",
        "permissions": sorted(ALL),
        "editable": False,
    },
    {
        "slug": "member",
        "display_name": "Member",
        "description": "Uses what their teams and grants allow.",
        "resource_type": "tenant",
        "permissions": [],
        "editable": False,
    },
    {
        "slug": "team-manager",
        "display_name": "Team Manager",
        "description": "What a team's managers may do within that team.",
        "resource_type": "team",
        "permissions": sorted(
            [
                "team:ReadTeam", "team:ManageTeam",
                "virtual-account:CreateVirtualAccount", "virtual-account:ReadVirtualAccount",
                "virtual-account:ManageVirtualAccount", "virtual-account:DeleteVirtualAccount",
            ]
        ),
        "editable": True,
    },
]


def create_roles(apps, schema_editor):
    Role = apps.get_model("accounts", "Role")
    for spec in ROLES:
        Role.objects.update_or_create(
            slug=spec["slug"], defaults={**spec, "builtin": True, "created_via": "system"}
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_initial")]
    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
