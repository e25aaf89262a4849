"""Fake Google Secret Manager and Azure Key Vault REST servers, for the official SDKs (tests only).

Neither vendor ships an emulator that installs here, so these implement exactly the calls that
`accounts.secret_stores` makes through google-cloud-secret-manager (REST transport) and
azure-keyvault-secrets, written from the public REST references:

Google Secret Manager v1 (cloud.google.com/secret-manager/docs/reference/rest):
- `POST /v1/projects/{p}/secrets?secretId={id}` (body: Secret) -> Secret; 409 ALREADY_EXISTS
- `POST /v1/projects/{p}/secrets/{id}:addVersion` (body: {payload: {data, dataCrc32c}})
  -> SecretVersion; 404 NOT_FOUND; 400 INVALID_ARGUMENT on a CRC32C mismatch
- `GET /v1/projects/{p}/secrets/{id}/versions/{n|latest}:access` -> {name, payload}
- `GET /v1/projects/{p}/secrets?pageSize=n` -> {secrets, totalSize}
- errors: `{"error": {"code", "message", "status"}}` (google.rpc.Status over HTTP)
- auth: `Authorization: Bearer <token>`, either an access token from `issue_token()` or the
  self-signed JWT that google-auth sends for a service-account key when the API endpoint is
  overridden ("self-signed JWT" access, developers.google.com/identity/protocols/oauth2/
  service-account#jwt-auth): RS256, `iss` = `sub` = the account's email, a `scope` or `aud`,
  verified against the public key of a key made by `service_account_key()`.

Azure Key Vault secrets, api-version 7.x / 2025+ (learn.microsoft.com/rest/api/keyvault/secrets):
- the challenge protocol: an unauthenticated request gets 401 with
  `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/{tenant}",
  resource="https://vault.azure.net"`, after which the client sends the bearer token
- `PUT /secrets/{name}?api-version=` (body: {value, contentType?, tags?}) -> SecretBundle;
  every PUT adds a version
- `GET /secrets/{name}/{version?}?api-version=` -> SecretBundle; 404 SecretNotFound
- `GET /secrets?api-version=&maxresults=n` -> {value: [SecretItem], nextLink}
- errors: `{"error": {"code", "message"}}`; names must match `^[0-9a-zA-Z-]{1,127}$`
- served over TLS (the SDK refuses bearer tokens over http) with a self-signed certificate
  made at start; `ca_bundle` is its path, for `REQUESTS_CA_BUNDLE`.

The same server also plays the Microsoft identity platform for azure-identity's
ClientSecretCredential (learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-
grant-flow), with the server's URL as the credential's `authority`:
- `GET /{tenant}/v2.0/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4)
- `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`, `client_id`,
  `client_secret`, `scope` -> `{token_type, expires_in, access_token}`; an unknown client or a
  wrong secret -> 401 `invalid_client` (RFC 6749 §5.2).

Faults, for every server here: `fail_next(Fault(times, status, body, headers, before_seconds,
after_seconds))` answers the next `times` requests with that error, and/or holds them before
they are handled or after (a write that lands but whose answer comes late).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from accounts.secret_stores import crc32c


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Recorded:
    method: str
    path: str
    authorized: bool


@dataclass
class Fault:
    """How to spoil the next `times` requests (`FakeRestServer.fail_next`)."""

    times: int
    status: int = 0  # 0: answer normally (after the delays)
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    before_seconds: float = 0.0  # hold the request first (then answer `status`, if set)
    after_seconds: float = 0.0  # handle it (a write lands), then hold the answer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.fake
        fault = fake.take_fault()
        try:
            if fake.hang_seconds or fault.before_seconds:
                time.sleep(fake.hang_seconds or fault.before_seconds)
            if fault.status:
                raise HttpError(fault.status, fault.body, fault.headers)
            status, body, headers = fake.handle(method, self.path, dict(self.headers), raw)
        except HttpError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        if fault.after_seconds:
            time.sleep(fault.after_seconds)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeRestServer


class FakeRestServer(ABC):
    """A threaded http.server on 127.0.0.1 with the state of one fake service."""

    scheme: ClassVar[str] = "http"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.hang_seconds = 0.0
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, fault: Fault) -> None:
        """Spoil the next `fault.times` requests: an error answer, or a slow one."""
        with self._lock:
            self.faults.append(fault)

    def take_fault(self) -> Fault:
        """The fault for the request being handled (a harmless one when none is queued)."""
        with self._lock:
            if not self.faults:
                return Fault(times=0)
            fault = self.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(0)
            return fault

    def _wrap(self, server: _Server) -> None:  # noqa: B027 - optional hook, plain HTTP by default
        """Hook for TLS: subclasses serving HTTPS wrap the listening socket here."""

    def start(self) -> None:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._wrap(server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @abstractmethod
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one request: (status, JSON body, headers)."""


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- Google Secret Manager ---------------------------------------------------------------------


def _gerror(status: int, grpc_status: str, message: str) -> HttpError:
    return HttpError(status, {"error": {"code": status, "message": message, "status": grpc_status}})


@dataclass
class _GsmSecret:
    name: str
    created: str
    labels: dict[str, str]
    versions: list[bytes] = field(default_factory=list)


class FakeSecretManager(FakeRestServer):
    """Google Secret Manager v1 over REST: secrets, versions, access, list; OAuth token grant."""

    _ID = r"[A-Za-z0-9_-]{1,255}"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self.secrets: dict[str, _GsmSecret] = {}
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}  # client_email -> public key

    def issue_token(self) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token

    def service_account_key(self, project: str, name: str = "gateway") -> dict[str, str]:
        """A service-account JSON key this server trusts (its `token_uri` is never called)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"{name}@{project}.iam.gserviceaccount.com"
        self.service_accounts[email] = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": uuid.uuid4().hex,
            "private_key": pem,
            "client_email": email,
            "client_id": str(uuid.uuid4().int)[:21],
            "token_uri": f"{self.url}/token",  # google-auth requires one; self-signed JWTs skip it
        }

    def latest(self, project: str, secret_id: str) -> bytes:
        return self.secrets[f"projects/{project}/secrets/{secret_id}"].versions[-1]

    def _self_signed_jwt_valid(self, token: str) -> bool:
        try:
            head, claims_part, signature = token.split(".")
            claims = json.loads(_b64url_decode(claims_part))
            public_key = self.service_accounts[claims["iss"]]
            public_key.verify(
                _b64url_decode(signature),
                f"{head}.{claims_part}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (KeyError, ValueError, TypeError, InvalidSignature):
            return False
        return (
            json.loads(_b64url_decode(head)).get("alg") == "RS256"
            and claims.get("sub") == claims["iss"]
            and float(claims.get("exp", 0)) > time.time()
            and bool(claims.get("scope") or claims.get("aud"))
        )

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        bearer = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        authorized = bool(bearer) and (bearer in self.tokens or self._self_signed_jwt_valid(bearer))
        with self._lock:
            self.requests.append(Recorded(method, path, authorized))
        if not authorized:
            raise _gerror(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        with self._lock:
            return self._route(method, path, query, body)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        project = r"projects/(?P<project>[a-z0-9-]+)"
        if m := re.fullmatch(rf"/v1/{project}/secrets", path):
            if method == "POST":
                return 200, self._create(m["project"], query, body), {}
            size = int(query.get("pageSize", ["25"])[0])
            mine = [s for n, s in sorted(self.secrets.items()) if n.startswith(m.group(0)[4:])]
            listed = [self._secret_json(s) for s in mine[:size]]
            return 200, {"secrets": listed, "totalSize": len(mine)}, {}
        if (m := re.fullmatch(rf"/v1/({project}/secrets/(?P<id>[^/:]+)):addVersion", path)) and (
            method == "POST"
        ):
            return 200, self._add_version(m[1], body), {}
        version_re = rf"/v1/({project}/secrets/(?P<id>[^/:]+))/versions/(?P<v>latest|\d+):access"
        if (m := re.fullmatch(version_re, path)) and method == "GET":
            return 200, self._access(m[1], m["v"]), {}
        raise _gerror(404, "NOT_FOUND", f"no such method {method} {path}")

    def _secret_json(self, secret: _GsmSecret) -> dict[str, Any]:
        return {
            "name": secret.name,
            "replication": {"automatic": {}},
            "createTime": secret.created,
            "labels": secret.labels,
            "etag": f'"{len(secret.versions)}"',
        }

    def _create(self, project: str, query: dict[str, list[str]], body: bytes) -> dict[str, Any]:
        secret_id = query.get("secretId", [""])[0]
        if not re.fullmatch(self._ID, secret_id):
            raise _gerror(400, "INVALID_ARGUMENT", "Secret ID does not match [a-zA-Z_0-9-]+.")
        data = json.loads(body or b"{}")
        if "replication" not in data:
            raise _gerror(400, "INVALID_ARGUMENT", "Secret.replication is required.")
        name = f"projects/{project}/secrets/{secret_id}"
        if name in self.secrets:
            raise _gerror(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
        secret = _GsmSecret(name, _now_rfc3339(), data.get("labels") or {})
        self.secrets[name] = secret
        return self._secret_json(secret)

    def _add_version(self, name: str, body: bytes) -> dict[str, Any]:
        secret = self.secrets.get(name)
        if secret is None:
            raise _gerror(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        payload = json.loads(body or b"{}").get("payload") or {}
        data = base64.b64decode(payload.get("data", ""))
        if "dataCrc32c" in payload and int(payload["dataCrc32c"]) != crc32c(data):
            raise _gerror(400, "INVALID_ARGUMENT", "Checksum mismatch.")
        secret.versions.append(data)
        return {
            "name": f"{name}/versions/{len(secret.versions)}",
            "createTime": _now_rfc3339(),
            "state": "ENABLED",
            "replicationStatus": {"automatic": {}},
        }

    def _access(self, name: str, version: str) -> dict[str, Any]:
        secret = self.secrets.get(name)
        count = len(secret.versions) if secret is not None else 0
        number = count if version == "latest" else int(version)
        if secret is None or not 1 <= number <= count:
            raise _gerror(
                404, "NOT_FOUND", f"Secret Version [{name}/versions/{version}] not found."
            )
        data = secret.versions[number - 1]
        return {
            "name": f"{name}/versions/{number}",
            "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc32c(data))},
        }


# --- Azure Key Vault ---------------------------------------------------------------------------


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def self_signed_certificate(
    directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for `names` (host names or addresses), and its
    key: (cert.pem, key.pem) in `directory`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class FakeKeyVault(FakeRestServer):
    """Azure Key Vault secrets over HTTPS: challenge, set (new version), get, list."""

    scheme: ClassVar[str] = "https"
    tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    _NAME = r"[0-9a-zA-Z-]{1,127}"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()
        self.secrets: dict[str, list[dict[str, Any]]] = {}
        self.apps: dict[str, str] = {}  # client_id -> client_secret, in `tenant_id`
        self._dir = tempfile.TemporaryDirectory(prefix="fake-kv-")
        self.ca_bundle, self._key = self_signed_certificate(Path(self._dir.name))

    def issue_token(self) -> str:
        token = "eyJ0eXAiOiJKV1Qi.fake-" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token

    def _wrap(self, server: _Server) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_bundle, self._key)
        server.socket = context.wrap_socket(server.socket, server_side=True)

    def stop(self) -> None:
        super().stop()
        self._dir.cleanup()

    def latest(self, name: str) -> str:
        return str(self.secrets[name][-1]["value"])

    def _challenge(self, message: str) -> HttpError:
        header = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            'resource="https://vault.azure.net"'
        )
        return HttpError(
            401,
            {"error": {"code": "Unauthorized", "message": message}},
            {"WWW-Authenticate": header},
        )

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        authorized = auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in self.tokens
        with self._lock:
            self.requests.append(Recorded(method, path, authorized))
        if path.startswith(f"/{self.tenant_id}/"):
            return 200, self._identity(method, path, body), {}
        if not auth:
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        if not authorized:
            raise self._challenge("AKV10032: Invalid issuer.")
        if not query.get("api-version"):
            raise HttpError(
                400, {"error": {"code": "BadParameter", "message": "api-version is required"}}
            )
        with self._lock:
            return self._route(method, path, query, body)

    def register_app(self, client_id: str, client_secret: str) -> None:
        self.apps[client_id] = client_secret

    def _identity(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        base = f"{self.url}/{self.tenant_id}"
        if method == "GET" and path.endswith("/v2.0/.well-known/openid-configuration"):
            return {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token"],
                "tenant_region_scope": "EU",
            }
        if method == "POST" and path.endswith("/oauth2/v2.0/token"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            expected = self.apps.get(form.get("client_id", ""))
            if form.get("grant_type") != "client_credentials":
                raise HttpError(400, {"error": "unsupported_grant_type"})
            if expected is None or not secrets.compare_digest(
                expected, form.get("client_secret", "")
            ):
                raise HttpError(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                )
            return {"token_type": "Bearer", "expires_in": 3599, "access_token": self.issue_token()}
        raise HttpError(404, {"error": "not_found"})

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path.rstrip("/") == "/secrets" and method == "GET":
            size = int(query.get("maxresults", ["25"])[0])
            items = [self._item(versions[-1]) for _, versions in sorted(self.secrets.items())]
            return 200, {"value": items[:size], "nextLink": None}, {}
        m = re.fullmatch(r"/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", path)
        if m is None:
            raise HttpError(404, {"error": {"code": "NotFound", "message": f"no route {path}"}})
        name = m["name"]
        if not re.fullmatch(self._NAME, name):
            raise HttpError(
                400,
                {
                    "error": {
                        "code": "BadParameter",
                        "message": "The request URI contains an invalid name",
                    }
                },
            )
        if method == "PUT" and m["version"] is None:
            return 200, self._set(name, json.loads(body or b"{}")), {}
        if method == "GET":
            return 200, self._get(name, m["version"] or ""), {}
        raise HttpError(405, {"error": {"code": "MethodNotAllowed", "message": method}})

    def _set(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(data.get("value"), str):
            raise HttpError(
                400, {"error": {"code": "BadParameter", "message": "Property value is required"}}
            )
        now = int(time.time())
        bundle = {
            "value": data["value"],
            "contentType": data.get("contentType"),
            "tags": data.get("tags") or {},
            "id": f"{self.url}/secrets/{name}/{uuid.uuid4().hex}",
            "attributes": {
                "enabled": True,
                "created": now,
                "updated": now,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        }
        self.secrets.setdefault(name, []).append(bundle)
        return bundle

    def _get(self, name: str, version: str) -> dict[str, Any]:
        versions = self.secrets.get(name, [])
        found = [b for b in versions if b["id"].endswith(f"/{version}")] if version else versions
        if not found:
            raise HttpError(
                404,
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": f"A secret with (name/id) {name} was not found.",
                    }
                },
            )
        return found[-1]

    def _item(self, bundle: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": bundle["id"].rsplit("/", 1)[0],
            "attributes": bundle["attributes"],
            "contentType": bundle["contentType"],
            "tags": bundle["tags"],
        }


@contextmanager
def running(fake: FakeRestServer) -> Iterator[FakeRestServer]:
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
