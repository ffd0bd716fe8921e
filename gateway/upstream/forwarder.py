"""The upstream call: one pooled aiohttp session per worker, failover, and the relay.

An unpinned request that fails before any byte reached the client (unreachable, timed out, or
answered 401/403/408/429/5xx) moves to the next instance the key choice ranked for it, up to
`failover_hops` times; any other error status goes back at once with the upstream's message.
OpenCode Go's `GoUsageLimitError` rests that key until its reset for every request; a model sent
to the wrong wire ("not supported for format …") is reported as `WrongWire`, so the caller can
try the model's other wires.

Once the answer streams, bytes go to the client as they arrive: untouched on same-protocol
routes (up to the protocol's end: OpenCode Go's cost frame after it is read, not relayed),
through the route's stream translation otherwise. A failure after that point ends the stream
with an error event in the frontend's shape. When the client leaves, the upstream response is
closed at once. Every byte that leaves passes the key redactor.
"""
from __future__ import annotations

import asyncio
import email.utils
import re
import time

import aiohttp

from gateway.config import Upstream
from gateway.errors import (GatewayError, anthropic_stream_error, openai_stream_error,
                            read_upstream_error)
from gateway.observer import Observer
from gateway.replies import Reply, StreamReply
from gateway.routing.context import RouteContext
from gateway.state.reasoning import ReasoningMemory
from gateway.translate import chat_answer
from gateway.translate.hub import StreamWriter
from gateway.translate.responses_answer import stream_failure as responses_stream_error
from gateway.translate.sse import SSELimitError
from gateway.upstream.instances import Instance, InstancePool
from gateway.upstream.passthrough import (END_MARKERS, ERROR_MARKERS, TRAILER_LIMIT, EndFinder,
                                          StreamTap, answer_usage, failed_end, stream_error,
                                          trailer_cost)
from gateway.upstream.reading import read_at_most
from gateway.upstream.redact import Redactor

ANTHROPIC_VERSION = "2023-06-01"
SESSION_HEADER = "x-opencode-session"
PATHS = {"openai": "/chat/completions", "anthropic": "/messages", "responses": "/responses"}
_ERROR_BODY_LIMIT = 64 * 1024
USAGE_LIMIT_ERROR = "GoUsageLimitError"
_WRONG_WIRE = re.compile(r"not supported for format", re.IGNORECASE)
# DeepSeek's refusal of a tool-call turn that lost its reasoning.
_REASONING_REQUIRED = re.compile(r"reasoning_content.*passed back", re.IGNORECASE | re.DOTALL)


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


def auth_headers(instance: Instance, protocol: str) -> dict[str, str]:
    """The upstream headers of a wire: the instance's own key, nothing of the client's."""
    # Answers are relayed (or translated) as the bytes arrive, never decompressed, so the
    # upstream must not compress them (aiohttp would offer gzip by default).
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if protocol == "anthropic":  # OpenCode Go's /messages takes x-api-key only
        headers["x-api-key"] = instance.api_key
        headers["anthropic-version"] = ANTHROPIC_VERSION
    else:
        headers["Authorization"] = "Bearer " + instance.api_key
    return headers


class _IdleWatch:
    """Closes a stream's upstream response after `limit` seconds without a chunk, or when the
    gateway must end the stream (`cut`: the graceful-shutdown deadline).

    One timer per stream that re-arms itself only when it fires; the relay just stamps the time
    of each chunk (cheaper than a timer per chunk on a 50-event stream). Closing the upstream
    makes the relay's pending read fail, and the relay ends the stream with an error event.
    """
    __slots__ = ("_loop", "_limit", "_upstream", "_handle", "last", "fired", "cut_reason")

    def __init__(self, upstream: aiohttp.ClientResponse, limit: float):
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        self._upstream = upstream
        self.last = self._loop.time()
        self.fired = False
        self.cut_reason: str | None = None
        self._handle = self._loop.call_at(self.last + limit, self._check)

    def cut(self, reason: str) -> None:
        self.cut_reason = reason
        self._upstream.close()

    @property
    def stopped(self) -> bool:
        """The gateway closed the upstream itself: a clean-looking end was not one."""
        return self.fired or self.cut_reason is not None

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


class WrongWire(GatewayError):
    """The upstream refused the model on this wire ("Model X is not supported for format …")."""


class ReasoningRequired(GatewayError):
    """The upstream refused a tool-call turn without its reasoning ("must be passed back")."""


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession, settings: Upstream,
                 pools: dict[str, InstancePool], observer: Observer, redactor: Redactor,
                 memory: ReasoningMemory | None = None):
        self._session = session
        self._settings = settings
        self._pools = pools
        self._observer = observer
        self._redactor = redactor
        self._memory = memory
        self._live: set[_IdleWatch] = set()  # the streams being relayed now
        self._headers: dict[tuple[str, str], dict[str, str]] = {}

    def shutting_down(self, graceful_timeout: float) -> None:
        """The worker is stopping: streams still running just before the graceful deadline end
        with an error event the client can read, instead of being cut mid-event."""
        delay = max(graceful_timeout - 1.0, 0.0)
        asyncio.get_running_loop().call_later(delay, self._cut_streams)

    def _cut_streams(self) -> None:
        for watch in list(self._live):
            watch.cut("the gateway is shutting down and could not wait for the rest of the "
                      "answer (server.graceful_timeout); retry the request")

    def _headers_for(self, instance: Instance, protocol: str, session: str) -> dict[str, str]:
        key = (instance.name, protocol)
        headers = self._headers.get(key)
        if headers is None:
            headers = self._headers[key] = auth_headers(instance, protocol)
        return {**headers, SESSION_HEADER: session} if session else headers

    async def forward(self, ctx: RouteContext, payload: bytes) -> Reply | StreamReply:
        pool = self._pools[ctx.backend]
        instance = ctx.instance
        tried: list[Instance] = []
        hops_left = 0 if ctx.pinned else self._settings.failover_hops
        started = time.monotonic()
        while True:
            try:
                upstream = await self._open(instance, ctx, payload)
            except _Unreachable as exc:
                failure = GatewayError(exc.status, f"upstream {instance.name}: {exc.message}")
                pool.failed(instance)
            else:
                if upstream.status < 400:
                    pool.succeeded(instance)
                    self._observer.first_byte(ctx, time.monotonic() - started)
                    return await self._answer(ctx, upstream)
                failure = await self._refused(upstream, instance, pool, ctx)
                if not _moves_on(upstream.status):
                    raise failure
            tried.append(instance)
            following = self._next_instance(ctx, pool, tried) if hops_left > 0 else None
            if following is None:
                if ctx.limit_hit is not None and not ctx.pinned:
                    candidates = [i for i in pool.instances if i not in tried] + tried
                    if all(i.limited(time.time()) for i in candidates):
                        raise pool.all_resting_error()
                raise failure
            self._observer.failover(instance, failure.status)
            hops_left -= 1
            instance = ctx.instance = following

    @staticmethod
    def _next_instance(ctx: RouteContext, pool: InstancePool,
                       tried: list[Instance]) -> Instance | None:
        """The next of the instances the key choice ranked for this request, else any other."""
        now = time.time()
        for candidate in ctx.fallbacks:
            if candidate not in tried and candidate.available(now):
                return candidate
        return pool.choose(avoid=tuple(tried))

    async def _open(self, instance: Instance, ctx: RouteContext, payload: bytes):
        url = instance.api_url + PATHS[ctx.protocol]
        headers = self._headers_for(instance, ctx.protocol, ctx.session)
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

    async def _refused(self, upstream: aiohttp.ClientResponse, instance: Instance,
                       pool: InstancePool, ctx: RouteContext) -> GatewayError:
        """The error an upstream answered with; rests the instance when the error says to."""
        try:
            body = await read_at_most(upstream.content, _ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError, OSError):
            body = b""  # the status alone still says what happened
        finally:
            upstream.close()
        status = upstream.status
        headers = {}
        retry_after_header = upstream.headers.get("retry-after")
        if retry_after_header:
            headers["retry-after"] = retry_after_header
        said = read_upstream_error(body, status)
        # Some upstreams quote the key they refused; the client must never see it.
        message = self._redactor.text(said.message)
        retry_after = parse_retry_after(retry_after_header)
        if status == 429 and said.type == USAGE_LIMIT_ERROR:
            limit = said.limit_name or "usage"
            # Without a Retry-After the 5-hour window is the shortest a limit can last.
            pool.limit_reached(instance, retry_after if retry_after else 3600.0, limit)
            ctx.limit_hit = limit
            self._observer.limit_reached(instance, limit)
            return GatewayError(429, message, headers=headers, code="usage_limit_reached")
        if _moves_on(status):
            pool.failed(instance, retry_after)
        if status in (400, 404) and _WRONG_WIRE.search(message):
            return WrongWire(status, message, headers=headers)
        if status == 400 and _REASONING_REQUIRED.search(message):
            return ReasoningRequired(status, message, headers=headers)
        return GatewayError(status, message, headers=headers)

    def _keeps_reasoning(self, ctx: RouteContext) -> bool:
        """Whether this answer's reasoning must be remembered for the conversation's next turn."""
        return (self._memory is not None and ctx.protocol == "openai"
                and ctx.catalogues[ctx.backend].needs_reasoning_back(ctx.model_id))

    def _remember(self, ctx: RouteContext, reasoning: str, call_ids: list[str]) -> None:
        if reasoning and call_ids:
            self._memory.remember(ctx.session, call_ids, reasoning)

    async def _remember_now(self, ctx: RouteContext, reader) -> None:
        """An answer's reasoning in the store before the client sees the answer end (the next
        turn may reach another worker at once)."""
        if reader.call_ids and reader.reasoning_parts:
            await self._memory.remember_now(ctx.session, reader.call_ids,
                                            "".join(reader.reasoning_parts))

    async def _answer(self, ctx: RouteContext,
                      upstream: aiohttp.ClientResponse) -> Reply | StreamReply:
        translation = ctx.translation
        keeps_reasoning = self._keeps_reasoning(ctx)
        if ctx.stream and upstream.content_type == "text/event-stream":
            if translation.stream is not None:
                stream = self._redactor.guard(translation.stream(ctx))
                if keeps_reasoning:
                    stream.reader.record()
                relay = self._relay_translated(ctx, upstream, stream)
            else:
                recorder = chat_answer.ChatStreamReader(StreamWriter()).record() \
                    if keeps_reasoning else None
                relay = self._relay_bytes(ctx, upstream, recorder)
            return StreamReply(relay, upstream.status, {"x-request-id": ctx.request_id})
        body = await self._read_whole(ctx, upstream)
        answer = None
        if translation.response is not None:
            body, answer = translation.response(body, ctx)
            usage, cost = answer.usage, answer.cost
        else:
            usage, cost = answer_usage(ctx.protocol, body)
        if keeps_reasoning:
            if answer is None:
                try:
                    answer = chat_answer.read_answer(body)
                except GatewayError:
                    answer = None
            if answer is not None and answer.reasoning and answer.tool_calls:
                await self._memory.remember_now(ctx.session, [call.id for call in
                                                              answer.tool_calls], answer.reasoning)
        body = self._redactor.bytes(body)
        self._observer.finished(ctx, upstream.status, usage, cost)
        return Reply(body, upstream.status, {"x-request-id": ctx.request_id},
                     (upstream.content_type or "application/json").encode("latin-1"))

    async def _read_whole(self, ctx: RouteContext, upstream: aiohttp.ClientResponse) -> bytes:
        limit = self._settings.max_answer_bytes
        declared = upstream.content_length
        if declared is not None and declared <= limit:
            try:  # the common answer: its length is known and within the bound
                body = await upstream.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                upstream.close()
                raise GatewayError(502, f"upstream {ctx.instance.name}: the answer broke off "
                                        f"({type(exc).__name__})") from None
            except BaseException:  # the client left: the upstream stops generating too
                upstream.close()
                raise
            upstream.release()
            return body
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in upstream.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise GatewayError(502, f"upstream {ctx.instance.name}: the answer is over "
                                            f"this gateway's limit of {limit} bytes "
                                            "(upstream.max_answer_bytes)")
                chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            upstream.close()
            raise GatewayError(502, f"upstream {ctx.instance.name}: the answer broke off "
                                    f"({type(exc).__name__})") from None
        except BaseException:  # over the limit, or the client left: the upstream stops too
            upstream.close()
            raise
        upstream.release()
        return b"".join(chunks)

    def _broken(self, ctx: RouteContext, watch: _IdleWatch,
                exc: BaseException) -> tuple[int, str]:
        """(status, message) of a stream that broke off."""
        if watch.cut_reason is not None:
            return 503, watch.cut_reason
        if watch.fired:
            reason = f"no data within idle_timeout ({self._settings.idle_timeout:g}s)"
        elif isinstance(exc, SSELimitError):
            reason = str(exc)
        else:
            reason = f"connection lost ({type(exc).__name__})"
        return 502, f"upstream {ctx.instance.name}: the stream broke off: {reason}"

    def _start_relay(self, upstream: aiohttp.ClientResponse) -> _IdleWatch:
        if upstream.connection is not None:  # None when the whole answer has already arrived
            upstream.connection.protocol.read_timeout = None  # _IdleWatch keeps time from here
        watch = _IdleWatch(upstream, self._settings.idle_timeout)
        self._live.add(watch)
        return watch

    def _end_relay(self, watch: _IdleWatch) -> None:
        watch.cancel()
        self._live.discard(watch)

    async def _relay_bytes(self, ctx: RouteContext, upstream: aiohttp.ClientResponse,
                           recorder: chat_answer.ChatStreamReader | None):
        """A same-protocol stream: the upstream's bytes up to its protocol's end (read by
        `recorder` too, when the answer's reasoning must be remembered)."""
        status = upstream.status
        failure: tuple[int, str] | None = None
        finished = False
        watch = self._start_relay(upstream)
        clock = watch._loop.time
        tap = StreamTap(ctx.protocol)
        find_end = EndFinder(END_MARKERS[ctx.protocol]).find
        error_marker = ERROR_MARKERS[ctx.protocol]
        redact = self._redactor.stream()
        feed = redact.feed
        trailer = b""
        relaying = True
        self._observer.stream_started(ctx)
        try:
            async for chunk in upstream.content.iter_any():
                watch.last = clock()
                if relaying:
                    end = find_end(chunk)
                    if end >= 0:
                        relaying = False
                        trailer = chunk[end:]
                        chunk = chunk[:end]
                        failure = failure or failed_end(ctx.protocol, chunk)
                    tap(chunk)
                    if recorder is not None:
                        recorder.feed(chunk)
                    if failure is None and error_marker in chunk:
                        failure = stream_error(ctx.protocol, chunk)
                    out = feed(chunk)
                    if not relaying:
                        out += redact.flush()
                        if recorder is not None and failure is None:
                            await self._remember_now(ctx, recorder)
                            recorder = None  # remembered
                    if out:
                        yield out
                elif len(trailer) < TRAILER_LIMIT:
                    trailer += chunk
                else:
                    break  # nothing a client gets; the cost frame is not that long
            if watch.stopped:  # closing may read as a clean end: it was not
                raise TimeoutError
            out = redact.flush()
            if out:
                yield out
            finished = True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failure = self._broken(ctx, watch, exc)
            status = failure[0]
            yield _stream_error(ctx.frontend, tap, *failure)
        finally:
            self._end_relay(watch)
            # A finished answer frees its connection for reuse; anything else (the client left,
            # the upstream broke) closes it so the upstream stops generating.
            if finished and not relaying and len(trailer) <= TRAILER_LIMIT:
                upstream.release()
            else:
                upstream.close()
                if status == 200 and not finished and failure is None:
                    status = 499  # the client went away mid-stream
            if failure is not None and status == 200:
                status = failure[0]
            if recorder is not None and finished and failure is None:
                self._remember(ctx, "".join(recorder.reasoning_parts), recorder.call_ids)
            self._observer.stream_finished(ctx, status, tap.usage(), trailer_cost(trailer),
                                           self._redactor.text(failure[1]) if failure else None)

    async def _relay_translated(self, ctx: RouteContext, upstream: aiohttp.ClientResponse,
                                translation):
        """A stream in another protocol: each upstream chunk through the route's translation."""
        status = upstream.status
        finished = False
        watch = self._start_relay(upstream)
        clock = watch._loop.time
        redact = self._redactor.bytes
        reader = translation.reader
        remembering = getattr(reader, "call_ids", None) is not None
        self._observer.stream_started(ctx)
        try:
            feed = translation.feed
            async for chunk in upstream.content.iter_any():
                watch.last = clock()
                out = feed(chunk)
                if remembering and reader.complete:
                    remembering = False
                    if translation.failure is None:
                        await self._remember_now(ctx, reader)
                if out:
                    yield redact(out)
            if watch.stopped:
                raise TimeoutError
            tail = translation.end()
            if tail:
                yield redact(tail)
            finished = True
        except (aiohttp.ClientError, TimeoutError, OSError, SSELimitError) as exc:
            status, message = self._broken(ctx, watch, exc)
            out = translation.fail(status, message)
            if out:
                yield redact(out)
        finally:
            self._end_relay(watch)
            if finished:
                upstream.release()
            else:
                upstream.close()
                if status == 200:
                    status = 499  # the client went away mid-stream
            failure = translation.failure
            if failure is not None and status == 200:
                status = failure[0]
            if remembering and finished and failure is None and reader.call_ids:
                self._remember(ctx, "".join(reader.reasoning_parts), reader.call_ids)
            self._observer.stream_finished(ctx, status, translation.full_usage, translation.cost,
                                           self._redactor.text(failure[1]) if failure else None)


def _stream_error(frontend: str, tap: StreamTap, status: int, message: str) -> bytes:
    """The event that ends a pass-through stream in error, in the client's protocol."""
    if frontend == "anthropic":
        return anthropic_stream_error(status, message)
    if frontend == "responses":  # it goes on with the response the client has open
        return responses_stream_error(status, message, *tap.responses_position())
    return openai_stream_error(status, message)

