"""Calling providers: one shared HTTP client, per-kind request building, retries, deadlines.

The URL is always built from the provider account's configuration; nothing in a caller's
request can change the host. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

from providers.aws_sigv4 import AwsCredentials, sign
from proxy.errors import ProxyError
from proxy.routing import Target

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts in all, and on which upstream statuses to try again."""

    attempts: int = 2
    on_status: frozenset[int] = DEFAULT_RETRY_STATUSES
    base_delay: float = 0.1
    max_delay: float = 5.0


@dataclass
class UpstreamCall:
    """One request to a provider; `sign` re-signs per attempt (SigV4 embeds the time)."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    sign: Callable[[UpstreamCall], dict[str, str]] | None = None

    def final_headers(self) -> dict[str, str]:
        return self.sign(self) if self.sign is not None else self.headers


def new_client() -> httpx.AsyncClient:
    """The process-wide client: pooled keep-alive connections, no redirects, no env proxies."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=5.0),
        limits=httpx.Limits(max_connections=2000, max_keepalive_connections=500),
        follow_redirects=False,
        trust_env=False,
    )


def openai_call(target: Target, path: str, body: bytes) -> UpstreamCall:
    return UpstreamCall(
        "POST",
        f"{target.base_url}/{path}",
        body,
        {
            "content-type": "application/json",
            "authorization": f"Bearer {target.secrets.get('api_key', '')}",
        },
    )


def anthropic_call(target: Target, body: bytes) -> UpstreamCall:
    return UpstreamCall(
        "POST",
        f"{target.base_url}/v1/messages",
        body,
        {
            "content-type": "application/json",
            "x-api-key": str(target.secrets.get("api_key", "")),
            "anthropic-version": ANTHROPIC_VERSION,
        },
    )


def bedrock_call(target: Target, body: bytes, *, stream: bool) -> UpstreamCall:
    action = "converse-stream" if stream else "converse"
    url = f"{target.base_url}/model/{quote(target.model_id, safe='')}/{action}"
    headers = {"content-type": "application/json", "accept": "application/json"}
    if target.auth_type == "api-key":
        headers["authorization"] = f"Bearer {target.secrets.get('api_key', '')}"
        return UpstreamCall("POST", url, body, headers)
    credentials = AwsCredentials(
        str(target.auth_public.get("access_key_id", "")),
        str(target.secrets.get("secret_access_key", "")),
    )

    def signer(call: UpstreamCall) -> dict[str, str]:
        return sign(
            method=call.method,
            url=call.url,
            headers=call.headers,
            body=call.body,
            credentials=credentials,
            region=target.region,
            service="bedrock",
        )

    return UpstreamCall("POST", url, body, headers, signer)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    delay: float = min(policy.max_delay, policy.base_delay * (2**attempt))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


async def send(
    client: httpx.AsyncClient, call: UpstreamCall, *, deadline: float, policy: RetryPolicy
) -> httpx.Response:
    """Send with retries inside the deadline; returns the (streaming) response to use.

    Retries happen only before anything was sent to the caller: the response returned here has
    not been read yet.
    """
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProxyError(504, "The provider did not answer in time.", code="timeout")
        request = client.build_request(
            call.method,
            call.url,
            content=call.body,
            headers=call.final_headers(),
            timeout=httpx.Timeout(remaining, connect=min(5.0, remaining)),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise ProxyError(504, "The provider did not answer in time.", code="timeout") from exc
        except httpx.TransportError as exc:
            if attempt + 1 >= policy.attempts:
                raise ProxyError(
                    502, "The provider could not be reached.", code="upstream_unreachable"
                ) from exc
            attempt += 1
            await asyncio.sleep(
                min(_backoff(policy, attempt), max(0.0, deadline - time.monotonic()))
            )
            continue
        if response.status_code not in policy.on_status or attempt + 1 >= policy.attempts:
            return response
        delay = _retry_after(response)
        delay = _backoff(policy, attempt) if delay is None else delay
        if time.monotonic() + delay >= deadline:
            return response  # no time for another try: answer with this one
        await response.aclose()
        attempt += 1
        await asyncio.sleep(delay)


def retry_policy(header_value: str, default: RetryPolicy) -> RetryPolicy:
    """`x-gateway-retry-config: {"attempts": 3, "onStatusCodes": [429, 503]}`."""
    if not header_value:
        return default
    try:
        config = json.loads(header_value)
        attempts = int(config.get("attempts", default.attempts))
        statuses = frozenset(int(s) for s in config.get("onStatusCodes", default.on_status))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ProxyError(
            400,
            'x-gateway-retry-config must be JSON like {"attempts": 3, "onStatusCodes": [429, 503]}',
            param="x-gateway-retry-config",
        ) from exc
    if not 1 <= attempts <= 5:
        raise ProxyError(
            400, "x-gateway-retry-config attempts must be 1-5", param="x-gateway-retry-config"
        )
    return RetryPolicy(attempts=attempts, on_status=statuses)
