"""The implicit `everyone` team: every user belongs to it without a membership row."""

from django.db import migrations


def create_everyone(apps, schema_editor):
    Team = apps.get_model("teams", "Team")
    Team.objects.get_or_create(
        name="everyone",
        defaults={
            "description": "Every user of the organisation (not virtual accounts).",
            "source": "builtin",
            "created_via": "system",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("teams", "0001_initial")]
    operations = [migrations.RunPython(create_everyone, migrations.RunPython.noop)]
