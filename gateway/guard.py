"""The request checks that come before any route: what the HTTP server (hypercorn's h11) lets
through and the gateway refuses.

- `Content-Length` and `Transfer-Encoding` in one request: h11 frames the body by
  Transfer-Encoding and ignores Content-Length, a proxy in front may have framed it by the other
  (request smuggling). 400, and the connection is closed (nothing after it on the connection
  can be trusted).
- A header block over `server.max_header_bytes`: h11 checks its bound only while the block is
  still incomplete, so a block that arrives in a few large reads passes. 431, as the limit says.

One pass over the header list per request; the answers are in the error shape the path's
client expects.
"""
from __future__ import annotations

from gateway.errors import anthropic_error_body, openai_error_body
from gateway.frontends import gemini


class RequestGuard:
    """An ASGI app in front of `app` (see the module docstring)."""

    def __init__(self, app, max_header_bytes: int):
        self.app = app
        self.max_header_bytes = max_header_bytes

    def __getattr__(self, name):  # `state` and the rest of the wrapped app, for callers of it
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = 0
        length = chunked = False
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4  # "name: value\r\n"
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                chunked = True
        if length and chunked:
            return await _refuse(scope, send, 400, {"connection": "close"},
                                 "the request has both Content-Length and Transfer-Encoding; "
                                 "send one of them (a body framed two ways is refused)")
        if size > self.max_header_bytes:
            return await _refuse(scope, send, 431, {"connection": "close"},
                                 f"the request headers are {size} bytes, over this gateway's "
                                 f"limit of {self.max_header_bytes} bytes "
                                 "(server.max_header_bytes)")
        return await self.app(scope, receive, send)


def error_body_for(path: str, header_names, status: int, message: str) -> bytes:
    """An error for a request not yet in a frontend's hands, in the shape its client expects
    (`header_names`: the request's header names, lower case, or Starlette's Headers): Google's
    under /v1beta/ or with a Google client header, Anthropic's under /v1/messages and
    /anthropic/ or with an `anthropic-version` header, OpenAI's otherwise."""
    if path.startswith("/v1beta/") or any(name in header_names for name in gemini.GOOGLE_HEADERS):
        return gemini.error_body(status, message)
    if path.startswith(("/v1/messages", "/anthropic/")) or "anthropic-version" in header_names:
        return anthropic_error_body(status, message)
    return openai_error_body(status, message)


async def _refuse(scope, send, status: int, headers: dict[str, str], message: str) -> None:
    names = {name.decode("latin-1") for name, _ in scope["headers"]}
    body = error_body_for(scope["path"], names, status, message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in headers.items())]})
    await send({"type": "http.response.body", "body": body})
