"""`integration/secret-store/*` manifests: apply, export with references, audit, delete rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from accounts.models import AuditEvent, SecretStore, VirtualAccount
from accounts.policy import PolicyDenied
from accounts.secret_store_services import (
    secret_store_delete,
    secret_store_put_config,
    secret_store_snapshot,
)
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.errors import Conflict, ValidationFailed
from gateway_project.manifest_io import ManifestError, dump_yaml, parse_yaml
from gateway_project.secret_refs import fingerprint
from tests import factories

pytestmark = pytest.mark.django_db

VAULT_TOKEN = "hvs.vault-token-0123456789abcdef"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZURE_SECRET = "azure-client-secret~0123456789"
GCP_KEY = json.dumps(
    {
        "type": "service_account",
        "project_id": "acme-prod",
        "private_key_id": "abc123",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
        "-----END PRIVATE KEY-----\n",
        "client_email": "gateway@acme-prod.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
)
SECRETS = [VAULT_TOKEN, AWS_SECRET, AZURE_SECRET, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"]

STORES_YAML = f"""\
type: integration/secret-store/hashicorp/vault
name: vault-prod
url: https://vault.example.com:8200
namespace: team-a
auth_data: {{type: token, token: {VAULT_TOKEN}}}
---
type: integration/secret-store/aws/secrets-manager
name: aws-prod
region: eu-west-1
auth_data:
  type: access-key-based
  access_key_id: AKIAIOSFODNN7EXAMPLE
  secret_access_key: {AWS_SECRET}
---
type: integration/secret-store/azure/vault
name: azure-prod
vault_url: https://acme.vault.azure.net
auth_data:
  type: client-secret
  tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
  client_id: 04b07795-8ddb-461a-bbee-02f9e1bf7b46
  client_secret: {AZURE_SECRET}
---
type: integration/secret-store/gcp/gsm
name: gsm-prod
project: acme-prod
auth_data:
  type: key-file
  key_file_content: {json.dumps(GCP_KEY)}
"""

KIND_TYPES = [
    "integration/secret-store/aws/secrets-manager",
    "integration/secret-store/azure/vault",
    "integration/secret-store/gcp/gsm",
    "integration/secret-store/hashicorp/vault",
]


@pytest.fixture
def admin():
    return principal_for_user(factories.tenant_admin())


def apply(text: str, actor: Any, **kwargs: Any) -> list[tuple[str, str, str]]:
    results = manifests.apply(parse_yaml(text), actor=actor, **kwargs)
    return [(r.type, r.name, r.action) for r in results]


def export_stores() -> dict[str, dict[str, Any]]:
    return {name: m for _, name, m in manifests.export(KIND_TYPES)}


def ref(type_: str, name: str, key: str, value: str) -> str:
    return f"gw-secret://{type_}/{name}/{key}?v={fingerprint(value)}"


def test_the_four_kinds_are_registered_after_teams_and_before_virtual_accounts():
    kinds = manifests.kinds()
    for type_ in KIND_TYPES:
        kind = kinds[type_]
        assert (kind.rank, kind.directory, kind.read_permission) == (
            35,
            "secret-stores",
            "settings:ListSettings",
        )
    assert kinds["team"].rank < 35 < kinds["virtual-account"].rank


def test_apply_creates_every_kind_with_credentials_encrypted_at_rest(admin):
    assert apply(STORES_YAML, admin) == [
        ("integration/secret-store/hashicorp/vault", "vault-prod", "created"),
        ("integration/secret-store/aws/secrets-manager", "aws-prod", "created"),
        ("integration/secret-store/azure/vault", "azure-prod", "created"),
        ("integration/secret-store/gcp/gsm", "gsm-prod", "created"),
    ]

    rows = {s.name: s for s in SecretStore.objects.all()}
    assert {n: (s.kind, s.config, s.created_via) for n, s in rows.items()} == {
        "vault-prod": (
            "hashicorp/vault",
            {"url": "https://vault.example.com:8200", "namespace": "team-a"},
            "apply",
        ),
        "aws-prod": ("aws/secrets-manager", {"region": "eu-west-1"}, "apply"),
        "azure-prod": ("azure/vault", {"vault_url": "https://acme.vault.azure.net"}, "apply"),
        "gsm-prod": ("gcp/gsm", {"project": "acme-prod"}, "apply"),
    }
    assert json.loads(rows["vault-prod"].credentials) == {"type": "token", "token": VAULT_TOKEN}
    assert json.loads(rows["aws-prod"].credentials) == {
        "type": "access-key-based",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": AWS_SECRET,
        "session_token": "",
    }
    assert json.loads(rows["gsm-prod"].credentials)["key_file_content"] == GCP_KEY
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM accounts_secretstore")
        stored = " ".join(row[0] for row in cursor.fetchall())
    for secret in SECRETS:
        assert secret not in stored


def test_export_writes_references_that_apply_back_unchanged(admin):
    apply(STORES_YAML, admin)

    exported = export_stores()

    vault_type = "integration/secret-store/hashicorp/vault"
    assert list(exported) == ["aws-prod", "vault-prod", "gsm-prod", "azure-prod"]  # by kind
    assert exported["vault-prod"] == {
        "type": vault_type,
        "name": "vault-prod",
        "url": "https://vault.example.com:8200",
        "namespace": "team-a",
        "auth_data": {
            "token": ref(vault_type, "vault-prod", "token", VAULT_TOKEN),
            "type": "token",
        },
    }
    aws_type = "integration/secret-store/aws/secrets-manager"
    assert exported["aws-prod"]["auth_data"] == {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": ref(aws_type, "aws-prod", "secret_access_key", AWS_SECRET),
        "type": "access-key-based",
    }
    text = "---\n".join(dump_yaml(m) for m in exported.values())
    for secret in SECRETS:
        assert secret not in text

    assert sorted(apply(text, admin)) == sorted(
        (t, n, "unchanged")
        for t, n in [
            ("integration/secret-store/aws/secrets-manager", "aws-prod"),
            ("integration/secret-store/azure/vault", "azure-prod"),
            ("integration/secret-store/gcp/gsm", "gsm-prod"),
            ("integration/secret-store/hashicorp/vault", "vault-prod"),
        ]
    )
    assert (
        json.loads(SecretStore.objects.get(name="vault-prod").credentials)["token"] == VAULT_TOKEN
    )
    assert json.loads(SecretStore.objects.get(name="gsm-prod").credentials)["key_file_content"] == (
        GCP_KEY
    )


def test_a_reference_to_a_changed_secret_is_refused(admin):
    apply(STORES_YAML, admin)
    stale = dump_yaml(export_stores()["vault-prod"])
    secret_store_put_config(
        actor=admin,
        name="vault-prod",
        kind="hashicorp/vault",
        config={"url": "https://vault.example.com:8200"},
        credentials={"token": "hvs.rotated-token-value-000000"},
    )

    with pytest.raises(ManifestError) as caught:
        apply(stale, admin)

    [problem] = caught.value.problems
    assert problem.path == "auth_data.token"
    assert problem.message.startswith("secret reference does not match the stored secret")
    stored = json.loads(SecretStore.objects.get(name="vault-prod").credentials)
    assert stored["token"] == "hvs.rotated-token-value-000000"


def test_audit_records_changes_with_credentials_masked(admin):
    apply(STORES_YAML, admin)
    apply(STORES_YAML.replace(VAULT_TOKEN, "hvs.second-token-value-999999"), admin)

    events = AuditEvent.objects.filter(action__startswith="secret_store.").order_by("pk")
    assert [(e.action, e.target, e.source) for e in events] == [
        ("secret_store.created", "vault-prod", "apply"),
        ("secret_store.created", "aws-prod", "apply"),
        ("secret_store.created", "azure-prod", "apply"),
        ("secret_store.created", "gsm-prod", "apply"),
        ("secret_store.updated", "vault-prod", "apply"),
    ]
    update = events.last()
    assert update is not None
    before, after = update.before or {}, update.after or {}
    assert before["auth_data"] == {"type": "token", "token": "********"}
    assert after["auth_data"] == {"type": "token", "token": "********"}
    assert before["auth_fingerprint"] != after["auth_fingerprint"]
    dumped = json.dumps([(e.before, e.after) for e in events])
    for secret in [*SECRETS, "hvs.second-token-value-999999"]:
        assert secret not in dumped


def test_invalid_fields_are_reported_at_their_path(admin):
    bad = """\
type: integration/secret-store/hashicorp/vault
name: vault-prod
url: ftp://vault.example.com
mount: ""
auth_data: {type: token, token: x, role_id: y}
"""
    with pytest.raises(ManifestError) as caught:
        apply(bad, admin)

    assert sorted((p.path, p.message) for p in caught.value.problems) == [
        ("auth_data.role_id", "unknown field"),
        ("mount", "String should match pattern '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$'"),
        ("url", "must start with http:// or https://"),
    ]
    assert not SecretStore.objects.exists()


def test_a_name_taken_by_another_kind_conflicts(admin):
    apply(STORES_YAML, admin)
    other = """\
type: integration/secret-store/hashicorp/vault
name: aws-prod
url: https://vault.example.com
auth_data: {token: hvs.x}
"""
    with pytest.raises(ManifestError) as caught:
        apply(other, admin)

    assert caught.value.status == 409
    assert str(caught.value) == (
        "<input>#1: secret store 'aws-prod' is a aws/secrets-manager store; delete it first"
    )
    assert SecretStore.objects.get(name="aws-prod").kind == "aws/secrets-manager"


def test_only_settings_managers_apply_and_only_settings_readers_export():
    member = principal_for_user(factories.member())
    with pytest.raises(ManifestError) as caught:
        apply(STORES_YAML, member)
    assert caught.value.status == 403
    assert not SecretStore.objects.exists()

    with pytest.raises(PolicyDenied):
        manifests.export(KIND_TYPES, actor=member)


def test_a_store_in_use_cannot_be_deleted(admin):
    apply(STORES_YAML, admin)
    store = SecretStore.objects.get(name="vault-prod")
    VirtualAccount.objects.create(
        name="billing-app",
        owner_team=factories.TeamFactory(),
        secret_store=store,
        secret_path="apps/billing",
        created_by="user:admin@example.com",
    )

    with pytest.raises(Conflict) as caught:
        secret_store_delete(actor=admin, store=store)

    assert str(caught.value) == "secret store 'vault-prod' is used by virtual accounts: billing-app"
    assert SecretStore.objects.filter(name="vault-prod").exists()
    assert not AuditEvent.objects.filter(action="secret_store.deleted").exists()


def test_sync_prunes_an_unused_store_and_audits_it(admin):
    old = """\
type: integration/secret-store/azure/vault
name: azure-old
vault_url: https://old.vault.azure.net
auth_data: {access_token: old-azure-access-token-1234}
"""
    apply(STORES_YAML + "---\n" + old, admin)
    before = secret_store_snapshot(SecretStore.objects.get(name="azure-old"))

    results = apply(STORES_YAML, admin, sync=True)

    assert ("integration/secret-store/azure/vault", "azure-old", "deleted") in results
    assert set(SecretStore.objects.values_list("name", flat=True)) == {
        "vault-prod",
        "aws-prod",
        "azure-prod",
        "gsm-prod",
    }
    deleted = AuditEvent.objects.get(action="secret_store.deleted")
    assert deleted.before == before
    assert before["auth_data"] == {"type": "access-token", "access_token": "********"}
    assert "old-azure-access-token-1234" not in json.dumps(deleted.before)


def test_changing_where_a_store_points_resyncs_its_accounts(
    admin, monkeypatch, django_capture_on_commit_callbacks
):
    apply(STORES_YAML, admin)
    store = SecretStore.objects.get(name="vault-prod")
    account = VirtualAccount.objects.create(
        name="billing-app",
        owner_team=factories.TeamFactory(),
        secret_store=store,
        secret_path="apps/billing",
        created_by="user:admin@example.com",
    )
    sent: list[int] = []
    from accounts import tasks

    monkeypatch.setattr(tasks.secret_store_sync_task, "delay", sent.append)

    moved = STORES_YAML.replace("namespace: team-a", "namespace: team-b")
    with django_capture_on_commit_callbacks(execute=True):
        apply(moved, admin)
    assert sent == [account.pk]

    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        apply(moved.replace(VAULT_TOKEN, "hvs.only-the-token-changed-00"), admin)
    assert sent == []  # same place: nothing to move


def test_console_edits_can_keep_the_stored_credentials(admin):
    store = secret_store_put_config(
        actor=admin,
        name="gsm-console",
        kind="gcp/gsm",
        config={"project": "acme-prod"},
        credentials={"key_file_content": GCP_KEY},
        created_via="console",
    )

    secret_store_put_config(
        actor=admin,
        name="gsm-console",
        kind="gcp/gsm",
        config={"project": "acme-staging"},
        credentials=None,
    )

    store.refresh_from_db()
    assert store.config == {"project": "acme-staging"}
    assert json.loads(store.credentials) == {"type": "key-file", "key_file_content": GCP_KEY}


def test_service_validation_names_the_fields(admin):
    with pytest.raises(ValidationFailed) as caught:
        secret_store_put_config(
            actor=admin,
            name="Bad_Name",
            kind="gcp/gsm",
            config={"project": "acme-prod"},
            credentials={"key_file_content": "{}"},
        )
    assert caught.value.fields == {"name": ["3-64 lower-case letters, digits and '-'"]}

    with pytest.raises(ValidationFailed) as caught:
        secret_store_put_config(
            actor=admin,
            name="gsm-bad",
            kind="gcp/gsm",
            config={"project": "acme-prod"},
            credentials={"key_file_content": "not json"},
        )
    assert caught.value.fields == {
        "auth_data.key_file_content": ["must be the JSON text of a service-account key"]
    }

    with pytest.raises(ValidationFailed) as caught:
        secret_store_put_config(
            actor=admin,
            name="gsm-bad",
            kind="gcp/gsm",
            config={"project": "acme-prod"},
            credentials={"key_file_content": "gw-secret://integration/secret-store/x?v=1"},
        )
    assert caught.value.fields == {"auth_data.key_file_content": ["unresolved secret reference"]}
    assert not SecretStore.objects.exists()
