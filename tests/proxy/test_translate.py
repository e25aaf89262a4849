"""Dialect translation: requests, responses and streams, checked against the official SDKs'
response models (and botocore's service model for Converse requests)."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from anthropic.lib.streaming._messages import accumulate_event  # no public accumulator
from anthropic.types import Message, RawMessageStreamEvent
from botocore.validate import ParamValidator
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from proxy.translate import (
    AnthropicToOpenAIStream,
    ConverseStreamToOpenAI,
    OpenAIToAnthropicStream,
    TranslationError,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    converse_response_to_openai,
    openai_request_to_anthropic,
    openai_request_to_converse,
    openai_response_to_anthropic,
)

JSON = dict[str, Any]

PNG_B64 = "iVBORw0KGgo="
PNG_DATA_URL = f"data:image/png;base64,{PNG_B64}"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
CONVERSE_INPUT = (
    botocore.session.get_session()
    .get_service_model("bedrock-runtime")
    .operation_model("Converse")
    .input_shape
)


def assert_anthropic_events_valid(events: list[tuple[str, JSON]]) -> None:
    for name, data in events:
        assert ANTHROPIC_EVENT.validate_python(data).type == name


def assert_chunks_valid(chunks: list[JSON]) -> None:
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)


def assert_converse_request_valid(body: JSON) -> None:
    report = ParamValidator().validate({"modelId": "m", **body}, CONVERSE_INPUT)
    assert not report.has_errors(), report.generate_report()


def block_start(index: int, content_block: JSON) -> tuple[str, JSON]:
    data = {"type": "content_block_start", "index": index, "content_block": content_block}
    return ("content_block_start", data)


def block_delta(index: int, delta: JSON) -> tuple[str, JSON]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> tuple[str, JSON]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def openai_tool_turns() -> list[JSON]:
    """A user question, an assistant turn with two tool calls and their two results."""
    return [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "25C"},
    ]


OPENAI_WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "weather", "description": "Current weather", "parameters": WEATHER_SCHEMA},
}


# --- Anthropic request -> OpenAI request ------------------------------------------------------


def test_anthropic_request_to_openai_maps_every_field():
    body = {
        "model": "claude-sonnet",
        "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Use metric."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "stream": True,
        "tools": [
            {"name": "weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-42"},
    }

    assert anthropic_request_to_openai(body) == {
        "model": "claude-sonnet",
        "messages": [
            {"role": "system", "content": "Be terse.\nUse metric."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [OPENAI_WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "u-42",
    }


@pytest.mark.parametrize(
    ("tool_result", "expected_content"),
    [
        ({"content": "ok"}, "ok"),
        ({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "a\nb"),
        ({"content": "boom", "is_error": True}, "Error: boom"),
        ({}, ""),
    ],
)
def test_anthropic_tool_result_becomes_tool_message(tool_result, expected_content):
    block = {"type": "tool_result", "tool_use_id": "toolu_9", **tool_result}
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}

    messages = anthropic_request_to_openai(body)["messages"]

    assert messages == [{"role": "tool", "tool_call_id": "toolu_9", "content": expected_content}]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "weather"},
            {"tool_choice": {"type": "function", "function": {"name": "weather"}}},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
    ],
)
def test_anthropic_tool_choice_to_openai(tool_choice, expected):
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "weather", "input_schema": WEATHER_SCHEMA}],
        "tool_choice": tool_choice,
    }

    out = anthropic_request_to_openai(body)

    assert {k: out[k] for k in expected} == expected
    assert "parallel_tool_calls" in out or "parallel_tool_calls" not in expected


def test_anthropic_system_string_becomes_system_message():
    body = {"model": "m", "system": "Be kind.", "messages": [{"role": "user", "content": "hi"}]}

    assert anthropic_request_to_openai(body)["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
    ]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            {"role": "user", "content": [{"type": "document", "source": {}}]},
            "messages[0].content[0].type",
        ),
        ({"role": "system", "content": "hi"}, "messages[0].role"),
        (
            {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]},
            "messages[0].content[0].source.type",
        ),
        (
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "image", "source": {}}],
                    }
                ],
            },
            "messages[0].content[0].content[0].type",
        ),
        ({"role": "user", "content": [{"text": "no type"}]}, "messages[0].content[0].type"),
        ({"role": "user", "content": 7}, "messages[0].content"),
    ],
)
def test_anthropic_request_errors_name_the_field(message, field):
    body = {"model": "m", "max_tokens": 5, "messages": [message]}

    with pytest.raises(TranslationError) as excinfo:
        anthropic_request_to_openai(body)

    assert excinfo.value.field == field


def test_anthropic_server_tool_is_rejected():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
    }

    with pytest.raises(TranslationError) as excinfo:
        anthropic_request_to_openai(body)

    assert excinfo.value.field == "tools[0].type"


# --- OpenAI response -> Anthropic response ----------------------------------------------------


def openai_completion(message: JSON, finish_reason: str, usage: JSON | None = None) -> JSON:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
    ],
)
def test_openai_finish_reason_to_anthropic_stop_reason(finish_reason, stop_reason):
    resp = openai_completion({"role": "assistant", "content": "Hi"}, finish_reason)

    out = openai_response_to_anthropic(resp, "claude-alias")

    Message.model_validate(out)
    assert out["stop_reason"] == stop_reason


def test_openai_response_to_anthropic_with_tool_calls_and_cached_usage():
    message = {
        "role": "assistant",
        "content": "Checking.",
        "refusal": None,
        "tool_calls": openai_tool_turns()[1]["tool_calls"],
    }
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 64},
    }

    out = openai_response_to_anthropic(openai_completion(message, "tool_calls", usage), "claude")

    Message.model_validate(out)
    assert out == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 36, "output_tokens": 20, "cache_read_input_tokens": 64},
    }


def test_openai_refusal_becomes_text_with_refusal_stop_reason():
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}

    out = openai_response_to_anthropic(openai_completion(message, "content_filter"), "claude")

    Message.model_validate(out)
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"
    assert out["usage"] == {"input_tokens": 11, "output_tokens": 7}


def test_openai_response_unparsable_arguments_are_kept():
    call = {"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}

    out = openai_response_to_anthropic(openai_completion(message, "tool_calls"), "claude")

    assert out["content"] == [
        {"type": "tool_use", "id": "call_x", "name": "f", "input": {"_raw_arguments": "{oops"}}
    ]


# --- OpenAI stream -> Anthropic stream --------------------------------------------------------


def openai_chunk(delta: JSON | None, finish_reason: str | None = None, usage: JSON | None = None):
    chunk: JSON = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


OPENAI_TOOL_STREAM: list[JSON] = [
    openai_chunk({"role": "assistant", "content": ""}),
    openai_chunk({"content": "Let me "}),
    openai_chunk({"content": "check."}),
    openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                }
            ]
        }
    ),
    openai_chunk({}, "tool_calls"),
    openai_chunk(None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}),
]


def test_openai_stream_to_anthropic_text_and_two_tool_calls():
    stream = OpenAIToAnthropicStream("claude-alias", "msg_1")
    events = [e for chunk in OPENAI_TOOL_STREAM for e in stream.feed(chunk)] + stream.finish()

    assert_anthropic_events_valid(events)
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-alias",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        ),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Let me "}),
        block_delta(0, {"type": "text_delta", "text": "check."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"city":'}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '{"city":"Rome"}'}),
        block_stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"input_tokens": 30, "output_tokens": 12},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert stream.usage == {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}


def test_openai_stream_without_usage_is_closed_by_finish():
    stream = OpenAIToAnthropicStream("claude", "msg_2")

    fed = stream.feed(openai_chunk({"role": "assistant", "content": "Hi"}))
    fed += stream.feed(openai_chunk({}, "length"))
    closing = stream.finish()

    assert_anthropic_events_valid(fed + closing)
    assert [name for name, _ in fed] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    assert closing == [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                "usage": {"output_tokens": 0},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert stream.finish() == []


def test_openai_stream_usage_in_the_finish_chunk_ends_the_message():
    stream = OpenAIToAnthropicStream("claude", "msg_3")
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}

    events = stream.feed(openai_chunk({"content": "k"}, "stop", usage))

    assert [name for name, _ in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2][1]["usage"] == {"input_tokens": 5, "output_tokens": 1}
    assert stream.finish() == []


def test_openai_stream_new_id_at_a_reused_index_opens_a_new_tool_block():
    stream = OpenAIToAnthropicStream("claude", "msg_5")
    calls = [
        {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{}"}},
        {"index": 0, "id": "call_b", "function": {"name": "g", "arguments": "{}"}},
    ]

    events = [e for call in calls for e in stream.feed(openai_chunk({"tool_calls": [call]}))]

    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert [(b["id"], b["name"]) for b in starts] == [("call_a", "f"), ("call_b", "g")]


def test_empty_openai_stream_still_yields_a_complete_message():
    events = OpenAIToAnthropicStream("claude", "msg_4").finish()

    assert_anthropic_events_valid(events)
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "end_turn"


# --- OpenAI request -> Anthropic request ------------------------------------------------------


def test_openai_request_to_anthropic_maps_every_field():
    body = {
        "model": "my-claude",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            *openai_tool_turns()[:2],
            *openai_tool_turns()[2:],
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            },
        ],
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": "END",
        "stream": True,
        "stream_options": {"include_usage": True},
        "response_format": {"type": "json_object"},
        "tools": [OPENAI_WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u-7",
        "seed": 3,
    }

    assert openai_request_to_anthropic(body, "claude-sonnet-4-5") == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": (
            "Be terse.\n\nUse metric.\n\n"
            "Respond with a single valid JSON object only, with no other text."
        ),
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_2",
                        "name": "weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "25C"},
                    {"type": "text", "text": "And this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                ],
            },
        ],
        "temperature": 0.5,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "u-7"},
        "tools": [
            {"name": "weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 50}, 50),
        ({"max_tokens": 50, "max_completion_tokens": 70}, 70),
        ({"max_tokens": 50, "max_completion_tokens": None}, 50),
    ],
)
def test_openai_max_tokens_to_anthropic(extra, expected):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}

    assert openai_request_to_anthropic(body, "claude")["max_tokens"] == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"top_p": 1}, None),
        ({"top_p": 1.0, "temperature": 0.7}, None),
        ({"top_p": 0.5}, 0.5),
    ],
)
def test_default_top_p_is_omitted(extra, expected):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}

    anthropic_body = openai_request_to_anthropic(body, "claude")
    converse_body = openai_request_to_converse(body)

    assert anthropic_body.get("top_p") == expected
    assert converse_body.get("inferenceConfig", {}).get("topP") == expected


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
    ],
)
def test_openai_tool_choice_to_anthropic(tool_choice, expected):
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [OPENAI_WEATHER_TOOL],
        "tool_choice": tool_choice,
    }

    assert openai_request_to_anthropic(body, "claude")["tool_choice"] == expected


def test_openai_json_schema_response_format_becomes_system_instruction():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
    }

    assert openai_request_to_anthropic(body, "claude")["system"] == (
        "Respond with a single valid JSON object only, with no other text. "
        'It must conform to this JSON Schema: {"type":"object"}'
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 1.5}, "temperature"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tools": [{"type": "custom", "custom": {"name": "c"}}]}, "tools[0].type"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"max_tokens": 0}, "max_tokens"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{x"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"messages": "hi"}, "messages"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_openai_request_to_anthropic_errors_name_the_field(extra, field):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}

    with pytest.raises(TranslationError) as excinfo:
        openai_request_to_anthropic(body, "claude")

    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(f"{field}: ")


# --- Anthropic response -> OpenAI response ----------------------------------------------------


def anthropic_message(
    content: list[JSON], stop_reason: str | None, usage: JSON | None = None
) -> JSON:
    return {
        "id": "msg_01XYZ",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 4},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_anthropic_stop_reason_to_openai_finish_reason(stop_reason, finish_reason):
    resp = anthropic_message([{"type": "text", "text": "Hi"}], stop_reason)

    out = anthropic_response_to_openai(resp, "my-claude", created=1)

    ChatCompletion.model_validate(out)
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_anthropic_response_to_openai_with_tool_use_and_cache_usage():
    resp = anthropic_message(
        [
            {"type": "thinking", "thinking": "...", "signature": "s"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "tool_use",
        {
            "input_tokens": 10,
            "output_tokens": 30,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    )

    out = anthropic_response_to_openai(resp, "my-claude", created=1700000000)

    ChatCompletion.model_validate(out)
    assert out == {
        "id": "chatcmpl-01XYZ",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "my-claude",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 115,
            "completion_tokens": 30,
            "total_tokens": 145,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }


def test_anthropic_tool_only_response_has_null_content():
    resp = anthropic_message(
        [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}], "tool_use"
    )

    out = anthropic_response_to_openai(resp, "m")

    ChatCompletion.model_validate(out)
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


# --- Anthropic stream -> OpenAI stream --------------------------------------------------------


ANTHROPIC_TOOL_STREAM: list[tuple[str, JSON]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": anthropic_message(
                [], None, {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5}
            ),
        },
    ),
    block_start(0, {"type": "text", "text": ""}),
    ("ping", {"type": "ping"}),
    block_delta(0, {"type": "text_delta", "text": "Let me "}),
    block_delta(0, {"type": "text_delta", "text": "check."}),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}),
    block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
    block_delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
    block_delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
    block_stop(1),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 40},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def openai_stream_chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "my-claude",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def test_anthropic_stream_to_openai_text_and_tool_call():
    stream = AnthropicToOpenAIStream("my-claude", "chatcmpl-1", 1700000000, include_usage=True)

    chunks = [c for event, data in ANTHROPIC_TOOL_STREAM for c in stream.feed(event, data)]
    chunks += stream.finish()

    assert_chunks_valid(chunks)
    assert chunks == [
        openai_stream_chunk({"role": "assistant", "content": ""}),
        openai_stream_chunk({"content": "Let me "}),
        openai_stream_chunk({"content": "check."}),
        openai_stream_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        ),
        openai_stream_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        openai_stream_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        openai_stream_chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "my-claude",
            "choices": [],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 40,
                "total_tokens": 70,
                "prompt_tokens_details": {"cached_tokens": 5},
            },
        },
    ]


def test_anthropic_stream_without_include_usage_sends_no_usage_chunk():
    stream = AnthropicToOpenAIStream("my-claude", "chatcmpl-1", 1700000000, include_usage=False)

    chunks = [c for event, data in ANTHROPIC_TOOL_STREAM for c in stream.feed(event, data)]

    assert all(chunk["choices"] for chunk in chunks)
    assert chunks[-1] == openai_stream_chunk({}, "tool_calls")
    assert stream.finish() == []
    assert stream.usage == {
        "prompt_tokens": 30,
        "completion_tokens": 40,
        "total_tokens": 70,
        "prompt_tokens_details": {"cached_tokens": 5},
    }


def test_anthropic_stream_cut_short_is_finished_with_stop():
    stream = AnthropicToOpenAIStream("my-claude", "chatcmpl-1", 1700000000, include_usage=True)

    chunks = [c for event, data in ANTHROPIC_TOOL_STREAM[:5] for c in stream.feed(event, data)]
    closing = stream.finish()

    assert_chunks_valid(chunks + closing)
    assert closing == [
        openai_stream_chunk({}, "stop"),
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "my-claude",
            "choices": [],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 1,
                "total_tokens": 31,
                "prompt_tokens_details": {"cached_tokens": 5},
            },
        },
    ]


# --- Round trips ------------------------------------------------------------------------------


def test_openai_tool_call_round_trips_through_anthropic_request():
    body = {"model": "m", "messages": openai_tool_turns(), "tools": [OPENAI_WEATHER_TOOL]}

    anthropic_body = openai_request_to_anthropic(body, "claude")
    back = anthropic_request_to_openai(anthropic_body)

    assert back["messages"] == openai_tool_turns()
    assert back["tools"] == [OPENAI_WEATHER_TOOL]


def test_openai_tool_call_round_trips_through_anthropic_response():
    message = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": openai_tool_turns()[1]["tool_calls"],
    }
    resp = openai_completion(message, "tool_calls")

    back = anthropic_response_to_openai(openai_response_to_anthropic(resp, "m"), "m", created=1)

    assert back["id"] == "chatcmpl-abc"
    assert back["choices"][0]["message"] == message
    assert back["choices"][0]["finish_reason"] == "tool_calls"
    assert back["usage"] == resp["usage"]


def test_image_data_url_round_trips_through_base64_source():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]}
        ],
    }

    anthropic_body = openai_request_to_anthropic(body, "claude")
    back = anthropic_request_to_openai(anthropic_body)

    assert anthropic_body["messages"][0]["content"][0]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": PNG_B64,
    }
    assert back["messages"] == body["messages"]


# --- OpenAI request -> Converse request -------------------------------------------------------


def test_openai_request_to_converse_maps_every_field():
    body = {
        "model": "my-nova",
        "messages": [
            {"role": "system", "content": "Be terse."},
            *openai_tool_turns(),
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AA="}},
                ],
            },
        ],
        "max_tokens": 256,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "stream": True,
        "response_format": {"type": "json_object"},
        "tools": [OPENAI_WEATHER_TOOL],
        "tool_choice": "required",
    }

    out = openai_request_to_converse(body)

    assert_converse_request_valid(out)
    assert out == {
        "system": [
            {"text": "Be terse."},
            {"text": "Respond with a single valid JSON object only, with no other text."},
        ],
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {
                        "toolUse": {
                            "toolUseId": "call_1",
                            "name": "weather",
                            "input": {"city": "Paris"},
                        }
                    },
                    {
                        "toolUse": {
                            "toolUseId": "call_2",
                            "name": "weather",
                            "input": {"city": "Rome"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "25C"}]}},
                    {"text": "And this?"},
                    {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AA="}}},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 256,
            "temperature": 0.3,
            "topP": 0.9,
            "stopSequences": ["END", "STOP"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Current weather",
                        "inputSchema": {"json": WEATHER_SCHEMA},
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
    }


@pytest.mark.parametrize(
    ("tool_choice", "history", "expected"),
    [
        ("auto", False, {"auto": {}}),
        ("required", False, {"any": {}}),
        (
            {"type": "function", "function": {"name": "weather"}},
            False,
            {"tool": {"name": "weather"}},
        ),
        (None, False, None),
        ("none", False, "no toolConfig"),
        ("none", True, None),
    ],
)
def test_openai_tool_choice_to_converse(tool_choice, history, expected):
    messages = openai_tool_turns() if history else [{"role": "user", "content": "hi"}]
    body: JSON = {"model": "m", "messages": messages, "tools": [OPENAI_WEATHER_TOOL]}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice

    out = openai_request_to_converse(body)

    assert_converse_request_valid(out)
    if expected == "no toolConfig":
        assert "toolConfig" not in out
    else:
        assert out["toolConfig"].get("toolChoice") == expected
        assert out["toolConfig"]["tools"][0]["toolSpec"]["name"] == "weather"


def test_converse_skips_blank_text_and_sends_empty_tool_results_as_no_blocks():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": ""},
            {"role": "user", "content": "  "},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }

    out = openai_request_to_converse(body)

    assert_converse_request_valid(out)
    assert out["messages"] == [
        {"role": "user", "content": [{"text": "hi"}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "c1", "name": "f", "input": {}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": "c1", "content": []}}]},
    ]
    assert out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": {"type": "object", "properties": {}}
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "see"},
                            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content[1].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/bmp;base64,Qk0="},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"n": 3}, "n"),
        ({"temperature": 2}, "temperature"),
        ({"stop": ["a", 1]}, "stop[1]"),
    ],
)
def test_openai_request_to_converse_errors_name_the_field(extra, field):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}

    with pytest.raises(TranslationError) as excinfo:
        openai_request_to_converse(body)

    assert excinfo.value.field == field


# --- Converse response -> OpenAI response -----------------------------------------------------


def converse_response(content: list[JSON], stop_reason: str, usage: JSON | None = None) -> JSON:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage or {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12},
        "metrics": {"latencyMs": 120},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("malformed_model_output", "stop"),
    ],
)
def test_converse_stop_reason_to_openai_finish_reason(stop_reason, finish_reason):
    resp = converse_response([{"text": "Hi"}], stop_reason)

    out = converse_response_to_openai(resp, "my-nova")

    ChatCompletion.model_validate(out)
    assert out["choices"][0]["finish_reason"] == finish_reason
    assert out["id"].startswith("chatcmpl-")


def test_converse_response_to_openai_with_tool_use_and_cache_usage():
    resp = converse_response(
        [
            {"reasoningContent": {"reasoningText": {"text": "..."}}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Rome"}}},
        ],
        "tool_use",
        {
            "inputTokens": 20,
            "outputTokens": 15,
            "totalTokens": 85,
            "cacheReadInputTokens": 40,
            "cacheWriteInputTokens": 10,
        },
    )

    out = converse_response_to_openai(resp, "my-nova", completion_id="chatcmpl-b", created=5)

    ChatCompletion.model_validate(out)
    assert out == {
        "id": "chatcmpl-b",
        "object": "chat.completion",
        "created": 5,
        "model": "my-nova",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "tooluse_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 70,
            "completion_tokens": 15,
            "total_tokens": 85,
            "prompt_tokens_details": {"cached_tokens": 40},
        },
    }


# --- ConverseStream -> OpenAI stream ----------------------------------------------------------


CONVERSE_TOOL_STREAM: list[tuple[str, JSON]] = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check."}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    (
        "contentBlockStart",
        {
            "contentBlockIndex": 1,
            "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "weather"}},
        },
    ),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Rome"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    ("messageStop", {"stopReason": "tool_use"}),
    (
        "metadata",
        {
            "usage": {"inputTokens": 20, "outputTokens": 15, "totalTokens": 35},
            "metrics": {"latencyMs": 300},
        },
    ),
]


def converse_chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
    return {
        "id": "chatcmpl-c",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "my-nova",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def test_converse_stream_to_openai_text_and_tool_call():
    stream = ConverseStreamToOpenAI("my-nova", "chatcmpl-c", 7, include_usage=True)

    chunks = [c for event, payload in CONVERSE_TOOL_STREAM for c in stream.feed(event, payload)]
    chunks += stream.finish()

    assert_chunks_valid(chunks)
    assert chunks == [
        converse_chunk({"role": "assistant", "content": ""}),
        converse_chunk({"content": "Let me "}),
        converse_chunk({"content": "check."}),
        converse_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "tooluse_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        ),
        converse_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        converse_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Rome"}'}}]}),
        converse_chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-c",
            "object": "chat.completion.chunk",
            "created": 7,
            "model": "my-nova",
            "choices": [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 15, "total_tokens": 35},
        },
    ]


def test_converse_stream_cut_short_is_finished_with_stop_and_no_usage():
    stream = ConverseStreamToOpenAI("my-nova", "chatcmpl-c", 7, include_usage=True)

    chunks = [c for event, payload in CONVERSE_TOOL_STREAM[:2] for c in stream.feed(event, payload)]
    closing = stream.finish()

    assert_chunks_valid(chunks + closing)
    assert closing == [converse_chunk({}, "stop")]
    assert stream.usage is None
    assert stream.feed("internalServerException", {"message": "boom"}) == []


# --- The SDKs' own stream accumulators consume the translated streams -------------------------


def test_anthropic_sdk_accumulates_the_translated_stream():
    stream = OpenAIToAnthropicStream("claude-alias", "msg_1")
    events = [e for chunk in OPENAI_TOOL_STREAM for e in stream.feed(chunk)] + stream.finish()

    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _name, data in events:
        event = ANTHROPIC_EVENT.validate_python(data)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)

    assert snapshot is not None
    assert [block.model_dump(exclude_none=True) for block in snapshot.content] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
    ]
    assert snapshot.stop_reason == "tool_use"
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (30, 12)


def anthropic_upstream_chunks() -> list[JSON]:
    stream = AnthropicToOpenAIStream("my-claude", "chatcmpl-1", 1700000000, include_usage=True)
    return [c for e, d in ANTHROPIC_TOOL_STREAM for c in stream.feed(e, d)] + stream.finish()


def converse_upstream_chunks() -> list[JSON]:
    stream = ConverseStreamToOpenAI("my-nova", "chatcmpl-c", 7, include_usage=True)
    return [c for e, d in CONVERSE_TOOL_STREAM for c in stream.feed(e, d)] + stream.finish()


@pytest.mark.parametrize(
    ("make_chunks", "arguments", "usage"),
    [
        (anthropic_upstream_chunks, '{"city": "Paris"}', (30, 40)),
        (converse_upstream_chunks, '{"city":"Rome"}', (20, 15)),
    ],
)
def test_openai_sdk_accumulates_the_translated_stream(make_chunks, arguments, usage):
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in make_chunks():
        list(state.handle_chunk(ChatCompletionChunk.model_validate(chunk)))

    final = state.get_final_completion()

    choice = final.choices[0]
    assert choice.message.content == "Let me check."
    assert choice.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []] == [
        ("weather", arguments)
    ]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == usage


def openai_body_with_everything() -> JSON:
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": "s"},
            *openai_tool_turns(),
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": PNG_DATA_URL}}],
            },
        ],
        "tools": [OPENAI_WEATHER_TOOL],
        "tool_choice": "auto",
    }


@pytest.mark.parametrize(
    "translate",
    [
        lambda body: openai_request_to_anthropic(body, "claude"),
        openai_request_to_converse,
        lambda body: anthropic_request_to_openai(openai_request_to_anthropic(body, "claude")),
    ],
)
def test_request_translation_leaves_the_input_untouched(translate):
    body = openai_body_with_everything()

    translate(body)

    assert body == openai_body_with_everything()
