"""The AWS event stream decoder: framing, CRCs, header types, and agreement with botocore."""

from __future__ import annotations

import itertools
import json
import struct
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from proxy.aws_eventstream import (
    Event,
    EventStreamDecoder,
    EventStreamError,
    encode_event,
    encode_exception,
    encode_json_event,
)

DELTA_HEADERS = {
    ":event-type": "contentBlockDelta",
    ":content-type": "application/json",
    ":message-type": "event",
}


def _typed_message(headers: list[tuple[str, int, bytes]], payload: bytes) -> bytes:
    """A message with raw typed headers: (name, type byte, encoded value)."""
    raw = b"".join(bytes([len(n)]) + n.encode() + bytes([t]) + v for n, t, v in headers)
    prelude = struct.pack(">II", 16 + len(raw) + len(payload), len(raw))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _stream() -> bytes:
    return b"".join(
        [
            encode_json_event("messageStart", {"role": "assistant"}),
            encode_json_event("contentBlockDelta", {"delta": {"text": "Hel"}}),
            encode_json_event("contentBlockDelta", {"delta": {"text": "lo ✓"}}),
            encode_json_event("messageStop", {"stopReason": "end_turn"}),
        ]
    )


def test_round_trip_keeps_headers_and_payload():
    data = encode_event(DELTA_HEADERS, b'{"delta":{"text":"hi"}}')

    events = EventStreamDecoder().feed(data)

    assert events == [Event(headers=DELTA_HEADERS, payload=b'{"delta":{"text":"hi"}}')]
    assert events[0].event_type == "contentBlockDelta"
    assert events[0].message_type == "event"
    assert events[0].exception_type is None
    assert events[0].json() == {"delta": {"text": "hi"}}


def test_empty_headers_and_payload_round_trip():
    assert EventStreamDecoder().feed(encode_event({}, b"")) == [Event({}, b"")]


def test_several_messages_in_one_chunk_come_out_in_order():
    events = EventStreamDecoder().feed(_stream())

    assert [e.event_type for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "messageStop",
    ]
    assert events[2].json() == {"delta": {"text": "lo ✓"}}


def test_byte_by_byte_feeding_yields_the_same_events():
    data = _stream()
    decoder = EventStreamDecoder()

    events = [event for i in range(len(data)) for event in decoder.feed(data[i : i + 1])]

    assert events == EventStreamDecoder().feed(data)
    assert decoder.buffered == 0
    decoder.close()


@given(st.lists(st.integers(min_value=1, max_value=len(_stream())), max_size=20))
def test_any_chunking_yields_the_same_events(cuts):
    data = _stream()
    points = sorted({0, len(data), *cuts})
    decoder = EventStreamDecoder()

    events = [e for a, b in itertools.pairwise(points) for e in decoder.feed(data[a:b])]

    assert events == EventStreamDecoder().feed(data)


def test_partial_message_waits_and_close_reports_truncation():
    data = encode_event(DELTA_HEADERS, b"{}")
    decoder = EventStreamDecoder()

    assert decoder.feed(data[:-1]) == []
    assert decoder.buffered == len(data) - 1
    with pytest.raises(EventStreamError, match="ended inside a message"):
        decoder.close()


@pytest.mark.parametrize(
    ("_case", "index"),
    [
        ("total length", 0),
        ("headers length", 5),
        ("prelude crc", 9),
        ("header byte", 14),
        ("payload byte", -6),
        ("message crc", -1),
    ],
)
def test_corruption_is_detected(_case, index):
    data = bytearray(encode_event(DELTA_HEADERS, b'{"delta":{"text":"hi"}}'))
    data[index] ^= 0x01

    with pytest.raises(EventStreamError, match="CRC mismatch"):
        EventStreamDecoder().feed(bytes(data))


def test_corruption_in_a_later_message_is_detected_after_earlier_ones_decode():
    good = encode_json_event("messageStart", {"role": "assistant"})
    bad = bytearray(encode_json_event("messageStop", {"stopReason": "end_turn"}))
    bad[-1] ^= 0xFF
    decoder = EventStreamDecoder()

    assert [e.event_type for e in decoder.feed(good)] == ["messageStart"]
    with pytest.raises(EventStreamError, match="message CRC mismatch"):
        decoder.feed(bytes(bad))


def test_oversized_length_is_rejected_without_waiting_for_it():
    prelude = struct.pack(">II", 1 << 30, 0)
    data = prelude + struct.pack(">I", zlib.crc32(prelude))

    with pytest.raises(EventStreamError, match="out of range"):
        EventStreamDecoder().feed(data)


def test_unknown_header_type_is_an_error():
    data = _typed_message([("x", 10, b"")], b"")

    with pytest.raises(EventStreamError, match="unknown header value type 10"):
        EventStreamDecoder().feed(data)


def test_exception_message_properties():
    [event] = EventStreamDecoder().feed(encode_exception("throttlingException", "slow down"))

    assert event.message_type == "exception"
    assert event.exception_type == "throttlingException"
    assert event.event_type is None
    assert event.json() == {"message": "slow down"}


def _all_types_message() -> bytes:
    stamp_ms = 1_700_000_000_123
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    return _typed_message(
        [
            ("yes", 0, b""),
            ("no", 1, b""),
            ("byte", 2, struct.pack(">b", -7)),
            ("short", 3, struct.pack(">h", -300)),
            ("int", 4, struct.pack(">i", 70000)),
            ("long", 5, struct.pack(">q", -(2**40))),
            ("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02"),
            (":event-type", 7, struct.pack(">H", 5) + b"chunk"),
            ("when", 8, struct.pack(">q", stamp_ms)),
            ("id", 9, ident.bytes),
        ],
        b"payload",
    )


def test_every_header_type_decodes():
    [event] = EventStreamDecoder().feed(_all_types_message())

    assert event.headers == {
        "yes": True,
        "no": False,
        "byte": -7,
        "short": -300,
        "int": 70000,
        "long": -(2**40),
        "bytes": b"\x00\x01\x02",
        ":event-type": "chunk",
        "when": datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    assert event.event_type == "chunk"
    assert event.payload == b"payload"


def _botocore_messages(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(dict(m.headers), m.payload) for m in buffer]


def test_encoder_output_parses_identically_in_botocore():
    data = _stream() + encode_exception("throttlingException", "slow down")

    ours = [(e.headers, e.payload) for e in EventStreamDecoder().feed(data)]

    assert ours == _botocore_messages(data)


def test_typed_headers_agree_with_botocore():
    """botocore keeps timestamps as epoch milliseconds and UUIDs as bytes; we type them."""
    data = _all_types_message()
    [event] = EventStreamDecoder().feed(data)
    [(theirs, payload)] = _botocore_messages(data)

    ours = dict(event.headers)
    when, ident = ours.pop("when"), ours.pop("id")
    assert isinstance(when, datetime)
    assert isinstance(ident, uuid.UUID)
    assert int(when.timestamp() * 1000) == theirs.pop("when")
    assert ident.bytes == theirs.pop("id")
    assert ours == theirs
    assert event.payload == payload


def test_botocore_rejects_what_we_reject():
    data = bytearray(encode_event(DELTA_HEADERS, b"{}"))
    data[-1] ^= 0x01

    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(bytes(data))
    with pytest.raises(Exception, match="Checksum mismatch"):
        _botocore_messages(bytes(data))


def test_json_payload_error_is_typed():
    [event] = EventStreamDecoder().feed(encode_event(DELTA_HEADERS, b"not json"))

    with pytest.raises(EventStreamError, match="not JSON"):
        event.json()


def test_large_payload_round_trips():
    payload = json.dumps({"text": "x" * 200_000}).encode()
    data = encode_event(DELTA_HEADERS, payload)
    decoder = EventStreamDecoder()

    events = [e for i in range(0, len(data), 4096) for e in decoder.feed(data[i : i + 4096])]

    assert [e.payload for e in events] == [payload]
