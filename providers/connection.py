""" "Test connection": one cheap authenticated call to the provider with the stored credentials.

The answer says whether the credentials work; it never repeats the provider's error text,
which may echo part of a key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from providers.aws_sigv4 import AwsCredentials, sign
from providers.aws_sts import StsError, assume_role
from providers.kinds import KINDS
from providers.models import ProviderAccount
from providers.services import secret_values
from providers.upstream import allowed_host

logger = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str


def _request_for(account: ProviderAccount) -> httpx.Request:
    secrets = secret_values(account)
    base = account.base_url or KINDS[account.kind].default_base_url
    if account.kind == ProviderAccount.Kind.OPENAI:
        return httpx.Request(
            "GET", f"{base}/models", headers={"Authorization": f"Bearer {secrets['api_key']}"}
        )
    if account.kind == ProviderAccount.Kind.ANTHROPIC:
        return httpx.Request(
            "GET",
            f"{base}/v1/models",
            headers={"x-api-key": secrets["api_key"], "anthropic-version": ANTHROPIC_VERSION},
        )
    url = f"{base or f'https://bedrock.{account.region}.amazonaws.com'}/foundation-models"
    if account.auth_type == "api-key":
        return httpx.Request("GET", url, headers={"Authorization": f"Bearer {secrets['api_key']}"})
    if account.auth_type == "assumed-role-based":
        creds = assume_role(
            account.auth_public.get("assumed_role_arn", ""),
            account.auth_public.get("external_id", ""),
            account.region,
        ).credentials
    else:
        creds = AwsCredentials(
            account.auth_public.get("access_key_id", ""), secrets.get("secret_access_key", "")
        )
    headers = sign(
        method="GET",
        url=url,
        headers={},
        body=b"",
        credentials=creds,
        region=account.region,
        service="bedrock",
    )
    return httpx.Request("GET", url, headers=headers)


def provider_connection_test(account: ProviderAccount) -> ConnectionResult:
    """Call the provider once; redirects are not followed."""
    try:
        request = _request_for(account)
    except KeyError:
        return ConnectionResult(False, "credentials are incomplete")
    except StsError as exc:
        return ConnectionResult(False, str(exc))
    if not allowed_host(request.url.host):
        # The allowlist holds at call time too, as for model calls (proxy.routing).
        return ConnectionResult(False, "the provider's host is not in GATEWAY_UPSTREAM_ALLOWLIST")
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            response = client.send(request)
    except httpx.TimeoutException:
        return ConnectionResult(False, "the provider did not answer in time")
    except httpx.HTTPError as exc:
        logger.info("test connection to %s failed: %s", account.name, type(exc).__name__)
        return ConnectionResult(False, "the provider could not be reached")
    if response.status_code == 200:
        return ConnectionResult(True, "connected: the credentials work")
    if response.status_code in (401, 403):
        return ConnectionResult(
            False, f"the provider refused the credentials ({response.status_code})"
        )
    return ConnectionResult(False, f"the provider answered HTTP {response.status_code}")
