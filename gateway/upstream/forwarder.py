"""The upstream call: one pooled aiohttp session per worker, failover, and the byte relay.

An unpinned request that fails before any byte reached the client (unreachable, timed out, or
answered 401/403/429/5xx) moves to the next healthy instance, up to `failover_hops` times; any
other error status goes back at once with the upstream's message. Once the answer streams, bytes
go to the client as they arrive: untouched on same-protocol routes, through the route's stream
translator otherwise. A failure after that point ends the stream with an error event in the
frontend's shape. When the client leaves, the upstream response is closed at once.
"""
from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Callable

import aiohttp
from starlette.responses import Response, StreamingResponse

from gateway.config import Upstream
from gateway.errors import (GatewayError, anthropic_stream_error, openai_stream_error,
                            upstream_error_message)
from gateway.routing.context import RouteContext
from gateway.upstream.instances import Instance, InstancePool, mask_key
from gateway.observer import Observer, answer_usage

ANTHROPIC_VERSION = "2023-06-01"
_PATHS = {"openai": "/chat/completions", "anthropic": "/messages"}
# No proxy between the gateway and a client may hold back a stream (nginx reads X-Accel-Buffering).
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_ERROR_BODY_LIMIT = 64 * 1024


def _moves_on(status: int) -> bool:
    """Statuses that say "this instance, now" rather than "this request": worth another instance."""
    return status in (401, 403, 408, 429) or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def create_session(settings: Upstream) -> aiohttp.ClientSession:
    """The worker's one client session (call inside the running loop)."""
    connector = aiohttp.TCPConnector(limit=settings.max_connections, ttl_dns_cache=300)
    # Until the answer starts, any silence longer than first_byte_timeout ends the request
    # (aiohttp's sock_read); a stream's gaps are then watched by _IdleWatch instead, because
    # sock_read re-arms a timer on every chunk received.
    # connect_timeout bounds opening a connection; a request queued behind max_connections
    # waits for a free one as long as it would wait for its answer to start.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout,
                                    connect=max(settings.first_byte_timeout,
                                                settings.connect_timeout),
                                    sock_read=settings.first_byte_timeout)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 skip_auto_headers=("User-Agent",))


class _IdleWatch:
    """Closes a stream's upstream response after `limit` seconds without a chunk.

    One timer per stream that re-arms itself only when it fires; the relay just stamps the time
    of each chunk (cheaper than a timer per chunk on a 50-event stream).
    """
    __slots__ = ("_loop", "_limit", "_upstream", "_handle", "last", "fired")

    def __init__(self, upstream: aiohttp.ClientResponse, limit: float):
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._upstream = upstream
        self.last = self._loop.time()
        self.fired = False
        self._handle = self._loop.call_at(self.last + limit, self._check)

    def _check(self) -> None:
        due = self.last + self._limit
        if self._loop.time() >= due:
            self.fired = True
            self._upstream.close()  # the pending read fails, and the relay reports the timeout
        else:
            self._handle = self._loop.call_at(due, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


class _Unreachable(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession, settings: Upstream,
                 pools: dict[str, InstancePool], observer: Observer):
        self._session = session
        self._settings = settings
        self._pools = pools
        self._observer = observer
        self._headers: dict[tuple[str, str], dict[str, str]] = {}

    def _headers_for(self, instance: Instance, protocol: str) -> dict[str, str]:
        """The upstream headers: the instance's own key, nothing of the client's."""
        key = (instance.name, protocol)
        headers = self._headers.get(key)
        if headers is None:
            # Answers are relayed (or translated) as the bytes arrive, never decompressed, so
            # the upstream must not compress them (aiohttp would offer gzip by default).
            headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
            if protocol == "openai":
                headers["Authorization"] = "Bearer " + instance.api_key
            else:
                headers["x-api-key"] = instance.api_key
                headers["anthropic-version"] = ANTHROPIC_VERSION
            self._headers[key] = headers
        return headers

    async def forward(self, ctx: RouteContext, payload: bytes) -> Response:
        pool = self._pools[ctx.backend]
        instance = ctx.instance
        tried: list[Instance] = []
        hops_left = 0 if ctx.pinned else self._settings.failover_hops
        started = time.monotonic()
        while True:
            retry_after = None
            try:
                upstream = await self._open(instance, ctx.protocol, payload)
            except _Unreachable as exc:
                failure = GatewayError(exc.status, f"upstream {instance.name}: {exc.message}")
            else:
                if upstream.status < 400:
                    pool.succeeded(instance)
                    self._observer.first_byte(ctx, time.monotonic() - started)
                    return await self._answer(ctx, upstream)
                failure, retry_after = await self._read_error(upstream, instance)
                if not _moves_on(upstream.status):
                    raise failure
            pool.failed(instance, retry_after)
            tried.append(instance)
            following = pool.choose(avoid=tuple(tried)) if hops_left > 0 else None
            if following is None:
                raise failure
            self._observer.failover(instance, failure.status)
            hops_left -= 1
            instance = ctx.instance = following

    async def _open(self, instance: Instance, protocol: str, payload: bytes):
        url = instance.api_url + _PATHS[protocol]
        headers = self._headers_for(instance, protocol)
        for attempt in (1, 2):
            try:
                return await self._session.post(url, data=payload, headers=headers)
            except aiohttp.ServerDisconnectedError:
                # A pooled keep-alive connection the upstream had already closed: one more try
                # on a fresh connection is safe, nothing reached the client yet.
                if attempt == 2:
                    raise _Unreachable(502, "closed the connection before answering") from None
            except aiohttp.ConnectionTimeoutError:
                settings = self._settings
                raise _Unreachable(502, "no connection within connect_timeout "
                                        f"({settings.connect_timeout:g}s), or none of the "
                                        f"{settings.max_connections} (upstream.max_connections) "
                                        "free within first_byte_timeout "
                                        f"({settings.first_byte_timeout:g}s)") from None
            except TimeoutError:
                raise _Unreachable(504, "no response within first_byte_timeout "
                                        f"({self._settings.first_byte_timeout:g}s)") from None
            except aiohttp.ClientConnectorError as exc:
                raise _Unreachable(502, f"cannot connect to {url}: {exc.os_error}") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise _Unreachable(502, f"request failed: {type(exc).__name__}") from None

    async def _read_error(self, upstream: aiohttp.ClientResponse,
                          instance: Instance) -> tuple[GatewayError, float | None]:
        body = b""
        try:
            while len(body) < _ERROR_BODY_LIMIT:  # read(n) returns what has arrived so far
                chunk = await upstream.content.read(_ERROR_BODY_LIMIT - len(body))
                if not chunk:
                    break
                body += chunk
        except (aiohttp.ClientError, TimeoutError, OSError):
            pass  # what arrived before the break is still worth quoting
        finally:
            upstream.close()
        headers = {}
        retry_after_header = upstream.headers.get("retry-after")
        if retry_after_header:
            headers["retry-after"] = retry_after_header
        message = upstream_error_message(body, upstream.status)
        if instance.api_key and instance.api_key in message:
            # Some upstreams quote the key they refused; the client must never see it.
            message = message.replace(instance.api_key, mask_key(instance.api_key))
        error = GatewayError(upstream.status, message, headers=headers)
        return error, parse_retry_after(retry_after_header)

    async def _answer(self, ctx: RouteContext, upstream: aiohttp.ClientResponse) -> Response:
        translation = ctx.translation
        if ctx.stream and upstream.content_type == "text/event-stream":
            translator = translation.stream(ctx) if translation.stream is not None else None
            return StreamingResponse(self._relay(ctx, upstream, translator),
                                     status_code=upstream.status,
                                     headers={**_SSE_HEADERS, "x-request-id": ctx.request_id},
                                     media_type="text/event-stream")
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            upstream.close()
            raise GatewayError(502, f"upstream {ctx.instance.name}: the answer broke off "
                                    f"({type(exc).__name__})") from None
        except asyncio.CancelledError:  # the client left: the upstream stops generating too
            upstream.close()
            raise
        upstream.release()
        if translation.response is not None:
            body, usage = translation.response(body)
        else:
            usage = answer_usage(ctx.protocol, body)
        self._observer.finished(ctx, upstream.status, usage)
        return Response(body, status_code=upstream.status, headers={"x-request-id": ctx.request_id},
                        media_type=upstream.content_type or "application/json")

    async def _relay(self, ctx: RouteContext, upstream: aiohttp.ClientResponse, translator):
        """Yield the answer as it arrives; the one place a stream can break, so the one place
        that turns a break into the frontend's error event."""
        finished = False
        status = upstream.status
        if upstream.connection is not None:  # None when the whole answer has already arrived
            upstream.connection.protocol.read_timeout = None  # _IdleWatch keeps time from here
        watch = _IdleWatch(upstream, self._settings.idle_timeout)
        clock = watch._loop.time
        seen = self._observer.stream_started(ctx)  # in-flight gauge; reads pass-through usage
        try:
            if translator is None:
                async for chunk in upstream.content.iter_any():
                    watch.last = clock()
                    seen(chunk)
                    yield chunk
                if watch.fired:  # closing may read as a clean end: it was not
                    raise TimeoutError
            else:
                feed = translator.feed
                async for chunk in upstream.content.iter_any():
                    watch.last = clock()
                    out = feed(chunk)
                    if out:
                        yield out
                if watch.fired:
                    raise TimeoutError
                tail = translator.end()
                if tail:
                    yield tail
            finished = True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            status = 502
            if watch.fired:
                reason = f"no data within idle_timeout ({self._settings.idle_timeout:g}s)"
            else:
                reason = f"connection lost ({type(exc).__name__})"
            message = f"upstream {ctx.instance.name}: the stream broke off: {reason}"
            if translator is not None:
                yield translator.fail(502, message)
            else:
                yield _stream_error(ctx.frontend)(502, message)
        finally:
            watch.cancel()
            # A finished answer frees its connection for reuse; anything else (the client left,
            # the upstream broke) closes it so the upstream stops generating.
            if finished:
                upstream.release()
            else:
                upstream.close()
                if status == 200:
                    status = 499  # the client went away mid-stream
            usage = translator.usage if translator is not None else seen.usage()
            self._observer.stream_finished(ctx, status, usage)


def _stream_error(frontend: str) -> Callable[[int, str], bytes]:
    return openai_stream_error if frontend == "openai" else anthropic_stream_error
