"""`POST /v1/messages` (also `/anthropic/v1/messages`): the Anthropic Messages frontend."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, anthropic_error_body
from gateway.frontends.common import check_at_door, serve

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


def anthropic_error(exc: GatewayError) -> Response:
    return Response(anthropic_error_body(exc.status, exc.message), status_code=exc.status,
                    media_type="application/json", headers=exc.headers)


async def messages(request: Request) -> Response:
    return await serve(request, "anthropic", _validate, anthropic_error)
