"""How the gateway runs under hypercorn: its settings, and a fix for connections a client closed.

Settings (`hypercorn_config`): the uvloop worker, a listen backlog of 2048 (hypercorn's 100
refuses connection bursts), keep-alive reuse without a request cap, the header bound, the
graceful-shutdown deadline; access logging is the gateway's own; answers carry a `date` made once
a second and no `server` header (`ServerConfig`). Each worker's garbage collector is set for a
server's load once its app is built (`tune_garbage_collector`).

The fix (`close_connections_clients_closed`), and a notice of the graceful shutdown
(`on_shutdown`, so streams still running at its deadline end with an error event the client can
read rather than being torn): hypercorn 0.18's asyncio/uvloop TCP server keeps a
connection's socket until the task group of that connection ends, and that group holds the
keep-alive timer, which sleeps the whole `keep_alive_timeout` and wakes early only at shutdown.
So when a client closes an idle keep-alive connection, its read loop ends at once, but the socket
stays in CLOSE-WAIT, holding a file descriptor, for the full timeout (75 s here, 5 s by
default). A burst of short-lived connections (curl in a loop, SDKs without a pooled client, load
tests) then exhausts the descriptors and the server stops answering, /healthz included. The
fix closes an idle connection as soon as its read side has ended, and one with a request in
flight as soon as that answer is done: a request still being answered is never cut. The
keep-alive wait between two requests is a timer rather than hypercorn's task per wait (see
`_keep_alive`). It patches hypercorn's `TCPServer` in each worker process (the installed
package cannot be changed in place), checks first that it still has the shape it expects, and
otherwise leaves hypercorn alone and says so in the log; tests/test_hardening.py fails if a
hypercorn upgrade brings the leak back.

Two more patches of the same kind, applied with it (`refuse_http2`, `bound_writes`):

- The gateway speaks HTTP/1.1 only. hypercorn would switch a cleartext connection to HTTP/2 on an
  `Upgrade: h2c` request or on the prior-knowledge preface (`PRI * HTTP/2.0`), and its HTTP/2 has
  no bound on what a stream whose client never opens its receive window holds (~7 MB each,
  hundreds of MB for one connection). LLM clients speak HTTP/1.1 with keep-alive, and a TLS
  proxy in front (deploy/nginx.conf) terminates HTTP/2 itself and talks HTTP/1.1 to the
  gateway. So an `Upgrade: h2c` header is ignored (the request is answered in HTTP/1.1, as RFC
  9110 allows), and the HTTP/2 preface is answered with the HTTP/2 frames that say so (an empty
  SETTINGS, then GOAWAY with HTTP_1_1_REQUIRED) and the connection is closed.
- Every write to a client is bounded by `server.write_timeout`: a client that stops reading
  (its receive window stays shut) has its connection aborted, and the send the application was
  waiting on raises `ClientStalled`, so the stream ends, its upstream request is closed, and the
  access log says "client stall". Without the bound such a client holds its stream, and the
  upstream connection behind it, forever.
  The same patch makes the writes of one turn of the event loop one write to the socket:
  hypercorn writes a response's head, each body piece and the end of the message separately, and
  each write is a system call that, on loopback or a LAN, also does the receiver's TCP work.
  A whole answer is then one write instead of two; a stream's pieces that arrive together
  leave together. Nothing waits longer than the current turn of the loop.
"""
from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
import weakref
from typing import Callable
from wsgiref.handlers import format_date_time

from hypercorn.config import Config as HypercornConfig

from gateway.logs import LOG_CONFIG

_log = logging.getLogger("gateway")
_PATCHED = "_opencode_gateway_closes_on_eof"
_READ_ENDED = "_opencode_gateway_read_ended"
_HTTP1_ONLY = "_opencode_gateway_http1_only"
_HELD = "_opencode_gateway_held_writes"
_IDLE_TIMER = "_opencode_gateway_idle_timer"
# Held writes in one turn of the loop: past this many pieces, they go out at once (a relay that
# reads a large upstream buffer without yielding must not pile it up here).
_HOLD_AT_MOST = 64
# The server's HTTP/2 connection preface (an empty SETTINGS frame) and a GOAWAY frame (last
# stream 0, error HTTP_1_1_REQUIRED = 0xd): an HTTP/2 client reads "use HTTP/1.1" from them.
HTTP2_REFUSAL = (b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                 b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00" b"\x00\x00\x00\x0d")


class ClientStalled(ConnectionError):
    """A client read nothing of an answer for `server.write_timeout` seconds; its connection
    was aborted."""

# Called with `graceful_timeout` when the worker starts its graceful shutdown (SIGTERM): the
# forwarder then ends the streams still running with an error event before hypercorn cuts them.
_shutdown_callbacks: list[Callable[[float], None]] = []
_watched_contexts: weakref.WeakSet = weakref.WeakSet()
# The connections of this worker waiting for their next request (their keep-alive timer armed).
_idle_servers: weakref.WeakSet = weakref.WeakSet()
_closing: set[asyncio.Task] = set()  # the closes `_close_idle` started, until they end


def on_shutdown(callback: Callable[[float], None]) -> None:
    _shutdown_callbacks.append(callback)


def _watch_shutdown(context, graceful_timeout: float) -> None:
    """Once per worker: tell the callbacks when hypercorn's shutdown begins, and close the
    connections that wait idle for their next request (hypercorn's own keep-alive wait would)."""
    if context in _watched_contexts:
        return
    _watched_contexts.add(context)

    async def watch() -> None:
        await context.terminated.wait()
        for server in list(_idle_servers):
            _close_idle(server)
        for callback in _shutdown_callbacks:
            callback(graceful_timeout)

    asyncio.ensure_future(watch())


_date: list = [0, []]  # (the second, its `date` header)


class ServerConfig(HypercornConfig):
    """hypercorn's Config, whose headers on every answer are the `date` formatted once a second
    (hypercorn formats it anew for each answer, a few microseconds of every request) and no
    `server: hypercorn-h11` (it tells a client nothing it needs)."""

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        now = int(time.time())
        if now != _date[0]:
            _date[:] = [now, [(b"date", format_date_time(now).encode("ascii"))]]
        return list(_date[1])


# Container objects the collector lets pile up before a young-generation pass (Python: 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Once per worker, when its app is built: the collector's passes cost less.

    Each request's objects (its coroutines, futures, dicts) are freed by reference counting;
    the collector is for cycles. With its default threshold, the objects of the requests in
    flight (50 requests hold some thousands) alone set off a young pass every few requests,
    each walking all of them again: 2-5% of a whole answer's CPU, measured. At 20,000 a pass
    comes when cycles or a burst of requests really pile up. The objects made while starting
    (modules, config, catalogue) live as long as the worker: frozen, no full pass walks them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD)


def hypercorn_config(server, host: str, port: int, workers: int):
    """hypercorn's Config for `opencode-gateway serve` (server: the config's `server` section)."""
    config = ServerConfig()
    config.application_path = "gateway.asgi:app"
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.worker_class = "uvloop"
    # One worker runs in the serving process; more are spawned processes sharing the socket.
    config.workers = 0 if workers == 1 else workers
    config.backlog = server.backlog
    config.keep_alive_timeout = server.keep_alive_timeout
    config.keep_alive_max_requests = 1_000_000
    config.graceful_timeout = server.graceful_timeout
    config.h11_max_incomplete_size = server.max_header_bytes
    config.write_timeout = server.write_timeout  # read by the patched TCPServer (bound_writes)
    config.accesslog = None
    config.errorlog = "-"
    config.logconfig_dict = LOG_CONFIG  # JSON lines, in every worker (gateway/logs.py)
    return config


def close_connections_clients_closed() -> bool:
    """Patch hypercorn's TCP server in this process (see the module docstring); idempotent.
    False when hypercorn is missing or its internals changed (the patch is then not applied)."""
    try:
        from hypercorn.asyncio.tcp_server import TCPServer
        from hypercorn.asyncio.worker_context import AsyncioSingleTask
    except ImportError:
        return False
    if getattr(TCPServer, _PATCHED, False):
        return True
    expected = ("_read_data", "_initiate_server_close", "protocol_send")
    changed = [name for name in expected
               if not inspect.iscoroutinefunction(getattr(TCPServer, name, None))]
    changed += [name for name in ("idle_task", "context", "config", "send_lock", "writer", "loop")
                if name not in TCPServer.__init__.__code__.co_names]
    if "_handle" not in AsyncioSingleTask().__dict__:
        changed.append("AsyncioSingleTask._handle")
    if changed:
        _log.warning("hypercorn's TCP server changed shape (%s): connections a client closed "
                     "are held until keep_alive_timeout", ", ".join(changed))
        return False

    read_data = TCPServer._read_data

    async def _read_data(self) -> None:
        _watch_shutdown(self.context, self.config.graceful_timeout)
        try:
            await read_data(self)  # hypercorn's own loop: ends on EOF, a read error, a timeout
        finally:
            # Nothing more can arrive. An idle connection closes now: its keep-alive wait ends,
            # so hypercorn's task group ends and closes the socket; one with a request in
            # flight closes when the answer is done (its keep-alive wait is never armed).
            self.__dict__[_READ_ENDED] = True
            await _stop_waiting(self)

    TCPServer._read_data = _read_data
    setattr(TCPServer, _PATCHED, True)
    bound_writes(TCPServer)
    refuse_http2()
    return True


def bound_writes(server_class) -> None:
    """Every write of hypercorn's TCP server waits at most `config.write_timeout` seconds for
    the client to take the bytes, and the writes of one turn of the event loop leave as one
    (see the module docstring)."""
    from hypercorn.events import Closed, RawData, Updated

    protocol_send = server_class.protocol_send

    async def send(self, event) -> None:
        if not isinstance(event, RawData):
            _write_held(self)  # what is held goes out before a close
            if isinstance(event, Updated):
                return await _keep_alive(self, event.idle)
            return await protocol_send(self, event)
        held = self.__dict__.get(_HELD)
        if held is not None and len(held) < _HOLD_AT_MOST:
            held.append(event.data)
            return
        writer = self.writer
        transport = writer.transport
        if held is None and not transport.get_write_buffer_size():
            # The client takes what it is sent: hold these bytes until the end of this turn
            # of the loop, so a head, its body and the end of the message are one write.
            self.__dict__[_HELD] = [event.data]
            self.loop.call_soon(_write_held, self)
            return
        limit = getattr(self.config, "write_timeout", None)
        stalled: list[bool] = []
        async with self.send_lock:
            try:
                _write_held(self)
                writer.write(event.data)
                if not transport.get_write_buffer_size():
                    return  # all of it went to the socket: nothing to wait for

                def stall() -> None:
                    stalled.append(True)
                    transport.abort()

                timer = self.loop.call_later(limit, stall) if limit else None
                try:
                    await writer.drain()
                finally:
                    if timer is not None:
                        timer.cancel()
            except (ConnectionError, RuntimeError):
                if not stalled:  # the client went away (hypercorn's own handling)
                    await self.protocol.handle(Closed())
        if stalled:  # the send the application waits on fails; the connection is gone
            raise ClientStalled(f"client stall: the client read nothing for {limit:g} s "
                                "(server.write_timeout); its connection was closed")

    server_class.protocol_send = send


async def _keep_alive(server, idle: bool) -> None:
    """The keep-alive wait between two requests of a connection, as one timer.

    hypercorn starts a task per wait (which starts another inside `wait_for`) and cancels and
    awaits it when the next request comes: two tasks and several turns of the loop per request
    on a keep-alive connection. A timer does the same: it closes the connection after
    `keep_alive_timeout` idle seconds, when the client's side has ended, or at shutdown."""
    await _stop_waiting(server)
    if idle and not server.__dict__.get(_READ_ENDED):
        server.__dict__[_IDLE_TIMER] = server.loop.call_later(
            server.config.keep_alive_timeout, _close_idle, server)
        _idle_servers.add(server)


async def _stop_waiting(server) -> None:
    """End the connection's keep-alive wait: the timer, or hypercorn's task before the first
    request."""
    timer = server.__dict__.pop(_IDLE_TIMER, None)
    if timer is not None:
        timer.cancel()
        _idle_servers.discard(server)
    if server.idle_task._handle is not None:
        await server.idle_task.stop()


def _close_idle(server) -> None:
    """A connection idle for `keep_alive_timeout`, or at shutdown: hypercorn's own close."""
    server.__dict__.pop(_IDLE_TIMER, None)
    _idle_servers.discard(server)
    if not server.writer.is_closing():
        closing = server.loop.create_task(server._initiate_server_close())
        _closing.add(closing)  # the loop keeps only a weak reference to a task
        closing.add_done_callback(_closing.discard)


def _write_held(server) -> None:
    """The bytes `bound_writes` held for this turn of the loop, in one write to the socket. A
    client gone meanwhile is noticed by the server's read side, as any closed connection."""
    held = server.__dict__.pop(_HELD, None)
    if held:
        try:
            server.writer.write(held[0] if len(held) == 1 else b"".join(held))
        except (ConnectionError, RuntimeError):
            pass


def refuse_http2() -> bool:
    """hypercorn's HTTP/1.1 protocol no longer switches to HTTP/2 (see the module docstring)."""
    try:
        from hypercorn.protocol import ProtocolWrapper
        from hypercorn.protocol.h11 import H11Protocol, H2ProtocolAssumedError
        from hypercorn.events import Closed, RawData
    except ImportError:
        return False
    if getattr(H11Protocol, _HTTP1_ONLY, False):
        return True
    if not inspect.iscoroutinefunction(getattr(H11Protocol, "_check_protocol", None)):
        _log.warning("hypercorn's HTTP/1.1 protocol changed shape: it may switch connections "
                     "to HTTP/2")
        return False

    async def _check_protocol(self, event) -> None:
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            raise H2ProtocolAssumedError(b"")
        # An `Upgrade: h2c` header is left unanswered: the request is served in HTTP/1.1.

    async def handle(self, event) -> None:
        try:
            return await self.protocol.handle(event)
        except H2ProtocolAssumedError:
            await self.send(RawData(data=HTTP2_REFUSAL))
            await self.send(Closed())

    H11Protocol._check_protocol = _check_protocol
    ProtocolWrapper.handle = handle
    setattr(H11Protocol, _HTTP1_ONLY, True)
    return True
