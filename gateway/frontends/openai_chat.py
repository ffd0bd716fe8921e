"""`POST /v1/chat/completions`: the OpenAI Chat Completions frontend."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from gateway.errors import GatewayError, openai_error_body
from gateway.frontends.common import Frontend, check_at_door
from gateway.replies import Reply

_Positive = Annotated[int, msgspec.Meta(ge=1)]


class _FunctionCall(msgspec.Struct):
    name: str
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    function: _FunctionCall
    id: str | None = None
    type: str | None = None


class _Message(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class _Function(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(msgspec.Struct):
    type: str = "function"
    function: _Function | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatRequest(msgspec.Struct):
    """The Chat Completions fields the gateway knows, with the JSON types the API gives them."""
    model: str
    messages: list[_Message]
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: _Positive | None = None
    max_completion_tokens: _Positive | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    prompt_cache_key: str | None = None


def _validate(body: dict) -> str:
    return check_at_door(body, ChatRequest, "opencode-go/glm-5.1").model


def openai_error(exc: GatewayError, request_id: str | None = None) -> Reply:
    headers = {**exc.headers, "x-request-id": request_id} if request_id else exc.headers
    return Reply(openai_error_body(exc.status, exc.message, exc.param, exc.code), exc.status,
                 headers)


chat_completions = Frontend("openai", _validate, openai_error)
