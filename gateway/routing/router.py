"""From the model string a client sent to a judged route: parse, run the rule chain, judge.

Model strings (SPEC): `opencode-go/glm-5.1`, `opencode-go:glm-5.1`, `opencode-go.2:glm-5.1`,
`opencode-go.2/glm-5.1`, and a bare `glm-5.1` when exactly one backend lists it. Parsing only
fills in the context; the rules decide, and only after the whole chain has run is a route judged.
"""
from __future__ import annotations

from gateway.config import Config, env_prefix
from gateway.errors import GatewayError
from gateway.routing.catalogue import Catalogue
from gateway.routing.catalogue_store import CatalogueFacts, load
from gateway.routing.chain import RuleChain
from gateway.routing.context import RouteContext
from gateway.routing.session import Sessions
from gateway.suggest import did_you_mean
from gateway.upstream.identity import forwarded_headers
from gateway.upstream.instances import InstancePool


def parse_model_string(requested: str, backends) -> tuple[str | None, int | None, str]:
    """(backend, pinned instance number, bare model id); backend None when no prefix names one."""
    for separator in (":", "/"):
        prefix, found, rest = requested.partition(separator)
        if found and rest:
            name, dot, number = prefix.partition(".")
            if name in backends and (not dot or number.isdigit()):
                return name, (int(number) if dot else None), rest
    return None, None, requested


def missing_key_message(backend: str) -> str:
    """Why a backend without a key cannot answer, and what to set: the warning at start and the
    error every request gets say the same."""
    prefix = env_prefix(backend)
    return (f"the gateway has no OpenCode Go key for {backend}: set {prefix}_API_KEY (or "
            f"{prefix}_API_KEY_1, _2, ... for several keys, or backends.{backend}.api_key in its "
            "config) where the gateway runs, and restart it")


def build_catalogues(config: Config, known: CatalogueFacts | None = None) -> dict[str, Catalogue]:
    """One catalogue per backend over the same model facts (`known`, else read from the
    snapshot and the config's state directory)."""
    known = known if known is not None else load(config)
    return {name: Catalogue(backend.extra.model_protocol_overrides, known)
            for name, backend in config.backends.items()}


class Router:
    def __init__(self, config: Config, pools: dict[str, InstancePool], chain: RuleChain,
                 catalogues: dict[str, Catalogue] | None = None, quota=None,
                 sessions: Sessions | None = None):
        self.config = config
        self.pools = pools
        self.chain = chain
        self.catalogues = catalogues if catalogues is not None else build_catalogues(config)
        self.quota = quota
        self.sessions = sessions if sessions is not None else Sessions(b"")

    def advertised_models(self) -> list[str]:
        return [f"{name}/{model}" for name, catalogue in self.catalogues.items()
                for model in catalogue.advertised()]

    def suggestion(self, requested: str) -> str:
        """` Did you mean opencode-go/glm-5.1?` for a misspelt model string, else ''."""
        names = {}
        for name in self.advertised_models():
            names[name] = name
            names.setdefault(name.partition("/")[2], name)
        return did_you_mean(requested, names, names.get)

    async def route(self, requested: str, frontend: str, body: dict, session: str | None = None,
                    headers=None, client_key: str | None = None) -> RouteContext:
        """The judged route; `session` is found in the client's `headers` and `body` (or
        derived from the conversation's opening) unless one is given."""
        if session is None:
            session = self.sessions.session(headers or {}, body, frontend, client_key)
        backend, pin, model_id = parse_model_string(requested, self.config.backends)
        if backend is None:
            serving = [name for name, catalogue in self.catalogues.items()
                       if catalogue.listed(requested)]
            if len(serving) == 1:
                backend = serving[0]
        ctx = RouteContext(requested=requested, frontend=frontend, body=body, config=self.config,
                           pools=self.pools, catalogues=self.catalogues, backend=backend,
                           pin=pin, model_id=model_id, session=session, quota=self.quota)
        if headers:
            ctx.client_ua = headers.get("user-agent")
            ctx.client_headers = forwarded_headers(headers)
        await self.chain.run(ctx)
        self._judge(ctx)
        return ctx

    def _judge(self, ctx: RouteContext) -> None:
        if ctx.backend is None or ctx.backend not in self.pools or ctx.protocol is None:
            raise GatewayError(
                404, f"model {ctx.requested!r} is not served by this gateway."
                     + self.suggestion(ctx.requested) + " Available models: "
                     + ", ".join(self.advertised_models())
                     + ". Any other OpenCode Go id works with the backend named: opencode-go/<id>.",
                param="model", code="model_not_found")
        if ctx.instance is None:
            pool = self.pools[ctx.backend]
            if ctx.pinned:
                numbers = ", ".join(instance.name for instance in pool.instances)
                raise GatewayError(
                    404, f"model {ctx.requested!r} names instance {ctx.pin} of {ctx.backend}, "
                         f"which does not exist; its instances are: {numbers}",
                    param="model", code="model_not_found")
            raise pool.all_resting_error(model=ctx.model_id)
        if ctx.translation is None:
            raise GatewayError(
                500, f"no rule chose a translation for {ctx.frontend} clients to the "
                     f"{ctx.protocol} wire; check the rules directory", param="model")
