"""The proxy through the official OpenAI and Anthropic SDKs, against fake providers."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from accounts.models import PersonalAccessToken
from proxy.models import RequestLog
from tests.proxy.conftest import Gateway

MODELS = ["openai-main/gpt-4o", "anthropic-main/claude", "bedrock-main/nova"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def oai(gw: Gateway, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=token or gw.member_token, max_retries=0)


def ant(gw: Gateway, token: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.anthropic_base, api_key=token or gw.member_token, max_retries=0
    )


def logs(expected: int, timeout: float = 5.0) -> list[RequestLog]:
    """Request logs are written off the request path: wait for them."""
    deadline = time.monotonic() + timeout
    while RequestLog.objects.count() < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(RequestLog.objects.order_by("started_at"))


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_chat_on_every_provider(gateway, model):
    reply = oai(gateway).chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )
    assert reply.choices[0].message.content == "echo: hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    [record] = logs(1)
    assert (record.requested_model, record.status, record.streaming) == (model, 200, False)
    assert record.caller_name == gateway.member.email
    assert record.teams == ["ml"]
    assert (record.input_tokens, record.output_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_streaming_on_every_provider(gateway, model):
    stream = oai(gateway).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1
    assert usage[0].completion_tokens > 0
    [record] = logs(1)
    assert record.streaming is True
    assert record.output_tokens == usage[0].completion_tokens
    assert record.ttft_ms is not None
    assert record.ttft_ms <= record.latency_ms


def test_openai_stream_without_include_usage_gets_no_usage_chunk(gateway):
    chunks = list(
        oai(gateway).chat.completions.create(
            model="openai-main/gpt-4o",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
        )
    )
    assert all(c.usage is None for c in chunks)
    sent = gateway.fake.last_request("/chat/completions")["body"]
    assert sent["stream_options"] == {"include_usage": True}  # the gateway still counts tokens
    assert logs(1)[0].output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk_tool_calls_on_every_provider(gateway, model):
    reply = oai(gateway).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "please use the tool"}],
        tools=[WEATHER_TOOL],
    )
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_messages_on_every_provider(gateway, model):
    message = ant(gateway).messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hi"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_streaming_on_every_provider(gateway, model):
    with ant(gateway).messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert logs(1)[0].output_tokens == final.usage.output_tokens


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_tools_on_every_provider(gateway, model):
    message = ant(gateway).messages.create(
        model=model,
        max_tokens=100,
        tools=[
            {
                "name": "get_weather",
                "description": "Weather",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        messages=[{"role": "user", "content": "please use the tool"}],
    )
    tool_use = next(b for b in message.content if b.type == "tool_use")
    assert message.stop_reason == "tool_use"
    assert (tool_use.name, tool_use.input) == ("get_weather", {"city": "Paris"})


def test_upstream_gets_the_accounts_key_and_model_id_only(gateway):
    oai(gateway).chat.completions.create(
        model="openai-main/gpt-4o",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"base_url": "http://169.254.169.254/", "api_key": "sk-attacker"},
        extra_headers={"x-forwarded-host": "evil.example", "host-override": "127.0.0.2"},
    )
    sent = gateway.fake.last_request("/chat/completions")
    assert sent["headers"]["authorization"] == f"Bearer {gateway.fake.OPENAI_KEY}"
    assert sent["body"]["model"] == "gpt-4o-2024-08-06"
    assert "base_url" not in sent["body"]
    assert "api_key" not in sent["body"]
    assert gateway.member_token not in json.dumps(sent)
    assert "x-forwarded-host" not in sent["headers"]


def test_bedrock_requests_are_sigv4_signed(gateway):
    oai(gateway).chat.completions.create(
        model="bedrock-main/nova", messages=[{"role": "user", "content": "x"}]
    )
    sent = gateway.fake.last_request("/converse")
    assert sent["path"] == "/model/amazon.nova-lite-v1:0/converse"
    assert sent["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={gateway.fake.AWS_ACCESS_KEY_ID}/"
    )


def test_embeddings_and_models_list(gateway):
    client = oai(gateway)
    vectors = client.embeddings.create(model="openai-main/embed", input=["a", "b"])
    assert len(vectors.data) == 2
    names = sorted(m.id for m in client.models.list())
    assert names == [
        "anthropic-main/claude",
        "bedrock-main/nova",
        "openai-main/embed",
        "openai-main/gpt-4o",
    ]
    assert list(oai(gateway, gateway.outsider_token).models.list()) == []


def test_responses_api_for_openai_accounts(gateway):
    response = oai(gateway).responses.create(model="openai-main/gpt-4o", input="hello")
    assert response.output_text
    with pytest.raises(openai.BadRequestError) as info:
        oai(gateway).responses.create(model="anthropic-main/claude", input="hello")
    assert "does not support /v1/responses" in info.value.message


def test_bad_tokens_get_401_in_each_dialect(gateway):
    with pytest.raises(openai.AuthenticationError) as oai_info:
        oai(gateway, "gw_pat_wrong").chat.completions.create(
            model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.AuthenticationError) as ant_info:
        ant(gateway, "gw_pat_wrong").messages.create(
            model="anthropic-main/claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert oai_info.value.body["message"] == "Invalid or expired token."
    assert ant_info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid or expired token."},
    }
    assert gateway.fake.requests() == []


def test_model_not_permitted_looks_the_same_whether_or_not_it_exists(gateway):
    client = oai(gateway, gateway.outsider_token)
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.PermissionDeniedError) as existing:
        client.chat.completions.create(model="openai-main/gpt-4o", messages=messages)
    with pytest.raises(openai.PermissionDeniedError) as missing:
        client.chat.completions.create(model="openai-main/gpt-9", messages=messages)
    assert (
        existing.value.body["message"] == "You are not allowed to use model 'openai-main/gpt-4o'."
    )
    assert missing.value.body["message"] == "You are not allowed to use model 'openai-main/gpt-9'."
    assert existing.value.body["code"] == missing.value.body["code"] == "model_not_permitted"
    with pytest.raises(anthropic.PermissionDeniedError):
        ant(gateway, gateway.outsider_token).messages.create(
            model="anthropic-main/claude", max_tokens=5, messages=messages
        )
    assert gateway.fake.requests() == []


def _post(gateway: Gateway, body: bytes | dict[str, object], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{gateway.openai_base}/chat/completions",
        content=content,
        timeout=10,
        headers={
            "authorization": f"Bearer {gateway.member_token}",
            "content-type": "application/json",
            **headers,
        },
    )


def test_bad_bodies_and_headers_get_400_naming_the_problem(gateway):
    assert (
        _post(gateway, b"{not json").json()["error"]["message"]
        == "The request body is not valid JSON."
    )
    missing = _post(gateway, {"messages": []}).json()["error"]
    assert missing["param"] == "model"
    bad_meta = _post(
        gateway,
        {"model": "openai-main/gpt-4o", "messages": []},
        **{"x-gateway-metadata": '{"app": 5}'},
    )
    assert bad_meta.status_code == 400
    assert bad_meta.json()["error"]["param"] == "x-gateway-metadata"
    long_meta = _post(
        gateway,
        {"model": "openai-main/gpt-4o", "messages": []},
        **{"x-gateway-metadata": json.dumps({"app": "x" * 129})},
    )
    assert long_meta.status_code == 400
    translated = httpx.post(
        f"{gateway.openai_base}/chat/completions",
        timeout=10,
        headers={"authorization": f"Bearer {gateway.member_token}"},
        json={
            "model": "anthropic-main/claude",
            "n": 2,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert translated.status_code == 400
    assert translated.json()["error"]["param"] == "n"
    assert gateway.fake.requests() == []


def test_body_too_large_is_413(gateway, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1000
    response = _post(
        gateway,
        {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "x" * 2000}]},
    )
    assert response.status_code == 413


def test_metadata_is_stored_with_the_request(gateway):
    oai(gateway).chat.completions.create(
        model="openai-main/gpt-4o",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-tfy-metadata": json.dumps({"app": "billing-bot", "env": "prod"})},
    )
    assert logs(1)[0].metadata == {"app": "billing-bot", "env": "prod"}


def test_provider_429_is_retried_then_passed_on_with_retry_after(gateway):
    gateway.fake.fail_next(times=5, path="/chat/completions", status=429)
    with pytest.raises(openai.RateLimitError) as info:
        oai(gateway).chat.completions.create(
            model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers.get("retry-after") is not None
    assert len(gateway.fake.requests("/chat/completions")) == 2  # GATEWAY_RETRY_ATTEMPTS
    assert logs(1)[0].status == 429


def test_provider_500_once_is_retried_transparently(gateway):
    gateway.fake.fail_next(times=1, path="/v1/messages", status=500)
    message = ant(gateway).messages.create(
        model="anthropic-main/claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "echo: hi"
    assert len(gateway.fake.requests("/v1/messages")) == 2


def test_provider_credentials_rejected_is_a_502_without_details(gateway):
    gateway.fake.fail_next(times=1, path="/chat/completions", status=401)
    with pytest.raises(openai.InternalServerError) as info:
        oai(gateway).chat.completions.create(
            model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    assert gateway.fake.OPENAI_KEY not in info.value.response.text
    assert gateway.fake.url not in info.value.response.text


def test_timeout_header_bounds_the_call_with_504(gateway):
    gateway.fake.fail_next(times=1, path="/chat/completions", hang=True)
    started = time.monotonic()
    response = _post(
        gateway,
        {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        **{"x-gateway-request-timeout": "500"},
    )
    assert response.status_code == 504
    assert time.monotonic() - started < 3


def test_revoked_token_is_refused_within_the_bound(gateway):
    client = oai(gateway)
    client.chat.completions.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    from accounts.selectors import principal_for_user
    from accounts.services import pat_revoke

    token = PersonalAccessToken.objects.get(user=gateway.member)
    pat_revoke(actor=principal_for_user(gateway.member), token=token)
    deadline = time.monotonic() + 2.0
    while True:
        try:
            client.chat.completions.create(
                model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "revoked token still accepted after 2 s"
        time.sleep(0.05)


def test_client_disconnect_mid_stream_closes_the_upstream(gateway):
    gateway.fake.configure(chunks=200, chunk_delay_ms=50)
    with httpx.stream(
        "POST",
        f"{gateway.openai_base}/chat/completions",
        timeout=10,
        headers={"authorization": f"Bearer {gateway.member_token}"},
        json={
            "model": "openai-main/gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        gateway.fake.wait_for_stats(open_streams=1)
    started = time.monotonic()
    gateway.fake.wait_for_stats(timeout=3, open_streams=0)
    assert time.monotonic() - started < 1.5
    [record] = logs(1)
    assert record.error_type == "client_disconnected"


def test_no_token_or_key_in_request_logs(gateway):
    oai(gateway).chat.completions.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    ant(gateway).messages.create(
        model="anthropic-main/claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    rows = json.dumps([{k: str(v) for k, v in row.items()} for row in RequestLog.objects.values()])
    assert len(logs(2)) == 2
    for secret in (gateway.member_token, gateway.fake.OPENAI_KEY, gateway.fake.ANTHROPIC_KEY):
        assert secret not in rows


def test_upstream_allowlist_holds_at_call_time(gateway_factory, settings):
    settings.GATEWAY_UPSTREAM_ALLOWLIST = ["api.openai.com"]  # the fake's 127.0.0.1 is excluded
    with gateway_factory() as gw:
        with pytest.raises(openai.PermissionDeniedError):
            oai(gw).chat.completions.create(
                model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
        assert gw.fake.requests() == []
