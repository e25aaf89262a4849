"""Helpers for the SCIM tests: an SSO configuration with SCIM on, a token, a small client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client

from accounts.policy import Principal
from teams import scim_services
from teams.scim_services import scim_token_issue

BASE = "/scim/v2"
SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def enable_scim(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn SCIM on for SSO configuration `name`: a real SsoConfig row when the model exists."""
    try:
        model = apps.get_model("accounts", "SsoConfig")
    except LookupError:
        model = None
    if model is not None and model._meta.db_table in connection.introspection.table_names():
        model._default_manager.update_or_create(
            name=name, defaults={"enable_scim": True, "protocol": "saml"}
        )
    else:
        monkeypatch.setattr(scim_services, "scim_enabled_for", lambda _name: True)


def issue_token(name: str = "okta", grace_period_days: int = 1) -> str:
    _token, raw = scim_token_issue(
        actor=Principal.system(), sso_name=name, grace_period_days=grace_period_days
    )
    return raw


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def json(self) -> Any:
        return self.body


class ScimClient:
    """Django's test client speaking SCIM with a bearer token."""

    def __init__(self, token: str | None, client: Client | None = None) -> None:
        self.client = client or Client()
        self.token = token

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = path if path.startswith("/") else f"{BASE}/{path}"
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        response = self.client.generic(
            method.upper(),
            url + (("?" + "&".join(f"{k}={v}" for k, v in params.items())) if params else ""),
            data=data,
            content_type=SCIM_JSON,
            headers=self._headers(headers),
        )
        content = response.content
        parsed = json.loads(content) if content else None
        return Reply(response.status_code, parsed, response.headers)

    def get(self, path: str, **params: str) -> Reply:
        from urllib.parse import quote

        return self.request("GET", path, params={k: quote(v) for k, v in params.items()})

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.request("PUT", path, body, headers=headers)

    def patch(self, path: str, operations: list[dict[str, Any]], **kw: Any) -> Reply:
        return self.request("PATCH", path, {"schemas": [PATCH_OP], "Operations": operations}, **kw)

    def delete(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("DELETE", path, headers=headers)


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [USER], "userName": user_name}
    body.update(extra)
    return body


def group_body(display_name: str, members: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [GROUP], "displayName": display_name}
    if members is not None:
        body["members"] = [{"value": m} for m in members]
    body.update(extra)
    return body
