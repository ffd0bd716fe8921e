"""The small endpoints: model list (both shapes), liveness, token-count estimate."""
from __future__ import annotations

import time

import msgspec
from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.frontends.anthropic_messages import anthropic_error
from gateway.frontends import gemini
from gateway.frontends.common import check_client_key, estimate_tokens, read_json_object
from gateway.frontends.openai_chat import openai_error
from gateway.replies import Reply

_encode = msgspec.json.Encoder().encode
_STARTED = int(time.time())


class _OpenAIModel(msgspec.Struct):
    id: str
    object: str = "model"
    created: int = _STARTED
    owned_by: str = "opencode-go"


class _OpenAIModelList(msgspec.Struct):
    data: list[_OpenAIModel]
    object: str = "list"


class _AnthropicModel(msgspec.Struct):
    id: str
    display_name: str
    type: str = "model"
    created_at: str = "1970-01-01T00:00:00Z"


class _AnthropicModelList(msgspec.Struct):
    data: list[_AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None


def _json(body: bytes, status: int = 200) -> Reply:
    return Reply(body, status)


async def list_models(request: Request) -> Reply:
    """OpenAI's list shape, Anthropic's when the client sends `anthropic-version` (its SDKs do),
    Google's when it sends `x-goog-api-key` or `x-goog-api-client` (google-genai's `/v1/models`)."""
    if any(name in request.headers for name in gemini.GOOGLE_HEADERS):
        return await gemini.list_models(request)
    gateway = request.app.state.gateway
    anthropic = "anthropic-version" in request.headers
    try:
        principal = check_client_key(request.headers, gateway.clients)
    except GatewayError as exc:
        return anthropic_error(exc) if anthropic else openai_error(exc)
    ids = [model for model in gateway.router.advertised_models() if principal.may_use(model)]
    if anthropic:
        models = [_AnthropicModel(id=model, display_name=model) for model in ids]
        return _json(_encode(_AnthropicModelList(models, False, ids[0] if ids else None,
                                                 ids[-1] if ids else None)))
    return _json(_encode(_OpenAIModelList([_OpenAIModel(id=model) for model in ids])))


async def healthz(request: Request) -> Reply:
    """Open even when client keys lock the gateway: probes carry no key, and it tells nothing."""
    return _json(b'{"status":"ok"}')


async def count_tokens(request: Request) -> Reply:
    """An estimate (about four bytes of JSON per token): OpenCode Go has no counting endpoint,
    and clients such as Claude Code only use the figure to decide when to compact."""
    gateway = request.app.state.gateway
    try:
        check_client_key(request.headers, gateway.clients)
        server = gateway.config.server
        body = await read_json_object(request, request.headers, server.max_body_bytes,
                                      server.body_timeout, server.max_body_containers)
        if not isinstance(body.get("messages"), list):
            raise GatewayError(400, "messages: must be a list of message objects")
    except GatewayError as exc:
        return anthropic_error(exc)
    counted = {key: body.get(key) for key in ("system", "messages", "tools")}
    return _json(b'{"input_tokens":%d}' % await estimate_tokens(counted, request))
