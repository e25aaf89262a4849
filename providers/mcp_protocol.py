"""Pure pieces of MCP's streamable HTTP transport shared by the proxy and the console client.

No I/O here: the tool policy derived from `McpServer.tool_settings`, an incremental splitter
for Server-Sent Events, and JSON-RPC helpers. Protocol references are to the MCP specification
(2025-03-26 and later, "Transports > Streamable HTTP") and the HTML Living Standard's SSE parser.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JSONRPC = "2.0"
# JSON-RPC 2.0 §5.1 reserved codes, plus an implementation-defined one for gateway refusals.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
GATEWAY_ERROR = -32001

# SSE: a blank line ends an event; lines end with CRLF, LF or CR (HTML §9.2.6).
# A CR directly followed by LF is one line end, never two.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_END = re.compile(r"\r\n|\r|\n")
# Printable ASCII without edge whitespace travels verbatim in an HTTP field value.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_B64_SENTINEL = re.compile(r"=\?base64\?[A-Za-z0-9+/=]*\?=")


def rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response object."""
    return {"jsonrpc": JSONRPC, "id": request_id, "error": {"code": code, "message": message}}


def header_value_encode(value: str) -> str:
    """An `Mcp-Name` header value: verbatim when safe, else the `=?base64?...?=` form.

    MCP 2026-07-28 mirrors the body's name into `Mcp-Name`; the proxy rewrites it with the name.
    """
    if _HEADER_SAFE.fullmatch(value) and not _B64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode('ascii')}?="


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """What clients may see and call, from `tool_settings` [{name, description, disabled, rename}].

    Names are the server's own ("original"); a renamed tool is visible and callable only under
    its new name, and an unrenamed tool whose name another tool was renamed to is hidden, so
    every visible name maps to exactly one original.
    """

    disabled: frozenset[str] = frozenset()
    renames: Mapping[str, str] = field(default_factory=dict)  # original -> visible
    originals: Mapping[str, str] = field(default_factory=dict)  # visible -> original
    descriptions: Mapping[str, str] = field(default_factory=dict)  # original -> override

    @classmethod
    def from_settings(cls, settings: Iterable[Mapping[str, Any]]) -> ToolPolicy:
        """Build the policy; entries without a string name are ignored."""
        disabled: set[str] = set()
        renames: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        for entry in settings:
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                continue
            if entry.get("disabled"):
                disabled.add(name)
            rename = entry.get("rename")
            if isinstance(rename, str) and rename and rename != name:
                renames[name] = rename
            description = entry.get("description")
            if isinstance(description, str) and description:
                descriptions[name] = description
        originals = {visible: original for original, visible in renames.items()}
        return cls(frozenset(disabled), renames, originals, descriptions)

    @property
    def is_identity(self) -> bool:
        return not (self.disabled or self.renames or self.descriptions)

    def visible_name(self, original: str) -> str | None:
        """The name clients see for a server tool, or None when it is hidden."""
        if original in self.disabled:
            return None
        if original in self.renames:
            return self.renames[original]
        return None if original in self.originals else original

    def resolve(self, called: str) -> str | None:
        """The server's name for a name a client called, or None when the call is refused."""
        original = self.originals.get(called)
        if original is None:
            if called in self.renames:  # callable only under its new name
                return None
            original = called
        return None if original in self.disabled else original

    def tool_apply(self, tool: Mapping[str, Any]) -> dict[str, Any] | None:
        """One `tools/list` entry as clients see it, or None when hidden."""
        original = tool.get("name")
        if not isinstance(original, str):
            return dict(tool)
        visible = self.visible_name(original)
        if visible is None:
            return None
        shown = {**tool, "name": visible}
        if original in self.descriptions:
            shown["description"] = self.descriptions[original]
        return shown

    def tools_apply(self, tools: Sequence[Any]) -> list[Any]:
        """A `tools/list` result's `tools` as clients see them."""
        shown: list[Any] = []
        for tool in tools:
            if not isinstance(tool, Mapping):
                shown.append(tool)
                continue
            applied = self.tool_apply(tool)
            if applied is not None:
                shown.append(applied)
        return shown


def tools_result_apply(message: Any, policy: ToolPolicy) -> Any | None:
    """A copy of a JSON-RPC response with its `result.tools` filtered, or None when unchanged.

    Recognised by shape (a response whose result holds a `tools` list), so a `tools/list`
    answer is filtered wherever it travels: a POST's JSON or SSE body, or a replayed stream.
    """
    if policy.is_identity or not isinstance(message, dict):
        return None
    result = message.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return None
    return {**message, "result": {**result, "tools": policy.tools_apply(result["tools"])}}


class SseEventTooLarge(Exception):
    """One Server-Sent Event grew past the limit without ending."""


class SseSplitter:
    """Cuts a byte stream into complete SSE events, each returned with its blank-line end."""

    def __init__(self, max_event_bytes: int) -> None:
        self._buffer = b""
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the events they complete."""
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            # A trailing CR may be the first half of CRLF: wait for the next byte to decide.
            searchable = self._buffer[:-1] if self._buffer.endswith(b"\r") else self._buffer
            match = _EVENT_END.search(searchable)
            if match is None:
                break
            events.append(self._buffer[: match.end()])
            self._buffer = self._buffer[match.end() :]
        if len(self._buffer) > self._max:
            raise SseEventTooLarge(f"event larger than {self._max} bytes")
        return events

    def rest(self) -> bytes:
        """Bytes after the last complete event (an unterminated tail at end of stream)."""
        rest, self._buffer = self._buffer, b""
        return rest


def _field(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if colon and value.startswith(" "):
        value = value[1:]
    return name, value


def sse_data(event: bytes) -> str | None:
    """The data of one event (its `data:` lines joined by LF), or None when it has none."""
    lines = _LINE_END.split(event.decode("utf-8", errors="replace"))
    # Field names are case-sensitive and comments (":...") have an empty name (HTML §9.2.6).
    data = [value for name, value in map(_field, lines) if name == "data"]
    return "\n".join(data) if data else None


def sse_data_replace(event: bytes, data: str) -> bytes:
    """The event with its `data:` lines replaced by one carrying `data` (other fields kept)."""
    lines = [line for line in _LINE_END.split(event.decode("utf-8")) if line]
    out: list[str] = []
    placed = False
    for line in lines:
        if _field(line)[0] == "data":
            if not placed:
                out.append(f"data: {data}")
                placed = True
            continue
        out.append(line)
    if not placed:
        out.append(f"data: {data}")
    return ("\n".join(out) + "\n\n").encode()
