"""AWS Bedrock Converse API <-> OpenAI Chat Completions (the hub).

References: Bedrock Runtime API reference for Converse and ConverseStream
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html), and
botocore's bedrock-runtime service model for the exact shapes. Over the REST JSON API, blobs
such as image bytes travel base64-encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.translate._openai import (
    JSON,
    ChunkWriter,
    TurnBuilders,
    assistant_tool_calls,
    chat_completion,
    content_parts,
    content_text,
    expect_str,
    function_tools,
    image_url,
    max_tokens,
    merge_same_role,
    parse_data_url,
    reject_unsupported,
    split_turns,
    stop_sequences,
    tool_call,
    tool_call_id,
    tool_choice,
    top_p,
    unit_temperature,
    usage,
)
from proxy.translate.errors import TranslationError

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_FINISH_FROM_CONVERSE = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


# --- OpenAI request -> Converse request -------------------------------------------------------


def openai_request_to_converse(body: JSON) -> JSON:
    """Chat Completions request -> Converse request body.

    The model id goes in the URL path (/model/{modelId}/converse or /converse-stream), so it
    and `stream` are not part of the body.
    """
    reject_unsupported(body)
    system, turns = split_turns(body, CONVERSE_TURNS)
    out: JSON = {"messages": merge_same_role([turn for turn in turns if turn["content"]])}
    if any(system):
        out["system"] = [{"text": text} for text in system if text]
    inference = _inference_config(body)
    if inference:
        out["inferenceConfig"] = inference
    tool_config = _tool_config(body, out["messages"])
    if tool_config:
        out["toolConfig"] = tool_config
    return out


def _text_block(text: str) -> list[JSON]:
    """A text block, or none: Converse rejects blank text blocks."""
    return [{"text": text}] if text.strip() else []


def _converse_user_blocks(content: Any, field: str) -> list[JSON]:
    """User content parts -> text and image blocks."""
    blocks: list[JSON] = []
    for j, part in enumerate(content_parts(content, field)):
        at = f"{field}[{j}]"
        if part["type"] == "text":
            blocks += _text_block(expect_str(part.get("text"), f"{at}.text"))
        elif part["type"] == "image_url":
            blocks.append(_converse_image(image_url(part, at), f"{at}.image_url.url"))
        else:
            raise TranslationError(f"{at}.type", f"{part['type']!r} is not supported")
    return blocks


def _converse_image(url: str, field: str) -> JSON:
    """A base64 data URL -> an image block; Converse takes bytes, not URLs to fetch."""
    if not url.startswith("data:"):
        raise TranslationError(field, "Bedrock accepts images only as base64 data URLs")
    media_type, data = parse_data_url(url, field)
    image_format = _IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise TranslationError(field, f"image type {media_type!r} is not supported")
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _converse_assistant_blocks(message: JSON, field: str) -> list[JSON]:
    """Assistant text (and refusal) parts -> text blocks; tool_calls -> toolUse blocks."""
    blocks: list[JSON] = []
    for j, part in enumerate(content_parts(message.get("content"), f"{field}.content")):
        if part["type"] not in ("text", "refusal"):
            at = f"{field}.content[{j}].type"
            raise TranslationError(at, f"{part['type']!r} is not supported")
        text = expect_str(part.get(part["type"]), f"{field}.content[{j}].{part['type']}")
        blocks += _text_block(text)
    for call in assistant_tool_calls(message, field):
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.input}})
    return blocks


def _converse_tool_result(message: JSON, field: str) -> JSON:
    """A `tool` message -> a toolResult block (sent in a user turn)."""
    text = content_text(message.get("content"), f"{field}.content")
    result = {"toolUseId": tool_call_id(message, field), "content": _text_block(text)}
    return {"toolResult": result}


def _inference_config(body: JSON) -> JSON:
    """max tokens, temperature, top_p and stop -> inferenceConfig."""
    config: JSON = {}
    limit = max_tokens(body)
    if limit is not None:
        config["maxTokens"] = limit
    temperature = unit_temperature(body)
    if temperature is not None:
        config["temperature"] = temperature
    nucleus = top_p(body)
    if nucleus is not None:
        config["topP"] = nucleus
    stops = stop_sequences(body)
    if stops:
        config["stopSequences"] = stops
    return config


def _tool_config(body: JSON, messages: list[JSON]) -> JSON | None:
    """tools and tool_choice -> toolConfig.

    Converse has no "none" choice: without tool blocks in the history the tools are withheld;
    with them Converse insists on toolConfig, so the tools stay offered with the default (auto).
    """
    tools = [
        {"toolSpec": _tool_spec(t.name, t.description, t.parameters)} for t in function_tools(body)
    ]
    choice = tool_choice(body)
    if not tools:
        return None
    if choice is not None and choice.kind == "none":
        return {"tools": tools} if _has_tool_blocks(messages) else None
    config: JSON = {"tools": tools}
    if choice is not None:
        config["toolChoice"] = {choice.kind: {"name": choice.name} if choice.name else {}}
    return config


def _tool_spec(name: str, description: str | None, parameters: JSON) -> JSON:
    """One toolSpec."""
    spec: JSON = {"name": name}
    if description:
        spec["description"] = description
    spec["inputSchema"] = {"json": parameters}
    return spec


def _has_tool_blocks(messages: list[JSON]) -> bool:
    """Whether any turn carries toolUse or toolResult blocks."""
    return any(
        "toolUse" in block or "toolResult" in block
        for message in messages
        for block in message["content"]
    )


# --- Converse response -> OpenAI response -----------------------------------------------------


def converse_response_to_openai(
    resp: JSON, model: str, *, completion_id: str | None = None, created: int | None = None
) -> JSON:
    """Converse response -> `chat.completion`; Converse has no response id, so one is made."""
    texts: list[str] = []
    calls: list[JSON] = []
    for block in ((resp.get("output") or {}).get("message") or {}).get("content") or []:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(tool_call(use["toolUseId"], use["name"], use.get("input") or {}))
    return chat_completion(
        completion_id=completion_id,
        created=created,
        model=model,
        texts=texts,
        tool_calls=calls,
        finish_reason=_FINISH_FROM_CONVERSE.get(resp.get("stopReason") or "", "stop"),
        usage=_openai_usage(resp.get("usage") or {}),
    )


def _openai_usage(converse_usage: JSON) -> JSON:
    """TokenUsage -> CompletionUsage; cache reads and writes count as prompt tokens."""
    cache_read = int(converse_usage.get("cacheReadInputTokens") or 0)
    prompt = (
        int(converse_usage.get("inputTokens") or 0)
        + cache_read
        + int(converse_usage.get("cacheWriteInputTokens") or 0)
    )
    return usage(prompt, int(converse_usage.get("outputTokens") or 0), cache_read)


# --- ConverseStream -> OpenAI stream ----------------------------------------------------------


class ConverseStreamToOpenAI:
    """ConverseStream events -> `chat.completion.chunk` objects.

    `feed` takes the event type (the `:event-type` header) and its payload, e.g.
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}). Exception events
    yield nothing: the caller must handle them. `usage` holds the CompletionUsage once known.
    """

    def __init__(self, model: str, completion_id: str, created: int, include_usage: bool) -> None:
        self._writer = ChunkWriter(model, completion_id, created, include_usage)
        self._tool_index: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool call index
        self._handlers: dict[str, Callable[[JSON], list[JSON]]] = {
            "messageStart": lambda _payload: self._writer.start(),
            "contentBlockStart": self._block_start,
            "contentBlockDelta": self._block_delta,
            "messageStop": self._message_stop,
            "metadata": self._metadata,
        }

    @property
    def usage(self) -> JSON | None:
        """The CompletionUsage reported so far, or None."""
        return self._writer.usage

    def feed(self, event_type: str, payload: JSON) -> list[JSON]:
        """Translate one event."""
        handler = self._handlers.get(event_type)
        return handler(payload) if handler else []

    def finish(self) -> list[JSON]:
        """Whatever is still owed when the stream ends (after `metadata`, or early)."""
        return self._writer.close()

    def _block_start(self, payload: JSON) -> list[JSON]:
        use = (payload.get("start") or {}).get("toolUse")
        if not use:
            return []
        index, chunks = self._writer.tool_start(use["toolUseId"], use["name"])
        self._tool_index[int(payload.get("contentBlockIndex", 0))] = index
        return chunks

    def _block_delta(self, payload: JSON) -> list[JSON]:
        delta = payload.get("delta") or {}
        if "text" in delta:
            return self._writer.text(delta["text"])
        tool = self._tool_index.get(int(payload.get("contentBlockIndex", 0)))
        if "toolUse" in delta and tool is not None:
            return self._writer.tool_arguments(tool, delta["toolUse"].get("input", ""))
        return []

    def _message_stop(self, payload: JSON) -> list[JSON]:
        stop_reason = payload.get("stopReason") or ""
        return self._writer.finish(_FINISH_FROM_CONVERSE.get(stop_reason, "stop"))

    def _metadata(self, payload: JSON) -> list[JSON]:
        if payload.get("usage"):
            self._writer.set_usage(_openai_usage(payload["usage"]))
        return self._writer.usage_chunk()


# How requests for this dialect write their turns (see _openai.split_turns).
CONVERSE_TURNS = TurnBuilders(
    _converse_user_blocks, _converse_assistant_blocks, _converse_tool_result
)
