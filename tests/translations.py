"""Routes across protocols, composed as the translation rule composes them, for tests that
drive a translation without a gateway: `answer(...)` for whole answers, `stream(...)` for
streams. The context holds only what a translation reads."""
from __future__ import annotations

from types import SimpleNamespace

from gateway.config import Config
from gateway.routing.catalogue import Catalogue
from gateway.translate.compose import TRANSLATIONS


def route_ctx(body: dict | None = None, model: str = "", config: Config | None = None):
    return SimpleNamespace(model_id=model, requested=model, body=body or {},
                           config=config or Config(), dropped_tools=None, adjusted=None,
                           backend="opencode-go", catalogues={"opencode-go": Catalogue({})})


def answer(upstream: str, client: str, raw: bytes, body: dict | None = None, model: str = ""):
    """(client bytes, hub Answer) for a whole answer of the `upstream` wire."""
    return TRANSLATIONS[(client, upstream)].response(raw, route_ctx(body, model))


def stream(upstream: str, client: str, body: dict | None = None, model: str = ""):
    """A stream translation (feed/end/fail, usage, cost, failure) from `upstream` to `client`."""
    return TRANSLATIONS[(client, upstream)].stream(route_ctx(body, model))


def request(client: str, upstream: str, body: dict, config: Config | None = None) -> dict:
    """The upstream body for a `client` request (the wire's own preparation included)."""
    return TRANSLATIONS[(client, upstream)].request(body, route_ctx(body, body.get("model", ""),
                                                                    config))
