"""How answers go back to the client: two small ASGI replies, one whole and one streamed.

Starlette's Response and StreamingResponse would do, but every request pays for them: header
objects built per response, and for a stream an anyio task group (two tasks and cancel scopes)
whose only job is to notice a client that left. These send the ASGI messages directly, with the
header list encoded in one go, and a stream watches for the client leaving with one plain task.
Measured on the stack's floor proxy, that is about a tenth of a whole answer's cost and a sixth
of a 50-event stream's.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from gateway.server import ClientStalled

JSON = b"application/json"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # No proxy between the gateway and a client may hold back a stream (nginx reads this).
    (b"x-accel-buffering", b"no"),
]


def header_list(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    if not headers:
        return []
    return [(name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()]


class Reply:
    """A whole answer: status, body bytes, content type, extra headers."""
    __slots__ = ("status", "body", "headers")

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
                 media_type: bytes = JSON):
        self.status = status
        self.body = body
        self.headers = [(b"content-type", media_type),
                        (b"content-length", str(len(body)).encode()), *header_list(headers)]

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.headers})
            await send({"type": "http.response.body", "body": self.body})
        except OSError:
            pass  # the client left, or stopped reading (server.write_timeout): nothing to do


class StreamReply:
    """A streamed answer: the chunks of `chunks` as they come.

    When the client leaves, the task driving the stream is cancelled at once, so the relay
    closes the upstream (the model stops generating) and records the hang-up, even while the
    upstream is silent (a model thinking). A client that stops reading ends the same way once
    `server.write_timeout` passes, and the relay is told so (`ClientStalled` thrown into it),
    so the log says "client stall" rather than blaming the upstream.
    """
    __slots__ = ("status", "chunks", "headers")

    def __init__(self, chunks: AsyncIterator[bytes], status: int = 200,
                 headers: dict[str, str] | None = None):
        self.status = status
        self.chunks = chunks
        self.headers = _SSE_HEADERS + header_list(headers)

    async def __call__(self, scope, receive, send) -> None:
        task = asyncio.current_task()
        left = False
        finished = False
        stalled: ClientStalled | None = None

        def hang_up(waiting: asyncio.Task) -> None:
            nonlocal left
            # `finished`: a disconnect that came as the reply ended was scheduled before the
            # callback could be removed; the cleanup below must not be cancelled by it.
            if not finished and not waiting.cancelled() and waiting.exception() is None \
                    and waiting.result()["type"] == "http.disconnect":
                left = True
                task.cancel()

        listener = asyncio.ensure_future(receive())
        listener.add_done_callback(hang_up)
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.headers})
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except asyncio.CancelledError:
            if not left or task.uncancel():
                raise  # a shutdown or an outer cancel, not the client leaving
        except ClientStalled as exc:
            stalled = exc
        except OSError:
            pass  # the connection broke while sending: the client is gone
        finally:
            finished = True
            listener.remove_done_callback(hang_up)
            listener.cancel()
            if stalled is not None:
                try:
                    await self.chunks.athrow(stalled)
                except (StopAsyncIteration, ClientStalled):
                    pass
            await self.chunks.aclose()  # the relay's own cleanup runs now, whatever happened
