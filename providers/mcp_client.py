"""A small synchronous MCP client for the console: list a server's tools with its credentials.

Speaks the streamable HTTP transport (MCP 2025-03-26 and later): `initialize`, then
`notifications/initialized`, then `tools/list` page by page, then DELETE of the session.
Answers may come as JSON or as an SSE stream; the stream is read only until our answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx

from providers.mcp_protocol import SseEventTooLarge, SseSplitter, sse_data
from providers.models import McpServer
from providers.services import secret_values

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-06-18"  # offered; the server may answer with another it supports
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEADLINE_SECONDS = 30.0  # the whole exchange, however the server trickles its answers
MAX_PAGES = 20
MAX_ANSWER_BYTES = 8 * 1024 * 1024
CLIENT_INFO = {"name": "gateway-console", "version": "1"}


class McpUnreachable(Exception):
    """The tools could not be listed; `message` is safe to show (no secrets, no server text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _credentials(server: McpServer, bearer: str | None) -> dict[str, str]:
    if server.auth_type == McpServer.AuthType.HEADER:
        stored = secret_values(server).get("headers", {})
        return {str(k): str(v) for k, v in stored.items()}
    if server.auth_type in (McpServer.AuthType.PASSTHROUGH, McpServer.AuthType.OAUTH2):
        if bearer:
            return {"Authorization": f"Bearer {bearer}"}
        raise McpUnreachable(
            "this server is called with each user's own credentials, so the console cannot "
            "list its tools"
        )
    return {}


class _Session:
    """One MCP session over streamable HTTP."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str]) -> None:
        self.client = client
        self.url = url
        self.headers = {
            **headers,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        self.deadline = time.monotonic() + DEADLINE_SECONDS
        self.next_id = 0

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request; return its result."""
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        with self.client.stream(
            "POST", self.url, headers=self.headers, content=json.dumps(message)
        ) as response:
            _check_status(response)
            if method == "initialize" and response.headers.get("mcp-session-id"):
                self.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
            answer = self._answer(response, self.next_id)
        if "error" in answer:
            code = answer["error"].get("code") if isinstance(answer["error"], dict) else None
            raise McpUnreachable(f"the MCP server refused '{method}' (error {code})")
        result = answer.get("result")
        if not isinstance(result, dict):
            raise McpUnreachable("the MCP server sent an invalid answer")
        return result

    def notify(self, method: str) -> None:
        """Send a notification (the server answers 202 Accepted with no body)."""
        message = {"jsonrpc": "2.0", "method": method}
        response = self.client.post(self.url, headers=self.headers, content=json.dumps(message))
        _check_status(response)

    def close(self) -> None:
        """End the session; servers may refuse with 405, which is fine."""
        if "Mcp-Session-Id" in self.headers:
            try:
                self.client.delete(self.url, headers=self.headers)
            except httpx.HTTPError:
                logger.info("mcp client: ending the session at %s failed", self.url)

    def _answer(self, response: httpx.Response, request_id: int) -> dict[str, Any]:
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            return _find(_json_messages(response), request_id)
        if kind == "text/event-stream":
            return _find(self._sse_messages(response), request_id)
        raise McpUnreachable("the MCP server sent an unexpected kind of answer")

    def _sse_messages(self, response: httpx.Response) -> Iterator[Any]:
        splitter = SseSplitter(MAX_ANSWER_BYTES)
        try:
            for chunk in response.iter_bytes():
                for event in splitter.feed(chunk):
                    data = sse_data(event)
                    if data is not None:
                        yield _loads(data)
                if time.monotonic() > self.deadline:
                    raise McpUnreachable("the MCP server did not answer in time")
        except SseEventTooLarge as exc:
            raise McpUnreachable("the MCP server's answer is too large") from exc


def _check_status(response: httpx.Response) -> None:
    if response.status_code in (401, 403):
        raise McpUnreachable(
            f"the MCP server refused the credentials (HTTP {response.status_code})"
        )
    if response.status_code >= 300:
        raise McpUnreachable(f"the MCP server answered HTTP {response.status_code}")


def _loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise McpUnreachable("the MCP server sent an invalid answer") from exc


def _json_messages(response: httpx.Response) -> Iterator[Any]:
    raw = bytearray()
    for chunk in response.iter_bytes():
        raw += chunk
        if len(raw) > MAX_ANSWER_BYTES:
            raise McpUnreachable("the MCP server's answer is too large")
    decoded = _loads(bytes(raw))
    yield from decoded if isinstance(decoded, list) else [decoded]


def _find(messages: Iterator[Any], request_id: int) -> dict[str, Any]:
    """The response to `request_id` among the messages (others are notifications, skipped)."""
    for message in messages:
        if (
            isinstance(message, dict)
            and message.get("id") == request_id
            and "method" not in message
        ):
            return message
    raise McpUnreachable("the MCP server closed the stream without answering")


def _list_tools(session: _Session) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    for _ in range(MAX_PAGES):
        result = session.request("tools/list", params)
        page = result.get("tools")
        if not isinstance(page, list):
            raise McpUnreachable("the MCP server sent an invalid tool list")
        tools.extend(t for t in page if isinstance(t, dict))
        cursor = result.get("nextCursor")
        if not cursor:
            break
        params = {"cursor": cursor}
    return tools


def mcp_server_tools(server: McpServer, *, bearer: str | None = None) -> list[dict[str, Any]]:
    """The server's raw tool list (name, description, inputSchema...) as it sends it.

    `bearer` is a user's own token, for passthrough and oauth2 servers. Raises McpUnreachable.
    """
    headers = _credentials(server, bearer)
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
        session = _Session(client, server.url, headers)
        try:
            initialized = session.request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": CLIENT_INFO,
                },
            )
            version = initialized.get("protocolVersion")
            session.headers["MCP-Protocol-Version"] = str(version or PROTOCOL_VERSION)
            session.notify("notifications/initialized")
            return _list_tools(session)
        except httpx.TimeoutException as exc:
            raise McpUnreachable("the MCP server did not answer in time") from exc
        except httpx.HTTPError as exc:
            logger.info("mcp client: %s unreachable: %s", server.name, type(exc).__name__)
            raise McpUnreachable("the MCP server could not be reached") from exc
        finally:
            session.close()
