"""Which upstream flavour serves which model id: the built-in table and the config's overrides."""
from __future__ import annotations

from gateway.config import Backend, Protocol

# OpenCode Go's models as of this release. Ids outside it still route when the client names the
# backend (they go to the OpenAI flavour); `model_protocol_overrides` adds or moves ids.
BUILTIN_PROTOCOLS: dict[str, Protocol] = {
    "glm-5": "openai",
    "glm-5.1": "openai",
    "kimi-k2.5": "openai",
    "mimo-v2-pro": "openai",
    "mimo-v2-omni": "openai",
    "minimax-m2.5": "anthropic",
    "minimax-m2.7": "anthropic",
}


def known_protocol(backend: Backend, model_id: str) -> Protocol | None:
    """The flavour the table (overrides first) gives `model_id`, or None when the id is not in it."""
    override = backend.extra.model_protocol_overrides.get(model_id)
    if override is not None:
        return override
    return BUILTIN_PROTOCOLS.get(model_id)


def known_models(backend: Backend) -> list[str]:
    return sorted({**BUILTIN_PROTOCOLS, **backend.extra.model_protocol_overrides})
