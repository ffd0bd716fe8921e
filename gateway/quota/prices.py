"""What a request cost, when the upstream did not say.

OpenCode Go reports the exact dollars it charged with every answer (`cost`), and the ledger
takes that figure. This table (models.dev's prices for OpenCode Go, USD per million tokens:
input / output / cache read) prices the answers that came without one; `quota.prices` in the
config adds or replaces entries. Some models count more than once against the limits
(`multiplier`). A model without a price is priced at `FALLBACK`, on the expensive side so a
limit is not hit by surprise.
"""
from __future__ import annotations

from gateway.config import Price
from gateway.translate.hub import Usage

BUILTIN_PRICES: dict[str, Price] = {
    "glm-5.1": Price(1.4, 4.4, 0.26),
    "glm-5.2": Price(1.4, 4.4, 0.26),
    "kimi-k2.6": Price(0.95, 4.0, 0.16),
    "kimi-k2.7-code": Price(0.95, 4.0, 0.19),
    "kimi-k3": Price(3.0, 15.0, 0.3, multiplier=3.0),
    "deepseek-v4-flash": Price(0.14, 0.28, 0.0028),
    "deepseek-v4-pro": Price(1.74, 3.48, 0.0145),
    "mimo-v2.5": Price(0.14, 0.28, 0.0028),
    "mimo-v2.5-pro": Price(1.74, 3.48, 0.0145),
    "minimax-m2.7": Price(0.3, 1.2, 0.06),
    "minimax-m3": Price(0.3, 1.2, 0.06, multiplier=2.0),
    "qwen3.6-plus": Price(0.5, 3.0, 0.05),
    "qwen3.7-max": Price(2.5, 7.5, 0.5),
    "qwen3.7-plus": Price(0.4, 1.6, 0.04),
}
FALLBACK = Price(1.0, 4.0, 0.1)


class Prices:
    def __init__(self, overrides: dict[str, Price]):
        self._table = {**BUILTIN_PRICES, **overrides}

    def price(self, model: str) -> Price:
        return self._table.get(model, FALLBACK)

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
