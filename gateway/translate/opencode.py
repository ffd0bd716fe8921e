"""What each of OpenCode Go's wires needs of a request, whatever protocol the client spoke.

Applied last, to the body the upstream receives, on pass-through and translated routes alike:
- Every wire: the output bound and the reasoning effort fitted to the model
  (`model_limits.py`, from the model catalogue).
- `/messages` (Anthropic wire) is Anthropic-compatible, not Anthropic: `anthropic_compat`.
- `/chat/completions` (OpenAI wire): GLM answers 400 to `thinking`
  (`catalogue.takes_thinking_field`), so it does not get it.
"""
from __future__ import annotations

from gateway.routing.catalogue import takes_thinking_field
from gateway.translate.anthropic_compat import normalize_for_opencode, server_tool_names
from gateway.translate.model_limits import fit_to_model

# /messages answers 400 to `thinking` (UPSTREAM.md): a translated request must not ask for it,
# nor make room for it in `max_tokens`.
MESSAGES_TAKE_THINKING = False


def prepare_chat(body: dict, ctx) -> dict:
    if not takes_thinking_field(ctx.model_id):
        body.pop("thinking", None)
    return fit_to_model(body, ctx, "openai")


def prepare_messages(body: dict, ctx) -> dict:
    dropped = server_tool_names(body.get("tools"))
    if dropped:  # the access log says which tools the model never saw
        ctx.dropped_tools = [*(ctx.dropped_tools or ()), *dropped]
    return fit_to_model(normalize_for_opencode(body), ctx, "anthropic")


def prepare_responses(body: dict, ctx) -> dict:
    return fit_to_model(body, ctx, "responses")


WIRE_PREPARATION = {
    "openai": prepare_chat,
    "anthropic": prepare_messages,
    "responses": prepare_responses,
}
