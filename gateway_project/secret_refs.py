"""Secret references in manifests: export never writes a secret, it writes a reference.

`gw-secret://<type>/<name>/<field>?v=<fingerprint>` names a secret the gateway already stores;
the fingerprint (a keyed hash prefix, useless without the server's key) changes when the
secret does, so diffs show rotations. Applying a reference keeps the stored value, and only
when the fingerprint still matches: a stale or foreign reference is an error, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway_project.crypto import keyed_digest
from gateway_project.errors import ValidationFailed
from gateway_project.manifest_io import SECRET_REF_SCHEME as SCHEME


def fingerprint(value: str) -> str:
    return keyed_digest("secret-ref:" + value)[:12]


def secret_ref(path: str, value: str) -> str:
    """The reference export writes for `value`, stored under `path` (`type/name/field`)."""
    return f"{SCHEME}{path}?v={fingerprint(value)}"


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def resolve(value: Any, *, path: str, stored: Mapping[str, Any], key: str, field: str) -> Any:
    """A plain value as given; a reference resolved to the stored secret it names, or an error."""
    if not is_ref(value):
        return value
    ref_path, _, query = value.removeprefix(SCHEME).partition("?v=")
    current = stored.get(key)
    if ref_path != path or current is None or fingerprint(str(current)) != query:
        raise ValidationFailed.field(
            field,
            "secret reference does not match the stored secret (it was changed or removed): "
            "give the secret's value",
        )
    return current
