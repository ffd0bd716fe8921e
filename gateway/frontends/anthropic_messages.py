"""`POST /v1/messages` (also `/anthropic/v1/messages`): the Anthropic Messages frontend."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from gateway.errors import GatewayError, anthropic_error_body
from gateway.frontends.common import Frontend, check_at_door
from gateway.replies import Reply

_Positive = Annotated[int, msgspec.Meta(ge=1)]


class _Message(msgspec.Struct):
    role: str
    content: str | list[dict[str, Any]]


class _Tool(msgspec.Struct):
    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class MessagesRequest(msgspec.Struct):
    """The Messages fields the gateway knows, with the JSON types the API gives them."""
    model: str
    messages: list[_Message]
    max_tokens: _Positive | None = None
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[_Tool] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


def _validate(body: dict) -> str:
    return check_at_door(body, MessagesRequest, "opencode-go/minimax-m2.7").model


def anthropic_error(exc: GatewayError, request_id: str | None = None) -> Reply:
    headers = {**exc.headers, "x-request-id": request_id} if request_id else exc.headers
    return Reply(anthropic_error_body(exc.status, exc.message), exc.status, headers)


messages = Frontend("anthropic", _validate, anthropic_error)
