"""Clients for the external secret stores that virtual-account tokens are written to.

One small client per `SecretStore.Kind`, each on its vendor's official SDK, behind `CLIENTS`.
Callers use the three functions at the bottom; every SDK or transport failure comes out as
`SecretStoreError`, whose message is safe to show and log (it never holds a secret or a
credential), and every call is bounded by `GATEWAY_SECRET_STORE_TIMEOUT_SECONDS` (default 10)
with at most one SDK-level retry, so a hung store cannot hold a worker: the Celery tasks own
retrying with backoff.

Where a token lands (`path` is the account's `secret_path`):
- aws/secrets-manager: the secret named `path` as given; `SecretString` = the token. A write
  adds a version (AWSCURRENT moves to it); the first write creates the secret.
- hashicorp/vault: KV v2 at `<mount>/data/<path>` (leading '/' dropped), `data` =
  `{"token": "<token>"}`; each write adds a version.
- gcp/gsm: the secret id is `path` without its leading '/' and with '/' -> '-' (ids allow
  `[A-Za-z0-9_-]`); payload = the token in UTF-8 with its CRC32C; each write adds a version.
- azure/vault: the secret name is `path` without its leading '/' and with '/' and '_' -> '-'
  (names allow `[0-9a-zA-Z-]`); each write (`set_secret`) adds a version.

`config` and `credentials` (the encrypted JSON) per kind are the pydantic models below; the
manifests and the console validate against the same models.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from typing import Annotated, Any, ClassVar, Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator
from pydantic import ValidationError as PydanticValidationError

from accounts.models import SecretStore
from gateway_project.manifest_io import SECRET_REF_SCHEME

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_MESSAGE = 300


class SecretStoreError(Exception):
    """A secret-store call failed; the message is safe to show (never a secret or credential)."""


def _timeout() -> float:
    return float(getattr(settings, "GATEWAY_SECRET_STORE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def _connect_timeout() -> float:
    return min(5.0, _timeout())


# --- config and credential schemas -------------------------------------------------------------


class _Strict(BaseModel):
    """Unknown keys are errors, as in manifests."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


def _http_url(value: str, *, https_only: bool = False) -> str:
    schemes = ("https://",) if https_only else ("http://", "https://")
    if value and not value.startswith(schemes):
        raise ValueError(f"must start with {' or '.join(schemes)}")
    return value.rstrip("/")


class AwsConfig(_Strict):
    """`endpoint_url` is for tests and private endpoints; empty means AWS's own."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    endpoint_url: str = ""

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class AwsAccessKeyAuth(_Strict):
    type: Literal["access-key-based"] = "access-key-based"
    access_key_id: str = Field(min_length=16, max_length=128)
    secret_access_key: str = Field(min_length=1)
    session_token: str = ""


class VaultConfig(_Strict):
    """`mount` is the KV v2 mount; `namespace` is for Vault Enterprise / OpenBao namespaces."""

    url: str = Field(min_length=1)
    mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    namespace: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class VaultTokenAuth(_Strict):
    type: Literal["token"] = "token"
    token: str = Field(min_length=1)


class GsmConfig(_Strict):
    """`api_endpoint` (e.g. `http://127.0.0.1:8085`) is for tests; empty means Google's."""

    project: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    api_endpoint: str = ""

    @field_validator("api_endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)


class GcpKeyFileAuth(_Strict):
    """A service-account JSON key, as downloaded from the console (the file's text)."""

    type: Literal["key-file"] = "key-file"
    key_file_content: str = Field(min_length=2)

    @field_validator("key_file_content")
    @classmethod
    def _key(cls, value: str) -> str:
        if value.startswith(SECRET_REF_SCHEME):
            return value  # a manifest's reference to the stored key, resolved on apply
        try:
            info = json.loads(value)
        except ValueError:
            raise ValueError("must be the JSON text of a service-account key") from None
        required = {"type", "client_email", "private_key", "token_uri"}
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ValueError('must be a service-account key ("type": "service_account")')
        if missing := sorted(required - info.keys()):
            raise ValueError(f"the key lacks {', '.join(missing)}")
        return value


class AccessTokenAuth(_Strict):
    """A bearer token obtained elsewhere (short jobs and tests); it is never refreshed."""

    type: Literal["access-token"] = "access-token"
    access_token: str = Field(min_length=1)


class AzureConfig(_Strict):
    """Azure Key Vault, and where client-secret credentials get their tokens.

    `authority_host` (default: Azure public cloud) is for sovereign and private clouds, as is
    `disable_instance_discovery`; `verify_challenge_resource` may be turned off only for
    vaults outside `*.vault.azure.net`. Tests use all three against a local fake.
    """

    vault_url: str = Field(min_length=1)
    authority_host: str = ""
    disable_instance_discovery: bool = False
    verify_challenge_resource: bool = True

    @field_validator("vault_url", "authority_host")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, https_only=True)  # the SDKs refuse tokens over http


class AzureClientSecretAuth(_Strict):
    type: Literal["client-secret"] = "client-secret"
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)


def _auth_type(default: str) -> Any:
    """Discriminate on `type`, inferring it from the keys when absent (`access_token`)."""

    def pick(value: Any) -> str:
        if isinstance(value, dict):
            explicit = value.get("type")
            if explicit:
                return str(explicit)
            return "access-token" if "access_token" in value else default
        return str(getattr(value, "type", default))

    return Discriminator(pick)


GcpAuth = Annotated[
    Annotated[GcpKeyFileAuth, Tag("key-file")] | Annotated[AccessTokenAuth, Tag("access-token")],
    _auth_type("key-file"),
]
AzureAuth = Annotated[
    Annotated[AzureClientSecretAuth, Tag("client-secret")]
    | Annotated[AccessTokenAuth, Tag("access-token")],
    _auth_type("client-secret"),
]

# Credential fields that are secret (encrypted, write-only, exported as references).
SECRET_CREDENTIAL_FIELDS = frozenset(
    {"secret_access_key", "session_token", "token", "key_file_content", "access_token",
     "client_secret"}
)  # fmt: skip


# --- clients -----------------------------------------------------------------------------------


class StoreClient(ABC):
    """One store kind: parses the store's config and credentials, and talks to it."""

    label: ClassVar[str]
    config_model: ClassVar[type[_Strict]]
    credentials_type: ClassVar[Any]

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self.config: Any = parse_config(store.kind, store.config or {})
        self.credentials: Any = parse_credentials(store.kind, _credentials_json(store))

    def secret_values(self) -> list[str]:
        """Credential values that must never appear in a message."""
        dumped = self.credentials.model_dump()
        return [str(v) for k, v in dumped.items() if k in SECRET_CREDENTIAL_FIELDS and v]

    @staticmethod
    def location(path: str) -> str:
        """Where `path` lands in this store (see the module docstring)."""
        return path.lstrip("/")

    @abstractmethod
    def put(self, path: str, value: str) -> None: ...

    @abstractmethod
    def get(self, path: str) -> str: ...

    @abstractmethod
    def check(self) -> str: ...

    @abstractmethod
    def error_message(self, exc: Exception) -> str | None:
        """A short, credential-free message for an SDK/transport error, or None if not ours."""


def _credentials_json(store: SecretStore) -> dict[str, Any]:
    if not store.credentials:
        raise SecretStoreError(f"secret store '{store.name}' has no credentials")
    try:
        loaded = json.loads(store.credentials)
    except ValueError:
        raise SecretStoreError(f"secret store '{store.name}' has unreadable credentials") from None
    if not isinstance(loaded, dict):
        raise SecretStoreError(f"secret store '{store.name}' has unreadable credentials")
    return loaded


class AwsSecretsManagerClient(StoreClient):
    """boto3 `secretsmanager`: put_secret_value, or create_secret the first time."""

    label = "AWS Secrets Manager"
    config_model = AwsConfig
    credentials_type = AwsAccessKeyAuth

    @staticmethod
    def location(path: str) -> str:
        return path  # names may hold '/', including a leading one

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "secretsmanager",
            region_name=self.config.region,
            endpoint_url=self.config.endpoint_url or None,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            aws_session_token=self.credentials.session_token or None,
            config=Config(
                connect_timeout=_connect_timeout(),
                read_timeout=_timeout(),
                retries={"mode": "standard", "total_max_attempts": 2},
            ),
        )

    def put(self, path: str, value: str) -> None:
        from botocore.exceptions import ClientError

        client = self._client()
        name = self.location(path)
        try:
            client.put_secret_value(SecretId=name, SecretString=value)
            return
        except ClientError as exc:
            if _aws_code(exc) != "ResourceNotFoundException":
                raise
        try:
            client.create_secret(
                Name=name, SecretString=value, Description="Gateway virtual-account token"
            )
        except ClientError as exc:
            if _aws_code(exc) != "ResourceExistsException":
                raise
            client.put_secret_value(SecretId=name, SecretString=value)  # created meanwhile

    def get(self, path: str) -> str:
        response = self._client().get_secret_value(SecretId=self.location(path))
        value = response.get("SecretString")
        if value is None:
            raise SecretStoreError("the AWS secret holds binary data, not a token")
        return str(value)

    def check(self) -> str:
        self._client().list_secrets(MaxResults=1)
        return f"connected to {self.label} in {self.config.region}"

    def error_message(self, exc: Exception) -> str | None:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        if isinstance(exc, ClientError):
            code = _aws_code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code.isdigit():
                code = ""  # an error body botocore could not parse: only the status is known
            if code in _AWS_AUTH_CODES or (not code and status in (401, 403)):
                return f"{self.label} rejected the credentials ({code or f'HTTP {status}'})"
            if code == "ResourceNotFoundException":
                return f"{self.label}: secret not found"
            return f"{self.label} error {code or 'unknown'} (HTTP {status or '?'})"
        if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            return f"{self.label} timed out"
        if isinstance(exc, EndpointConnectionError):
            return f"could not reach {self.label}"
        if isinstance(exc, BotoCoreError):
            return f"{self.label} client error ({type(exc).__name__})"
        return None


_AWS_AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
        "AccessDenied",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)


def _aws_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class VaultClient(StoreClient):
    """hvac against Vault's (or OpenBao's) KV v2 engine; the token goes under key `token`."""

    label = "Vault"
    config_model = VaultConfig
    credentials_type = VaultTokenAuth
    data_key = "token"

    def _client(self) -> Any:
        import hvac

        return hvac.Client(
            url=self.config.url,
            token=self.credentials.token,
            namespace=self.config.namespace or None,
            timeout=(_connect_timeout(), _timeout()),  # requests' (connect, read) timeouts
        )

    def put(self, path: str, value: str) -> None:
        self._client().secrets.kv.v2.create_or_update_secret(
            path=self.location(path), secret={self.data_key: value}, mount_point=self.config.mount
        )

    def get(self, path: str) -> str:
        response = self._client().secrets.kv.v2.read_secret_version(
            path=self.location(path), mount_point=self.config.mount, raise_on_deleted_version=True
        )
        data = (response.get("data") or {}).get("data") or {}
        if self.data_key not in data:
            raise SecretStoreError(f"the Vault secret has no '{self.data_key}' key")
        return str(data[self.data_key])

    def check(self) -> str:
        info = self._client().auth.token.lookup_self()
        policies = ", ".join(sorted((info.get("data") or {}).get("policies") or [])) or "none"
        return f"connected to {self.label}; token valid (policies: {policies})"

    def error_message(self, exc: Exception) -> str | None:
        import requests
        from hvac import exceptions as hvac_errors

        if isinstance(exc, hvac_errors.Unauthorized | hvac_errors.Forbidden):
            return f"{self.label} rejected the token (permission denied)"
        if isinstance(exc, hvac_errors.InvalidPath):
            return f"{self.label}: no such secret or mount '{self.config.mount}'"
        if isinstance(exc, hvac_errors.VaultDown):
            return f"{self.label} is sealed or in maintenance"
        if isinstance(exc, hvac_errors.VaultError):
            return f"{self.label} error ({type(exc).__name__})"
        if isinstance(exc, requests.Timeout):
            return f"{self.label} timed out"
        if isinstance(exc, requests.ConnectionError):
            return f"could not reach {self.label}"
        if isinstance(exc, requests.RequestException):
            return f"{self.label} request failed ({type(exc).__name__})"
        return None


class GsmClient(StoreClient):
    """google-cloud-secret-manager over its REST transport; a version per write."""

    label = "Google Secret Manager"
    config_model = GsmConfig
    credentials_type = GcpAuth
    scopes = ("https://www.googleapis.com/auth/cloud-platform",)

    @staticmethod
    def location(path: str) -> str:
        return path.lstrip("/").replace("/", "-")  # ids allow [A-Za-z0-9_-] only

    def _credentials(self) -> Any:
        if isinstance(self.credentials, AccessTokenAuth):
            from google.oauth2.credentials import Credentials

            return Credentials(token=self.credentials.access_token)  # type: ignore[no-untyped-call]
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            json.loads(self.credentials.key_file_content), scopes=list(self.scopes)
        )

    def _client(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import secretmanager

        options = ClientOptions(api_endpoint=self.config.api_endpoint or None)
        return secretmanager.SecretManagerServiceClient(
            credentials=self._credentials(), transport="rest", client_options=options
        )

    def _call(self) -> dict[str, Any]:
        # retry=None: the SDK's own retries would outlast the timeout; the tasks retry instead.
        return {"retry": None, "timeout": _timeout()}

    def put(self, path: str, value: str) -> None:
        from google.api_core import exceptions as gexc

        client = self._client()
        secret = client.secret_path(self.config.project, self.location(path))
        data = value.encode()
        version = {"parent": secret, "payload": {"data": data, "data_crc32c": crc32c(data)}}
        try:
            client.add_secret_version(request=version, **self._call())
            return
        except gexc.NotFound:
            pass
        with contextlib.suppress(gexc.AlreadyExists):  # created meanwhile: add to it
            client.create_secret(
                request={
                    "parent": f"projects/{self.config.project}",
                    "secret_id": self.location(path),
                    "secret": {
                        "replication": {"automatic": {}},
                        "labels": {"managed-by": "gateway"},
                    },
                },
                **self._call(),
            )
        client.add_secret_version(request=version, **self._call())

    def get(self, path: str) -> str:
        client = self._client()
        name = f"{client.secret_path(self.config.project, self.location(path))}/versions/latest"
        response = client.access_secret_version(request={"name": name}, **self._call())
        data = bytes(response.payload.data)
        if response.payload.data_crc32c and response.payload.data_crc32c != crc32c(data):
            raise SecretStoreError(f"{self.label} returned a corrupted payload (CRC32C mismatch)")
        return data.decode()

    def check(self) -> str:
        self._client().list_secrets(
            request={"parent": f"projects/{self.config.project}", "page_size": 1}, **self._call()
        )
        return f"connected to {self.label} (project {self.config.project})"

    def error_message(self, exc: Exception) -> str | None:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_errors

        auth_failures = gexc.Unauthorized | gexc.Forbidden | gexc.Unauthenticated
        if isinstance(exc, auth_failures | gexc.PermissionDenied):
            return f"{self.label} rejected the credentials (HTTP {exc.code})"
        if isinstance(exc, gexc.NotFound):
            return f"{self.label}: secret or project not found"
        if isinstance(exc, gexc.GoogleAPICallError):
            return f"{self.label} error (HTTP {exc.code} {type(exc).__name__})"
        if isinstance(exc, auth_errors.RefreshError):
            return f"{self.label} rejected the credentials (token refresh failed)"
        if isinstance(exc, requests.Timeout):
            return f"{self.label} timed out"
        if isinstance(exc, auth_errors.TransportError | requests.ConnectionError):
            return f"could not reach {self.label}"
        if isinstance(exc, gexc.GoogleAPIError | auth_errors.GoogleAuthError):
            return f"{self.label} client error ({type(exc).__name__})"
        if isinstance(exc, requests.RequestException):
            return f"{self.label} request failed ({type(exc).__name__})"
        return None


class StaticTokenCredential:
    """An azure-core `TokenCredential` for a bearer token obtained elsewhere (never refreshed)."""

    def __init__(self, token: str, lifetime_seconds: int = 3600) -> None:
        self._token = token
        self._lifetime = lifetime_seconds

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + self._lifetime)


class AzureKeyVaultClient(StoreClient):
    """azure-keyvault-secrets: `set_secret` creates the secret or adds a version."""

    label = "Azure Key Vault"
    config_model = AzureConfig
    credentials_type = AzureAuth

    @staticmethod
    def location(path: str) -> str:
        return path.lstrip("/").replace("/", "-").replace("_", "-")  # names allow [0-9a-zA-Z-]

    def _transport_kwargs(self) -> dict[str, Any]:
        return {
            "connection_timeout": _connect_timeout(),
            "read_timeout": _timeout(),
            "retry_total": 1,
        }

    def _credential(self) -> Any:
        if isinstance(self.credentials, AccessTokenAuth):
            return StaticTokenCredential(self.credentials.access_token)
        from azure.identity import ClientSecretCredential

        options: dict[str, Any] = self._transport_kwargs()
        if self.config.authority_host:
            options["authority"] = self.config.authority_host
        if self.config.disable_instance_discovery:
            options["disable_instance_discovery"] = True
        return ClientSecretCredential(
            self.credentials.tenant_id,
            self.credentials.client_id,
            self.credentials.client_secret,
            **options,
        )

    def _client(self) -> Any:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(
            self.config.vault_url,
            self._credential(),
            verify_challenge_resource=self.config.verify_challenge_resource,
            **self._transport_kwargs(),
        )

    def put(self, path: str, value: str) -> None:
        self._client().set_secret(
            self.location(path), value, content_type="text/plain", tags={"managed-by": "gateway"}
        )

    def get(self, path: str) -> str:
        value = self._client().get_secret(self.location(path)).value
        if value is None:
            raise SecretStoreError(f"the {self.label} secret has no value")
        return str(value)

    def check(self) -> str:
        pages = self._client().list_properties_of_secrets(max_page_size=1).by_page()
        next(iter(pages), None)
        return f"connected to {self.label} at {self.config.vault_url}"

    def error_message(self, exc: Exception) -> str | None:
        from azure.core import exceptions as aexc

        if isinstance(exc, aexc.ClientAuthenticationError):
            return f"{self.label} rejected the credentials"
        if isinstance(exc, aexc.ResourceNotFoundError):
            return f"{self.label}: secret not found"
        if isinstance(exc, aexc.HttpResponseError):
            code = getattr(exc.error, "code", None) or type(exc).__name__
            return f"{self.label} error (HTTP {exc.status_code} {code})"
        if isinstance(exc, aexc.ServiceRequestTimeoutError | aexc.ServiceResponseTimeoutError):
            return f"{self.label} timed out"
        if isinstance(exc, aexc.ServiceRequestError | aexc.ServiceResponseError):
            return f"could not reach {self.label}"
        if isinstance(exc, aexc.AzureError):
            return f"{self.label} client error ({type(exc).__name__})"
        return None


CLIENTS: dict[str, type[StoreClient]] = {
    SecretStore.Kind.AWS_SECRETS_MANAGER: AwsSecretsManagerClient,
    SecretStore.Kind.HASHICORP_VAULT: VaultClient,
    SecretStore.Kind.GCP_GSM: GsmClient,
    SecretStore.Kind.AZURE_VAULT: AzureKeyVaultClient,
}


def _client_class(kind: str) -> type[StoreClient]:
    try:
        return CLIENTS[kind]
    except KeyError:
        raise SecretStoreError(f"unknown secret store kind '{kind}'") from None


def parse_config(kind: str, config: dict[str, Any]) -> Any:
    """The kind's typed config; ValueError (pydantic's, readable) when invalid."""
    return _client_class(kind).config_model.model_validate(config)


def parse_credentials(kind: str, credentials: dict[str, Any]) -> Any:
    """The kind's typed credentials (one of its auth models)."""
    return TypeAdapter(_client_class(kind).credentials_type).validate_python(credentials)


# --- CRC32C (Castagnoli), for Secret Manager's payload checksums --------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (RFC 3720 appendix B.4); Secret Manager checks `data_crc32c` against it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- the interface -----------------------------------------------------------------------------


def _redact(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            message = message.replace(secret, "********")
    return message[:MAX_MESSAGE]


def _run(store: SecretStore, operation: str, call: Any) -> Any:
    """Run `call(client)`, mapping every failure to a SecretStoreError with a safe message."""
    try:
        client = _client_class(store.kind)(store)
    except PydanticValidationError as exc:
        fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()}))
        raise SecretStoreError(
            f"secret store '{store.name}' is misconfigured ({fields or 'invalid'})"
        ) from None
    secrets = client.secret_values()
    try:
        return call(client)
    except SecretStoreError as exc:
        raise SecretStoreError(_redact(str(exc), secrets)) from None
    except Exception as exc:  # noqa: BLE001 - every SDK/transport error becomes one safe type
        message = client.error_message(exc) or f"{client.label} {operation} failed"
        message = _redact(f"secret store '{store.name}': {message}", secrets)
        # Log the type only: SDK messages can echo request details.
        logger.warning(
            "secret store %s (%s) %s failed: %s", store.name, store.kind, operation,
            type(exc).__name__,
        )  # fmt: skip
        raise SecretStoreError(message) from None


def secret_store_put(store: SecretStore, path: str, value: str) -> None:
    """Write `value` at `path`: create the secret if missing, else add a new version."""
    _run(store, "write", lambda client: client.put(path, value))


def secret_store_get(store: SecretStore, path: str) -> str:
    """The latest version of the secret at `path`."""
    value: str = _run(store, "read", lambda client: client.get(path))
    return value


def secret_store_check(store: SecretStore) -> str:
    """Test the connection with one cheap authenticated call; a message, or SecretStoreError."""
    message: str = _run(store, "check", lambda client: client.check())
    return message


def secret_store_location(store: SecretStore, path: str) -> str:
    """Where `path` lands in `store` (the AWS name, Vault path, GSM id or Azure name)."""
    return _client_class(store.kind).location(path)
