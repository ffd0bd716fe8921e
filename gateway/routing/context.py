"""The route context: what the rule chain reads and changes for one request."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.routing.catalogue import Catalogue
    from gateway.upstream.instances import Instance, InstancePool


class Translation(NamedTuple):
    """What a route does to requests and answers; None where bytes pass through unchanged.

    `request(body, ctx) -> body` rewrites the request for the upstream wire (on a pass-through
    route only what the wire itself needs); `response(raw, ctx) -> (raw, Answer)` rewrites a
    whole answer; `stream(ctx)` makes a stream translation with `feed(bytes) -> bytes`,
    `end() -> bytes`, `fail(status, message) -> bytes`, `usage`, `cost` and `failure`.
    """
    name: str
    request: Callable[[dict, "RouteContext"], dict] | None = None
    response: Callable[[bytes, "RouteContext"], tuple[bytes, Any]] | None = None
    stream: Callable[["RouteContext"], Any] | None = None


class RouteContext:
    """One request's route, filled in by the rule chain.

    `requested` is the model string as the client sent it; `frontend` the protocol the client
    speaks ("openai", "anthropic", "responses" or "gemini"); `backend`, `instance`, `model_id`
    (the bare id the upstream receives) and `protocol` (the upstream wire: "openai", "anthropic",
    "responses", or "gemini" by a config override) are the route; `pin` is the instance number the client pinned, if any; `body`
    is the request as a dict; `fallbacks` the instances an unpinned request may move to if
    `instance` fails, best first; `session` is the conversation's id (the `x-opencode-session` the
    upstream receives, see `routing/session.py`). `config`, `pools` and `catalogues` give rules
    the configuration, the instance pools and the model catalogues, `quota` the key usage view.
    """
    __slots__ = ("requested", "frontend", "backend", "instance", "model_id", "protocol", "pin",
                 "body", "translation", "config", "pools", "catalogues", "quota", "session",
                 "stream", "request_id", "started", "first_byte_seconds", "dropped_tools",
                 "limit_hit", "fallbacks", "adjusted", "sent_bytes", "events_seen", "client_ua",
                 "client_headers", "client", "agent")

    def __init__(self, *, requested: str, frontend: str, body: dict, config: "Config",
                 pools: dict[str, "InstancePool"], catalogues: dict[str, "Catalogue"],
                 backend: str | None, pin: int | None, model_id: str, session: str = "",
                 quota: Any = None):
        self.requested = requested
        self.frontend = frontend
        self.body = body
        self.config = config
        self.pools = pools
        self.catalogues = catalogues
        self.quota = quota
        self.backend = backend
        self.pin = pin
        self.model_id = model_id
        self.session = session
        self.instance: Instance | None = None
        # Instances to move to, in order, if `instance` fails before the answer starts.
        self.fallbacks: list[Instance] = []
        self.protocol: str | None = None
        self.translation: Translation | None = None
        self.stream = body.get("stream") is True
        # Filled in by the frontend and the forwarder for the access log and metrics.
        self.request_id = ""
        self.started = 0.0
        self.first_byte_seconds: float | None = None
        self.dropped_tools: list[str] | None = None  # tools the upstream wire cannot run
        self.limit_hit: str | None = None  # a usage limit an instance reported on the way
        # Response headers saying what was fitted to the model (translate/model_limits.py).
        self.adjusted: dict[str, str] | None = None
        # Who the client said it is (its User-Agent), and its OpenCode headers to pass on
        # (upstream/identity.py).
        self.client_ua: str | None = None
        self.client_headers: tuple[tuple[str, str], ...] = ()
        # What a charge is estimated from when the upstream's usage never arrived: the size of
        # the request it received, and the stream events relayed before the end.
        self.sent_bytes = 0
        self.events_seen = 0
        # Who asked (access/clients.py) and with which program (access/agents.py): the ledger's.
        self.client = "anonymous"
        self.agent = "other"

    @property
    def pinned(self) -> bool:
        return self.pin is not None
