"""Ship the default Data Access rules (editable afterwards)."""

from django.db import migrations

DEFAULTS = [
    {"id": "default-everyone-own-data",
     "description": "Default rule: Users can access their own data", "enabled": True,
     "subjects": ["team:everyone"], "data_types": ["traces", "metrics"], "scope": "own_data",
     "filters": []},
    {"id": "default-everyone-team-data",
     "description": "Default rule: Users can access their teams' data, including the virtual "
     "accounts their teams own", "enabled": True,
     "subjects": ["team:everyone"], "data_types": ["traces", "metrics"], "scope": "team_data",
     "filters": []},
    {"id": "default-tenant-admin-all-data",
     "description": "Default rule: Tenant admins can access all data", "enabled": True,
     "subjects": ["role:tenant-admin"], "data_types": ["traces", "metrics"], "scope": "all_data",
     "filters": []},
]


def create_defaults(apps, schema_editor):
    apps.get_model("dataaccess", "DataAccessConfig").objects.get_or_create(
        name="data-access", defaults={"rules": DEFAULTS, "created_via": "system"}
    )


class Migration(migrations.Migration):
    dependencies = [("dataaccess", "0001_initial")]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
