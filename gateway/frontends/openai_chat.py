"""`POST /v1/chat/completions`: the OpenAI Chat Completions frontend."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, openai_error_body
from gateway.frontends.common import expect, serve


def _validate(body: dict) -> str:
    """The model string, once the fields the gateway itself relies on have the right types."""
    model = expect(body, "model", str, "a model string such as \"opencode-go/glm-5.1\"", required=True)
    if not model:
        raise GatewayError(400, "`model` is empty; send a model string such as "
                                "\"opencode-go/glm-5.1\"", param="model")
    messages = expect(body, "messages", list, "a list of message objects", required=True)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise GatewayError(400, f"`messages[{index}]` must be an object with `role` and "
                                    "`content`", param=f"messages[{index}]")
        if not isinstance(message.get("role"), str):
            raise GatewayError(400, f"`messages[{index}].role` must be a string",
                               param=f"messages[{index}].role")
    expect(body, "stream", bool, "true or false")
    expect(body, "stream_options", dict, "an object such as {\"include_usage\": true}")
    expect(body, "tools", list, "a list of tool objects")
    return model


def openai_error(exc: GatewayError) -> Response:
    return Response(openai_error_body(exc.status, exc.message, exc.param, exc.code),
                    status_code=exc.status, media_type="application/json", headers=exc.headers)


async def chat_completions(request: Request) -> Response:
    return await serve(request, "openai", _validate, openai_error)
