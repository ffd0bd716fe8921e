"""Google's Gemini API, for Gemini CLI and the google-genai SDKs: under `/v1beta/` and `/v1/`,

    POST models/{model}:generateContent        one answer
    POST models/{model}:streamGenerateContent  a stream: SSE with `?alt=sse`, else a JSON array
    POST models/{model}:countTokens            an estimate, as for Anthropic clients
    GET  models, models/{model}                the model list in Google's shape

The model id keeps its slash in the path (`models/opencode-go/glm-5.1:generateContent`). The
client's key may come as `x-goog-api-key`, `Authorization: Bearer` or `?key=`; a `?key=` is moved
into the header before anything else sees the request, so no log or error ever quotes a URL with
it. Errors are Google's `{"error": {"code", "message", "status"}}`.
"""
from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.frontends.common import (answer, check_at_door, check_client_key,
                                      estimate_tokens, read_json_object)
from gateway.replies import Reply, StreamReply
from gateway.translate.gemini_answer import error_body

_Positive = Annotated[int, msgspec.Meta(ge=1)]
_encode = msgspec.json.Encoder().encode
_EXAMPLE_MODEL = "opencode-go/glm-5.1"
_METHODS = ("generateContent", "streamGenerateContent", "countTokens")
# What a request from a google-genai SDK (or Gemini CLI, built on it) carries.
GOOGLE_HEADERS = ("x-goog-api-key", "x-goog-api-client")


class _Content(msgspec.Struct):
    parts: list[dict[str, Any]]
    role: str | None = None


class _ThinkingConfig(msgspec.Struct):
    includeThoughts: bool | None = None
    thinkingBudget: int | None = None
    thinkingLevel: str | None = None


class _GenerationConfig(msgspec.Struct):
    temperature: float | None = None
    topP: float | None = None
    topK: float | None = None
    maxOutputTokens: _Positive | None = None
    stopSequences: list[str] | None = None
    candidateCount: int | None = None
    responseMimeType: str | None = None
    responseSchema: dict[str, Any] | None = None
    responseJsonSchema: Any = None
    presencePenalty: float | None = None
    frequencyPenalty: float | None = None
    seed: int | None = None
    thinkingConfig: _ThinkingConfig | None = None


class _FunctionCallingConfig(msgspec.Struct):
    mode: str | None = None
    allowedFunctionNames: list[str] | None = None


class _ToolConfig(msgspec.Struct):
    functionCallingConfig: _FunctionCallingConfig | None = None


class _Tool(msgspec.Struct):
    functionDeclarations: list[dict[str, Any]] | None = None


class GeminiRequest(msgspec.Struct):
    """The `generateContent` fields the gateway knows, with the JSON types the API gives them
    (`model` is the URL's, written in by the frontend)."""
    model: str
    contents: list[_Content]
    systemInstruction: str | _Content | None = None
    tools: list[_Tool] | None = None
    toolConfig: _ToolConfig | None = None
    generationConfig: _GenerationConfig | None = None
    safetySettings: list[dict[str, Any]] | None = None  # accepted, and ignored
    cachedContent: str | None = None


def gemini_error(exc: GatewayError, request_id: str | None = None) -> Reply:
    headers = {**exc.headers, "x-request-id": request_id} if request_id else exc.headers
    return Reply(error_body(exc.status, exc.message, exc.param, exc.headers.get("retry-after")),
                 exc.status, headers)


def _key_out_of_query(scope) -> None:
    """`?key=` becomes `x-goog-api-key` (unless one is sent): the URL keeps no key."""
    query = scope.get("query_string", b"")
    if b"key=" not in query:
        return
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    key = next((value for name, value in pairs if name == "key"), "")
    scope["query_string"] = urlencode([(n, v) for n, v in pairs if n != "key"]).encode()
    headers = scope["headers"]
    if key and not any(name == b"x-goog-api-key" for name, _ in headers):
        scope["headers"] = [*headers, (b"x-goog-api-key", key.encode("latin-1"))]


def _model_and_method(scope) -> tuple[str, str]:
    model, colon, method = scope["path_params"]["rest"].rpartition(":")
    if not colon or method not in _METHODS:
        raise GatewayError(404, f"{scope['path']!r}: not a method this gateway serves; POST "
                                "models/{model}:generateContent, :streamGenerateContent or "
                                ":countTokens")
    if not model:
        raise GatewayError(400, f"the URL names no model: POST models/{_EXAMPLE_MODEL}:{method}",
                           param="model")
    return model, method


class _Generate:
    """POST models/{model}:{method}, as a plain ASGI app like the other frontends."""

    async def __call__(self, scope, receive, send) -> None:
        _key_out_of_query(scope)
        request = Request(scope, receive)
        try:
            model, method = _model_and_method(scope)
        except GatewayError as exc:
            await gemini_error(exc)(scope, receive, send)
            return
        if method == "countTokens":
            await (await _count_tokens(request))(scope, receive, send)
            return
        stream = method == "streamGenerateContent"
        sse = request.query_params.get("alt") == "sse"

        def validate(body: dict) -> str:
            body["model"] = model
            check_at_door(body, GeminiRequest, _EXAMPLE_MODEL)
            body.pop("stream", None)
            body.pop("alt", None)
            if stream:  # what the codecs read: the URL's say, in the body
                body["stream"] = True
                if sse:
                    body["alt"] = "sse"
            return model

        def json_stream(reply) -> None:  # without alt=sse: one JSON array, streamed
            if isinstance(reply, StreamReply) and not sse:
                reply.headers = [(name, b"application/json" if name == b"content-type" else value)
                                 for name, value in reply.headers]

        await answer(scope, receive, send, request, "gemini", validate, gemini_error, json_stream)


async def _count_tokens(request: Request) -> Reply:
    """`{"totalTokens": N}`, an estimate: OpenCode Go has no counting endpoint."""
    gateway = request.app.state.gateway
    try:
        check_client_key(request.headers, gateway.clients)
        server = gateway.config.server
        body = await read_json_object(request, request.headers, server.max_body_bytes,
                                      server.body_timeout, server.max_body_containers)
        inner = body.get("generateContentRequest")
        counted = inner if isinstance(inner, dict) else body
        if not isinstance(counted.get("contents"), list):
            raise GatewayError(400, "`contents` is required: a list of {role, parts} objects",
                               param="contents")
    except GatewayError as exc:
        return gemini_error(exc)
    fields = {key: counted.get(key) for key in ("systemInstruction", "contents", "tools")}
    return Reply(b'{"totalTokens":%d}' % await estimate_tokens(fields, request))


def _model(name: str) -> dict:
    return {"name": "models/" + name, "baseModelId": name, "version": "opencode-go",
            "displayName": name, "description": f"{name} through the opencode-go gateway",
            "supportedGenerationMethods": list(_METHODS)}


async def list_models(request: Request) -> Reply:
    """GET models: every model the gateway advertises, in Google's shape."""
    _key_out_of_query(request.scope)
    gateway = request.app.state.gateway
    try:
        principal = check_client_key(request.headers, gateway.clients)
    except GatewayError as exc:
        return gemini_error(exc)
    models = [_model(name) for name in gateway.router.advertised_models()
              if principal.may_use(name)]
    return Reply(_encode({"models": models}))


async def get_model(request: Request) -> Reply:
    """GET models/{model}: one model, by its advertised id or its bare id."""
    _key_out_of_query(request.scope)
    gateway = request.app.state.gateway
    name = request.path_params["rest"]
    try:
        principal = check_client_key(request.headers, gateway.clients)
        for advertised in gateway.router.advertised_models():
            if name in (advertised, advertised.partition("/")[2]) and principal.may_use(name):
                return Reply(_encode(_model(advertised)))
        raise GatewayError(404, f"model {name!r} is not served by this gateway; GET "
                                "models lists the ones that are")
    except GatewayError as exc:
        return gemini_error(exc)


generate = _Generate()

ROUTES = [route for prefix in ("/v1beta", "/v1") for route in (
    Route(prefix + "/models/{rest:path}", get_model, methods=["GET"]),
    Route(prefix + "/models/{rest:path}", generate, methods=["POST"]),
)] + [Route("/v1beta/models", list_models, methods=["GET"])]
