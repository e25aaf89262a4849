"""Plans: how one call goes to its provider and back, for each (caller dialect, provider kind).

Same dialect both ways passes bytes through (only the model name is rewritten on the way up);
other pairs translate through the OpenAI chat format (proxy.translate).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from providers.aws_sigv4 import AwsCredentials
from proxy import translate
from proxy.aws_eventstream import EventStreamDecoder, EventStreamError
from proxy.errors import Dialect, ProxyError, bad_request
from proxy.routing import Target
from proxy.sse import OPENAI_DONE, SseParser, anthropic_event, openai_chunk
from proxy.upstream import UpstreamCall, anthropic_call, bedrock_call, openai_call

Usage = tuple[int, int]
# Fields that name another host or key: never forwarded, whatever the nesting depth asked for.
DROPPED_FIELDS = (
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "azure_endpoint",
    "endpoint",
    "host",
    "url",
    "organization",
    "extra_headers",
    "extra_query",
)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class StreamConverter(ABC):
    """Bytes from the provider in, bytes for the caller out; counts usage as it passes."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.failed = False

    @abstractmethod
    def feed(self, chunk: bytes) -> bytes:
        """Convert what arrived; may return b"" while an event is incomplete."""

    def finish(self) -> bytes:
        return b""

    def usage(self) -> Usage:
        return self.input_tokens, self.output_tokens


@dataclass
class Plan:
    call: UpstreamCall
    stream: bool
    convert_response: Callable[[bytes], tuple[bytes, Usage]]
    stream_converter: Callable[[], StreamConverter]


def _clean(payload: dict[str, Any], model_id: str) -> dict[str, Any]:
    body = {k: v for k, v in payload.items() if k not in DROPPED_FIELDS}
    body["model"] = model_id
    return body


def _openai_usage(data: Any) -> Usage:
    usage = (data or {}).get("usage") or ((data or {}).get("response") or {}).get("usage") or {}
    return (
        int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0),
        int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0),
    )


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProxyError(
            502, "The provider answered with invalid JSON.", code="upstream_error"
        ) from exc


# --- OpenAI callers, OpenAI providers: bytes through ----------------------------------------


# A usage *object* in an event. With include_usage (which the gateway asks for) OpenAI puts
# `"usage":null` in every chunk, so testing for the key alone parsed every chunk's JSON
# (~5% of a streaming call's CPU); JSON's grammar makes an object value `"usage"\s*:\s*{`.
_USAGE_OBJECT = re.compile(r'"usage"\s*:\s*\{')


class OpenAIPassthroughStream(StreamConverter):
    """SSE through as received; usage read from the usage chunk, dropped if not asked for."""

    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__()
        self.parser = SseParser()
        self.client_wants_usage = client_wants_usage

    def feed(self, chunk: bytes) -> bytes:
        out = []
        for event in self.parser.feed(chunk):
            if _USAGE_OBJECT.search(event.data) and event.data != "[DONE]":
                data = json.loads(event.data)
                if data.get("usage") or (data.get("response") or {}).get("usage"):
                    self.input_tokens, self.output_tokens = _openai_usage(data)
                    if not self.client_wants_usage and data.get("choices") == []:
                        continue
            out.append(event.raw)
        return b"".join(out)


def openai_passthrough(target: Target, endpoint: str, payload: dict[str, Any]) -> Plan:
    body = _clean(payload, target.model_id)
    stream = bool(body.get("stream"))
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if stream and endpoint == "chat/completions":
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}

    def convert(raw: bytes) -> tuple[bytes, Usage]:
        return raw, _openai_usage(_json(raw))

    return Plan(
        openai_call(target, endpoint, _dumps(body)),
        stream,
        convert,
        lambda: OpenAIPassthroughStream(wants_usage),
    )


# --- Anthropic callers, Anthropic providers: bytes through ----------------------------------


class AnthropicPassthroughStream(StreamConverter):
    def __init__(self) -> None:
        super().__init__()
        self.parser = SseParser()

    def feed(self, chunk: bytes) -> bytes:
        events = self.parser.feed(chunk)
        for event in events:
            if event.event == "message_start":
                usage = json.loads(event.data)["message"].get("usage") or {}
                self.input_tokens = int(usage.get("input_tokens", 0))
            elif event.event == "message_delta":
                usage = json.loads(event.data).get("usage") or {}
                self.output_tokens = int(usage.get("output_tokens", self.output_tokens))
        return b"".join(e.raw for e in events)


def _anthropic_usage(data: Any) -> Usage:
    usage = data.get("usage") or {}
    return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))


def anthropic_passthrough(target: Target, payload: dict[str, Any]) -> Plan:
    body = _clean(payload, target.model_id)

    def convert(raw: bytes) -> tuple[bytes, Usage]:
        return raw, _anthropic_usage(_json(raw))

    return Plan(
        anthropic_call(target, _dumps(body)),
        bool(body.get("stream")),
        convert,
        AnthropicPassthroughStream,
    )


# --- translated pairs ------------------------------------------------------------------------


class ChunksToOpenAI(StreamConverter):
    """Provider events -> OpenAI chunks via a translate.*ToOpenAI converter."""

    def __init__(
        self,
        events: Callable[[bytes], list[tuple[str, dict[str, Any]]]],
        converter: Any,
        include_usage: bool,
    ) -> None:
        super().__init__()
        self.events = events
        self.converter = converter
        self.include_usage = include_usage

    def _emit(self, chunks: list[dict[str, Any]]) -> bytes:
        out = []
        for chunk in chunks:
            if chunk.get("usage"):
                self.input_tokens, self.output_tokens = _openai_usage(chunk)
                if not self.include_usage and not chunk.get("choices"):
                    continue
            out.append(openai_chunk(chunk))
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        events = self.events(chunk)
        for name, data in events:
            if name == "message_start":
                # Anthropic counts the prompt up front: known even if the stream is cut short.
                usage = (data.get("message") or {}).get("usage") or {}
                self.input_tokens = int(usage.get("input_tokens", 0) or 0)
        return self._emit([c for name, data in events for c in self.converter.feed(name, data)])

    def finish(self) -> bytes:
        return self._emit(self.converter.finish()) + OPENAI_DONE


class OpenAIChunksToAnthropic(StreamConverter):
    """OpenAI chunks (from SSE, or from another converter) -> Anthropic events."""

    def __init__(
        self,
        model: str,
        chunks: Callable[[bytes], list[dict[str, Any]]],
        finish_chunks: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__()
        self.chunks = chunks
        self.finish_chunks = finish_chunks
        self.converter = translate.OpenAIToAnthropicStream(model, f"msg_{uuid.uuid4().hex[:24]}")

    def _emit(self, chunks: list[dict[str, Any]]) -> bytes:
        out = []
        for chunk in chunks:
            if chunk.get("usage"):
                self.input_tokens, self.output_tokens = _openai_usage(chunk)
            out += [anthropic_event(n, d) for n, d in self.converter.feed(chunk)]
        return b"".join(out)

    def feed(self, chunk: bytes) -> bytes:
        return self._emit(self.chunks(chunk))

    def finish(self) -> bytes:
        tail = self._emit(self.finish_chunks()) if self.finish_chunks else b""
        return tail + b"".join(anthropic_event(n, d) for n, d in self.converter.finish())


def _sse_events(parser: SseParser) -> Callable[[bytes], list[tuple[str, dict[str, Any]]]]:
    def parse(chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
        return [
            (e.event, json.loads(e.data))
            for e in parser.feed(chunk)
            if e.data and e.data != "[DONE]"
        ]

    return parse


def _openai_sse_chunks(parser: SseParser) -> Callable[[bytes], list[dict[str, Any]]]:
    def parse(chunk: bytes) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in parser.feed(chunk) if e.data and e.data != "[DONE]"]

    return parse


def _eventstream_events(
    decoder: EventStreamDecoder,
) -> Callable[[bytes], list[tuple[str, dict[str, Any]]]]:
    def parse(chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
        try:
            events = decoder.feed(chunk)
        except EventStreamError as exc:
            raise ProxyError(
                502, "The provider's stream was corrupt.", code="upstream_error"
            ) from exc
        out = []
        for event in events:
            if event.message_type != "event":
                raise ProxyError(
                    502, "The provider reported an error mid-stream.", code="upstream_error"
                )
            out.append((event.event_type or "", json.loads(event.payload or b"{}")))
        return out

    return parse


def _completion_ids() -> tuple[str, int]:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())


def openai_to_anthropic_provider(target: Target, payload: dict[str, Any], model: str) -> Plan:
    body = translate.openai_request_to_anthropic(payload, target.model_id)
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))

    def convert(raw: bytes) -> tuple[bytes, Usage]:
        data = _json(raw)
        return _dumps(translate.anthropic_response_to_openai(data, model)), _anthropic_usage(data)

    def stream() -> StreamConverter:
        cid, created = _completion_ids()
        return ChunksToOpenAI(
            _sse_events(SseParser()),
            translate.AnthropicToOpenAIStream(model, cid, created, True),
            include_usage,
        )

    return Plan(anthropic_call(target, _dumps(body)), bool(body.get("stream")), convert, stream)


def anthropic_to_openai_provider(target: Target, payload: dict[str, Any], model: str) -> Plan:
    body = translate.anthropic_request_to_openai(payload)
    body["model"] = target.model_id
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}

    def convert(raw: bytes) -> tuple[bytes, Usage]:
        data = _json(raw)
        return _dumps(translate.openai_response_to_anthropic(data, model)), _openai_usage(data)

    return Plan(
        openai_call(target, "chat/completions", _dumps(body)),
        bool(body.get("stream")),
        convert,
        lambda: OpenAIChunksToAnthropic(model, _openai_sse_chunks(SseParser())),
    )


def _converse_usage(data: Any) -> Usage:
    usage = data.get("usage") or {}
    return int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))


def openai_to_bedrock(
    target: Target, payload: dict[str, Any], model: str, aws: AwsCredentials | None = None
) -> Plan:
    stream = bool(payload.get("stream"))
    body = translate.openai_request_to_converse(payload)
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))

    def convert(raw: bytes) -> tuple[bytes, Usage]:
        data = _json(raw)
        return _dumps(translate.converse_response_to_openai(data, model)), _converse_usage(data)

    def converter() -> StreamConverter:
        cid, created = _completion_ids()
        return ChunksToOpenAI(
            _eventstream_events(EventStreamDecoder()),
            translate.ConverseStreamToOpenAI(model, cid, created, True),
            include_usage,
        )

    return Plan(
        bedrock_call(target, _dumps(body), stream=stream, credentials=aws),
        stream,
        convert,
        converter,
    )


def anthropic_to_bedrock(
    target: Target, payload: dict[str, Any], model: str, aws: AwsCredentials | None = None
) -> Plan:
    as_openai = translate.anthropic_request_to_openai(payload)
    stream = bool(as_openai.get("stream"))
    body = translate.openai_request_to_converse(as_openai)

    def convert(raw: bytes) -> tuple[bytes, Usage]:
        data = _json(raw)
        chat = translate.converse_response_to_openai(data, model)
        return _dumps(translate.openai_response_to_anthropic(chat, model)), _converse_usage(data)

    def converter() -> StreamConverter:
        cid, created = _completion_ids()
        events = _eventstream_events(EventStreamDecoder())
        inner = translate.ConverseStreamToOpenAI(model, cid, created, True)
        return OpenAIChunksToAnthropic(
            model,
            lambda chunk: [c for n, d in events(chunk) for c in inner.feed(n, d)],
            inner.finish,
        )

    return Plan(
        bedrock_call(target, _dumps(body), stream=stream, credentials=aws),
        stream,
        convert,
        converter,
    )


def plan_for(
    dialect: Dialect,
    endpoint: str,
    target: Target,
    payload: dict[str, Any],
    aws: AwsCredentials | None = None,
) -> Plan:
    """The plan for this call, or a 400 when the model's provider cannot serve the endpoint."""
    model = str(payload["model"])
    try:
        if endpoint in ("embeddings", "responses"):
            if target.kind != "openai":
                raise bad_request(f"Model '{model}' does not support /v1/{endpoint}.", "model")
            return openai_passthrough(target, endpoint, payload)
        if dialect == "openai":
            if target.kind == "openai":
                return openai_passthrough(target, "chat/completions", payload)
            if target.kind == "anthropic":
                return openai_to_anthropic_provider(target, payload, model)
            return openai_to_bedrock(target, payload, model, aws)
        if target.kind == "anthropic":
            return anthropic_passthrough(target, payload)
        if target.kind == "openai":
            return anthropic_to_openai_provider(target, payload, model)
        return anthropic_to_bedrock(target, payload, model, aws)
    except translate.TranslationError as exc:
        raise bad_request(str(exc), exc.field) from exc


# --- provider errors ---------------------------------------------------------------------------

_KEYLIKE = re.compile(r"(sk|key|AKIA|ASIA)[-_A-Za-z0-9*]{6,}")


def _provider_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    message = (error or {}).get("message") if isinstance(error, dict) else None
    message = message or (data.get("message") if isinstance(data, dict) else None)
    return str(message or "")[:500]


async def upstream_error(response: httpx.Response, target: Target) -> ProxyError:
    """The caller-facing error for a provider's error answer; no credentials, no hosts."""
    try:
        raw = await response.aread()
    except httpx.HTTPError:
        raw = b""
    status = response.status_code
    if status < 400:
        # A redirect (or any other non-2xx answer) is never followed nor passed on: following
        # it would send the key to wherever `Location` points, passing it on would hand the
        # caller a body the gateway cannot vouch for.
        return ProxyError(
            502,
            f"The provider answered HTTP {status}; the gateway does not follow redirects.",
            code="upstream_error",
        )
    if status in (401, 403):
        # The provider refused the gateway's key: that is our fault, not the caller's.
        return ProxyError(
            502,
            "The provider rejected the gateway's credentials for this model.",
            code="upstream_auth_failed",
        )
    message = _provider_message(raw)
    for secret in target.secrets.values():
        if isinstance(secret, str) and secret:
            message = message.replace(secret, "[redacted]")
    message = _KEYLIKE.sub("[redacted]", message).replace(target.base_url, "[provider]")
    headers = []
    if status == 429 and response.headers.get("retry-after"):
        headers.append((b"retry-after", response.headers["retry-after"].encode()))
    text = f"Provider error: {message}" if message else f"The provider answered HTTP {status}."
    return ProxyError(status if status < 600 else 502, text, code="upstream_error", headers=headers)
