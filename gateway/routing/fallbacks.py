"""Model fallbacks (`routing.fallbacks`): when no key can serve a model, the next model in its
list answers instead, before any byte has reached the client.

    routing:
      fallbacks:
        deepseek-v4-pro: [deepseek-v4-flash, glm-5.1]   # same backend as the request
        kimi-k2.5: [backup/kimi-k2.5]                     # or another backend, named

A list is followed in order, and a fallback's own list after it (depth first), each model once;
so a cycle would never end and is refused at start, as is an id no backend knows.

Which refusals move on to the next model is said by `fallback_reason`: one place that reads the
error a route or the forwarder raised (its `code`) and names why the model could not answer;
any other error is the client's answer as before.
"""
from __future__ import annotations

import msgspec

from gateway.config import Config, ConfigError
from gateway.errors import GatewayError
from gateway.routing.catalogue import Catalogue
from gateway.routing.router import parse_model_string

# The response header that says a fallback answered: `FROM -> TO (reason)`.
FALLBACK_HEADER = "x-gateway-fallback"

# GatewayError code -> why the model could not answer (the header's reason). A refusal that
# gives no code here is final. The codes are those the router and the forwarder (its verdict on
# the upstream's answer) give: every key limited or capped for the model, the model unknown (to
# the gateway's list or the upstream), a workspace console setting that keeps the model off.
FALLBACK_REASONS = {
    "usage_limit_reached": "every key is at a usage limit or capped for the model",
    "model_not_found": "the model is not served",
    "console_setting": "a console setting keeps the model off",
}

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


def fallback_reason(error: GatewayError) -> str | None:
    """Why `error` lets the request move on to a fallback model; None when it does not."""
    return FALLBACK_REASONS.get(error.code or "")


class Fallbacks:
    def __init__(self, config: Config, catalogues: dict[str, Catalogue]):
        self.backends = config.backends
        self.lists = {model: list(models) for model, models in config.routing.fallbacks.items()}
        known = {model for catalogue in catalogues.values() for model in catalogue.ids()}
        for model, models in self.lists.items():
            for entry in (model, *models):
                if self._bare(entry) not in known:
                    raise ConfigError(
                        f"`routing.fallbacks.{model}` names {entry!r}, which no backend "
                        f"serves; known ids: {', '.join(sorted(known))} (add an unlisted id "
                        "with extra.model_protocol_overrides)")
            if model in map(self._bare, models):
                raise ConfigError(f"`routing.fallbacks.{model}` lists {model!r} itself")
        for model in self.lists:
            self._refuse_cycles(model, [model])
        self._orders = {model: self._order(model) for model in self.lists}

    def _bare(self, entry: str) -> str:
        return parse_model_string(entry, self.backends)[2]

    def _refuse_cycles(self, model: str, path: list[str]) -> None:
        for following in map(self._bare, self.lists.get(model, ())):
            if following in path:
                cycle = " -> ".join([*path[path.index(following):], following])
                raise ConfigError(f"`routing.fallbacks` has a cycle: {cycle}; a request would "
                                  "never run out of models to try")
            self._refuse_cycles(following, [*path, following])

    def _order(self, model: str) -> list[str]:
        order: list[str] = []
        for following in self.lists.get(model, ()):
            for candidate in (following, *self._order(self._bare(following))):
                if self._bare(candidate) != model and candidate not in order:
                    order.append(candidate)
        return order

    def after(self, model_id: str) -> list[str]:
        """The models to try, in order, when `model_id` cannot answer (empty: none)."""
        return self._orders.get(model_id, [])

    def plan(self, requested: str, body: dict, may_use) -> FallbackPlan | None:
        """One request's way down its model's fallbacks (those `may_use` accepts), or None when
        it has none: then the request costs nothing more than before."""
        backend, pin, model_id = parse_model_string(requested, self.backends)
        candidates = [entry for entry in self.after(model_id) if may_use(self._bare(entry))]
        if not candidates:
            return None
        prefix = (f"{backend}.{pin}/" if pin is not None else f"{backend}/") if backend else ""
        strings = [entry if parse_model_string(entry, self.backends)[0] else prefix + entry
                   for entry in candidates]
        return FallbackPlan(model_id, strings, body)


class FallbackPlan:
    """The models a request may still move on to, and the body each one starts from (the first
    attempt's preparation for its wire may have changed the one it was given)."""

    def __init__(self, model_id: str, candidates: list[str], body: dict):
        self.first = model_id
        self._left = candidates
        self._body = _encode(body)
        self.first_error: GatewayError | None = None
        self.tried: list[str] = []   # "model (reason)" for each model that could not answer

    def next(self, error: GatewayError, failed: str) -> tuple[str, dict] | None:
        """(model string, body) to try after `failed` refused with `error`; None when the error
        is final or no fallback is left (`error` then stands, with what was tried)."""
        reason = fallback_reason(error)
        if reason is None or not self._left:
            return None
        if self.first_error is None:
            self.first_error = error
        self.tried.append(f"{failed} ({reason})")
        return self._left.pop(0), _decode(self._body)

    def header(self, answered: str) -> str:
        return f"{self.first} -> {answered}; " + "; ".join(self.tried)
