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
from typing import Any
from urllib.parse import quote

import httpx

from providers.aws_sigv4 import AwsCredentials, sign
from proxy.errors import ProxyError
from proxy.routing import Target
from proxy.transport import LeanTransport

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


class GatewayClient(httpx.AsyncClient):
    """The shared client, plus a direct path to its transport for model calls (`dispatch`)."""

    def __init__(self, transport: LeanTransport, **options: Any) -> None:
        super().__init__(transport=transport, **options)
        self.lean = transport
        self._urls: dict[str, httpx.URL] = {}  # httpx.URL is immutable: safe to share
        self._defaults = {
            name.decode("latin-1").lower(): (name, value) for name, value in self.headers.raw
        }

    async def dispatch(
        self, method: str, url: str, body: bytes, headers: dict[str, str], seconds: float
    ) -> httpx.Response:
        """What `client.send(client.build_request(...), stream=True)` does for a model call.

        Why: profiled at 16 concurrent calls, httpx's client layer around the transport cost
        ~15% of the process's CPU: `build_request` merging URL, params, headers, cookies and
        timeouts, the auth/redirect/event-hook plumbing, and `Cookies.extract_cookies` on every
        response (~5% alone). A model call needs none of it (no auth flow, no redirects, and
        provider cookies have no business being replayed for other callers), so this builds the
        `httpx.Request` directly, with the client's default headers (Accept, Accept-Encoding,
        Connection, User-Agent: what `send` would add) overridden by the call's, the same
        timeouts as `httpx.Timeout(seconds, connect=min(5, seconds))`, and hands it to the
        transport. Responses and exceptions are httpx's own, as before.
        """
        merged = dict(self._defaults)
        for name, value in headers.items():
            merged[name.lower()] = (name.encode("latin-1"), value.encode("latin-1"))
        parsed = self._urls.get(url)
        if parsed is None:  # parsing is ~5% of a call; the URLs come from the configuration
            if len(self._urls) >= 4096:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        request = httpx.Request(
            method,
            parsed,
            headers=list(merged.values()),
            content=body,
            extensions={
                "timeout": {
                    "connect": min(5.0, seconds),
                    "read": seconds,
                    "write": seconds,
                    "pool": seconds,
                }
            },
        )
        response = await self.lean.handle_async_request(request)
        response.request = request
        return response


def new_client() -> httpx.AsyncClient:
    """The process-wide client: pooled keep-alive connections, no redirects, no env proxies.

    Its transport is proxy.transport.LeanTransport (an O(1) keep-alive pool with a C parser):
    httpcore's pool costs O(connections²) per request, see that module.
    """
    return GatewayClient(
        LeanTransport(max_connections=2000, max_keepalive_connections=500),
        timeout=httpx.Timeout(60.0, connect=5.0),
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


def bedrock_call(
    target: Target, body: bytes, *, stream: bool, credentials: AwsCredentials | None = None
) -> UpstreamCall:
    """Converse or ConverseStream; `credentials` are the assumed role's, when it has one."""
    action = "converse-stream" if stream else "converse"
    url = f"{target.base_url}/model/{quote(target.model_id, safe='')}/{action}"
    headers = {"content-type": "application/json", "accept": "application/json"}
    if target.auth_type == "api-key":
        headers["authorization"] = f"Bearer {target.secrets.get('api_key', '')}"
        return UpstreamCall("POST", url, body, headers)
    credentials = credentials or AwsCredentials(
        str(target.auth_public.get("access_key_id", "")),
        str(target.secrets.get("secret_access_key", "")),
    )

    signing = credentials

    def signer(call: UpstreamCall) -> dict[str, str]:
        return sign(
            method=call.method,
            url=call.url,
            headers=call.headers,
            body=call.body,
            credentials=signing,
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
        try:
            if isinstance(client, GatewayClient):
                response = await client.dispatch(
                    call.method, call.url, call.body, call.final_headers(), remaining
                )
            else:
                request = client.build_request(
                    call.method,
                    call.url,
                    content=call.body,
                    headers=call.final_headers(),
                    timeout=httpx.Timeout(remaining, connect=min(5.0, remaining)),
                )
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
