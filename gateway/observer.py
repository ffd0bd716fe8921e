"""What the gateway tells about each request: the access log line, the metrics, the ledger.

The forwarder and the frontends call the hooks (first_byte, stream_started, stream_finished,
failover, rest, limit_reached, finished, rejected); the observer turns them into one JSON
access-log line per request, built once when the request ends, into the Prometheus series of
`gateway.metrics`, and into the usage ledger's record of what each key spent.

The access line holds request id, frontend, model, instance, wire, session, status, time to
first byte, duration, tokens and the dollar cost the upstream reported. No bodies and no keys,
ever.

Tokens and cost: a translated answer's come from its translation; a pass-through answer's from
what the relay read of it (`upstream/passthrough.py`). An OpenAI-wire stream carries usage only
when asked (`stream_options.include_usage`); without it the tokens stay unknown, the cost not.
An answer that started but whose cost never arrived (the client hung up mid-stream, the stream
broke off) is still charged: an estimate (`quota.prices.estimate_usage`), logged with
`cost_estimated: true` and counted in `opencode_gateway_estimated_charges_total`.
"""
from __future__ import annotations

import asyncio
import collections
import sys
import time

import msgspec

from gateway.health import Health
from gateway.metrics import Metrics
from gateway.quota.prices import estimate_usage
from gateway.routing.context import RouteContext
from gateway.translate.hub import Usage
from gateway.upstream.instances import Instance

FLUSH_SECONDS = 0.2


class AccessLog:
    """Access lines, written to the stream in batches at most FLUSH_SECONDS after they were made.

    A write and a flush per request through `logging` cost about 7% of a pass-through request;
    batching keeps one line per request while the system call is shared.
    """
    __slots__ = ("_stream", "_pending", "_scheduled")

    def __init__(self, stream):
        self._stream = stream
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, line: bytes) -> None:
        self._pending.append(line)
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside the server (a script, a test): no batching
                self.flush()
                return
            self._scheduled = True
            loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            self._pending.append(b"")
            self._stream.write(b"\n".join(self._pending))
            self._stream.flush()
            self._pending.clear()


class AccessRecord(msgspec.Struct, omit_defaults=True):
    request_id: str
    frontend: str
    status: int
    duration_ms: float
    model: str | None = None
    instance: str | None = None
    flavour: str | None = None
    session: str | None = None
    stream: bool = False
    ttfb_ms: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False
    limit: str | None = None
    client: str | None = None
    agent: str | None = None
    dropped_tools: list[str] | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode


# ---- the observer ----

class Observer:
    def __init__(self, access_log: bool = True, metrics: Metrics | None = None):
        self.access_log = access_log
        self.metrics = metrics if metrics is not None else Metrics()
        self._access = AccessLog(sys.stdout.buffer) if access_log else None
        # Set by the app: the key book, whose `finished` keeps the ledger and the stickiness.
        self.quota = None
        # The last errors this worker answered or saw, for the usage view and the dashboard.
        self.recent_errors: collections.deque[dict] = collections.deque(maxlen=20)
        self.health = Health()

    def _remember_error(self, status: int, model: str | None, instance: str | None,
                        error: str | None) -> None:
        self.recent_errors.appendleft({
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "status": status,
            "model": model, "instance": instance, "error": error})

    def first_byte(self, ctx: RouteContext, seconds: float) -> None:
        ctx.first_byte_seconds = seconds
        self.metrics.first_byte(ctx.model_id, ctx.instance.name, seconds)

    def stream_started(self, ctx: RouteContext) -> None:
        self.metrics.stream_started(ctx.instance.name)

    def stream_finished(self, ctx: RouteContext, status: int, usage: Usage | None,
                        cost: float | None, error: str | None) -> None:
        """A relayed stream ended (completed, broke off, or the client left)."""
        self.metrics.stream_ended(ctx.instance.name)
        self.finished(ctx, status, usage, cost, error)

    def failover(self, instance: Instance, status: int) -> None:
        self.metrics.failover(instance.name, status)

    def rest(self, instance: Instance) -> None:
        self.metrics.cooldown(instance.name)

    def limit_reached(self, instance: Instance, limit: str) -> None:
        self.metrics.limit_reached(instance.name, limit)

    def pool_timeout(self) -> None:
        self.metrics.pool_timeout()

    def stream_refused(self) -> None:
        self.metrics.stream_refused()

    def finished(self, ctx: RouteContext, status: int, usage: Usage | None,
                 cost: float | None = None, error: str | None = None) -> None:
        """A routed request ended: answered, refused by the upstream, or a stream that ended."""
        duration = time.monotonic() - ctx.started
        instance = ctx.instance.name if ctx.instance is not None else ""
        metrics = self.metrics
        estimated = cost is None and ctx.first_byte_seconds is not None and \
            (usage is None or status != 200 or error is not None) and self.quota is not None
        if estimated:  # the answer started, so the upstream charges: never record nothing
            usage = estimate_usage(ctx.sent_bytes, ctx.events_seen, usage)
            cost = self.quota.prices.cost(ctx.model_id, usage)
            metrics.estimated_charge()
        metrics.request(ctx.frontend, ctx.model_id, status)
        metrics.routed(ctx.model_id, instance, duration, usage, cost)
        metrics.client(ctx.client, status, cost)
        if self.quota is not None:
            self.quota.finished(ctx, status, usage, cost)
        ttfb = ctx.first_byte_seconds
        self.health.add(instance, ctx.model_id, status, ttfb * 1000 if ttfb is not None else None)
        if status >= 400 or error:
            self._remember_error(status, ctx.model_id, instance or None, error)
        if not self.access_log:
            return
        record = AccessRecord(
            request_id=ctx.request_id, frontend=ctx.frontend, status=status,
            duration_ms=round(duration * 1000, 2), model=ctx.model_id,
            instance=instance or None, flavour=ctx.protocol, session=ctx.session or None,
            stream=ctx.stream, ttfb_ms=round(ttfb * 1000, 2) if ttfb is not None else None,
            prompt_tokens=usage.input_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage and usage.cached_tokens else None,
            completion_tokens=usage.output_tokens if usage else None,
            cost_usd=cost, cost_estimated=estimated, limit=ctx.limit_hit, client=ctx.client,
            agent=ctx.agent, dropped_tools=ctx.dropped_tools, error=error)
        self._access.write(_encode(record))

    def rejected(self, request_id: str, frontend: str, started: float, status: int,
                 model: str | None, error: str, client: str | None = None) -> None:
        """A request refused before it had a route (bad body, unknown model, no client key,
        a client's budget)."""
        # The model label stays empty: before routing it is whatever the client typed.
        self.metrics.request(frontend, None, status)
        if client is not None:
            self.metrics.client(client, status, None)
        self._remember_error(status, model, None, error)
        self.health.add("", "", status, None)   # refused before routing: no instance, no model
        if not self.access_log:
            return
        record = AccessRecord(request_id=request_id, frontend=frontend, status=status,
                              duration_ms=round((time.monotonic() - started) * 1000, 2),
                              model=model, client=client, error=error)
        self._access.write(_encode(record))

    def close(self) -> None:
        """Write out what is still buffered (the worker is stopping)."""
        if self._access is not None:
            self._access.flush()
