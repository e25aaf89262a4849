"""Real identity providers for the SSO tests: Node processes on free loopback ports.

`tests/idp/` holds the scripts and their npm packages (`make idp-deps` installs them). Each IdP
is started per test and stopped afterwards; waits are bounded, and a failed start shows the
IdP's own output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.processes import free_port, http_get, wait_until

IDP_DIR = Path(__file__).resolve().parents[1] / "idp"
START_TIMEOUT = 30.0


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (IDP_DIR / "node_modules").is_dir():
        pytest.fail("the test IdPs are not installed: run `make idp-deps`")
    return node


@contextlib.contextmanager
def _node(script: str, config: dict[str, Any], probe: str) -> Iterator[None]:
    """Run `node script <config>` until the block ends; ready once GET `probe` answers 200."""
    node = _require_node()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process
    env = {**os.environ, "NODE_ENV": "development", "FORCE_COLOR": "0", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [node, script, json.dumps(config)],
        cwd=IDP_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise AssertionError(f"{script} exited with {proc.returncode}:\n{output}")
        try:
            return http_get(config["port"], probe, timeout=2.0)[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, START_TIMEOUT, f"{script} on port {config['port']}", interval=0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@contextlib.contextmanager
def oidc_idp(
    *, client_id: str, client_secret: str, redirect_uri: str, accounts: dict[str, dict[str, Any]]
) -> Iterator[str]:
    """An `oidc-provider` OpenID Provider; yields its issuer URL."""
    port = free_port()
    config = {
        "port": port,
        "client": {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": [redirect_uri],
        },
        "accounts": accounts,
    }
    with _node("oidc_idp.mjs", config, "/.well-known/openid-configuration"):
        yield f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class KeyPair:
    key_pem: str
    cert_pem: str


def key_pair(common_name: str = "Gateway test IdP") -> KeyPair:
    """A fresh RSA key with a self-signed certificate valid for a day."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(tz=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return KeyPair(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclass(frozen=True)
class SamlIdp:
    url: str
    entity_id: str
    keys: KeyPair

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/metadata"


@contextlib.contextmanager
def saml_idp(
    tmp_path: Path, *, acs_url: str, audience: str, user: dict[str, str], keys: KeyPair
) -> Iterator[SamlIdp]:
    """A `saml-idp` SAML 2.0 IdP signing with `keys`; the user form is prefilled with `user`."""
    port = free_port()
    key_file, cert_file = tmp_path / "idp-key.pem", tmp_path / "idp-cert.pem"
    key_file.write_text(keys.key_pem)
    cert_file.write_text(keys.cert_pem)
    entity_id = f"urn:gateway-test:idp:{port}"
    config = {
        "port": port,
        "key": str(key_file),
        "cert": str(cert_file),
        "issuer": entity_id,
        "acsUrl": acs_url,
        "audience": audience,
        "user": user,
    }
    with _node("saml_idp.js", config, "/metadata"):
        yield SamlIdp(f"http://127.0.0.1:{port}", entity_id, keys)
