"""Built-in rule: the upstream wire for the model — the config's
`extra.model_protocol_overrides`, what the upstream taught the gateway, the model catalogue
(models.dev's format: the shipped snapshot or a `models refresh`), then the family rules
(`minimax-*`, `qwen*` → Anthropic; `gpt-*`, `grok-*` → Responses; anything else → OpenAI Chat).
See gateway/routing/catalogue.py.

A bare id must be one the backend lists (its upstream's model list, or the catalogue) or an
override; any id routes when the client names the backend (`opencode-go/<id>`)."""


class ChooseProtocol:
    def apply(self, ctx):
        if ctx.protocol is not None or ctx.backend not in ctx.catalogues:
            return
        catalogue = ctx.catalogues[ctx.backend]
        if ctx.requested == ctx.model_id and not catalogue.listed(ctx.model_id):
            return  # an unknown bare id: the 404 that lists what is served
        ctx.protocol = catalogue.wire(ctx.model_id).wire


RULE = ChooseProtocol()
