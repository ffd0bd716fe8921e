"""`POST /v1/messages` (also `/anthropic/v1/messages`): the Anthropic Messages frontend."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, anthropic_error_body
from gateway.frontends.common import expect, serve


def _validate(body: dict) -> str:
    model = expect(body, "model", str, "a model string such as \"opencode-go/minimax-m2.7\"",
                   required=True)
    if not model:
        raise GatewayError(400, "`model` is empty; send a model string such as "
                                "\"opencode-go/minimax-m2.7\"", param="model")
    messages = expect(body, "messages", list, "a list of message objects", required=True)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise GatewayError(400, f"messages.{index}: must be an object with `role` and `content`")
        if not isinstance(message.get("role"), str):
            raise GatewayError(400, f"messages.{index}.role: must be a string")
        content = message.get("content")
        if not isinstance(content, (str, list)):
            raise GatewayError(400, f"messages.{index}.content: must be a string or a list of "
                                    "content blocks")
    expect(body, "max_tokens", int, "a positive integer")
    expect(body, "stream", bool, "true or false")
    expect(body, "system", (str, list), "a string or a list of text blocks")
    expect(body, "tools", list, "a list of tool objects")
    return model


def anthropic_error(exc: GatewayError) -> Response:
    return Response(anthropic_error_body(exc.status, exc.message), status_code=exc.status,
                    media_type="application/json", headers=exc.headers)


async def messages(request: Request) -> Response:
    return await serve(request, "anthropic", _validate, anthropic_error)
