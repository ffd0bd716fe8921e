"""models.dev's `api.json` format, read for the one provider the gateway serves: `opencode-go`.

models.dev (https://models.dev/api.json, maintained by OpenCode's team) lists every OpenCode Go
model with its price, context and output limits, reasoning controls and the AI SDK package it is
called with; that package is the wire: `@ai-sdk/anthropic` → Messages, `@ai-sdk/openai` →
Responses, the provider's default `@ai-sdk/openai-compatible` → Chat. `parse` takes the whole
api.json or just its `opencode-go` object, and refuses a malformed one naming the file and the
field. Fields the gateway does not use are ignored, so a newer models.dev still reads.

`x_gateway` (not models.dev's) is where the gateway's own snapshot records where a fact came
from when it is not models.dev (an id only UPSTREAM.md names, a reasoning control that moved).
"""
from __future__ import annotations

from typing import Annotated, NamedTuple

import msgspec

from gateway.config import Price
from gateway.errors import DECODE_ERRORS

PROVIDER_ID = "opencode-go"
WIRE_BY_NPM = {
    "@ai-sdk/anthropic": "anthropic",
    "@ai-sdk/openai": "responses",
    "@ai-sdk/openai-compatible": "openai",
}
_NotNegative = Annotated[float, msgspec.Meta(ge=0)]
_Tokens = Annotated[int, msgspec.Meta(ge=0)]


class Cost(msgspec.Struct):
    """USD per million tokens."""
    input: _NotNegative = 0.0
    output: _NotNegative = 0.0
    cache_read: _NotNegative = 0.0
    cache_write: _NotNegative | None = None


class Limit(msgspec.Struct):
    context: _Tokens = 0
    output: _Tokens = 0


class ReasoningOption(msgspec.Struct):
    """`{"type": "effort", "values": [...]}`, `{"type": "toggle"}`, `{"type": "budget_tokens",
    "max": N}`."""
    type: str
    values: list[str] | None = None
    max: int | None = None


class Interleaved(msgspec.Struct):
    field: str = "reasoning_content"


class ModelProvider(msgspec.Struct):
    npm: str | None = None


class Provenance(msgspec.Struct):
    """The gateway's note of where a model's facts came from (absent in models.dev's files)."""
    source: str | None = None
    facts: dict[str, str] = {}


class Model(msgspec.Struct):
    id: str = ""
    name: str = ""
    reasoning: bool = False
    reasoning_options: list[ReasoningOption] | None = None
    interleaved: bool | Interleaved | None = None
    cost: Cost | None = None
    limit: Limit | None = None
    provider: ModelProvider | None = None
    status: str | None = None
    x_gateway: Provenance | None = None


class SnapshotNote(msgspec.Struct):
    snapshot: str | None = None      # the day the shipped snapshot was built
    refreshed: str | None = None     # when `models refresh` stored this file (ISO time)
    refreshed_from: str | None = None


class Provider(msgspec.Struct):
    models: dict[str, Model]
    id: str = PROVIDER_ID
    name: str = ""
    npm: str = "@ai-sdk/openai-compatible"
    api: str | None = None
    x_gateway: SnapshotNote | None = None


class CatalogueFileError(Exception):
    """A catalogue file that cannot be used: the message names the file and what is wrong."""


_decode_top = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_provider = msgspec.json.Decoder(Provider).decode


def parse(data: bytes, name: str) -> Provider:
    """The `opencode-go` provider of a whole api.json, or a provider object on its own."""
    try:
        top = _decode_top(data)
    except DECODE_ERRORS as exc:
        raise CatalogueFileError(f"{name}: not a JSON object: {exc}") from None
    if "models" in top:
        raw, where = data, ""
    elif PROVIDER_ID in top:
        raw, where = top[PROVIDER_ID], f"[{PROVIDER_ID!r}]"
    else:
        raise CatalogueFileError(
            f"{name}: neither models.dev's api.json (no {PROVIDER_ID!r} provider in it) nor a "
            "provider object (no \"models\"); give https://models.dev/api.json or its "
            f"{PROVIDER_ID!r} object")
    try:
        provider = _decode_provider(raw)
    except DECODE_ERRORS as exc:
        raise CatalogueFileError(f"{name}{where}{_failing_model(raw)}: {exc}") from None
    if not provider.models:
        raise CatalogueFileError(f"{name}{where}: lists no models")
    for model_id, model in provider.models.items():
        if not model_id.strip() or model_id != model_id.strip() or "/" in model_id:
            raise CatalogueFileError(f"{name}{where}: {model_id!r} is not a model id")
        if model.id and model.id != model_id:
            raise CatalogueFileError(f"{name}{where}: model {model_id!r} says its id is "
                                     f"{model.id!r}")
    return provider


class _RawModels(msgspec.Struct):
    models: dict[str, msgspec.Raw]


def _failing_model(raw: bytes) -> str:
    """` model 'glm-9'` when one model is what does not read (msgspec's path elides dict keys)."""
    try:
        models = msgspec.json.decode(raw, type=_RawModels).models
    except DECODE_ERRORS:
        return ""
    for model_id, model in models.items():
        try:
            msgspec.json.decode(model, type=Model)
        except DECODE_ERRORS:
            return f" model {model_id!r}"
    return ""


class ModelFacts(NamedTuple):
    """What the gateway knows of one model, each fact with where it came from."""
    model_id: str
    wire: str | None              # None: the catalogue names an SDK package with no wire here
    wire_source: str
    output_limit: int | None      # None: unknown (nothing is clamped)
    context_limit: int | None
    limit_source: str
    price: Price | None
    price_source: str
    efforts: tuple[str, ...] | None   # accepted reasoning efforts; None: unknown (pass through)
    effort_source: str
    interleaved: bool             # wants its reasoning back on tool-call turns
    status: str | None


def usage_multiplier(name: str) -> float:
    """models.dev names a model that counts more than once "Kimi K3 (2x usage)"."""
    head, found, tail = name.rpartition("x usage)")
    if not found or tail.strip():
        return 1.0
    number = head.rpartition("(")[2].strip()
    try:
        value = float(number)
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0


def _efforts(model: Model) -> tuple[str, ...] | None:
    if model.reasoning_options is None:
        return None if model.reasoning else ()
    for option in model.reasoning_options:
        if option.type == "effort" and option.values is not None:
            return tuple(option.values)
    return ()  # reasoning on/off or a budget, but no effort values: none taken


def facts(provider: Provider, source: str) -> dict[str, ModelFacts]:
    """Every model of `provider`, its facts credited to `source` unless the file says better."""
    found = {}
    for model_id, model in provider.models.items():
        note = model.x_gateway or Provenance()
        origin = note.source or source

        def credit(fact: str) -> str:
            return note.facts.get(fact, origin)

        npm = model.provider.npm if model.provider and model.provider.npm else provider.npm
        limit = model.limit
        price = None
        if model.cost is not None:
            price = Price(model.cost.input, model.cost.output, model.cost.cache_read,
                          multiplier=usage_multiplier(model.name))
        found[model_id] = ModelFacts(
            model_id=model_id, wire=WIRE_BY_NPM.get(npm), wire_source=credit("provider"),
            output_limit=limit.output or None if limit else None,
            context_limit=limit.context or None if limit else None,
            limit_source=credit("limit") if limit else "-",
            price=price, price_source=credit("cost") if price else "-",
            efforts=_efforts(model), effort_source=credit("reasoning_options"),
            interleaved=bool(model.interleaved), status=model.status)
    return found
