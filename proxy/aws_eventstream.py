"""The AWS event stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
ConverseStream and InvokeModelWithResponseStream send it.

Each message is (AWS "Event stream encoding", also botocore's `eventstream.py`):

    prelude   total length u32 BE | headers length u32 BE | CRC32 of those 8 bytes u32 BE
    headers   repeated: name length u8 | name (UTF-8) | value type u8 | value
    payload   total length - headers length - 16 bytes
    trailer   CRC32 of everything before it u32 BE

`EventStreamDecoder.feed()` accepts bytes cut anywhere (HTTP chunks do not follow message
boundaries) and returns the messages completed so far; both CRCs are checked. `encode_event()`
writes string-header messages, for the fake Bedrock server and the tests.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

CONTENT_TYPE: Final = "application/vnd.amazon.eventstream"

_PRELUDE = struct.Struct(">III")  # total length, headers length, prelude CRC
_U32 = struct.Struct(">I")
_PRELUDE_LEN: Final = 12
_TRAILER_LEN: Final = 4
_MIN_MESSAGE_LEN: Final = _PRELUDE_LEN + _TRAILER_LEN
# botocore's limits (eventstream.py): larger values mean a corrupt or hostile stream.
MAX_MESSAGE_LEN: Final = 16 * 1024**2
MAX_HEADERS_LEN: Final = 128 * 1024

# Header value types (AWS "Event stream encoding", "Headers").
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _SHORT, _INTEGER, _LONG = 0, 1, 2, 3, 4, 5
_BYTE_ARRAY, _STRING, _TIMESTAMP, _UUID = 6, 7, 8, 9
_FIXED = {_BYTE: struct.Struct(">b"), _SHORT: struct.Struct(">h"), _INTEGER: struct.Struct(">i")}
_FIXED[_LONG] = struct.Struct(">q")
_I64 = _FIXED[_LONG]
_U16 = struct.Struct(">H")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

HeaderValue = bool | int | bytes | str | datetime | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream: bad CRC, bad length or bad header."""


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded message."""

    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    def _text(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    @property
    def event_type(self) -> str | None:
        """`:event-type`, e.g. `contentBlockDelta`, on messages of type `event`."""
        return self._text(":event-type")

    @property
    def message_type(self) -> str | None:
        """`:message-type`: `event`, `exception` (modelled) or `error` (unmodelled)."""
        return self._text(":message-type")

    @property
    def exception_type(self) -> str | None:
        """`:exception-type` of an `exception` message, e.g. `throttlingException`."""
        return self._text(":exception-type")

    @property
    def error_code(self) -> str | None:
        """`:error-code` of an `error` message."""
        return self._text(":error-code")

    @property
    def error_message(self) -> str | None:
        """`:error-message` of an `error` message."""
        return self._text(":error-message")

    def json(self) -> Any:
        """The payload parsed as JSON (Bedrock's payloads are JSON objects)."""
        try:
            return json.loads(self.payload)
        except ValueError as exc:
            raise EventStreamError("event payload is not JSON") from exc


class EventStreamDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole events back."""

    __slots__ = ("_buffer", "_max_message_len")

    def __init__(self, *, max_message_len: int = MAX_MESSAGE_LEN) -> None:
        self._buffer = bytearray()
        self._max_message_len = max_message_len

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Event]:
        """Add `data`; return every message it completed, in order.

        Raises `EventStreamError` on a corrupt message; the decoder is unusable afterwards
        (framing is lost: there is no way to find the next message boundary).
        """
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        offset = 0
        end = len(buffer)
        while end - offset >= _PRELUDE_LEN:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buffer, offset)
            # Check the prelude before trusting its lengths, so garbage never makes us wait
            # for gigabytes.
            if zlib.crc32(buffer[offset : offset + 8]) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total < _MIN_MESSAGE_LEN or total > self._max_message_len:
                raise EventStreamError(f"message length {total} out of range")
            if headers_len > MAX_HEADERS_LEN or headers_len > total - _MIN_MESSAGE_LEN:
                raise EventStreamError(f"headers length {headers_len} out of range")
            if end - offset < total:
                break
            # A copy, not a view: a live view would stop the buffer from being resized.
            message = memoryview(bytes(buffer[offset : offset + total]))
            (message_crc,) = _U32.unpack_from(message, total - _TRAILER_LEN)
            if zlib.crc32(message[: total - _TRAILER_LEN]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers_end = _PRELUDE_LEN + headers_len
            events.append(
                Event(
                    headers=_decode_headers(message[_PRELUDE_LEN:headers_end]),
                    payload=bytes(message[headers_end : total - _TRAILER_LEN]),
                )
            )
            offset += total
        if offset:
            del buffer[:offset]
        return events

    def close(self) -> None:
        """Call at end of stream: raises `EventStreamError` if a message was cut short."""
        if self._buffer:
            raise EventStreamError(f"stream ended inside a message ({len(self._buffer)} bytes)")


def _decode_headers(data: memoryview) -> dict[str, HeaderValue]:
    """Every header of one message; unknown value types are an error (lengths unknown)."""
    headers: dict[str, HeaderValue] = {}
    pos = 0
    end = len(data)
    try:
        while pos < end:
            name_len = data[pos]
            pos += 1
            raw_name = bytes(data[pos : pos + name_len])
            if len(raw_name) != name_len:
                raise EventStreamError("truncated header name")
            name = raw_name.decode()
            pos += name_len
            kind = data[pos]
            pos += 1
            value: HeaderValue
            if kind == _BOOL_TRUE:
                value = True
            elif kind == _BOOL_FALSE:
                value = False
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = fmt.unpack_from(data, pos)
                pos += fmt.size
            elif kind in (_BYTE_ARRAY, _STRING):
                (length,) = _U16.unpack_from(data, pos)
                pos += 2
                raw = bytes(data[pos : pos + length])
                if len(raw) != length:
                    raise EventStreamError("truncated header value")
                pos += length
                value = raw.decode() if kind == _STRING else raw
            elif kind == _TIMESTAMP:
                (millis,) = _I64.unpack_from(data, pos)
                pos += 8
                value = _EPOCH + timedelta(milliseconds=millis)
            elif kind == _UUID:
                raw = bytes(data[pos : pos + 16])
                if len(raw) != 16:
                    raise EventStreamError("truncated header value")
                pos += 16
                value = uuid.UUID(bytes=raw)
            else:
                raise EventStreamError(f"unknown header value type {kind}")
            if name in headers:  # as botocore: a repeated header is a malformed message
                raise EventStreamError(f"duplicate header {name!r}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise EventStreamError("malformed headers") from exc
    return headers


def encode_event(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers (type 7), CRCs included."""
    parts = bytearray()
    for name, value in headers.items():
        raw_name = name.encode()
        raw_value = value.encode()
        if not 0 < len(raw_name) < 256 or len(raw_value) > 0xFFFF:
            raise ValueError(f"header {name!r} is too long")
        parts += bytes((len(raw_name),)) + raw_name + bytes((_STRING,))
        parts += _U16.pack(len(raw_value)) + raw_value
    total = _MIN_MESSAGE_LEN + len(parts) + len(payload)
    prelude = struct.pack(">II", total, len(parts))
    message = prelude + _U32.pack(zlib.crc32(prelude)) + bytes(parts) + payload
    return message + _U32.pack(zlib.crc32(message))


def encode_json_event(event_type: str, body: Any) -> bytes:
    """A Bedrock-style `event` message whose payload is `body` as JSON."""
    return encode_event(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body, separators=(",", ":")).encode(),
    )


def encode_exception(exception_type: str, message: str) -> bytes:
    """A Bedrock-style modelled `exception` message (e.g. `throttlingException`)."""
    return encode_event(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )
