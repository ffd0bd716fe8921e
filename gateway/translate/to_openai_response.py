"""Anthropic Messages response -> OpenAI chat.completion response (non-streaming).

Used when an OpenAI client called a model the upstream serves with the Anthropic protocol. The
upstream's bytes are decoded once into typed structs and the answer is encoded once.

Also home of the two rules the streaming translator shares with this one: the stop_reason ->
finish_reason table and the usage rule.

Choices the README documents:
- `id` is `"chatcmpl-" + <Anthropic message id>`, so a log line can be matched to the upstream's.
- usage: `prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens`
  (Anthropic's `input_tokens` counts neither cached part), `completion_tokens = output_tokens`,
  `prompt_tokens_details.cached_tokens = cache_read_input_tokens`, `total = prompt + completion`.
- thinking text -> `message.reasoning_content`; thinking signatures and redacted thinking, which
  an OpenAI client cannot send back, are dropped.
"""
from __future__ import annotations

import time

import msgspec

from gateway.errors import GatewayError

FINISH_REASON_BY_STOP_REASON: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error types -> HTTP status, for an error that arrives inside a 200 body or stream.
STATUS_BY_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's finish_reason for an Anthropic stop_reason (unknown or missing -> "stop")."""
    return FINISH_REASON_BY_STOP_REASON.get(stop_reason, "stop") if stop_reason else "stop"


# ---- Anthropic side (decoded) ----

class AnthropicUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _ContentBlock(msgspec.Struct):
    # One struct for every block type: a block type this gateway does not know yet (server tool
    # results, citations, ...) decodes fine and is skipped instead of failing the answer.
    type: str
    text: str = ""
    thinking: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw()  # kept as sent: it becomes the arguments string as is


class _ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class _Message(msgspec.Struct):
    type: str = "message"
    id: str = ""
    model: str = ""
    content: list[_ContentBlock] = []
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None
    error: _ErrorDetail | None = None


# ---- OpenAI side (encoded) ----

class _PromptTokensDetails(msgspec.Struct):
    cached_tokens: int


class OpenAIUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _PromptTokensDetails


class _Function(msgspec.Struct):
    name: str
    arguments: str


class _ToolCall(msgspec.Struct):
    id: str
    type: str
    function: _Function


class _AssistantMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None  # no default: an answer with only tool calls carries `content: null`
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    index: int
    message: _AssistantMessage
    finish_reason: str


class _ChatCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_Choice]
    usage: OpenAIUsage | None = None


_decode_message = msgspec.json.Decoder(_Message).decode
_encode = msgspec.json.Encoder().encode


def openai_usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> OpenAIUsage:
    return OpenAIUsage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens,
                       _PromptTokensDetails(cached_tokens))


def prompt_tokens(usage: AnthropicUsage) -> int:
    """Every input token the model read: Anthropic's `input_tokens` leaves out the cached parts."""
    return ((usage.input_tokens or 0) + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0))


def to_openai_response(raw: bytes) -> tuple[bytes, tuple[int, int] | None]:
    """(OpenAI chat.completion JSON, (prompt_tokens, completion_tokens) or None) for `raw`."""
    try:
        message = _decode_message(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise GatewayError(502, f"the upstream answered with a body that is not an Anthropic "
                                f"Messages response: {exc}") from None
    if message.type == "error" and message.error is not None:
        raise GatewayError(STATUS_BY_ERROR_TYPE.get(message.error.type, 502),
                           message.error.message or "the upstream answered with an error")

    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[_ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "thinking":
            thoughts.append(block.thinking)
        elif block.type == "tool_use":
            arguments = bytes(block.input).decode() if len(block.input) else "{}"
            tool_calls.append(_ToolCall(block.id, "function", _Function(block.name, arguments)))
    text = "".join(texts)
    assistant = _AssistantMessage(
        role="assistant",
        content=text if text or not tool_calls else None,
        reasoning_content="".join(thoughts) or None,
        tool_calls=tool_calls or None,
    )

    usage = None
    counts = None
    if message.usage is not None:
        prompt = prompt_tokens(message.usage)
        completion = message.usage.output_tokens or 0
        usage = openai_usage(prompt, completion, message.usage.cache_read_input_tokens or 0)
        counts = (prompt, completion)

    completion = _ChatCompletion(
        id="chatcmpl-" + message.id,
        object="chat.completion",
        created=int(time.time()),
        model=message.model,
        choices=[_Choice(0, assistant, finish_reason(message.stop_reason))],
        usage=usage,
    )
    return _encode(completion), counts
