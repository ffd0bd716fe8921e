"""Errors the gateway answers, and the two wire shapes they are written in.

Every error reaches the client in the shape of the frontend it called: OpenAI's
`{"error": {"message", "type", "param", "code"}}` or Anthropic's
`{"type": "error", "error": {"type", "message"}}`. Code anywhere on the request path raises
`GatewayError`; the frontend renders it. Rule modules raise it too to reject a request.
"""
from __future__ import annotations

import msgspec

_encode = msgspec.json.Encoder().encode

# What decoding bytes someone else sent can raise: not JSON, not the expected shape, or not
# UTF-8 at all (older msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string,
# newer a DecodeError).
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)

# Anthropic's documented error types by HTTP status; OpenAI clients only read `type` loosely, so
# the same names serve both shapes (OpenAI's own 400 type is the same string).
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """The error `type` string for an HTTP status, in both shapes."""
    found = _TYPE_BY_STATUS.get(status)
    if found:
        return found
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


class GatewayError(Exception):
    """A request the gateway refuses or cannot complete; the frontend renders it in its shape.

    `status` is the HTTP status, `message` says what was wrong and how to fix it, `param` names
    the offending request field (OpenAI shape only), `headers` are extra response headers
    (such as `retry-after` carried over from the upstream).
    """

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class _OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class _OpenAIError(msgspec.Struct):
    error: _OpenAIErrorDetail


class _AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class _AnthropicError(msgspec.Struct, tag_field="type", tag="error"):
    error: _AnthropicErrorDetail


def openai_error_body(status: int, message: str, param: str | None = None,
                      code: str | None = None) -> bytes:
    return _encode(_OpenAIError(_OpenAIErrorDetail(message, error_type(status), param, code)))


def anthropic_error_body(status: int, message: str) -> bytes:
    return _encode(_AnthropicError(_AnthropicErrorDetail(error_type(status), message)))


def openai_stream_error(status: int, message: str) -> bytes:
    """An error inside an OpenAI SSE stream: one `data:` event; the stream ends after it."""
    return b"data: " + openai_error_body(status, message) + b"\n\n"


def anthropic_stream_error(status: int, message: str) -> bytes:
    """An error inside an Anthropic SSE stream: the `error` event Anthropic itself sends."""
    return b"event: error\ndata: " + anthropic_error_body(status, message) + b"\n\n"


class _AnyErrorDetail(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _AnyResponse(msgspec.Struct):
    error: _AnyErrorDetail | None = None


class _AnyMetadata(msgspec.Struct):
    limitName: str | None = None
    model: str | None = None   # a limit that caps one model


class _AnyError(msgspec.Struct):
    error: _AnyErrorDetail | str | None = None
    message: str | None = None
    type: str | None = None    # OpenCode's bare `{"type": "CreditsError", "message": ...}`
    response: _AnyResponse | None = None  # a Responses `response.failed` event
    metadata: _AnyMetadata | None = None  # OpenCode Go's GoUsageLimitError names its limit here


_decode_any_error = msgspec.json.Decoder(_AnyError).decode
_NO_METADATA = _AnyMetadata()
_STATUS_BY_TYPE = {name: status for status, name in _TYPE_BY_STATUS.items()}


class UpstreamError(msgspec.Struct):
    """What an upstream error body says, whichever protocol's shape it is in."""
    message: str
    type: str | None = None
    limit_name: str | None = None
    model: str | None = None


def read_upstream_error(body: bytes, status: int) -> UpstreamError:
    """The error an upstream body carries (OpenAI, Anthropic or Responses shape).

    A body in none of them (an HTML page from a proxy, plain text) is quoted, shortened, so the
    user still sees what the upstream said.
    """
    try:
        parsed = _decode_any_error(body)
    except DECODE_ERRORS:
        text = body.decode("utf-8", "replace").strip()
        return UpstreamError(text[:500] if text else
                             f"upstream answered HTTP {status} with an empty body")
    detail = parsed.error if isinstance(parsed.error, _AnyErrorDetail) else \
        (parsed.response.error if parsed.response is not None else None)
    metadata = parsed.metadata or _NO_METADATA
    limit, model = metadata.limitName, metadata.model
    bare_type = parsed.type if parsed.type != "error" else None
    if detail is not None and detail.message:
        return UpstreamError(detail.message, detail.type or bare_type, limit, model)
    if isinstance(parsed.error, str) and parsed.error:
        return UpstreamError(parsed.error, bare_type, limit, model)
    if parsed.message:
        return UpstreamError(parsed.message, bare_type, limit, model)
    return UpstreamError(f"upstream answered HTTP {status}", bare_type, limit, model)


def upstream_error_message(body: bytes, status: int) -> str:
    return read_upstream_error(body, status).message


def upstream_error(body: bytes, status: int) -> tuple[int, str]:
    """(status, message) of an error reported inside a 200 answer or stream: the status its
    type names (Anthropic's `overloaded_error` is 529), else `status`."""
    error = read_upstream_error(body, status)
    return _STATUS_BY_TYPE.get(error.type or "", status), error.message

