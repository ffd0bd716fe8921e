"""Built-in rule: the upstream flavour for the model — the built-in table, then the config's
`extra.model_protocol_overrides`. An id outside both goes to the OpenAI flavour when the client
named the backend (OpenCode Go adds models often; the upstream judges the id)."""
from gateway.routing.model_table import known_protocol


class ChooseProtocol:
    def apply(self, ctx):
        if ctx.protocol is not None or ctx.backend not in ctx.config.backends:
            return
        protocol = known_protocol(ctx.config.backends[ctx.backend], ctx.model_id)
        if protocol is None and ctx.requested != ctx.model_id:
            protocol = "openai"
        ctx.protocol = protocol


RULE = ChooseProtocol()
