"""The request checks that come before any route: what the HTTP server (hypercorn's h11) lets
through and the gateway refuses.

- `Content-Length` and `Transfer-Encoding` in one request: h11 frames the body by
  Transfer-Encoding and ignores Content-Length, a proxy in front may have framed it by the other
  (request smuggling). 400, and the connection is closed (nothing after it on the connection
  can be trusted).
- A header block over `server.max_header_bytes`: h11 checks its bound only while the block is
  still incomplete, so a block that arrives in a few large reads passes. 431, as the limit says.

One pass over the header list per request (`problem_of`, called by the app's dispatch in
gateway/app.py); the answers are in the error shape the path's client expects.
"""
from __future__ import annotations

from gateway.errors import anthropic_error_body, openai_error_body
from gateway.frontends import gemini


def problem_of(headers: list, max_header_bytes: int) -> tuple[int, str] | None:
    """(status, message) when the request's raw `headers` must be refused (see the module
    docstring), else None."""
    size = 0
    length = chunked = False
    for name, value in headers:
        size += len(name) + len(value) + 4  # "name: value\r\n"
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            chunked = True
    if length and chunked:
        return 400, ("the request has both Content-Length and Transfer-Encoding; send one of "
                     "them (a body framed two ways is refused)")
    if size > max_header_bytes:
        return 431, (f"the request headers are {size} bytes, over this gateway's limit of "
                     f"{max_header_bytes} bytes (server.max_header_bytes)")
    return None


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


async def refuse(scope, send, status: int, message: str) -> None:
    """The refusal of `problem_of`, in the client's error shape; the connection is closed
    (nothing after such a request on it can be trusted)."""
    names = {name.decode("latin-1") for name, _ in scope["headers"]}
    body = error_body_for(scope["path"], names, status, message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
