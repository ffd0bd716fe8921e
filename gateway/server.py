"""How the gateway runs under hypercorn: its settings, and a fix for connections a client closed.

Settings (`hypercorn_config`): the uvloop worker, a listen backlog of 2048 (hypercorn's 100
refuses connection bursts), keep-alive reuse without a request cap, the header bound, the
graceful-shutdown deadline; access logging is the gateway's own.

The fix (`close_connections_clients_closed`), and a notice of the graceful shutdown
(`on_shutdown`, so streams still running at its deadline end with an error event the client can
read rather than being torn): hypercorn 0.18's asyncio/uvloop TCP server keeps a
connection's socket until the task group of that connection ends, and that group holds the
keep-alive timer, which sleeps the whole `keep_alive_timeout` and wakes early only at shutdown.
So when a client closes an idle keep-alive connection, its read loop ends at once, but the socket
stays in CLOSE-WAIT, holding a file descriptor, for the full timeout (75 s here, 5 s by
default). A burst of short-lived connections (curl in a loop, SDKs without a pooled client, load
tests) then exhausts the descriptors and the server stops answering, /healthz included. The
fix wakes that timer as soon as the read side has ended, so a connection with no request in
flight closes at once; a request still being answered is never cut (the timer only runs while
the connection is idle). It patches two methods of hypercorn's `TCPServer` in each worker
process (the installed package cannot be changed in place), checks first that they still have
the shape it expects, and otherwise leaves hypercorn alone and says so in the log;
tests/test_connections.py fails if a hypercorn upgrade brings the leak back.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from typing import Callable

_log = logging.getLogger("gateway")
_PATCHED = "_opencode_gateway_closes_on_eof"
_READ_ENDED = "_opencode_gateway_read_ended"

# Called with `graceful_timeout` when the worker starts its graceful shutdown (SIGTERM): the
# forwarder then ends the streams still running with an error event before hypercorn cuts them.
_shutdown_callbacks: list[Callable[[float], None]] = []
_watched_contexts: weakref.WeakSet = weakref.WeakSet()


def on_shutdown(callback: Callable[[float], None]) -> None:
    _shutdown_callbacks.append(callback)


def _watch_shutdown(context, graceful_timeout: float) -> None:
    """Once per worker: tell the callbacks when hypercorn's shutdown begins."""
    if context in _watched_contexts:
        return
    _watched_contexts.add(context)

    async def watch() -> None:
        await context.terminated.wait()
        for callback in _shutdown_callbacks:
            callback(graceful_timeout)

    asyncio.ensure_future(watch())


def hypercorn_config(server, host: str, port: int, workers: int):
    """hypercorn's Config for `opencode-gateway serve` (server: the config's `server` section)."""
    from hypercorn.config import Config as HypercornConfig

    config = HypercornConfig()
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
    config.accesslog = None
    config.errorlog = "-"
    return config


def close_connections_clients_closed() -> bool:
    """Patch hypercorn's TCP server in this process (see the module docstring); idempotent.
    False when hypercorn is missing or its internals changed (the patch is then not applied)."""
    try:
        from hypercorn.asyncio.tcp_server import TCPServer
    except ImportError:
        return False
    if getattr(TCPServer, _PATCHED, False):
        return True
    expected = ("_read_data", "_idle_timeout", "_initiate_server_close")
    changed = [name for name in expected
               if not inspect.iscoroutinefunction(getattr(TCPServer, name, None))]
    changed += [name for name in ("idle_task", "context", "config")
                if name not in TCPServer.__init__.__code__.co_names]
    if changed:
        _log.warning("hypercorn's TCP server changed shape (%s): connections a client closed "
                     "are held until keep_alive_timeout", ", ".join(changed))
        return False

    read_data = TCPServer._read_data

    def read_ended(server) -> asyncio.Event:
        event = server.__dict__.get(_READ_ENDED)
        if event is None:
            event = server.__dict__[_READ_ENDED] = asyncio.Event()
        return event

    async def _read_data(self) -> None:
        _watch_shutdown(self.context, self.config.graceful_timeout)
        try:
            await read_data(self)  # hypercorn's own loop: ends on EOF, a read error, a timeout
        finally:
            read_ended(self).set()  # nothing more can arrive: an idle connection may close now

    async def _idle_timeout(self) -> None:
        ended = read_ended(self)
        if not ended.is_set():
            waiters = [asyncio.ensure_future(self.context.terminated.wait()),
                       asyncio.ensure_future(ended.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.config.keep_alive_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        await asyncio.shield(self._initiate_server_close())  # as hypercorn's own timer ends

    TCPServer._read_data = _read_data
    TCPServer._idle_timeout = _idle_timeout
    setattr(TCPServer, _PATCHED, True)
    return True
