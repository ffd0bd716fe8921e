"""What the gateway tells about each request: the access log line (and metrics hooks).

One JSON line per request, built once when the request ends: request id, frontend, model,
instance, flavour, status, time to first byte, duration, tokens. No bodies and no keys.
"""
from __future__ import annotations

import logging
import sys
import time

import msgspec

from gateway.routing.context import RouteContext
from gateway.upstream.instances import Instance

_log = logging.getLogger("gateway.access")


class AccessRecord(msgspec.Struct, omit_defaults=True):
    request_id: str
    frontend: str
    status: int
    duration_ms: float
    model: str | None = None
    instance: str | None = None
    flavour: str | None = None
    stream: bool = False
    ttfb_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode


class Observer:
    def __init__(self, access_log: bool = True):
        self.access_log = access_log
        if access_log and not _log.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            _log.addHandler(handler)
            _log.setLevel(logging.INFO)
            _log.propagate = False

    def first_byte(self, ctx: RouteContext, seconds: float) -> None:
        ctx.first_byte_seconds = seconds

    def failover(self, instance: Instance, status: int) -> None:
        pass

    def cooldown(self, instance: Instance) -> None:
        pass

    def finished(self, ctx: RouteContext, status: int, usage: tuple[int, int] | None,
                 error: str | None = None) -> None:
        if not self.access_log:
            return
        ttfb = ctx.first_byte_seconds
        record = AccessRecord(
            request_id=ctx.request_id, frontend=ctx.frontend, status=status,
            duration_ms=round((time.monotonic() - ctx.started) * 1000, 2),
            model=ctx.model_id, instance=ctx.instance.name if ctx.instance else None,
            flavour=ctx.protocol, stream=ctx.stream,
            ttfb_ms=round(ttfb * 1000, 2) if ttfb is not None else None,
            prompt_tokens=usage[0] if usage else None,
            completion_tokens=usage[1] if usage else None, error=error)
        _log.info(_encode(record).decode())

    def rejected(self, request_id: str, frontend: str, started: float, status: int,
                 model: str | None, error: str) -> None:
        """A request refused before it had a route (bad body, unknown model, no client key)."""
        if not self.access_log:
            return
        record = AccessRecord(request_id=request_id, frontend=frontend, status=status,
                              duration_ms=round((time.monotonic() - started) * 1000, 2),
                              model=model, error=error)
        _log.info(_encode(record).decode())
