"""The Prometheus series the gateway exports at `GET /metrics`, and that endpoint.

With several workers (`serve --workers N`) every worker writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (the CLI makes a fresh one per `serve`), and a scrape of any worker
merges them all: the figures are the whole server's, whichever worker answers. With one worker
the values stay in memory.

The per-request path never calls `.labels()` (it validates and converts every value under a
lock): each series' label child is looked up once and kept in a dict keyed by its label values.
Model ids come from clients (an unknown `opencode-go/<id>` goes upstream as is), so at most
`MAX_MODELS` distinct ones get their own series; the rest are counted under model "other".
"""
from __future__ import annotations

from typing import NamedTuple

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest, values)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

MAX_MODELS = 64
OTHER_MODEL = "other"
# Client names come from the config and `opencode-gateway clients`: bounded the same way.
MAX_CLIENTS = 64
OTHER_CLIENT = "other"
# LLM answers take from tens of milliseconds (a cached refusal) to minutes (a long reasoning
# stream); the low buckets also show the gateway's own cost against a fast upstream.
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0)
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                    300.0, 600.0)


class _RouteSeries(NamedTuple):
    """The series one (model, instance) pair updates."""
    duration: Histogram
    ttfb: Histogram
    input_tokens: Counter
    output_tokens: Counter
    cost: Counter


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps values in files shared by workers.

    prometheus-client decides this once, when it is first imported, from PROMETHEUS_MULTIPROC_DIR;
    asking it (not the environment now) keeps the endpoint consistent with how values are stored.
    """
    return getattr(values.ValueClass, "_multiprocess", False)


class Metrics:
    """One worker's series. Methods take plain values so the observer stays the only caller."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        # The gateway's own registry, never the global one: two gateways in one test process
        # must not collide. In multiprocess mode the series live in files and the registry only
        # holds the collector that merges them.
        self.registry = CollectorRegistry(auto_describe=False)
        registry = None if self.multiprocess else self.registry
        prefix = "opencode_gateway_"
        self._requests = Counter(
            prefix + "requests", "Requests answered, by client protocol, model id and HTTP "
            "status (499: the client left mid-stream; model empty when refused before routing).",
            ("frontend", "model", "status"), registry=registry)
        self._client_requests = Counter(
            prefix + "client_requests", "Requests answered, by named client (server.clients; "
            "anonymous for the other keys) and HTTP status.", ("client", "status"),
            registry=registry)
        self._client_cost = Counter(
            prefix + "client_cost_usd", "Dollars spent, by named client (anonymous for the "
            "other keys).", ("client",), registry=registry)
        self._duration = Histogram(
            prefix + "request_duration_seconds", "From a routed request's arrival to the last "
            "byte of its answer (streams included).",
            ("model", "instance"), buckets=DURATION_BUCKETS, registry=registry)
        self._ttfb = Histogram(
            prefix + "upstream_ttfb_seconds", "From the first upstream call to the answering "
            "instance's response headers, failovers included.",
            ("model", "instance"), buckets=TTFB_BUCKETS, registry=registry)
        self._streams = Gauge(
            prefix + "streams_in_flight", "Streamed answers being relayed now.",
            ("instance",), registry=registry, multiprocess_mode="livesum")
        self._failovers = Counter(
            prefix + "upstream_failovers", "Requests moved off an instance after it failed before "
            "the first byte, by that instance and its status (502/504: unreachable, timed out).",
            ("instance", "status"), registry=registry)
        self._cooldowns = Counter(
            prefix + "instance_cooldowns", "Times an instance was taken out of rotation (a 429's "
            "Retry-After, or a run of failures).", ("instance",), registry=registry)
        self._input_tokens = Counter(
            prefix + "input_tokens", "Prompt tokens the upstream reported (cached ones included).",
            ("model", "instance"), registry=registry)
        self._output_tokens = Counter(
            prefix + "output_tokens", "Completion tokens the upstream reported.",
            ("model", "instance"), registry=registry)
        self._cost = Counter(
            prefix + "cost_usd", "Dollars the upstream reported it charged (OpenCode Go's "
            "`cost`), by instance and model.", ("instance", "model"), registry=registry)
        self._limits = Counter(
            prefix + "usage_limits", "Times an instance answered that a usage limit was reached "
            "(GoUsageLimitError), by the limit: 5 hour, weekly, monthly.",
            ("instance", "limit"), registry=registry)
        self._window_used = Gauge(
            prefix + "key_window_used_ratio", "Share of a key's dollar limit spent in a window "
            "(rolling = 5 hours, weekly, monthly); 1 is the limit.", ("instance", "window"),
            registry=registry, multiprocess_mode="max")
        self._store_up = Gauge(
            prefix + "state_store_up", "1 while the state store (sqlite/redis) takes writes and "
            "answers reads; 0 while workers serve on their own view.", registry=registry,
            multiprocess_mode="min")
        self._store_failures = Counter(
            prefix + "state_store_failures", "Syncs with the state store that failed (the "
            "worker kept serving on its own view).", registry=registry)
        self._pool_timeouts = Counter(
            prefix + "upstream_pool_timeouts", "Requests refused with 503 because none of the "
            "upstream.max_connections was free within upstream.pool_timeout.",
            registry=registry)
        self._streams_refused = Counter(
            prefix + "streams_refused", "Model requests refused at once with 503 because their "
            "worker had server.max_streams in flight.", registry=registry)
        self._stream_cap = Gauge(
            prefix + "max_streams", "Model requests the workers take at once (server.max_streams, "
            "or what their open-file limits hold), summed over the workers.", registry=registry,
            multiprocess_mode="livesum")
        self._estimated_charges = Counter(
            prefix + "estimated_charges", "Requests the ledger charged an estimate for, because "
            "the upstream's usage never arrived (the client left, the stream broke off).",
            registry=registry)
        self._decisions = Counter(
            prefix + "key_decisions", "The key choice's verdicts on conversations: placement "
            "(a new one), cold_move (its prompt cache had gone cold: moving cost nothing), "
            "hot_move (its key was spent while its cache was warm).", ("decision",),
            registry=registry)
        if self.multiprocess:
            MultiProcessCollector(self.registry)
        self._models: set[str] = set()
        self._clients: set[str] = set()
        # Label children bound once: (frontend, model, status) -> the request counter's child;
        # (model, instance) -> the children of the series a routed request updates.
        self._request_children: dict[tuple[str, str, int], object] = {}
        self._route_children: dict[tuple[str, str], _RouteSeries] = {}
        self._instance_children: dict[tuple[object, tuple], object] = {}

    def _model(self, model: str | None) -> str:
        if not model:
            return ""
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return OTHER_MODEL

    def _client(self, client: str) -> str:
        if client in self._clients:
            return client
        if len(self._clients) < MAX_CLIENTS:
            self._clients.add(client)
            return client
        return OTHER_CLIENT

    def client(self, client: str, status: int, cost: float | None) -> None:
        """One request of a client (its name, or anonymous) and what it cost."""
        label = self._client(client)
        self._for_instance(self._client_requests, label, status).inc()
        if cost:
            self._for_instance(self._client_cost, label).inc(cost)

    def _route(self, model: str | None, instance: str) -> _RouteSeries:
        key = (model or "", instance)
        series = self._route_children.get(key)
        if series is None:
            label = self._model(model)
            series = self._route_children.get((label, instance))
            if series is None:
                series = _RouteSeries(self._duration.labels(label, instance),
                                      self._ttfb.labels(label, instance),
                                      self._input_tokens.labels(label, instance),
                                      self._output_tokens.labels(label, instance),
                                      self._cost.labels(instance, label))
                self._route_children[(label, instance)] = series
            if label == key[0]:  # an id over the cap is not remembered: it would grow the dict
                self._route_children[key] = series
        return series

    def _for_instance(self, metric, *labels):
        key = (metric, labels)
        child = self._instance_children.get(key)
        if child is None:
            child = self._instance_children[key] = metric.labels(*labels)
        return child

    # The hooks below are the observer's; each is a dict lookup or two and the value updates.

    def request(self, frontend: str, model: str | None, status: int) -> None:
        key = (frontend, model or "", status)
        child = self._request_children.get(key)
        if child is None:
            label = self._model(model)
            child = self._requests.labels(frontend, label, status)
            if label == key[1]:
                self._request_children[key] = child
        child.inc()

    def routed(self, model: str | None, instance: str, seconds: float, usage,
               cost: float | None = None) -> None:
        """`usage` is the hub's Usage (input tokens include cached ones), or None."""
        series = self._route(model, instance)
        series.duration.observe(seconds)
        if usage is not None:
            series.input_tokens.inc(usage.input_tokens)
            series.output_tokens.inc(usage.output_tokens)
        if cost:
            series.cost.inc(cost)

    def first_byte(self, model: str | None, instance: str, seconds: float) -> None:
        self._route(model, instance).ttfb.observe(seconds)

    def stream_started(self, instance: str) -> None:
        self._for_instance(self._streams, instance).inc()

    def stream_ended(self, instance: str) -> None:
        self._for_instance(self._streams, instance).dec()

    def failover(self, instance: str, status: int) -> None:
        self._for_instance(self._failovers, instance, status).inc()

    def cooldown(self, instance: str) -> None:
        self._for_instance(self._cooldowns, instance).inc()

    def limit_reached(self, instance: str, limit: str) -> None:
        self._for_instance(self._limits, instance, limit).inc()

    def pool_timeout(self) -> None:
        self._pool_timeouts.inc()

    def stream_refused(self) -> None:
        self._streams_refused.inc()

    def stream_cap(self, cap: int) -> None:
        self._stream_cap.set(cap)

    def estimated_charge(self) -> None:
        self._estimated_charges.inc()

    def key_decision(self, decision: str) -> None:
        self._for_instance(self._decisions, decision).inc()

    def quota(self, used: dict[str, dict[str, float]], store_up: bool) -> None:
        """After each sync with the state store: every key's window use, and the store's health."""
        for instance, windows in used.items():
            for window, ratio in windows.items():
                self._for_instance(self._window_used, instance, window).set(ratio)
        self._store_up.set(1 if store_up else 0)
        if not store_up:
            self._store_failures.inc()

    def exposition(self) -> bytes:
        """Every series in the Prometheus text format (all workers' in multiprocess mode)."""
        return generate_latest(self.registry)


async def metrics(request: Request) -> Response:
    """`GET /metrics`."""
    body = request.app.state.gateway.observer.metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
