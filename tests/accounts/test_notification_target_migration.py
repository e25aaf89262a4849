"""Migration 0007 encrypts existing notification targets and can be reversed without loss."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from gateway_project.crypto import decrypt

BEFORE = [("accounts", "0006_sso")]
AFTER = [("accounts", "0007_encrypt_notification_target")]
TARGET = {"type": "webhook", "url": "https://hooks.example.com/in", "secret": "whsec-canary-7f3"}


def migrate(to: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(to)
    return executor


@pytest.mark.django_db(transaction=True)
def test_existing_targets_are_encrypted_forward_and_restored_backward() -> None:
    executor = migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    team = apps.get_model("teams", "Team").objects.create(name="hooks")
    accounts = apps.get_model("accounts", "VirtualAccount")
    accounts.objects.create(name="hooked", owner_team=team, notification_target=TARGET)
    accounts.objects.create(name="quiet", owner_team=team, notification_target=None)
    try:
        executor = migrate(AFTER)
        new_apps = executor.loader.project_state(AFTER).apps
        migrated = new_apps.get_model("accounts", "VirtualAccount").objects
        assert migrated.get(name="hooked").notification_target == TARGET
        assert migrated.get(name="quiet").notification_target is None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT notification_target FROM accounts_virtualaccount WHERE name = 'hooked'"
            )
            (ciphertext,) = cursor.fetchone()
        assert "whsec-canary-7f3" not in ciphertext
        assert json.loads(decrypt(ciphertext)) == TARGET
        executor = migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps.get_model("accounts", "VirtualAccount")
        assert old.objects.get(name="hooked").notification_target == TARGET
    finally:
        migrate([("accounts", "0007_encrypt_notification_target")])
        apps_now = MigrationExecutor(connection).loader.project_state(AFTER).apps
        apps_now.get_model("accounts", "VirtualAccount").objects.all().delete()
