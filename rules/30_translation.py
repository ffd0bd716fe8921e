"""Built-in rule: the translators the route needs, from the client's protocol (the frontend)
and the upstream flavour. Same protocol on both sides passes bytes through; Anthropic clients to
the Anthropic flavour still get their request normalised to what OpenCode Go's /messages takes."""
from gateway.routing.context import Translation
from gateway.translate.anthropic_compat import normalize_for_opencode
from gateway.translate.to_anthropic_request import to_anthropic_request
from gateway.translate.to_anthropic_response import to_anthropic_response
from gateway.translate.to_anthropic_stream import OpenAIToAnthropicStream
from gateway.translate.to_openai_request import to_openai_request
from gateway.translate.to_openai_response import to_openai_response
from gateway.translate.to_openai_stream import AnthropicToOpenAIStream


def _openai_to_anthropic_request(body, config):
    # The translated request is held to what OpenCode Go's /messages accepts, like an Anthropic
    # client's: its `thinking` (from reasoning_effort) is refused there, so it is dropped again.
    translated = to_anthropic_request(body, default_max_tokens=config.translation.default_max_tokens)
    return normalize_for_opencode(translated)


def _anthropic_to_openai_stream(ctx):
    options = ctx.body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return AnthropicToOpenAIStream(include_usage=include_usage)


TRANSLATIONS = {
    ("openai", "openai"): Translation("none (OpenAI pass-through)"),
    ("openai", "anthropic"): Translation(
        "OpenAI -> Anthropic", _openai_to_anthropic_request, to_openai_response,
        _anthropic_to_openai_stream),
    ("anthropic", "anthropic"): Translation(
        "Anthropic pass-through (request normalised)",
        lambda body, _config: normalize_for_opencode(body)),
    ("anthropic", "openai"): Translation(
        "Anthropic -> OpenAI", lambda body, _config: to_openai_request(body),
        to_anthropic_response, lambda ctx: OpenAIToAnthropicStream(model=ctx.model_id)),
}


class ChooseTranslation:
    def apply(self, ctx):
        if ctx.translation is None and ctx.protocol is not None:
            ctx.translation = TRANSLATIONS.get((ctx.frontend, ctx.protocol))


RULE = ChooseTranslation()
