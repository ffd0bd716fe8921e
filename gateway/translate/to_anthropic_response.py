"""OpenAI chat.completion → Anthropic message (non-streaming answers).

Used when an Anthropic client called an OpenAI-flavour model without `stream`. Also holds the
pieces the streaming translator shares: the stop-reason table, the usage rule and the thinking
signature placeholder.

Decisions a client can notice:
- Content order: thinking (from `reasoning_content`, or `reasoning` as some servers name it),
  then text (only when non-empty; a `refusal` stands in when there is no content), then one
  `tool_use` per tool call.
- Thinking blocks carry the signature `THINKING_SIGNATURE`: Anthropic clients (Claude Code)
  drop a thinking block whose signature is missing or empty, and there is no real one to give.
- Tool-call `arguments` that are empty, not JSON, or JSON that is not an object become input
  `{}`: Anthropic requires an object, and a tool called with `{}` fails its own schema check,
  which tells the model to call again.
- `stop_reason`: `STOP_REASONS`; anything else ends the turn, and a turn that holds tool calls
  always ends with `tool_use` (some servers say `stop` there; Claude Code would not run them).
  `stop_sequence` is always null: OpenAI does not say which sequence matched.
- Usage: OpenAI's `prompt_tokens` includes cached tokens, Anthropic's `input_tokens` excludes
  cache reads, so `input_tokens = prompt_tokens - cached` and `cache_read_input_tokens = cached`
  (from `prompt_tokens_details.cached_tokens`, or the top-level `cached_tokens` Moonshot uses).
  The returned token pair is the upstream's view: (prompt_tokens, completion_tokens).
"""
from __future__ import annotations

import os
from typing import Any, Union

import msgspec

from gateway.errors import GatewayError

# Claude Code discards thinking blocks without a signature. This is not a cryptographic one; it
# only marks the block as whole. Requests translated to OpenAI drop signatures again.
THINKING_SIGNATURE = "opencode-go-gateway-unsigned"

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None, has_tool_calls: bool) -> str:
    """Anthropic `stop_reason` for an OpenAI `finish_reason`."""
    reason = STOP_REASONS.get(finish_reason, "end_turn") if finish_reason else "end_turn"
    if has_tool_calls and reason == "end_turn":
        return "tool_use"
    return reason


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


# --- OpenAI wire (input) ---------------------------------------------------------------------

class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class OpenAIUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    cached_tokens: int | None = None  # Moonshot reports it here


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class _Part(msgspec.Struct):
    text: str | None = None


class _Message(msgspec.Struct):
    content: str | list[_Part] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None


class _Completion(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: OpenAIUsage | None = None
    error: _ErrorDetail | str | None = None


_decode_completion = msgspec.json.Decoder(_Completion).decode
_decode_arguments = msgspec.json.Decoder().decode


# --- Anthropic wire (output) -----------------------------------------------------------------

class AnthropicUsage(msgspec.Struct, omit_defaults=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None


class ThinkingBlock(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class TextBlock(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ToolUseBlock(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: Any


ContentBlock = Union[ThinkingBlock, TextBlock, ToolUseBlock]


class _AnthropicMessage(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    role: str
    model: str
    content: list[ContentBlock]
    stop_reason: str
    stop_sequence: None
    usage: AnthropicUsage


_encode = msgspec.json.Encoder().encode


def anthropic_usage(usage: OpenAIUsage | None) -> AnthropicUsage:
    """Anthropic usage for OpenAI usage (zeros when the upstream sent none)."""
    if usage is None:
        return AnthropicUsage(0, 0)
    prompt = usage.prompt_tokens or 0
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens if details else None) or usage.cached_tokens or 0
    return AnthropicUsage(max(prompt - cached, 0), usage.completion_tokens or 0,
                          cached if cached else None)


def token_pair(usage: OpenAIUsage | None) -> tuple[int, int] | None:
    if usage is None:
        return None
    return (usage.prompt_tokens or 0, usage.completion_tokens or 0)


def tool_input(arguments: str | None) -> Any:
    """Tool `input` object for OpenAI `arguments` text; `{}` when it is not a JSON object."""
    if not arguments:
        return {}
    try:
        parsed = _decode_arguments(arguments)
    except msgspec.DecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_anthropic_response(raw: bytes) -> tuple[bytes, tuple[int, int] | None]:
    """Anthropic message JSON for OpenAI chat.completion bytes, and (input, output) tokens."""
    try:
        completion = _decode_completion(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise GatewayError(502, f"the upstream answered with an invalid chat completion: {exc}")
    if not completion.choices:
        error = completion.error
        if isinstance(error, _ErrorDetail) and error.message:
            raise GatewayError(502, error.message)
        if isinstance(error, str) and error:
            raise GatewayError(502, error)
        raise GatewayError(502, "the upstream answered with a chat completion without choices")
    choice = completion.choices[0]
    message = choice.message or _Message()

    content: list[ContentBlock] = []
    reasoning = message.reasoning_content or message.reasoning
    if reasoning:
        content.append(ThinkingBlock(reasoning, THINKING_SIGNATURE))
    text = _text(message.content) or message.refusal
    if text:
        content.append(TextBlock(text))
    calls = message.tool_calls or ()
    for call in calls:
        function = call.function or _Function()
        content.append(ToolUseBlock(call.id or new_id("toolu_"), function.name or "",
                                    tool_input(function.arguments)))

    answer = _AnthropicMessage(
        id="msg_" + completion.id if completion.id else new_id("msg_"),
        role="assistant",
        model=completion.model or "",
        content=content,
        stop_reason=stop_reason(choice.finish_reason, bool(calls)),
        stop_sequence=None,
        usage=anthropic_usage(completion.usage),
    )
    return _encode(answer), token_pair(completion.usage)


def _text(content: str | list[_Part] | None) -> str | None:
    if isinstance(content, list):
        return "".join(part.text for part in content if part.text)
    return content
