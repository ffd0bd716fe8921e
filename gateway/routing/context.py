"""The route context: what the rule chain reads and changes for one request."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.upstream.instances import Instance, InstancePool


class Translation(NamedTuple):
    """The translators a route needs; None where bytes pass through unchanged.

    `request(body, config) -> body` rewrites the request for the upstream flavour;
    `response(raw) -> (raw, (prompt_tokens, completion_tokens) | None)` rewrites a whole answer;
    `stream(ctx)` makes a stream translator with `feed(bytes) -> bytes`, `end() -> bytes`,
    `fail(status, message) -> bytes` and a `usage` attribute.
    """
    name: str
    request: Callable[[dict, "Config"], dict] | None = None
    response: Callable[[bytes], tuple[bytes, Any]] | None = None
    stream: Callable[["RouteContext"], Any] | None = None


class RouteContext:
    """One request's route, filled in by the rule chain.

    `requested` is the model string as the client sent it; `frontend` the protocol the client
    speaks ("openai" or "anthropic"); `backend`, `instance`, `model_id` (the bare id the upstream
    receives) and `protocol` (the upstream flavour) are the route; `pin` is the instance number
    the client pinned, if any; `body` is the request as a dict. `config` and `pools` give rules
    the configuration and the instance pools.
    """
    __slots__ = ("requested", "frontend", "backend", "instance", "model_id", "protocol", "pin",
                 "body", "translation", "config", "pools", "stream", "request_id", "started",
                 "first_byte_seconds")

    def __init__(self, *, requested: str, frontend: str, body: dict, config: "Config",
                 pools: dict[str, "InstancePool"], backend: str | None, pin: int | None,
                 model_id: str):
        self.requested = requested
        self.frontend = frontend
        self.body = body
        self.config = config
        self.pools = pools
        self.backend = backend
        self.pin = pin
        self.model_id = model_id
        self.instance: Instance | None = None
        self.protocol: str | None = None
        self.translation: Translation | None = None
        self.stream = body.get("stream") is True
        # Filled in by the frontend and the forwarder for the access log and metrics.
        self.request_id = ""
        self.started = 0.0
        self.first_byte_seconds: float | None = None

    @property
    def pinned(self) -> bool:
        return self.pin is not None
