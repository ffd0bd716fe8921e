"""Model fallbacks (`routing.fallbacks`): when no key can serve a model, the next model in its
list answers instead, before any byte has reached the client.

    routing:
      fallbacks:
        deepseek-v4-pro: [deepseek-v4-flash, glm-5.1]

A list is followed in order, and a fallback's own list after it (depth first), each model once;
so a cycle would never end and is refused at start, as is an id no backend knows.

Which refusals move on to the next model is said by `fallback_reason`: one place that reads the
error a route or the forwarder raised (its `code`) and names why the model could not answer;
any other error is the client's answer as before.
"""
from __future__ import annotations

from gateway.config import Config, ConfigError
from gateway.errors import GatewayError
from gateway.routing.catalogue import Catalogue

# The response header that says a fallback answered: `FROM -> TO (reason)`.
FALLBACK_HEADER = "x-gateway-fallback"

# GatewayError code -> why the model could not answer (the header's reason). A refusal that
# gives no code here is final.
FALLBACK_REASONS = {
    "usage_limit_reached": "every key is at a usage limit",
    "model_not_found": "the model is not served",
}


def fallback_reason(error: GatewayError) -> str | None:
    """Why `error` lets the request move on to a fallback model; None when it does not."""
    return FALLBACK_REASONS.get(error.code or "")


class Fallbacks:
    def __init__(self, config: Config, catalogues: dict[str, Catalogue]):
        self.lists = {model: list(models) for model, models in config.routing.fallbacks.items()}
        known = {model for catalogue in catalogues.values() for model in catalogue.ids()}
        for model, models in self.lists.items():
            for model_id in (model, *models):
                if model_id not in known:
                    raise ConfigError(
                        f"`routing.fallbacks.{model}` names {model_id!r}, which no backend "
                        f"serves; known ids: {', '.join(sorted(known))} (add an unlisted id "
                        "with extra.model_protocol_overrides)")
            if model in models:
                raise ConfigError(f"`routing.fallbacks.{model}` lists {model!r} itself")
        for model in self.lists:
            self._refuse_cycles(model, [model])
        self._orders = {model: self._order(model) for model in self.lists}

    def _refuse_cycles(self, model: str, path: list[str]) -> None:
        for following in self.lists.get(model, ()):
            if following in path:
                cycle = " -> ".join([*path[path.index(following):], following])
                raise ConfigError(f"`routing.fallbacks` has a cycle: {cycle}; a request would "
                                  "never run out of models to try")
            self._refuse_cycles(following, [*path, following])

    def _order(self, model: str) -> list[str]:
        order: list[str] = []
        for following in self.lists.get(model, ()):
            for candidate in (following, *self._order(following)):
                if candidate != model and candidate not in order:
                    order.append(candidate)
        return order

    def after(self, model_id: str) -> list[str]:
        """The models to try, in order, when `model_id` cannot answer (empty: none)."""
        return self._orders.get(model_id, [])
