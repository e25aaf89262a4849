"""The fake providers answer the official SDKs (openai, anthropic, botocore) like the real APIs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import anthropic
import botocore.session
import httpx
import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from providers.aws_sigv4 import AwsCredentials, sign
from proxy.aws_eventstream import EventStreamDecoder
from tests.fakes.fixtures import FakeProvider, fake_provider, fake_provider_server  # noqa: F401
from tests.fakes.providers import TOOL_ARGUMENTS, embedding_for

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": WEATHER_PARAMETERS,
}


@pytest.fixture
def oai(fake_provider):  # noqa: F811
    with openai.OpenAI(
        api_key=fake_provider.OPENAI_KEY,
        base_url=fake_provider.openai_base_url,
        max_retries=0,
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def claude(fake_provider):  # noqa: F811
    with anthropic.Anthropic(
        api_key=fake_provider.ANTHROPIC_KEY, base_url=fake_provider.url, max_retries=0, timeout=10
    ) as client:
        yield client


@pytest.fixture
def bedrock(fake_provider):  # noqa: F811
    client = botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name=fake_provider.AWS_REGION,
        endpoint_url=fake_provider.url,
        aws_access_key_id=fake_provider.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=fake_provider.AWS_SECRET_ACCESS_KEY,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()


def _signed(
    fake: FakeProvider,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    secret: str | None = None,
    key_id: str | None = None,
) -> dict[str, str]:
    """Headers for a Bedrock call signed with the project's own SigV4 code."""
    return sign(
        method=method,
        url=f"{fake.url}{path}",
        headers={"content-type": "application/json"} if body else {},
        body=body,
        credentials=AwsCredentials(
            key_id or fake.AWS_ACCESS_KEY_ID, secret or fake.AWS_SECRET_ACCESS_KEY
        ),
        region=fake.AWS_REGION,
        service="bedrock",
    )


def _converse_path(model: str = BEDROCK_MODEL, action: str = "converse") -> str:
    return f"/model/{model.replace(':', '%3A')}/{action}"


# --- OpenAI ----------------------------------------------------------------------------------


def test_openai_chat_echoes_the_last_user_message_with_usage(oai):
    completion = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there fake"},
        ],
    )

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "echo: hello there fake"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) == {
        "prompt_tokens": 5,
        "completion_tokens": 4,
    }
    assert completion.usage.total_tokens == 9


def test_openai_stream_with_usage_ends_with_a_usage_chunk(oai):
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": [{"type": "text", "text": "stream me"}]}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-chunks": "4"},
    )
    chunks = list(stream)

    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(filter(None, content)) == "echo: stream me"
    assert len(chunks) == 1 + 4 + 1 + 1  # role, 4 content, finish, usage
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 3)


def test_openai_stream_wire_format_ends_with_done(fake_provider):  # noqa: F811
    response = httpx.post(
        f"{fake_provider.openai_base_url}/chat/completions",
        headers={"Authorization": f"Bearer {fake_provider.OPENAI_KEY}"},
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(f.startswith("data: ") for f in frames[:-1])
    assert all("usage" not in json.loads(f[6:]) for f in frames[:-2])
    assert len(frames[:-2]) == 1 + 3 + 1  # role, default 3 content chunks, finish


def test_openai_tool_call_when_asked(oai):
    completion = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Please use the tool for the weather"}],
        tools=[WEATHER_TOOL],
    )

    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls[0].function.name == "get_weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_openai_streamed_tool_call_arguments_concatenate(oai):
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "use the tool"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)

    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "call_fake_1"
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == TOOL_ARGUMENTS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_tool_result_turn_answers_with_the_result(oai):
    completion = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "use the tool"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_fake_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_fake_1", "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
    )

    assert completion.choices[0].message.content == "tool result: sunny"


def test_openai_json_mode_returns_a_json_object(oai):
    completion = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_object"},
    )

    assert json.loads(completion.choices[0].message.content) == {"echo": "give json"}


def test_openai_embeddings_decode_in_the_sdk(oai):
    result = oai.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])

    assert [d.embedding for d in result.data] == [embedding_for("a b"), embedding_for("c")]
    assert result.usage.prompt_tokens == 3


def test_openai_embeddings_as_floats(fake_provider):  # noqa: F811
    response = httpx.post(
        f"{fake_provider.openai_base_url}/embeddings",
        headers={"Authorization": f"Bearer {fake_provider.OPENAI_KEY}"},
        json={"model": "text-embedding-3-small", "input": "a", "encoding_format": "float"},
    )

    assert response.json()["data"][0]["embedding"] == embedding_for("a")


def test_openai_responses_api(oai):
    response = oai.responses.create(model="gpt-4o-mini", input="hi responses")

    assert response.output_text == "echo: hi responses"
    assert response.usage.input_tokens == 2
    assert response.usage.output_tokens == 3


def test_openai_models_list(oai):
    assert [m.id for m in oai.models.list()] == [
        "gpt-4o-mini",
        "gpt-4o",
        "text-embedding-3-small",
    ]


def test_openai_wrong_key_is_401_in_openai_format(fake_provider):  # noqa: F811
    client = openai.OpenAI(
        api_key="sk-wrong", base_url=fake_provider.openai_base_url, max_retries=0
    )

    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert fake_provider.last_request()["headers"]["authorization"] == "Bearer sk-wrong"


def test_openai_rate_limit_has_retry_after(oai):
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-status": "429"},
        )

    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


def test_knob_as_query_parameter(oai):
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_query={"x-fake-status": "503"},
        )

    assert caught.value.status_code == 503


def test_fail_next_applies_to_the_next_requests_only(oai, fake_provider):  # noqa: F811
    fake_provider.fail_next(2, status=500)
    messages = [{"role": "user", "content": "x"}]

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            oai.chat.completions.create(model="gpt-4o-mini", messages=messages)
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=messages)

    assert completion.choices[0].message.content == "echo: x"


def test_fail_next_can_target_a_path(oai, fake_provider):  # noqa: F811
    fake_provider.fail_next(path="/embeddings", status=500)

    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(openai.InternalServerError):
        oai.embeddings.create(model="text-embedding-3-small", input="x")

    assert completion.choices[0].message.content == "echo: x"


def test_latency_knob_delays_the_answer(oai):
    started = time.monotonic()
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-fake-latency-ms": "200"},
    )

    assert time.monotonic() - started >= 0.2


def test_configure_sets_defaults_until_reset(oai, fake_provider):  # noqa: F811
    fake_provider.configure(chunks=6)
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
    )

    assert len(list(stream)) == 1 + 6 + 1
    fake_provider.reset()
    assert fake_provider.app.defaults.chunks == 3


def test_hang_never_answers_and_the_disconnect_is_counted(oai, fake_provider):  # noqa: F811
    with pytest.raises(openai.APITimeoutError):
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-hang": "1"},
            timeout=0.3,
        )

    fake_provider.wait_for_stats(hanging=0, disconnects=1)


def test_reset_before_the_answer_is_a_connection_error(oai):
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-reset": "true"},
        )


def test_reset_mid_stream_cuts_the_stream(fake_provider):  # noqa: F811
    received: list[bytes] = []
    with (
        pytest.raises(httpx.ReadError, match="reset by peer"),
        httpx.stream(
            "POST",
            f"{fake_provider.openai_base_url}/chat/completions",
            headers={"Authorization": f"Bearer {fake_provider.OPENAI_KEY}", "x-fake-reset": "2"},
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
        ) as response,
    ):
        received.extend(response.iter_bytes())

    assert b"[DONE]" not in b"".join(received)


def test_stream_error_after_n_events(oai):
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_headers={"x-fake-stream-error-after": "2"},
    )

    with pytest.raises(openai.APIError, match="fake stream error"):
        list(stream)


def test_client_leaving_a_stream_is_counted(fake_provider):  # noqa: F811
    with httpx.stream(
        "POST",
        f"{fake_provider.openai_base_url}/chat/completions",
        headers={
            "Authorization": f"Bearer {fake_provider.OPENAI_KEY}",
            "x-fake-chunks": "50",
            "x-fake-chunk-delay-ms": "50",
        },
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as response:
        chunks = response.iter_raw()  # kept: a dropped iterator closes the connection
        assert next(chunks).startswith(b"data: ")
        fake_provider.wait_for_stats(open_streams=1)

    stats = fake_provider.wait_for_stats(open_streams=0, disconnects=1)
    assert (stats["streams_started"], stats["streams_completed"]) == (1, 0)


def test_completed_stream_is_not_a_disconnect(oai, fake_provider):  # noqa: F811
    list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )

    assert fake_provider.wait_for_stats(open_streams=0)["disconnects"] == 0
    assert fake_provider.stats()["streams_completed"] == 1


def test_requests_are_recorded_and_cleared(oai, fake_provider):  # noqa: F811
    oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

    recorded = fake_provider.last_request("/chat/completions")
    assert recorded["method"] == "POST"
    assert recorded["headers"]["authorization"] == f"Bearer {fake_provider.OPENAI_KEY}"
    assert recorded["body"] == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x"}],
    }

    over_http = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    assert over_http == fake_provider.requests()
    assert httpx.delete(f"{fake_provider.url}/_fake/requests").status_code == 200
    assert fake_provider.requests() == []


def test_control_endpoints_over_http(fake_provider):  # noqa: F811
    base = f"{fake_provider.url}/_fake"

    config = httpx.post(f"{base}/config", json={"latency_ms": 5, "chunks": 2}).json()
    queued = httpx.post(f"{base}/faults", json={"status": 429, "times": 1}).json()
    bad = httpx.post(f"{base}/config", json={"nope": 1})
    stats = httpx.get(f"{base}/stats").json()

    assert (config["latency_ms"], config["chunks"]) == (5.0, 2)
    assert queued == {"queued": 1}
    assert bad.status_code == 400
    assert stats["requests"] == 0
    assert httpx.post(f"{base}/reset").json() == {"reset": True}
    assert fake_provider.app.defaults.latency_ms == 0


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_message_echoes_with_usage(claude):
    message = claude.messages.create(
        model="claude-3-5-haiku-20241022",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello claude"}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello claude"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 3)


def test_anthropic_stream_event_sequence(fake_provider):  # noqa: F811
    response = httpx.post(
        f"{fake_provider.url}/v1/messages",
        headers={"x-api-key": fake_provider.ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-3-5-haiku-20241022",
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )

    events = [frame.split("\n")[0] for frame in response.text.split("\n\n") if frame]
    assert events == [
        "event: message_start",
        "event: content_block_start",
        "event: content_block_delta",
        "event: content_block_delta",
        "event: content_block_delta",
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]


def test_anthropic_sdk_stream_assembles_the_message(claude):
    with claude.messages.stream(
        model="claude-3-5-haiku-20241022",
        max_tokens=100,
        messages=[{"role": "user", "content": [{"type": "text", "text": "stream please"}]}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "echo: stream please"
    assert final.usage.output_tokens == 3
    assert final.stop_reason == "end_turn"


def test_anthropic_tool_use(claude):
    message = claude.messages.create(
        model="claude-3-5-haiku-20241022",
        max_tokens=100,
        tools=[ANTHROPIC_TOOL],
        messages=[{"role": "user", "content": "use the tool please"}],
    )

    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "tool_use"
    assert (message.content[0].name, message.content[0].input) == ("get_weather", TOOL_ARGUMENTS)


def test_anthropic_streamed_tool_use(claude):
    with claude.messages.stream(
        model="claude-3-5-haiku-20241022",
        max_tokens=100,
        tools=[ANTHROPIC_TOOL],
        messages=[{"role": "user", "content": "use the tool"}],
    ) as stream:
        final = stream.get_final_message()

    assert final.content[0].type == "tool_use"
    assert final.content[0].input == TOOL_ARGUMENTS


def test_anthropic_tool_result_turn(claude):
    message = claude.messages.create(
        model="claude-3-5-haiku-20241022",
        max_tokens=100,
        tools=[ANTHROPIC_TOOL],
        messages=[
            {"role": "user", "content": "use the tool"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_fake_1", "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_fake_1", "content": "rainy"}
                ],
            },
        ],
    )

    assert message.content[0].text == "tool result: rainy"


def test_anthropic_wrong_key_is_401(fake_provider):  # noqa: F811
    client = anthropic.Anthropic(api_key="wrong", base_url=fake_provider.url, max_retries=0)

    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }


def test_anthropic_version_header_is_required(fake_provider):  # noqa: F811
    response = httpx.post(
        f"{fake_provider.url}/v1/messages",
        headers={"x-api-key": fake_provider.ANTHROPIC_KEY},
        json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_overloaded_and_rate_limited(claude, fake_provider):  # noqa: F811
    fake_provider.fail_next(status=429)
    fake_provider.fail_next(status=529)
    messages = [{"role": "user", "content": "x"}]

    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="m", max_tokens=5, messages=messages)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="m", max_tokens=5, messages=messages)

    assert limited.value.response.json()["error"]["type"] == "rate_limit_error"
    assert limited.value.response.headers["retry-after"] == "1"
    assert overloaded.value.status_code == 529
    assert overloaded.value.response.json()["error"]["type"] == "overloaded_error"


def test_anthropic_stream_error_event(claude):
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        claude.messages.stream(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-stream-error-after": "3"},
        ) as stream,
    ):
        stream.get_final_message()


def test_anthropic_models_list(claude):
    assert [m.id for m in claude.models.list()] == [
        "claude-3-5-haiku-20241022",
        "claude-sonnet-4-20250514",
    ]


# --- Bedrock ---------------------------------------------------------------------------------


def test_bedrock_converse_with_botocore(bedrock, fake_provider):  # noqa: F811
    response = bedrock.converse(
        modelId=BEDROCK_MODEL,
        system=[{"text": "be brief"}],
        messages=[{"role": "user", "content": [{"text": "hello bedrock"}]}],
    )

    assert response["output"]["message"]["content"] == [{"text": "echo: hello bedrock"}]
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {"inputTokens": 4, "outputTokens": 3, "totalTokens": 7}
    recorded = fake_provider.last_request()
    assert recorded["path"] == f"/model/{BEDROCK_MODEL}/converse"
    assert f"Credential={fake_provider.AWS_ACCESS_KEY_ID}/" in recorded["headers"]["authorization"]


def test_bedrock_converse_stream_with_botocore(bedrock):
    response = bedrock.converse_stream(
        modelId=BEDROCK_MODEL,
        messages=[{"role": "user", "content": [{"text": "stream bedrock"}]}],
    )
    events = list(response["stream"])

    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:4])
    assert text == "echo: stream bedrock"
    assert events[-1]["metadata"]["usage"] == {
        "inputTokens": 2,
        "outputTokens": 3,
        "totalTokens": 5,
    }


def test_bedrock_converse_stream_with_our_decoder(fake_provider):  # noqa: F811
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "decode me"}]}]})
    path = _converse_path(action="converse-stream")
    headers = _signed(fake_provider, "POST", path, body.encode())
    headers["x-fake-chunks"] = "2"
    decoder = EventStreamDecoder()
    events = []

    with httpx.stream("POST", f"{fake_provider.url}{path}", headers=headers, content=body) as r:
        assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
        for chunk in r.iter_raw():
            events += decoder.feed(chunk)
    decoder.close()

    assert [e.event_type for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert {e.message_type for e in events} == {"event"}
    assert events[0].headers[":content-type"] == "application/json"
    assert "".join(e.json()["delta"]["text"] for e in events[1:3]) == "echo: decode me"
    assert events[-1].json()["usage"]["totalTokens"] == 5


def test_bedrock_tool_use(bedrock):
    response = bedrock.converse(
        modelId=BEDROCK_MODEL,
        messages=[{"role": "user", "content": [{"text": "use the tool"}]}],
        toolConfig={
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "inputSchema": {"json": WEATHER_PARAMETERS},
                    }
                }
            ]
        },
    )

    assert response["stopReason"] == "tool_use"
    tool_use = response["output"]["message"]["content"][0]["toolUse"]
    assert (tool_use["name"], tool_use["input"]) == ("get_weather", TOOL_ARGUMENTS)


def test_bedrock_streamed_tool_use(bedrock):
    response = bedrock.converse_stream(
        modelId=BEDROCK_MODEL,
        messages=[{"role": "user", "content": [{"text": "use the tool"}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]},
    )
    events = list(response["stream"])

    assert events[1]["contentBlockStart"]["start"]["toolUse"]["name"] == "get_weather"
    arguments = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e
    )
    assert json.loads(arguments) == TOOL_ARGUMENTS
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}


def test_bedrock_signed_by_the_project_sigv4_passes(fake_provider):  # noqa: F811
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "x"}]}]}).encode()
    path = _converse_path()

    response = httpx.post(
        f"{fake_provider.url}{path}",
        headers=_signed(fake_provider, "POST", path, body),
        content=body,
    )

    assert response.status_code == 200
    assert response.json()["output"]["message"]["content"] == [{"text": "echo: x"}]
    assert fake_provider.last_request()["raw_path"] == path


def test_bedrock_signed_by_botocore_directly_passes(fake_provider):  # noqa: F811
    request = AWSRequest(method="GET", url=f"{fake_provider.url}/foundation-models?byProvider=x")
    SigV4Auth(
        Credentials(fake_provider.AWS_ACCESS_KEY_ID, fake_provider.AWS_SECRET_ACCESS_KEY),
        "bedrock",
        fake_provider.AWS_REGION,
    ).add_auth(request)

    response = httpx.get(request.url, headers=dict(request.headers.items()))

    assert response.status_code == 200
    assert response.json()["modelSummaries"][0]["modelId"] == BEDROCK_MODEL


@pytest.mark.parametrize(
    ("_case", "overrides", "error_type"),
    [
        ("unknown access key", {"key_id": "AKIAUNKNOWNKEY000001"}, "UnrecognizedClientException"),
        ("wrong secret", {"secret": "not-the-secret"}, "InvalidSignatureException"),
    ],
)
def test_bedrock_bad_credentials_are_403(_case, overrides, error_type, fake_provider):  # noqa: F811
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "x"}]}]}).encode()
    path = _converse_path()

    response = httpx.post(
        f"{fake_provider.url}{path}",
        headers=_signed(fake_provider, "POST", path, body, **overrides),
        content=body,
    )

    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"].split(":")[0] == error_type


def test_bedrock_tampered_body_fails_the_signature(fake_provider):  # noqa: F811
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "x"}]}]}).encode()
    path = _converse_path()
    headers = _signed(fake_provider, "POST", path, body)

    response = httpx.post(f"{fake_provider.url}{path}", headers=headers, content=body + b" ")

    assert response.status_code == 403


def test_bedrock_unsigned_request_is_403(fake_provider):  # noqa: F811
    response = httpx.post(f"{fake_provider.url}{_converse_path()}", json={"messages": []})

    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_bedrock_api_key_bearer_auth(fake_provider):  # noqa: F811
    response = httpx.post(
        f"{fake_provider.url}{_converse_path()}",
        headers={"Authorization": f"Bearer {fake_provider.BEDROCK_API_KEY}"},
        json={"messages": [{"role": "user", "content": [{"text": "x"}]}]},
    )

    assert response.status_code == 200


def test_bedrock_throttling_with_botocore(bedrock, fake_provider):  # noqa: F811
    fake_provider.fail_next(status=429)

    with pytest.raises(bedrock.exceptions.ThrottlingException):
        bedrock.converse(
            modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}]
        )


def test_bedrock_stream_exception_event(bedrock, fake_provider):  # noqa: F811
    fake_provider.fail_next(stream_error_after=2)
    response = bedrock.converse_stream(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}]
    )

    with pytest.raises(Exception, match=r"(?i)internalServerException"):
        list(response["stream"])


def test_bedrock_foundation_models_signed_like_the_connection_test(fake_provider):  # noqa: F811
    headers = _signed(fake_provider, "GET", "/foundation-models")

    response = httpx.get(f"{fake_provider.url}/foundation-models", headers=headers)

    assert response.status_code == 200
    assert len(response.json()["modelSummaries"]) == 2


def test_sigv4_date_must_match_the_scope(fake_provider):  # noqa: F811
    headers = sign(
        method="GET",
        url=f"{fake_provider.url}/foundation-models",
        headers={},
        body=b"",
        credentials=AwsCredentials(
            fake_provider.AWS_ACCESS_KEY_ID, fake_provider.AWS_SECRET_ACCESS_KEY
        ),
        region="us-east-1",
        service="bedrock",
        now=datetime(2024, 1, 1, tzinfo=UTC),
    )
    headers["x-amz-date"] = "20240102T000000Z"

    response = httpx.get(f"{fake_provider.url}/foundation-models", headers=headers)

    assert response.status_code == 403
