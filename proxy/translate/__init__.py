"""Pure, synchronous translation between the proxy's API dialects.

OpenAI Chat Completions is the hub: callers' Anthropic Messages requests become Chat
Completions requests, and Chat Completions requests become Anthropic Messages or Bedrock
Converse requests for those upstreams; responses and streams convert back the same way.
No Django, no I/O.
"""

from proxy.translate.anthropic import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)
from proxy.translate.bedrock import (
    ConverseStreamToOpenAI,
    converse_response_to_openai,
    openai_request_to_converse,
)
from proxy.translate.errors import TranslationError

__all__ = [
    "AnthropicToOpenAIStream",
    "ConverseStreamToOpenAI",
    "OpenAIToAnthropicStream",
    "TranslationError",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "converse_response_to_openai",
    "openai_request_to_anthropic",
    "openai_request_to_converse",
    "openai_response_to_anthropic",
]
