"""Encrypt `VirtualAccount.notification_target` at rest (it holds webhook signing secrets).

A column type change cannot encrypt, so: add the encrypted column, copy every value through
the model field (which encrypts), drop the plain column, rename. Reversible.
"""

from typing import Any

from django.db import migrations

import gateway_project.fields


def copy_forward(apps: Any, schema_editor: Any) -> None:
    account_model = apps.get_model("accounts", "VirtualAccount")
    for account in account_model.objects.exclude(notification_target=None).only("pk"):
        account.notification_target_encrypted = account.notification_target
        account.save(update_fields=["notification_target_encrypted"])


def copy_backward(apps: Any, schema_editor: Any) -> None:
    account_model = apps.get_model("accounts", "VirtualAccount")
    for account in account_model.objects.exclude(notification_target_encrypted=None):
        account.notification_target = account.notification_target_encrypted
        account.save(update_fields=["notification_target"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_sso")]

    operations = [
        migrations.AddField(
            model_name="virtualaccount",
            name="notification_target_encrypted",
            field=gateway_project.fields.EncryptedJSONField(blank=True, null=True),
        ),
        migrations.RunPython(copy_forward, copy_backward),
        migrations.RemoveField(model_name="virtualaccount", name="notification_target"),
        migrations.RenameField(
            model_name="virtualaccount",
            old_name="notification_target_encrypted",
            new_name="notification_target",
        ),
    ]
