"""What a request cost, when the upstream did not say.

OpenCode Go reports the exact dollars it charged with every answer (`cost`), and the ledger
takes that figure. The model catalogue's prices (models.dev's, USD per million tokens: input /
output / cache read, see routing/catalogue.py) price the answers that came without one;
`quota.prices` in the config adds or replaces entries. Some models count more than once against
the limits (`multiplier`, from models.dev's "(2x usage)" names). A model without a price is
priced at `FALLBACK`, on the expensive side so a limit is not hit by surprise.
"""
from __future__ import annotations

from gateway.config import Price
from gateway.routing.catalogue import shared_facts
from gateway.routing.catalogue_store import CatalogueFacts
from gateway.translate.hub import Usage

FALLBACK = Price(1.0, 4.0, 0.1)


class Prices:
    def __init__(self, overrides: dict[str, Price], known: CatalogueFacts | None = None):
        known = known if known is not None else shared_facts()
        self._table = {model_id: facts.price for model_id, facts in known.models.items()
                       if facts.price is not None}
        self._table.update(overrides)
        self.overridden = frozenset(overrides)

    def price(self, model: str) -> Price:
        return self._table.get(model, FALLBACK)

    def priced(self, model: str) -> bool:
        """Whether `model` has a price of its own (not `FALLBACK`)."""
        return model in self._table

    def cost(self, model: str, usage: Usage) -> float:
        price = self.price(model)
        fresh = max(usage.input_tokens - usage.cached_tokens, 0)
        dollars = (fresh * price.input + usage.cached_tokens * price.cache_read
                   + usage.output_tokens * price.output) / 1_000_000
        return dollars * price.multiplier


# About four bytes of JSON per prompt token (count_tokens uses the same ratio).
BYTES_PER_TOKEN = 4


def estimate_usage(sent_bytes: int, events: int, seen: Usage | None) -> Usage:
    """The usage of an answer whose report never arrived (the client left mid-stream, the
    stream broke off): the prompt from the request's size, the completion from the stream
    events relayed (about one token each), each at least what the upstream did report. An
    estimate: the upstream's `GET /usage` figure corrects the window when it is next read."""
    prompt = sent_bytes // BYTES_PER_TOKEN
    if seen is None:
        return Usage(input_tokens=prompt, output_tokens=events)
    return Usage(input_tokens=max(seen.input_tokens, prompt),
                 output_tokens=max(seen.output_tokens, events),
                 cached_tokens=seen.cached_tokens,
                 cache_creation_tokens=seen.cache_creation_tokens)
