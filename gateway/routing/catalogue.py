"""Which model ids a backend serves, and on which of OpenCode Go's three wires.

A model's wire comes from, in this order: the config's `extra.model_protocol_overrides`, what the
gateway learned from an upstream that said "not supported for format …" (`learn`), the built-in
table of today's ids, a family rule for ids nobody has listed yet (`minimax-*` and `qwen*` on the
Anthropic wire, `gpt-*` on the Responses wire), and otherwise the OpenAI wire.

Which ids a backend *lists* (routable as a bare id, advertised by `/v1/models`): the ids of the
upstream's own `GET /models`, once it has answered (refreshed every few minutes by
`upstream/catalogue_refresh.py`), else the built-in table; the overrides always. Any other id
still routes when the client names the backend (`opencode-go/<id>`): OpenCode Go adds models
often, and the upstream judges the id.

Per-model quirks of OpenCode Go sit here too, next to the wire, so a rule or the wire
preparation reads them by id: which models refuse reasoning controls, and which require their
reasoning back on tool-call turns.
"""
from __future__ import annotations

from typing import NamedTuple

WIRES = ("openai", "anthropic", "responses")
DEFAULT_WIRE = "openai"

# OpenCode Go's catalogue as of late 2026 (UPSTREAM.md).
BUILTIN_WIRES: dict[str, str] = {
    "deepseek-v4-flash": "openai",
    "deepseek-v4-pro": "openai",
    "glm-5": "openai",
    "glm-5.1": "openai",
    "glm-5.2": "openai",
    "gpt-5.6-luna": "responses",
    "grok-4.5": "openai",
    "hy3": "openai",
    "kimi-k2.5": "openai",
    "kimi-k2.6": "openai",
    "kimi-k2.7-code": "openai",
    "kimi-k3": "openai",
    "mimo-v2-omni": "openai",
    "mimo-v2-pro": "openai",
    "mimo-v2.5": "openai",
    "mimo-v2.5-pro": "openai",
    "minimax-m2.5": "anthropic",
    "minimax-m2.7": "anthropic",
    "minimax-m3": "anthropic",
    "qwen3.5-plus": "anthropic",
    "qwen3.6-plus": "anthropic",
    "qwen3.7-max": "anthropic",
    "qwen3.7-plus": "anthropic",
    "qwen3.8-flash": "anthropic",
    "qwen3.8-max": "anthropic",
}

# Families keep their wire when new ids appear (every other proxy routes these the same way).
FAMILY_WIRES: tuple[tuple[str, str], ...] = (
    ("minimax-", "anthropic"),
    ("qwen", "anthropic"),
    ("gpt-", "responses"),
)

# GLM on /chat/completions answers 400 to `reasoning_effort` and `thinking`.
_NO_REASONING_CONTROLS = ("glm-",)
# DeepSeek runs in thinking mode and refuses a tool-call turn that comes back without its
# `reasoning_content` ("must be passed back to the API").
_REASONING_REQUIRED = ("deepseek-",)


def takes_reasoning_controls(model_id: str) -> bool:
    return not model_id.startswith(_NO_REASONING_CONTROLS)


def needs_reasoning_back(model_id: str) -> bool:
    return model_id.startswith(_REASONING_REQUIRED)


class WireChoice(NamedTuple):
    wire: str
    source: str  # "override", "learned", "table", "family rule qwen*", "default"


def family_wire(model_id: str) -> WireChoice:
    for prefix, wire in FAMILY_WIRES:
        if model_id.startswith(prefix):
            return WireChoice(wire, f"family rule {prefix.rstrip('-')}*")
    return WireChoice(DEFAULT_WIRE, "default")


class Catalogue:
    """One backend's ids and wires; `upstream_ids` is the upstream's last good model list."""

    def __init__(self, overrides: dict[str, str]):
        self.overrides = dict(overrides)
        self.learned: dict[str, str] = {}
        self.learned_reasoning: set[str] = set()  # models whose errors asked for reasoning
        self._needs_reasoning: dict[str, bool] = {}  # answers of needs_reasoning_back, by id
        self.upstream_ids: frozenset[str] | None = None
        self.upstream_fetched_at: float | None = None  # wall-clock time of that list

    def wire(self, model_id: str) -> WireChoice:
        found = self.overrides.get(model_id)
        if found is not None:
            return WireChoice(found, "override")
        found = self.learned.get(model_id)
        if found is not None:
            return WireChoice(found, "learned")
        found = BUILTIN_WIRES.get(model_id)
        if found is not None:
            return WireChoice(found, "table")
        return family_wire(model_id)

    def listed(self, model_id: str) -> bool:
        """Whether `model_id` is routable as a bare id (and advertised)."""
        if model_id in self.overrides:
            return True
        if self.upstream_ids is not None:
            return model_id in self.upstream_ids
        return model_id in BUILTIN_WIRES

    def advertised(self) -> list[str]:
        listed = self.upstream_ids if self.upstream_ids is not None else BUILTIN_WIRES.keys()
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

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(id, wire, where the wire came from, who lists the id) for every id anyone lists."""
        ids = {*BUILTIN_WIRES, *self.overrides, *self.learned, *(self.upstream_ids or ())}
        rows = []
        for model_id in sorted(ids):
            wire, source = self.wire(model_id)
            listers = [name for name, present in (
                ("table", model_id in BUILTIN_WIRES),
                ("upstream list", self.upstream_ids is not None and model_id in self.upstream_ids),
                ("override", model_id in self.overrides)) if present]
            rows.append((model_id, wire, source, ", ".join(listers) or "-"))
        return rows
