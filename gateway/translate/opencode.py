"""What each of OpenCode Go's wires needs of a request, whatever protocol the client spoke.

Applied last, to the body the upstream receives, on pass-through and translated routes alike:
- `/messages` (Anthropic wire) is Anthropic-compatible, not Anthropic: `anthropic_compat`.
- `/chat/completions` (OpenAI wire): models that refuse reasoning controls (GLM answers 400 to
  `reasoning_effort` and `thinking`, see `catalogue.takes_reasoning_controls`) do not get them.
- `/responses`: nothing to change.
"""
from __future__ import annotations

from gateway.routing.catalogue import takes_reasoning_controls
from gateway.translate.anthropic_compat import normalize_for_opencode

_REASONING_CONTROLS = ("reasoning_effort", "thinking")


def prepare_chat(body: dict, ctx) -> dict:
    if not takes_reasoning_controls(ctx.model_id):
        for name in _REASONING_CONTROLS:
            body.pop(name, None)
    return body


WIRE_PREPARATION = {
    "openai": prepare_chat,
    "anthropic": lambda body, ctx: normalize_for_opencode(body),
}
