"""Incremental Server-Sent Events parsing and writing (the subset providers use)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    raw: bytes  # the event as received, with its trailing blank line


class SseParser:
    """Feed bytes, get complete events; partial events wait for more bytes."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events: list[SseEvent] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            block, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            event = _parse_block(block)
            if event is not None:
                events.append(event)

    def rest(self) -> list[SseEvent]:
        """A final event not followed by a blank line (some servers end that way)."""
        block, self._buffer = self._buffer, b""
        event = _parse_block(block + b"\n\n") if block.strip() else None
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SseEvent | None:
    name, data = "message", []
    for line in block.decode("utf-8", errors="replace").split("\n"):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if not data and name == "message":
        return None  # comments and keep-alives
    return SseEvent(name, "\n".join(data), block)


def openai_chunk(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


OPENAI_DONE = b"data: [DONE]\n\n"


def anthropic_event(name: str, data: dict[str, Any]) -> bytes:
    return (
        b"event: "
        + name.encode()
        + b"\ndata: "
        + json.dumps(data, separators=(",", ":")).encode()
        + b"\n\n"
    )
