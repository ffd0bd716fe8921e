"""`POST /v1/responses` (also `/openai/v1/responses`): the OpenAI Responses frontend, for Codex
CLI and the openai SDK's `responses.create` / `responses.stream`."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from gateway.frontends.common import Frontend, check_at_door
from gateway.frontends.openai_chat import openai_error

_Positive = Annotated[int, msgspec.Meta(ge=1)]


class _Reasoning(msgspec.Struct):
    effort: str | None = None
    summary: str | None = None


class _Tool(msgspec.Struct):
    type: str
    name: str | None = None


class ResponsesRequest(msgspec.Struct):
    """The Responses fields the gateway knows, with the JSON types the API gives them."""
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[_Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: _Positive | None = None
    reasoning: _Reasoning | None = None
    text: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    store: bool | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    include: list[str] | None = None


def _validate(body: dict) -> str:
    return check_at_door(body, ResponsesRequest, "opencode-go/glm-5.1").model


responses = Frontend("responses", _validate, openai_error)
