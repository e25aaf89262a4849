"""Readers and writers for the hub format, OpenAI Chat Completions, shared by every dialect.

Reference: https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from proxy.translate.errors import TranslationError

JSON = dict[str, Any]

_DATA_URL = re.compile(
    r"^data:(?P<media>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[^;,]*)*;base64,(?P<data>.*)$"
)

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object only, with no other text."


class FunctionTool(NamedTuple):
    """One `tools[]` entry of type "function"."""

    name: str
    description: str | None
    parameters: JSON


class ToolCall(NamedTuple):
    """One assistant `tool_calls[]` entry with its arguments parsed."""

    id: str
    name: str
    input: JSON


class ToolChoice(NamedTuple):
    """A dialect-neutral tool choice: kind is auto, any, none or tool (with `name`)."""

    kind: str
    name: str | None = None


def expect_dict(value: Any, field: str) -> JSON:
    """Return `value` if it is a JSON object, else raise naming `field`."""
    if not isinstance(value, dict):
        raise TranslationError(field, "must be an object")
    return value


def expect_list(value: Any, field: str) -> list[Any]:
    """Return `value` if it is a JSON array, else raise naming `field`."""
    if not isinstance(value, list):
        raise TranslationError(field, "must be an array")
    return value


def expect_str(value: Any, field: str) -> str:
    """Return `value` if it is a string, else raise naming `field`."""
    if not isinstance(value, str):
        raise TranslationError(field, "must be a string")
    return value


def request_messages(body: JSON) -> list[JSON]:
    """The request's `messages`, each checked to be an object with a role."""
    messages = expect_list(body.get("messages"), "messages")
    for i, message in enumerate(messages):
        expect_str(expect_dict(message, f"messages[{i}]").get("role"), f"messages[{i}].role")
    return messages


def content_parts(content: Any, field: str) -> list[JSON]:
    """A message `content` (string, parts or null) as a list of typed parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    parts = expect_list(content, field)
    for j, part in enumerate(parts):
        expect_str(expect_dict(part, f"{field}[{j}]").get("type"), f"{field}[{j}].type")
    return parts


def content_text(content: Any, field: str) -> str:
    """A text-only `content` (system, developer and tool messages) as one string."""
    texts = []
    for j, part in enumerate(content_parts(content, field)):
        if part["type"] != "text":
            raise TranslationError(f"{field}[{j}].type", f"{part['type']!r} is not allowed here")
        texts.append(expect_str(part.get("text"), f"{field}[{j}].text"))
    return "\n".join(texts)


def parse_data_url(url: str, field: str) -> tuple[str, str]:
    """Split a base64 `data:` URL (RFC 2397) into its media type and base64 payload."""
    match = _DATA_URL.match(url)
    if match is None:
        raise TranslationError(field, "must be a base64 data URL or an http(s) URL")
    return match["media"].lower(), match["data"]


def data_url(media_type: str, data: str) -> str:
    """A base64 `data:` URL (RFC 2397)."""
    return f"data:{media_type};base64,{data}"


def image_url(part: JSON, field: str) -> str:
    """The URL of the `image_url` content part at `field`."""
    image = expect_dict(part.get("image_url"), f"{field}.image_url")
    return expect_str(image.get("url"), f"{field}.image_url.url")


def tool_input(arguments: Any, field: str) -> JSON:
    """Parse a tool call's JSON-string `arguments` into the object it encodes."""
    text = expect_str(arguments, field)
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranslationError(field, f"is not valid JSON ({exc.msg})") from exc
    return expect_dict(value, field)


def tool_input_lenient(arguments: str) -> JSON:
    """Parse model-generated `arguments`, keeping unparsable text under "_raw_arguments"."""
    try:
        return tool_input(arguments, "arguments")
    except TranslationError:
        return {"_raw_arguments": arguments}


def assistant_tool_calls(message: JSON, field: str) -> list[ToolCall]:
    """The function tool calls of an assistant message."""
    calls = []
    for k, call in enumerate(expect_list(message.get("tool_calls") or [], f"{field}.tool_calls")):
        at = f"{field}.tool_calls[{k}]"
        call = expect_dict(call, at)
        if call.get("type", "function") != "function":
            raise TranslationError(f"{at}.type", f"{call.get('type')!r} is not supported")
        function = expect_dict(call.get("function"), f"{at}.function")
        calls.append(
            ToolCall(
                id=expect_str(call.get("id"), f"{at}.id"),
                name=expect_str(function.get("name"), f"{at}.function.name"),
                input=tool_input(function.get("arguments", ""), f"{at}.function.arguments"),
            )
        )
    return calls


def tool_call_id(message: JSON, field: str) -> str:
    """The `tool_call_id` a tool message answers."""
    return expect_str(message.get("tool_call_id"), f"{field}.tool_call_id")


def function_tools(body: JSON) -> list[FunctionTool]:
    """The request's `tools`, which must all be functions."""
    tools = []
    for i, tool in enumerate(expect_list(body.get("tools") or [], "tools")):
        tool = expect_dict(tool, f"tools[{i}]")
        if tool.get("type") != "function":
            raise TranslationError(f"tools[{i}].type", f"{tool.get('type')!r} is not supported")
        function = expect_dict(tool.get("function"), f"tools[{i}].function")
        tools.append(
            FunctionTool(
                name=expect_str(function.get("name"), f"tools[{i}].function.name"),
                description=function.get("description"),
                parameters=function.get("parameters") or {"type": "object", "properties": {}},
            )
        )
    return tools


def tool_choice(body: JSON) -> ToolChoice | None:
    """The request's `tool_choice` in dialect-neutral form, or None when absent."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    kinds = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in kinds:
        return ToolChoice(kinds[choice])
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = expect_dict(choice.get("function"), "tool_choice.function")
        return ToolChoice("tool", expect_str(function.get("name"), "tool_choice.function.name"))
    raise TranslationError("tool_choice", "must be auto, required, none or a named function")


def reject_unsupported(body: JSON) -> None:
    """Raise for hub features no other dialect can express."""
    if body.get("n") not in (None, 1):
        raise TranslationError("n", "only one choice (n=1) is supported by this model")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise TranslationError(legacy, "is deprecated; use tools and tool_choice")


def max_tokens(body: JSON) -> int | None:
    """The output token limit: `max_completion_tokens`, else the older `max_tokens`."""
    field = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TranslationError(field, "must be a positive integer")
    return value


def unit_temperature(body: JSON) -> float | None:
    """`temperature`, which must lie in [0, 1] for Anthropic and Bedrock (OpenAI allows 2)."""
    value = body.get("temperature")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise TranslationError("temperature", "must be a number between 0 and 1 for this model")
    return value


def top_p(body: JSON) -> float | None:
    """`top_p`, omitted at its default of 1: newer Claude models refuse it beside temperature."""
    value = body.get("top_p")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise TranslationError("top_p", "must be a number between 0 and 1")
    return None if value == 1 else value


def stop_sequences(body: JSON) -> list[str] | None:
    """`stop` (a string or a list of strings) as a list."""
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    return [expect_str(s, f"stop[{i}]") for i, s in enumerate(expect_list(stop, "stop"))]


def json_instruction(body: JSON) -> str | None:
    """A system instruction standing in for `response_format` on dialects without JSON mode."""
    response_format = body.get("response_format")
    if response_format is None:
        return None
    kind = expect_dict(response_format, "response_format").get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = expect_dict(response_format.get("json_schema"), "response_format.json_schema")
        schema = json.dumps(spec.get("schema", {}), separators=(",", ":"))
        return f"{JSON_OBJECT_INSTRUCTION} It must conform to this JSON Schema: {schema}"
    raise TranslationError("response_format.type", f"{kind!r} is not supported")


def merge_same_role(messages: list[JSON]) -> list[JSON]:
    """Join consecutive messages of one role, for dialects that require alternating turns."""
    merged: list[JSON] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1]["content"].extend(message["content"])
        else:
            merged.append({"role": message["role"], "content": list(message["content"])})
    return merged


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> JSON:
    """A CompletionUsage object; `prompt_tokens` includes cached ones."""
    out: JSON = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return out


def cached_tokens(usage: JSON) -> int:
    """`usage.prompt_tokens_details.cached_tokens`, 0 when absent."""
    details = usage.get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def tool_call(call_id: str, name: str, arguments: Any) -> JSON:
    """An assistant `tool_calls[]` entry with `arguments` encoded as a JSON string."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def chat_completion(
    *,
    completion_id: str | None,
    created: int | None,
    model: str,
    texts: list[str],
    tool_calls: list[JSON],
    finish_reason: str,
    usage: JSON | None,
) -> JSON:
    """A non-streaming `chat.completion` object with one choice."""
    message: JSON = {"role": "assistant", "content": "".join(texts) or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    out: JSON = {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def new_completion_id() -> str:
    """A fresh `chatcmpl-` id for upstreams whose responses carry none."""
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChunkWriter:
    """Builds the `chat.completion.chunk` objects of one streamed choice, in protocol order.

    The first chunk carries the assistant role; the finish reason is sent once; the usage chunk
    (empty `choices`) only when the caller asked for `stream_options.include_usage`.
    """

    def __init__(self, model: str, completion_id: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.usage: JSON | None = None
        self._started = False
        self._finished = False
        self._usage_sent = False
        self._tool_count = 0

    def _chunk(self, choices: list[JSON]) -> JSON:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _delta(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return self._chunk([choice])

    def start(self) -> list[JSON]:
        """The role chunk, once."""
        if self._started:
            return []
        self._started = True
        return [self._delta({"role": "assistant", "content": ""})]

    def text(self, text: str) -> list[JSON]:
        """A content delta."""
        if not text:
            return []
        return [*self.start(), self._delta({"content": text})]

    def tool_start(self, call_id: str, name: str) -> tuple[int, list[JSON]]:
        """Open a tool call; returns its `index` and the chunk announcing id and name."""
        index = self._tool_count
        self._tool_count += 1
        call = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return index, [*self.start(), self._delta({"tool_calls": [call]})]

    def tool_arguments(self, index: int, fragment: str) -> list[JSON]:
        """A fragment of a tool call's JSON `arguments`."""
        if not fragment:
            return []
        call = {"index": index, "function": {"arguments": fragment}}
        return [*self.start(), self._delta({"tool_calls": [call]})]

    def finish(self, finish_reason: str) -> list[JSON]:
        """The chunk carrying `finish_reason`, once."""
        if self._finished:
            return []
        self._finished = True
        return [*self.start(), self._delta({}, finish_reason)]

    def set_usage(self, value: JSON) -> None:
        """Record the latest token counts (CompletionUsage)."""
        self.usage = value

    def usage_chunk(self) -> list[JSON]:
        """The final usage chunk, once, when requested and known."""
        if not self.include_usage or self.usage is None or self._usage_sent:
            return []
        self._usage_sent = True
        chunk = self._chunk([])
        chunk["usage"] = self.usage
        return [chunk]

    def close(self) -> list[JSON]:
        """Whatever is still owed when the upstream stream ends early."""
        return [*self.start(), *self.finish("stop"), *self.usage_chunk()]


@dataclass(frozen=True)
class TurnBuilders:
    """How a target dialect writes user content, assistant messages and tool results."""

    user: Callable[[Any, str], list[JSON]]  # (content, field)
    assistant: Callable[[JSON, str], list[JSON]]  # (message, field)
    tool_result: Callable[[JSON, str], JSON]  # (message, field)


def split_turns(body: JSON, builders: TurnBuilders) -> tuple[list[str], list[JSON]]:
    """A request's system texts (with any JSON-mode instruction) and its user/assistant turns.

    Tool results become user turns, as both the Messages and the Converse APIs want them.
    """
    system: list[str] = []
    turns: list[JSON] = []
    for i, message in enumerate(request_messages(body)):
        field, role = f"messages[{i}]", message["role"]
        if role in ("system", "developer"):
            system.append(content_text(message.get("content"), f"{field}.content"))
        elif role == "user":
            content = builders.user(message.get("content"), f"{field}.content")
            turns.append({"role": "user", "content": content})
        elif role == "assistant":
            turns.append({"role": "assistant", "content": builders.assistant(message, field)})
        elif role == "tool":
            turns.append({"role": "user", "content": [builders.tool_result(message, field)]})
        else:
            raise TranslationError(f"{field}.role", f"{role!r} is not supported")
    instruction = json_instruction(body)
    if instruction:
        system.append(instruction)
    return system, turns
