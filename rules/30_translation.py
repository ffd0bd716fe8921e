"""Built-in rule: what the route does to requests and answers, from the client's protocol (the
frontend) and the upstream wire. Same protocol on both sides passes the answer's bytes through
(the request still gets what the wire needs, such as OpenCode Go's /messages normalisation);
otherwise the client's codec and the upstream's are composed around the hub
(gateway/translate/compose.py)."""
from gateway.translate.compose import TRANSLATIONS


class ChooseTranslation:
    def apply(self, ctx):
        if ctx.translation is None and ctx.protocol is not None:
            ctx.translation = TRANSLATIONS.get((ctx.frontend, ctx.protocol))


RULE = ChooseTranslation()
