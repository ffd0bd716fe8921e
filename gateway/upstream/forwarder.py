"""The upstream call: one pooled aiohttp session per worker, failover, and the relay.

Every upstream answer is first read into a verdict (`verdict.py`: status, headers and the start
of the body, since OpenCode Go's statuses do not say what happened), and the forwarder acts on
the verdict alone. An unpinned request whose verdict says "this key, now" (a usage limit, a
per-model cap, a refused or subscription-less key, unreachable, timed out, 408/429/5xx) moves to
the next instance the key choice ranked for it, up to `failover_hops` times, before any byte
reached the client; anything about the request itself (an unknown model, a console setting, a
block at OpenCode's edge, a 400) goes back at once. Every error names the instance that produced
it, never its key. A model sent to the wrong wire ("not supported for format …") is reported as
`WrongWire`, so the caller can try the model's other wires.

Each call carries the instance's key, the conversation's session, and a User-Agent that says
which tool called through which gateway (`identity.py`); its URL follows the instance's layout
(`urls.py`).

Once the answer streams, bytes go to the client as they arrive: untouched on same-protocol
routes (up to the protocol's end: OpenCode Go's cost frame after it is read, not relayed),
through the route's stream translation otherwise. A failure after that point ends the stream
with an error event in the frontend's shape. When the client leaves, the upstream response is
closed at once. Every byte that leaves passes the key redactor.
"""
from __future__ import annotations

import asyncio
import difflib
import time

import aiohttp

from gateway.big_body import BIG, BodyPieces, PiecewisePayload
from gateway.config import Upstream
from gateway.errors import (GatewayError, anthropic_stream_error, openai_stream_error,
                            read_upstream_error)
from gateway.masking import mask_url
from gateway.observer import Observer
from gateway.replies import Reply, StreamReply
from gateway.routing.context import RouteContext
from gateway.server import ClientStalled
from gateway.state.reasoning import ReasoningMemory
from gateway.translate import chat_answer
from gateway.translate.hub import StreamWriter
from gateway.translate.responses_answer import stream_failure as responses_stream_error
from gateway.translate.sse import SSELimitError
from gateway.upstream.identity import GATEWAY_TOKEN, upstream_user_agent
from gateway.upstream.instances import NO_SUBSCRIPTION, Instance, InstancePool
from gateway.upstream.passthrough import (END_MARKERS, ERROR_MARKERS, TRAILER_LIMIT, EndFinder,
                                          StreamTap, answer_usage, failed_end, stream_error,
                                          trailer_cost)
from gateway.upstream.reading import read_at_most
from gateway.upstream.redact import Redactor
from gateway.upstream.urls import call_url
from gateway.upstream.verdict import OK as OK_VERDICT
from gateway.upstream.verdict import Kind, Verdict, judge, parse_retry_after  # noqa: F401

ANTHROPIC_VERSION = "2023-06-01"
SESSION_HEADER = "x-opencode-session"
_ERROR_BODY_LIMIT = 64 * 1024
POOL_RETRY_AFTER = "2"  # seconds: a busy pool frees connections as answers end
# Rests when the upstream gives no Retry-After: a window limit lasts at least until the 5-hour
# window moves on; a missing subscription or a refused key is not fixed in minutes either.
_LIMIT_REST = 3600.0
_NO_SUBSCRIPTION_REST = 6 * 3600.0
_BAD_KEY_REST = 300.0
# Verdicts after which another key may do better.
_MOVES_ON = frozenset((Kind.USAGE_LIMIT, Kind.MODEL_CAP, Kind.NO_ENTITLEMENT, Kind.BAD_KEY,
                      Kind.RETRYABLE))


def create_session(settings: Upstream) -> aiohttp.ClientSession:
    """The worker's one client session (call inside the running loop)."""
    connector = aiohttp.TCPConnector(limit=settings.max_connections, ttl_dns_cache=300)
    # Until the answer starts, any silence longer than first_byte_timeout ends the request
    # (aiohttp's sock_read); a stream's gaps are then watched by _IdleWatch instead, because
    # sock_read re-arms a timer on every chunk received.
    # connect_timeout bounds opening a connection; a request queued behind max_connections
    # waits pool_timeout at most for a free one, opening it included (then Forwarder._open
    # answers 503).
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout,
                                    connect=settings.pool_timeout,
                                    sock_read=settings.first_byte_timeout)
    # Every call sets its own User-Agent (identity.py); the session's default only stands in
    # for a call that forgot, so that none ever goes out as aiohttp's library default.
    # No cookie jar: an upstream's cookies (its edge sets some) must not ride on the next
    # request, which may be another client's; and an empty jar still costs every call a look.
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 headers={"User-Agent": GATEWAY_TOKEN},
                                 cookie_jar=aiohttp.DummyCookieJar())


def auth_headers(instance: Instance, protocol: str) -> dict[str, str]:
    """The upstream headers of a wire: the instance's own key, nothing of the client's."""
    # Answers are relayed (or translated) as the bytes arrive, never decompressed, so the
    # upstream must not compress them (aiohttp would offer gzip by default).
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if protocol == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if not instance.layout.bearer_messages:  # the zen layout's /messages: x-api-key only
            headers["x-api-key"] = instance.api_key
            return headers
    elif protocol == "gemini":
        headers["x-goog-api-key"] = instance.api_key
        return headers
    headers["Authorization"] = "Bearer " + instance.api_key
    return headers


def read_headers(instance: Instance, session: str) -> dict[str, str]:
    """The headers of a read call (`/models`, `/usage`): Bearer, no conversation."""
    return {"Authorization": "Bearer " + instance.api_key, "Accept-Encoding": "identity",
            SESSION_HEADER: session, "User-Agent": upstream_user_agent(None, instance.user_agent)}


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


class Refusal(GatewayError):
    """An upstream refusal, as the client will see it, with the verdict it came from."""

    def __init__(self, kind: Kind, status: int, message: str, **extra):
        super().__init__(status, message, **extra)
        self.kind = kind


class WrongWire(Refusal):
    """The upstream refused the model on this wire ("Model X is not supported for format …")."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(Kind.WRONG_WIRE, status, message, **extra)


class ReasoningRequired(Refusal):
    """The upstream refused a tool-call turn without its reasoning ("must be passed back")."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(Kind.REASONING_REQUIRED, status, message, **extra)


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

    def _headers_for(self, instance: Instance, ctx: RouteContext) -> dict[str, str]:
        key = (instance.name, ctx.protocol)
        headers = self._headers.get(key)
        if headers is None:
            headers = self._headers[key] = auth_headers(instance, ctx.protocol)
        headers = {**headers, "User-Agent": upstream_user_agent(ctx.client_ua,
                                                                instance.user_agent)}
        if ctx.session:
            headers[SESSION_HEADER] = ctx.session
        for name, value in ctx.client_headers:
            headers[name] = value
        return headers

    async def forward(self, ctx: RouteContext, payload: bytes | BodyPieces) -> Reply | StreamReply:
        pool = self._pools[ctx.backend]
        instance = ctx.instance
        tried: list[Instance] = []
        hops_left = 0 if ctx.pinned else self._settings.failover_hops
        started = time.monotonic()
        ctx.sent_bytes = len(payload)
        # a big body goes in pieces, the loop running between them (big_body.py)
        data = payload if ctx.sent_bytes <= BIG else PiecewisePayload(payload)
        while True:
            try:
                upstream = await self._open(instance, ctx, data)
            except _Unreachable as exc:
                failure = Refusal(Kind.RETRYABLE, exc.status,
                                  f"upstream {instance.name}: {exc.message}")
                pool.failed(instance)
            else:
                if upstream.status < 400:
                    body = None
                    if not (ctx.stream and upstream.content_type == "text/event-stream"):
                        # A whole answer is read here: a 200 may still carry a usage limit.
                        body = await self._read_whole(ctx, upstream)
                        verdict = judge(upstream.status, upstream.headers, body, ctx.model_id)
                    if body is None or verdict is OK_VERDICT:
                        pool.succeeded(instance)
                        self._observer.first_byte(ctx, time.monotonic() - started)
                        return await self._answer(ctx, upstream, body)
                    failure = self._act(verdict, instance, pool, ctx)
                else:
                    failure = await self._refused(upstream, instance, pool, ctx)
                if failure.kind not in _MOVES_ON:
                    raise failure
            tried.append(instance)
            following = self._next_instance(ctx, pool, tried) if hops_left > 0 else None
            if following is None:
                if ctx.limit_hit is not None and not ctx.pinned:
                    now = time.time()
                    if all(i.limited(now) or i.capped(ctx.model_id, now)
                           for i in pool.instances):
                        raise pool.all_resting_error(model=ctx.model_id)
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
            if candidate not in tried and candidate.available(now) and \
                    not candidate.capped(ctx.model_id, now):
                return candidate
        return pool.choose(avoid=tuple(tried), model=ctx.model_id)

    async def _open(self, instance: Instance, ctx: RouteContext,
                    payload: bytes | PiecewisePayload):
        url = call_url(instance, ctx.protocol, ctx.model_id, ctx.stream)
        headers = self._headers_for(instance, ctx)
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
                if self._pool_full():  # every instance shares the pool: no failover helps
                    self._observer.pool_timeout()
                    raise GatewayError(503, "the gateway is busy: none of its "
                                            f"{settings.max_connections} upstream connections "
                                            "(upstream.max_connections) came free within "
                                            f"upstream.pool_timeout ({settings.pool_timeout:g}s); "
                                            "retry shortly",
                                       headers={"retry-after": POOL_RETRY_AFTER}) from None
                raise _Unreachable(502, "no connection within connect_timeout "
                                        f"({settings.connect_timeout:g}s)") from None
            except TimeoutError:
                raise _Unreachable(504, "no response within first_byte_timeout "
                                        f"({self._settings.first_byte_timeout:g}s)") from None
            except aiohttp.ClientConnectorError as exc:
                raise _Unreachable(502, f"cannot connect to {mask_url(url)}: "
                                        f"{exc.os_error}") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise _Unreachable(502, f"request failed: {type(exc).__name__}") from None

    def _pool_full(self) -> bool:
        """Whether every connection the pool may hold is in use (aiohttp keeps them in
        `_acquired`; without it, a timeout is taken for a connect timeout)."""
        connector = self._session.connector
        limit = connector.limit if connector is not None else 0
        return bool(limit) and len(getattr(connector, "_acquired", ())) >= limit

    async def _refused(self, upstream: aiohttp.ClientResponse, instance: Instance,
                       pool: InstancePool, ctx: RouteContext) -> "Refusal":
        """The error an upstream answered with, acted on (see `_act`)."""
        try:
            body = await read_at_most(upstream.content, _ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError, OSError):
            body = b""  # the status alone still says what happened
        finally:
            upstream.close()
        return self._act(judge(upstream.status, upstream.headers, body, ctx.model_id),
                         instance, pool, ctx)

    def _act(self, verdict: Verdict, instance: Instance, pool: InstancePool,
             ctx: RouteContext) -> "Refusal":
        """Rests what the verdict says to rest; the error the client gets if nothing else
        answers, naming the instance (never its key)."""
        kind = verdict.kind
        # Some upstreams quote the key they refused; the client must never see it.
        said = self._redactor.text(verdict.message)
        name = instance.name
        headers = {}
        if verdict.retry_after is not None:
            headers["retry-after"] = str(int(verdict.retry_after))
        if kind is Kind.USAGE_LIMIT:
            limit = verdict.limit_name
            pool.limit_reached(instance, verdict.retry_after or _LIMIT_REST, limit)
            ctx.limit_hit = limit
            self._observer.limit_reached(instance, limit)
            return Refusal(kind, 429, f"upstream {name}: {said}", headers=headers,
                           code="usage_limit_reached")
        if kind is Kind.MODEL_CAP:
            limit = verdict.limit_name
            pool.model_capped(instance, verdict.model, verdict.retry_after or _LIMIT_REST, limit)
            ctx.limit_hit = limit
            self._observer.limit_reached(instance, limit)
            return Refusal(kind, 429, f"upstream {name}: {said} (this key's cap for "
                                      f"{verdict.model} alone; its other models are still "
                                      "served)", headers=headers, code="usage_limit_reached")
        if kind is Kind.UNKNOWN_MODEL:
            model = verdict.model or ctx.model_id
            known = ctx.catalogues[ctx.backend].advertised()
            near = difflib.get_close_matches(model, known, n=3, cutoff=0.5)
            hint = (f"; nearest known ids: {', '.join(near)}" if near else
                    f"; known ids: {', '.join(sorted(known))}")
            return Refusal(kind, 404, f"upstream {name}: OpenCode Go does not serve the model "
                                      f"{model!r}{hint} (upstream said: {said})",
                           param="model", code="model_not_found")
        if kind is Kind.NO_ENTITLEMENT:
            pool.limit_reached(instance, verdict.retry_after or _NO_SUBSCRIPTION_REST,
                               NO_SUBSCRIPTION)
            return Refusal(kind, 403, f"upstream {name}: OpenCode Go says this instance's "
                                      "workspace has no Go subscription (EntitlementError); "
                                      "subscribe to Go in that workspace's console or give the "
                                      f"gateway another key (upstream said: {said})",
                           code="no_go_subscription")
        if kind is Kind.EDGE_BLOCKED:
            ray = f", Cloudflare ray id {verdict.ray_id}" if verdict.ray_id else ""
            return Refusal(kind, 403, f"upstream {name}: the request was blocked at OpenCode's "
                                      f"edge (HTTP 403 from Cloudflare, {verdict.message}{ray}) "
                                      "before OpenCode Go read it; another key would be blocked "
                                      "the same way. Retry later; if it persists, report the "
                                      "ray id to OpenCode", code="blocked_at_edge")
        if kind is Kind.CONSOLE_SETTING:
            return Refusal(kind, 400, f"upstream {name}: {ctx.model_id} needs the workspace "
                                      f"setting \"{verdict.setting}\" turned on in the "
                                      "OpenCode console of this instance's key (upstream "
                                      f"said: {said})", param="model", code="console_setting")
        if kind is Kind.BAD_KEY:
            pool.failed(instance, max(verdict.retry_after or 0.0, _BAD_KEY_REST))
            return Refusal(kind, 502, f"upstream {name}: OpenCode Go refused the gateway's key "
                                      f"for instance {name} (HTTP {verdict.status}: {said}). "
                                      "This is the gateway's own upstream key, not the one your "
                                      "client sent: check the key the gateway is configured "
                                      "with", code="upstream_key_refused")
        if kind is Kind.WRONG_WIRE:
            return WrongWire(verdict.status, f"upstream {name}: {said}", headers=headers)
        if kind is Kind.REASONING_REQUIRED:
            return ReasoningRequired(verdict.status, said, headers=headers)
        if kind is Kind.RETRYABLE:
            pool.failed(instance, verdict.retry_after)
        return Refusal(kind, verdict.status, f"upstream {name}: {said}", headers=headers)

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

    async def _answer(self, ctx: RouteContext, upstream: aiohttp.ClientResponse,
                      body: bytes | None = None) -> Reply | StreamReply:
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
        if body is None:
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
            protocol = upstream.connection.protocol
            protocol.read_timeout = None  # _IdleWatch keeps time from here
            # The setter leaves the timer the last read armed (first_byte_timeout): re-arming
            # with no timeout cancels it, or a silence right after the start would end there.
            protocol.start_timeout()
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
        redact = self._redactor.passthrough(ctx.protocol)
        feed = redact.feed
        trailer = b""
        relaying = True
        self._observer.stream_started(ctx)
        events = 0
        try:
            async for chunk in upstream.content.iter_any():
                watch.last = clock()
                events += chunk.count(b"\n\n")
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
        except ClientStalled as exc:  # thrown in by StreamReply: the client stopped reading
            failure = (499, str(exc))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failure = self._broken(ctx, watch, exc)
            status = failure[0]
            yield redact.whole_events() + _stream_error(ctx.frontend, tap, *failure)
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
            ctx.events_seen = events
            if recorder is not None and finished and failure is None:
                self._remember(ctx, "".join(recorder.reasoning_parts), recorder.call_ids)
            self._observer.stream_finished(ctx, status, tap.usage(), trailer_cost(trailer),
                                           self._redactor.text(failure[1]) if failure else None)

    async def _relay_translated(self, ctx: RouteContext, upstream: aiohttp.ClientResponse,
                                translation):
        """A stream in another protocol: each upstream chunk through the route's translation."""
        status = upstream.status
        finished = False
        stall = None
        watch = self._start_relay(upstream)
        clock = watch._loop.time
        redact = self._redactor.bytes
        reader = translation.reader
        remembering = getattr(reader, "call_ids", None) is not None
        self._observer.stream_started(ctx)
        events = 0
        try:
            feed = translation.feed
            async for chunk in upstream.content.iter_any():
                watch.last = clock()
                events += chunk.count(b"\n\n")
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
        except ClientStalled as exc:  # thrown in by StreamReply: the client stopped reading
            stall = str(exc)
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
            ctx.events_seen = events
            if remembering and finished and failure is None and reader.call_ids:
                self._remember(ctx, "".join(reader.reasoning_parts), reader.call_ids)
            error = stall or (self._redactor.text(failure[1]) if failure else None)
            self._observer.stream_finished(ctx, status, translation.full_usage, translation.cost,
                                           error)


def _stream_error(frontend: str, tap: StreamTap, status: int, message: str) -> bytes:
    """The event that ends a pass-through stream in error, in the client's protocol."""
    if frontend == "anthropic":
        return anthropic_stream_error(status, message)
    if frontend == "responses":  # it goes on with the response the client has open
        return responses_stream_error(status, message, *tap.responses_position())
    return openai_stream_error(status, message)

