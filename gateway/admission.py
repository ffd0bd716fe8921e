"""How many model requests one worker serves at once, so that one more is refused, not dropped.

Each model request in flight holds two file descriptors in its worker: the client's connection
and, once it is forwarded, an upstream connection. A worker out of descriptors answers nothing
well: accept() fails, and uvloop (libuv) then accepts and closes the waiting connections at once
(their clients see resets); an upstream connection cannot open, so the request fails as "cannot
connect" and the key is counted as failing. So a worker takes at most `server.max_streams`
model requests at once (0, the default: what its open-file limit holds, see `stream_cap`), and
answers the next one at once with 503 and Retry-After, in its client's error shape, counted in
`opencode_gateway_streams_refused_total`. The refused request's body is read first: closing a
connection with unread bytes in it resets it, and the client would lose the answer.

The check is one comparison of two integers on the worker's loop: no lock, no store.
`lift_file_limit` raises the process's soft open-file limit to its hard limit at start (systemd
sets 1024 soft by default), which is what the cap is then derived from.
"""
from __future__ import annotations

import logging
import resource

from gateway.errors import GatewayError

_log = logging.getLogger("gateway")

# Seconds a refused client is told to wait: streams end all the time, and a refusal is cheap.
RETRY_AFTER = "2"
# Descriptors kept out of the streams' share: connections being refused, idle keep-alive
# connections, health checks and metrics scrapes, the log, the state store, the background
# polls' upstream connections.
_RESERVE_SHARE = 32
_MIN_RESERVE = 64


def open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def lift_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def stream_cap(open_files: int) -> int:
    """The model requests a worker with `open_files` descriptors can hold: two each, after the
    reserve (1/32 of the limit, at least 64)."""
    reserve = max(_MIN_RESERVE, open_files // _RESERVE_SHARE)
    return max(1, (open_files - reserve) // 2)


class StreamGate:
    """The worker's count of model requests in flight (`open`) and its cap (`cap`).

    The frontends add one when a request arrives and take it off when its answer has been sent;
    a request that finds `open >= cap` is refused with `refusal()`.
    """
    __slots__ = ("open", "cap", "_source")

    def __init__(self, configured: int = 0, open_files: int | None = None):
        open_files = open_file_limit() if open_files is None else open_files
        fits = stream_cap(open_files)
        if configured > fits:
            _log.warning("server.max_streams is %d, but this worker's open-file limit (%d) holds "
                         "%d; it takes %d model requests at once (raise the limit: LimitNOFILE "
                         "in systemd, ulimit -n)", configured, open_files, fits, fits)
        self.cap = min(configured, fits) if configured else fits
        self.open = 0
        self._source = ("server.max_streams" if 0 < configured <= fits else
                        f"server.max_streams, from its open-file limit of {open_files}")

    def refusal(self) -> GatewayError:
        """The 503 for a request past the cap; the connection closes after it (a client that
        waits frees its descriptor)."""
        return GatewayError(503, f"the gateway is at its limit of {self.cap} requests in flight "
                                 f"per worker ({self._source}); retry in a few seconds",
                            code="overloaded",
                            headers={"retry-after": RETRY_AFTER, "connection": "close"})
