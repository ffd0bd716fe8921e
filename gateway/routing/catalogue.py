"""Which model ids a backend serves, on which of OpenCode Go's three wires, and each model's
limits, prices and reasoning controls: one merged view that routing, pricing and the request's
fitting to the model (`translate/model_limits.py`) all ask.

The facts come from models.dev's catalogue (`catalogue_store.py`: the snapshot shipped in the
package, or a newer file `opencode-gateway models refresh` stored). A model's wire comes from,
in this order: the config's `extra.model_protocol_overrides`, what the gateway learned from an
upstream that said "not supported for format …" (`learn`), the catalogue, a family rule for ids
nobody has listed yet (`minimax-*` and `qwen*` on the Anthropic wire, `gpt-*` and `grok-*` on
the Responses wire), and otherwise the Chat wire.

Which ids a backend *lists* (routable as a bare id, advertised by `/v1/models`): the ids of the
upstream's own `GET /models`, once it has answered (refreshed every few minutes by
`upstream/catalogue_refresh.py`), else the catalogue's ids (deprecated ones too: an id works
until the upstream says otherwise); the overrides always. An id the live list has and the catalogue lacks routes all the same (Chat
unless learned or configured) and `rows` shows it as such. Any other id still routes when the
client names the backend (`opencode-go/<id>`): OpenCode Go adds models often, and the upstream
judges the id.
"""
from __future__ import annotations

from typing import NamedTuple

from gateway.routing.catalogue_store import CatalogueFacts, load
from gateway.routing.models_dev import ModelFacts

WIRES = ("openai", "anthropic", "responses")
DEFAULT_WIRE = "openai"

# Families keep their wire when new ids appear (UPSTREAM.md: every other proxy routes minimax-*
# and qwen* to /messages; grok-* moved to /responses in late 2026).
FAMILY_WIRES: tuple[tuple[str, str], ...] = (
    ("minimax-", "anthropic"),
    ("qwen", "anthropic"),
    ("gpt-", "responses"),
    ("grok-", "responses"),
)

# GLM on /chat/completions answers 400 to `thinking` (its effort is the catalogue's business).
_NO_THINKING_FIELD = ("glm-",)
# DeepSeek runs in thinking mode and refuses a tool-call turn that comes back without its
# `reasoning_content` ("must be passed back to the API").
_REASONING_REQUIRED = ("deepseek-",)


def takes_thinking_field(model_id: str) -> bool:
    return not model_id.startswith(_NO_THINKING_FIELD)


def needs_reasoning_back(model_id: str) -> bool:
    return model_id.startswith(_REASONING_REQUIRED)


class WireChoice(NamedTuple):
    wire: str
    source: str  # "override", "learned", the catalogue's source, "family rule qwen*", "default"


def family_wire(model_id: str) -> WireChoice:
    for prefix, wire in FAMILY_WIRES:
        if model_id.startswith(prefix):
            return WireChoice(wire, f"family rule {prefix.rstrip('-')}*")
    return WireChoice(DEFAULT_WIRE, "default (Chat)")


_loaded: CatalogueFacts | None = None


def shared_facts() -> CatalogueFacts:
    """The catalogue of the default state directory, read once per process (for callers built
    without a config's: a bare Router or KeyBook in a test)."""
    global _loaded
    if _loaded is None:
        _loaded = load()
    return _loaded


class Catalogue:
    """One backend's ids, wires and model facts; `upstream_ids` is the upstream's last good
    model list."""

    def __init__(self, overrides: dict[str, str], known: CatalogueFacts | None = None):
        self.known = known if known is not None else shared_facts()
        self.models = self.known.models
        # The ids not marked deprecated: what doctor probes and expects the upstream to list.
        self.current = frozenset(model_id for model_id, facts in self.models.items()
                                 if facts.status != "deprecated")
        self.overrides = dict(overrides)
        self.learned: dict[str, str] = {}
        self.learned_reasoning: set[str] = set()  # models whose errors asked for reasoning
        self._needs_reasoning: dict[str, bool] = {}  # answers of needs_reasoning_back, by id
        self.upstream_ids: frozenset[str] | None = None
        self.upstream_fetched_at: float | None = None  # wall-clock time of that list

    def facts(self, model_id: str) -> ModelFacts | None:
        return self.models.get(model_id)

    def wire(self, model_id: str) -> WireChoice:
        found = self.overrides.get(model_id)
        if found is not None:
            return WireChoice(found, "override")
        found = self.learned.get(model_id)
        if found is not None:
            return WireChoice(found, "learned")
        facts = self.models.get(model_id)
        if facts is not None and facts.wire is not None:
            return WireChoice(facts.wire, facts.wire_source)
        return family_wire(model_id)

    def listed(self, model_id: str) -> bool:
        """Whether `model_id` is routable as a bare id (and advertised)."""
        if model_id in self.overrides:
            return True
        if self.upstream_ids is not None:
            return model_id in self.upstream_ids
        return model_id in self.models

    def advertised(self) -> list[str]:
        listed = self.upstream_ids if self.upstream_ids is not None else self.models.keys()
        return sorted({*listed, *self.overrides})

    def needs_reasoning_back(self, model_id: str) -> bool:
        found = self._needs_reasoning.get(model_id)
        if found is None:  # asked on every request: answered once per id
            found = needs_reasoning_back(model_id) or model_id in self.learned_reasoning
            if len(self._needs_reasoning) < 4096:
                self._needs_reasoning[model_id] = found
        return found

    def learn_needs_reasoning(self, model_id: str) -> None:
        self.learned_reasoning.add(model_id)
        self._needs_reasoning[model_id] = True

    def learn(self, model_id: str, wire: str) -> None:
        """The upstream answered `model_id` on `wire` after refusing it on the expected one."""
        if model_id not in self.overrides:
            self.learned[model_id] = wire

    def listers(self, model_id: str) -> str:
        """Who lists `model_id`: the catalogue, the live upstream list, the config."""
        names = [name for name, present in (
            ("catalogue", model_id in self.models),
            ("upstream list", self.upstream_ids is not None and model_id in self.upstream_ids),
            ("override", model_id in self.overrides)) if present]
        return ", ".join(names) or "-"

    def ids(self) -> list[str]:
        """Every id anyone lists: the catalogue, the config, what was learned, the live list."""
        return sorted({*self.models, *self.overrides, *self.learned, *(self.upstream_ids or ())})

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(id, wire, where the wire came from, who lists the id) for every id anyone lists."""
        return [(model_id, *self.wire(model_id), self.listers(model_id))
                for model_id in self.ids()]
