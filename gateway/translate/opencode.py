"""What each of OpenCode Go's wires needs of a request, whatever protocol the client spoke.

Applied last, to the body the upstream receives, on pass-through and translated routes alike:
- `/messages` (Anthropic wire) is Anthropic-compatible, not Anthropic: `anthropic_compat`.
- `/chat/completions` (OpenAI wire): models that refuse reasoning controls (GLM answers 400 to
  `reasoning_effort` and `thinking`, see `catalogue.takes_reasoning_controls`) do not get them.
- `/responses`: nothing to change.
"""
from __future__ import annotations

from gateway.routing.catalogue import takes_reasoning_controls
from gateway.translate.anthropic_compat import normalize_for_opencode, server_tool_names

_REASONING_CONTROLS = ("reasoning_effort", "thinking")
# /messages answers 400 to `thinking` (UPSTREAM.md): a translated request must not ask for it,
# nor make room for it in `max_tokens`.
MESSAGES_TAKE_THINKING = False


def prepare_chat(body: dict, ctx) -> dict:
    if not takes_reasoning_controls(ctx.model_id):
        for name in _REASONING_CONTROLS:
            body.pop(name, None)
    return body


def prepare_messages(body: dict, ctx) -> dict:
    dropped = server_tool_names(body.get("tools"))
    if dropped:  # the access log says which tools the model never saw
        ctx.dropped_tools = [*(ctx.dropped_tools or ()), *dropped]
    return normalize_for_opencode(body)


WIRE_PREPARATION = {
    "openai": prepare_chat,
    "anthropic": prepare_messages,
}
