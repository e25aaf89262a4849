"""Anthropic Messages API <-> OpenAI Chat Completions (the hub), both directions.

References: https://docs.anthropic.com/en/api/messages (requests and responses),
https://docs.anthropic.com/en/docs/build-with-claude/streaming (SSE events),
https://platform.openai.com/docs/api-reference/chat (the hub).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from proxy.translate._openai import (
    JSON,
    ChunkWriter,
    ToolChoice,
    TurnBuilders,
    assistant_tool_calls,
    cached_tokens,
    chat_completion,
    content_parts,
    content_text,
    data_url,
    expect_dict,
    expect_list,
    expect_str,
    function_tools,
    image_url,
    max_tokens,
    merge_same_role,
    parse_data_url,
    reject_unsupported,
    request_messages,
    split_turns,
    stop_sequences,
    tool_call,
    tool_call_id,
    tool_choice,
    tool_input_lenient,
    top_p,
    unit_temperature,
    usage,
)
from proxy.translate.errors import TranslationError

Event = tuple[str, JSON]

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI callers may omit it.

_STOP_FROM_OPENAI = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_FINISH_FROM_ANTHROPIC = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICE_TO_OPENAI = {"auto": "auto", "any": "required", "none": "none"}
_SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})  # reasoning is not replayable


# --- Anthropic request -> OpenAI request ------------------------------------------------------


def anthropic_request_to_openai(body: JSON) -> JSON:
    """Messages API request -> Chat Completions request (the caller sets the upstream model)."""
    out: JSON = {
        "model": expect_str(body.get("model"), "model"),
        "messages": [*_openai_system(body.get("system")), *_openai_messages(body)],
    }
    for source, target in (
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ):
        if body.get(source) is not None:
            out[target] = body[source]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        out["tools"] = _openai_tools(expect_list(body["tools"], "tools"))
        if body.get("tool_choice") is not None:
            out.update(_openai_tool_choice(expect_dict(body["tool_choice"], "tool_choice")))
    user_id = expect_dict(body.get("metadata") or {}, "metadata").get("user_id")
    if user_id:
        out["user"] = expect_str(user_id, "metadata.user_id")
    return out


def _anthropic_blocks(content: Any, field: str) -> list[JSON]:
    """A Messages `content` (string or blocks) as a list of typed blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = expect_list(content, field)
    for j, block in enumerate(blocks):
        expect_str(expect_dict(block, f"{field}[{j}]").get("type"), f"{field}[{j}].type")
    return blocks


def _block_text(block: JSON, field: str) -> str:
    """The text of a `text` block."""
    return expect_str(block.get("text"), f"{field}.text")


def _openai_system(system: Any) -> list[JSON]:
    """`system` (string or text blocks) -> one system message."""
    if not system:
        return []
    texts = []
    for j, block in enumerate(_anthropic_blocks(system, "system")):
        if block["type"] != "text":
            raise TranslationError(f"system[{j}].type", "only text blocks are allowed")
        texts.append(_block_text(block, f"system[{j}]"))
    return [{"role": "system", "content": "\n".join(texts)}]


def _openai_messages(body: JSON) -> list[JSON]:
    """`messages` -> Chat Completions messages (tool results become `tool` messages)."""
    out: list[JSON] = []
    for i, message in enumerate(request_messages(body)):
        field = f"messages[{i}]"
        blocks = _anthropic_blocks(message.get("content"), f"{field}.content")
        if message["role"] == "user":
            out.extend(_openai_user_messages(blocks, f"{field}.content"))
        elif message["role"] == "assistant":
            out.append(_openai_assistant_message(blocks, f"{field}.content"))
        else:
            raise TranslationError(f"{field}.role", "must be user or assistant")
    return out


def _openai_user_messages(blocks: list[JSON], field: str) -> list[JSON]:
    """A user turn -> its tool messages first (OpenAI wants them right after the call), then
    the user message."""
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        at = f"{field}[{j}]"
        if block["type"] == "tool_result":
            tool_messages.append(_openai_tool_message(block, at))
        elif block["type"] == "text":
            parts.append({"type": "text", "text": _block_text(block, at)})
        elif block["type"] == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_source_url(block, at)}})
        else:
            raise TranslationError(f"{at}.type", f"{block['type']!r} is not supported")
    if not parts:
        return tool_messages
    only_text = len(parts) == 1 and parts[0]["type"] == "text"
    return [*tool_messages, {"role": "user", "content": parts[0]["text"] if only_text else parts}]


def _image_source_url(block: JSON, field: str) -> str:
    """An image block's source as a data URL (base64) or its http(s) URL."""
    source = expect_dict(block.get("source"), f"{field}.source")
    if source.get("type") == "base64":
        media_type = expect_str(source.get("media_type"), f"{field}.source.media_type")
        return data_url(media_type, expect_str(source.get("data"), f"{field}.source.data"))
    if source.get("type") == "url":
        return expect_str(source.get("url"), f"{field}.source.url")
    raise TranslationError(f"{field}.source.type", f"{source.get('type')!r} is not supported")


def _openai_tool_message(block: JSON, field: str) -> JSON:
    """A `tool_result` block -> a `tool` message; `is_error` becomes an "Error: " prefix."""
    text = _tool_result_text(block.get("content"), f"{field}.content")
    if block.get("is_error"):
        text = f"Error: {text}"
    call_id = expect_str(block.get("tool_use_id"), f"{field}.tool_use_id")
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool_result_text(content: Any, field: str) -> str:
    """A `tool_result` content (string or text blocks) as text; OpenAI tool messages carry
    text only."""
    if content is None:
        return ""
    texts = []
    for j, block in enumerate(_anthropic_blocks(content, field)):
        if block["type"] != "text":
            raise TranslationError(f"{field}[{j}].type", "only text is supported in tool results")
        texts.append(_block_text(block, f"{field}[{j}]"))
    return "\n".join(texts)


def _openai_assistant_message(blocks: list[JSON], field: str) -> JSON:
    """An assistant turn -> content text plus `tool_calls` with JSON-string arguments."""
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(blocks):
        at = f"{field}[{j}]"
        if block["type"] == "text":
            texts.append(_block_text(block, at))
        elif block["type"] == "tool_use":
            call_id = expect_str(block.get("id"), f"{at}.id")
            name = expect_str(block.get("name"), f"{at}.name")
            calls.append(tool_call(call_id, name, expect_dict(block.get("input"), f"{at}.input")))
        elif block["type"] not in _SKIPPED_BLOCKS:
            raise TranslationError(f"{at}.type", f"{block['type']!r} is not supported")
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _openai_tools(tools: list[Any]) -> list[JSON]:
    """Client tools `{name, description, input_schema}` -> function tools."""
    out = []
    for i, tool in enumerate(tools):
        tool = expect_dict(tool, f"tools[{i}]")
        if tool.get("type", "custom") != "custom":
            raise TranslationError(f"tools[{i}].type", f"{tool['type']!r} is not supported")
        function: JSON = {"name": expect_str(tool.get("name"), f"tools[{i}].name")}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = expect_dict(tool.get("input_schema"), f"tools[{i}].input_schema")
        out.append({"type": "function", "function": function})
    return out


def _openai_tool_choice(choice: JSON) -> JSON:
    """`tool_choice` {auto|any|tool|none} -> `tool_choice` and `parallel_tool_calls`."""
    kind = choice.get("type")
    out: JSON = {}
    if kind in _TOOL_CHOICE_TO_OPENAI:
        out["tool_choice"] = _TOOL_CHOICE_TO_OPENAI[kind]
    elif kind == "tool":
        name = expect_str(choice.get("name"), "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise TranslationError("tool_choice.type", f"{kind!r} is not supported")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


# --- OpenAI response -> Anthropic response ----------------------------------------------------


def openai_response_to_anthropic(resp: JSON, model: str) -> JSON:
    """`chat.completion` -> Messages API `message`, named with the caller-facing `model`."""
    choices = resp.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[JSON] = [
        {"type": "text", "text": text}
        for text in (message.get("content"), message.get("refusal"))
        if text
    ]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function.get("name", ""),
                "input": tool_input_lenient(function.get("arguments") or ""),
            }
        )
    return {
        "id": _message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_FROM_OPENAI.get(choices[0].get("finish_reason") or "", "end_turn"),
        "stop_sequence": None,
        "usage": _anthropic_usage(resp.get("usage")),
    }


def _message_id(completion_id: str | None) -> str:
    """A `msg_` id derived from the upstream completion id, so logs can be correlated."""
    if not completion_id:
        return f"msg_{uuid.uuid4().hex}"
    return f"msg_{completion_id.removeprefix('chatcmpl-')}"


def _anthropic_usage(openai_usage: JSON | None) -> JSON:
    """CompletionUsage -> Messages usage; cached prompt tokens move to cache_read_input_tokens
    because Anthropic's `input_tokens` excludes them."""
    if not openai_usage:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = cached_tokens(openai_usage)
    out: JSON = {
        "input_tokens": int(openai_usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": int(openai_usage.get("completion_tokens") or 0),
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


# --- OpenAI stream -> Anthropic stream --------------------------------------------------------


class OpenAIToAnthropicStream:
    """`chat.completion.chunk` objects -> Messages SSE events (name, data).

    `message_delta` waits for the usage chunk that follows `finish_reason` (the request asked
    for `stream_options.include_usage`), or for `finish()` when the upstream sends none.
    Tool calls are expected in index order, as OpenAI streams them.
    """

    def __init__(self, model: str, message_id: str) -> None:
        self.model = model
        self.message_id = message_id
        self.usage: JSON | None = None  # the latest CompletionUsage seen, for the request log
        self._started = False
        self._done = False
        self._next_block = 0
        self._open_block: int | None = None
        self._open_is_text = False
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._tool_ids: dict[int, str] = {}  # OpenAI tool call index -> its call id
        self._stop_reason: str | None = None

    def feed(self, chunk: JSON) -> list[Event]:
        """Translate one parsed chunk."""
        if self._done:
            return []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        events = self._start()
        for choice in (chunk.get("choices") or [])[:1]:
            events += self._choice(choice)
        if self._stop_reason is not None and chunk.get("usage"):
            events += self._end()
        return events

    def finish(self) -> list[Event]:
        """Close whatever the upstream left open; call at `[DONE]` or end of stream."""
        if self._done:
            return []
        return [*self._start(), *self._close_block(), *self._end()]

    def _choice(self, choice: JSON) -> list[Event]:
        delta = choice.get("delta") or {}
        events: list[Event] = []
        for text in (delta.get("content"), delta.get("refusal")):
            if text:
                events += self._text(text)
        for call in delta.get("tool_calls") or []:
            events += self._tool_call(call)
        if choice.get("finish_reason"):
            events += self._close_block()
            self._stop_reason = _STOP_FROM_OPENAI.get(choice["finish_reason"], "end_turn")
        return events

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: JSON = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**_anthropic_usage(self.usage), "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _open(self, content_block: JSON, is_text: bool) -> list[Event]:
        events = self._close_block()
        self._open_block, self._open_is_text = self._next_block, is_text
        self._next_block += 1
        data = {"type": "content_block_start", "index": self._open_block}
        return [*events, ("content_block_start", {**data, "content_block": content_block})]

    def _close_block(self) -> list[Event]:
        if self._open_block is None:
            return []
        index, self._open_block = self._open_block, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _delta(self, index: int, delta: JSON) -> Event:
        data = {"type": "content_block_delta", "index": index, "delta": delta}
        return ("content_block_delta", data)

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open_block is None or not self._open_is_text:
            events = self._open({"type": "text", "text": ""}, is_text=True)
        index = self._next_block - 1  # the open text block is the latest one
        return [*events, self._delta(index, {"type": "text_delta", "text": text})]

    def _tool_call(self, call: JSON) -> list[Event]:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        events: list[Event] = []
        call_id = call.get("id")
        # A new id at a known index starts a new call: some compatible servers reuse index 0.
        if index not in self._tool_blocks or (call_id and call_id != self._tool_ids[index]):
            self._tool_ids[index] = call_id or f"toolu_{self.message_id}_{index}"
            name = function.get("name") or ""
            block: JSON = {
                "type": "tool_use",
                "id": self._tool_ids[index],
                "name": name,
                "input": {},
            }
            events = self._open(block, is_text=False)
            self._tool_blocks[index] = self._next_block - 1
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            events.append(self._delta(self._tool_blocks[index], delta))
        return events

    def _end(self) -> list[Event]:
        self._done = True
        delta = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
        message_delta = {"type": "message_delta", "delta": delta, "usage": self._delta_usage()}
        return [("message_delta", message_delta), ("message_stop", {"type": "message_stop"})]

    def _delta_usage(self) -> JSON:
        """Cumulative usage for `message_delta`; input tokens too, known only at the end."""
        if self.usage is None:
            return {"output_tokens": 0}
        return _anthropic_usage(self.usage)


# --- OpenAI request -> Anthropic request ------------------------------------------------------


def openai_request_to_anthropic(body: JSON, model_id: str) -> JSON:
    """Chat Completions request -> Messages API request for upstream model `model_id`."""
    reject_unsupported(body)
    system, turns = split_turns(body, ANTHROPIC_TURNS)
    out: JSON = {
        "model": model_id,
        "max_tokens": max_tokens(body) or DEFAULT_MAX_TOKENS,
        "messages": merge_same_role([turn for turn in turns if turn["content"]]),
    }
    if any(system):
        out["system"] = "\n\n".join(text for text in system if text)
    out.update(_anthropic_sampling(body))
    out.update(_anthropic_tools(body))
    return out


def _text_block(text: str) -> list[JSON]:
    """A text block, or none: the Messages API rejects blank text blocks."""
    return [{"type": "text", "text": text}] if text.strip() else []


def _anthropic_user_blocks(content: Any, field: str) -> list[JSON]:
    """User content parts -> text and image blocks."""
    blocks: list[JSON] = []
    for j, part in enumerate(content_parts(content, field)):
        at = f"{field}[{j}]"
        if part["type"] == "text":
            blocks += _text_block(expect_str(part.get("text"), f"{at}.text"))
        elif part["type"] == "image_url":
            blocks.append(_anthropic_image(image_url(part, at), f"{at}.image_url.url"))
        else:
            raise TranslationError(f"{at}.type", f"{part['type']!r} is not supported")
    return blocks


def _anthropic_image(url: str, field: str) -> JSON:
    """An image URL -> an image block: data URLs as base64 sources, http(s) as url sources."""
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, field)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError(field, "must be a base64 data URL or an http(s) URL")


def _anthropic_assistant_blocks(message: JSON, field: str) -> list[JSON]:
    """Assistant text (and refusal) parts -> text blocks; tool_calls -> tool_use blocks."""
    blocks: list[JSON] = []
    for j, part in enumerate(content_parts(message.get("content"), f"{field}.content")):
        if part["type"] not in ("text", "refusal"):
            at = f"{field}.content[{j}].type"
            raise TranslationError(at, f"{part['type']!r} is not supported")
        text = expect_str(part.get(part["type"]), f"{field}.content[{j}].{part['type']}")
        blocks += _text_block(text)
    for call in assistant_tool_calls(message, field):
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
    return blocks


def _anthropic_tool_result(message: JSON, field: str) -> JSON:
    """A `tool` message -> a `tool_result` block (sent in a user turn)."""
    block: JSON = {"type": "tool_result", "tool_use_id": tool_call_id(message, field)}
    text = content_text(message.get("content"), f"{field}.content")
    if text.strip():
        block["content"] = text
    return block


def _anthropic_sampling(body: JSON) -> JSON:
    """temperature, top_p, stop, stream and user -> their Messages API equivalents."""
    out: JSON = {}
    temperature = unit_temperature(body)
    if temperature is not None:
        out["temperature"] = temperature
    nucleus = top_p(body)
    if nucleus is not None:
        out["top_p"] = nucleus
    stops = stop_sequences(body)
    if stops:
        out["stop_sequences"] = stops
    if body.get("stream"):
        out["stream"] = True
    if body.get("user"):
        out["metadata"] = {"user_id": expect_str(body["user"], "user")}
    return out


def _anthropic_tools(body: JSON) -> JSON:
    """tools, tool_choice and parallel_tool_calls -> `tools` and `tool_choice`."""
    tools = function_tools(body)
    choice = tool_choice(body)
    if not tools:
        return {}
    out: JSON = {"tools": [_anthropic_tool(t.name, t.description, t.parameters) for t in tools]}
    parallel = body.get("parallel_tool_calls")
    if choice is None and parallel is False:
        choice = ToolChoice("auto")
    if choice is not None:
        out["tool_choice"] = {"type": choice.kind}
        if choice.name is not None:
            out["tool_choice"]["name"] = choice.name
        if parallel is False and choice.kind != "none":
            out["tool_choice"]["disable_parallel_tool_use"] = True
    return out


def _anthropic_tool(name: str, description: str | None, parameters: JSON) -> JSON:
    """One client tool definition."""
    tool: JSON = {"name": name}
    if description:
        tool["description"] = description
    tool["input_schema"] = parameters
    return tool


# --- Anthropic response -> OpenAI response ----------------------------------------------------


def anthropic_response_to_openai(resp: JSON, model: str, *, created: int | None = None) -> JSON:
    """Messages API `message` -> `chat.completion`, named with the caller-facing `model`."""
    texts: list[str] = []
    calls: list[JSON] = []
    for block in resp.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block["id"], block["name"], block.get("input") or {}))
    return chat_completion(
        completion_id=_completion_id(resp.get("id")),
        created=created,
        model=model,
        texts=texts,
        tool_calls=calls,
        finish_reason=_FINISH_FROM_ANTHROPIC.get(resp.get("stop_reason") or "", "stop"),
        usage=_openai_usage(resp.get("usage") or {}),
    )


def _completion_id(message_id: str | None) -> str | None:
    """A `chatcmpl-` id derived from the upstream message id."""
    return f"chatcmpl-{message_id.removeprefix('msg_')}" if message_id else None


def _openai_usage(anthropic_usage: JSON) -> JSON:
    """Messages usage -> CompletionUsage; cache reads and writes count as prompt tokens."""
    cache_read = int(anthropic_usage.get("cache_read_input_tokens") or 0)
    prompt = (
        int(anthropic_usage.get("input_tokens") or 0)
        + cache_read
        + int(anthropic_usage.get("cache_creation_input_tokens") or 0)
    )
    return usage(prompt, int(anthropic_usage.get("output_tokens") or 0), cache_read)


# --- Anthropic stream -> OpenAI stream --------------------------------------------------------


class AnthropicToOpenAIStream:
    """Messages SSE events -> `chat.completion.chunk` objects.

    `ping` and unknown events yield nothing; the caller must handle `error` events itself.
    Thinking blocks are dropped. `usage` holds the CompletionUsage once known.
    """

    def __init__(self, model: str, completion_id: str, created: int, include_usage: bool) -> None:
        self._writer = ChunkWriter(model, completion_id, created, include_usage)
        self._usage: JSON = {}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._handlers: dict[str, Callable[[JSON], list[JSON]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
        }

    @property
    def usage(self) -> JSON | None:
        """The CompletionUsage reported so far, or None."""
        return self._writer.usage

    def feed(self, event: str, data: JSON) -> list[JSON]:
        """Translate one event (its SSE `event:` name and parsed `data:`)."""
        handler = self._handlers.get(event)
        return handler(data) if handler else []

    def finish(self) -> list[JSON]:
        """Whatever is still owed when the upstream stream ended without `message_stop`."""
        return self._writer.close()

    def _record_usage(self, anthropic_usage: JSON | None) -> None:
        present = {k: v for k, v in (anthropic_usage or {}).items() if v is not None}
        if present:
            self._usage.update(present)
            self._writer.set_usage(_openai_usage(self._usage))

    def _message_start(self, data: JSON) -> list[JSON]:
        self._record_usage((data.get("message") or {}).get("usage"))
        return self._writer.start()

    def _block_start(self, data: JSON) -> list[JSON]:
        block = data.get("content_block") or {}
        if block.get("type") == "text":
            return self._writer.text(block.get("text", ""))
        if block.get("type") != "tool_use":
            return []
        index, chunks = self._writer.tool_start(block["id"], block["name"])
        self._tool_index[int(data.get("index", 0))] = index
        return chunks

    def _block_delta(self, data: JSON) -> list[JSON]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            return self._writer.text(delta.get("text", ""))
        tool = self._tool_index.get(int(data.get("index", 0)))
        if delta.get("type") == "input_json_delta" and tool is not None:
            return self._writer.tool_arguments(tool, delta.get("partial_json", ""))
        return []

    def _message_delta(self, data: JSON) -> list[JSON]:
        self._record_usage(data.get("usage"))
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is None:
            return []
        return self._writer.finish(_FINISH_FROM_ANTHROPIC.get(stop_reason, "stop"))

    def _message_stop(self, _data: JSON) -> list[JSON]:
        return self._writer.close()


# How requests for this dialect write their turns (see _openai.split_turns).
ANTHROPIC_TURNS = TurnBuilders(
    _anthropic_user_blocks, _anthropic_assistant_blocks, _anthropic_tool_result
)
