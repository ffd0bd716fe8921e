"""A request fitted to its model's limits: the output bound clamped, the reasoning effort mapped.

Applied by the wire preparation (`opencode.py`) to the body the upstream receives, on
pass-through and translated routes alike, so every client protocol's field is handled in one
place, from the model catalogue's facts (routing/catalogue.py):

- Output bound: `max_tokens`, `max_completion_tokens` (Chat, Messages) and `max_output_tokens`
  (Responses) above the model's output limit become the limit (an upstream answers 400 to more,
  and a client asking "as much as you can" should get an answer); the response says so in
  `x-opencode-gateway-clamped`. A value within the limit, or a model whose limit is unknown,
  passes unchanged.
- Reasoning effort: `reasoning_effort` (Chat) and `reasoning.effort` (Responses) — an Anthropic
  client's thinking budget arrives here as a `reasoning_effort` (anthropic_request.to_hub). An
  effort the model accepts is kept as is; another becomes the nearest the model accepts on the
  scale none < minimal < low < medium < high < xhigh < max (the higher of two equally near:
  the client asked for that much thought), e.g. MiMo v2.6 gets `high` for `xhigh` or `max`, GLM
  `low` for `none`. A model that takes no effort gets none; where the catalogue cannot tell (an
  id it lacks, a value off the scale), the value passes through for the upstream to judge. The
  response says what was sent in `x-opencode-gateway-reasoning-effort`.
"""
from __future__ import annotations

from gateway.routing.models_dev import ModelFacts

EFFORT_SCALE = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_RANK = {effort: rank for rank, effort in enumerate(EFFORT_SCALE)}
CLAMPED_HEADER = "x-opencode-gateway-clamped"
EFFORT_HEADER = "x-opencode-gateway-reasoning-effort"

# The output-bound fields of each wire's body.
OUTPUT_FIELDS = {
    "openai": ("max_tokens", "max_completion_tokens"),
    "anthropic": ("max_tokens",),
    "responses": ("max_output_tokens",),
}


def fit_effort(asked: str, accepted: tuple[str, ...] | None) -> str | None:
    """The effort to send for `asked` to a model that takes `accepted` (None: unknown); None
    means send none."""
    if accepted is None or asked in accepted or asked not in _RANK:
        return asked
    on_scale = [effort for effort in accepted if effort in _RANK]
    if not on_scale:
        return None
    rank = _RANK[asked]
    return min(on_scale, key=lambda effort: (abs(_RANK[effort] - rank), -_RANK[effort]))


def _note(ctx, header: str, value: str) -> None:
    """A response header saying what the gateway changed (sent with the answer)."""
    if ctx.adjusted is None:
        ctx.adjusted = {}
    ctx.adjusted[header] = value


def _facts(ctx) -> ModelFacts | None:
    catalogue = ctx.catalogues.get(ctx.backend) if ctx.backend is not None else None
    return catalogue.facts(ctx.model_id) if catalogue is not None else None


def clamp_output(body: dict, ctx, wire: str) -> None:
    facts = _facts(ctx)
    limit = facts.output_limit if facts is not None else None
    if limit is None:
        return
    clamped = []
    for name in OUTPUT_FIELDS[wire]:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            body[name] = limit
            clamped.append(f"{name}={limit} (asked {value})")
    if clamped:
        _note(ctx, CLAMPED_HEADER,
              ", ".join(clamped) + f"; {ctx.model_id}'s output limit is {limit}")


def map_effort(body: dict, ctx, wire: str) -> None:
    """`reasoning_effort` (Chat) or `reasoning.effort` (Responses) fitted to the model."""
    if wire == "responses":
        holder = body.get("reasoning")
        if not isinstance(holder, dict):
            return
        name = "effort"
    else:
        holder, name = body, "reasoning_effort"
    asked = holder.get(name)
    if not isinstance(asked, str):
        return
    facts = _facts(ctx)
    sent = fit_effort(asked, facts.efforts if facts is not None else None)
    if sent == asked:
        return
    if sent is None:
        del holder[name]
        if wire == "responses" and not holder:
            del body["reasoning"]
        _note(ctx, EFFORT_HEADER, f"not sent (asked {asked}; {ctx.model_id} takes none)")
        return
    holder[name] = sent
    _note(ctx, EFFORT_HEADER,
          f"{sent} (asked {asked}; {ctx.model_id} takes {', '.join(facts.efforts)})")


def fit_to_model(body: dict, ctx, wire: str) -> dict:
    clamp_output(body, ctx, wire)
    if wire != "anthropic":  # /messages takes no reasoning controls (anthropic_compat.py)
        map_effort(body, ctx, wire)
    return body
