"""The Starlette app and the per-worker objects its lifespan owns.

Request path: frontends/ (parse, check at the door) → routing/ (session, rule chain) →
upstream/forwarder.py (pooled aiohttp session, failover, relay) → translate/ (when the client's
protocol and the upstream's wire differ).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access.clients import Directory
from gateway.admission import StreamGate
from gateway.access.rate import RequestRate
from gateway.config import Config, ConfigError, load_config
from gateway.frontends import gemini
from gateway.frontends.anthropic_messages import messages
from gateway.frontends.common import Frontend
from gateway.frontends.doctor import doctor
from gateway.frontends.info import count_tokens, healthz, list_models
from gateway.frontends.landing import ENDPOINTS, endpoint_list, landing
from gateway.frontends.openai_chat import chat_completions
from gateway.frontends.openai_responses import responses
from gateway.frontends.usage import dashboard, usage
from gateway.guard import error_body_for, problem_of, refuse
from gateway.metrics import metrics
from gateway.observer import Observer
from gateway.quota.book import KeyBook
from gateway.quota.upstream_usage import poll_forever
from gateway.routing.catalogue_store import load as load_catalogue
from gateway.routing.chain import builtin_rules_dir, load_rule_chain
from gateway.routing.fallbacks import Fallbacks
from gateway.routing.router import Router, build_catalogues
from gateway.routing.session import Sessions, session_secret
from gateway.server import on_shutdown
from gateway.upstream.catalogue_refresh import keep_fresh
from gateway.upstream.forwarder import Forwarder, create_session
from gateway.upstream.instances import build_pools
from gateway.upstream.redact import Redactor
from gateway.state.reasoning import ReasoningMemory
from gateway.state.store import make_store
from gateway.suggest import did_you_mean

_log = logging.getLogger("gateway")

CLIENT_KEYS_ENV = "GATEWAY_API_KEYS"
# How `opencode-gateway serve` hands its options to the worker processes (see gateway/asgi.py).
CONFIG_ENV = "OPENCODE_GATEWAY_CONFIG"
RULES_DIR_ENV = "OPENCODE_GATEWAY_RULES_DIR"


def rule_directories(config: Config, extra: str | None = None) -> list[Path]:
    directories = [builtin_rules_dir()]
    for directory in (config.rules_dir, extra):
        if directory and Path(directory).resolve() not in [d.resolve() for d in directories]:
            directories.append(Path(directory))
    return directories


class Gateway:
    """Everything one worker needs to serve: config, instance pools, router, forwarder."""

    def __init__(self, config: Config, rules_dir: str | None = None,
                 env: dict[str, str] | None = None):
        env = dict(os.environ) if env is None else env
        self.config = config
        self.pools = build_pools(config, env)
        # One read of the model catalogue (snapshot + refreshed file) for routing and pricing.
        self.known_models = load_catalogue(config)
        self.catalogues = build_catalogues(config, self.known_models)
        upstream_keys = [i.api_key for pool in self.pools.values() for i in pool.instances]
        self.router = Router(config, self.pools, load_rule_chain(rule_directories(config, rules_dir)),
                             self.catalogues, sessions=Sessions(session_secret(upstream_keys)))
        self.fallbacks = Fallbacks(config, self.catalogues)
        listed = env.get(CLIENT_KEYS_ENV, "")
        self._env_keys = [key.strip() for key in listed.split(",") if key.strip()]
        if listed.strip() and not self._env_keys:
            raise ConfigError(f"{CLIENT_KEYS_ENV}={listed!r} holds no key; the gateway will not "
                              "start open when client keys were asked for")
        self.clients = Directory(config, self._env_keys)
        self.rate = RequestRate()
        self.redactor = Redactor(upstream_keys)
        self.store = make_store(config.state, env)
        self.book = KeyBook(config, self.pools, self.store, self.known_models)
        self.book.set_clients({name: client.budget
                               for name, client in self.clients.clients.items()})
        self.book.on_snapshot = self._stored_state
        self._reloads: int | None = None  # the store's reload count when this worker last read
        self.config_path: str | None = None  # the file a reload re-reads (set by the app)
        self.reasoning = ReasoningMemory(self.store, config.state.reasoning_ttl_hours)
        self.router.quota = self.book
        self.observer = Observer(access_log=config.server.access_log)
        # Model requests in flight in this worker, and how many it takes (admission.py).
        self.streams = StreamGate(config.server.max_streams)
        self.observer.quota = self.book
        self.book.on_decision = self.observer.metrics.key_decision
        for pool in self.pools.values():
            pool.on_rest = self._rested
        self.forwarder: Forwarder | None = None
        self.session = None  # the worker's pooled upstream client session (attach)
        self.last_doctor = None  # GET /v1/doctor's last report (frontends/doctor.py)

    def _stored_state(self, clients, reloads: int) -> None:
        """After each sync: the stored clients, and a reload another process asked for."""
        if self._reloads is not None and reloads != self._reloads:
            self.reload()
        self._reloads = reloads
        if self.clients.update_stored(clients):
            self._clients_changed()

    def _clients_changed(self) -> None:
        named = self.clients.clients
        self.book.set_clients({name: client.budget for name, client in named.items()})
        self.rate.forget(set(named))

    def reload(self) -> bool:
        """Re-read the config file: its keys and clients take effect; a config that does not
        load is reported and the one in use kept. Other sections need a restart."""
        if not self.config_path:
            return False
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            _log.error("config reload refused, the running config stays: %s", exc)
            return False
        if config.routing != self.config.routing:
            _log.warning("config reload: routing changes take effect at the next restart")
        self.config.server.api_keys = config.server.api_keys
        self.config.server.admin_keys = config.server.admin_keys
        self.config.server.clients = config.server.clients
        self.clients.configure(self.config, self._env_keys)
        self._clients_changed()
        _log.warning("config reloaded from %s: %d named client(s)", self.config_path,
                     len(self.clients.clients))
        return True

    def _rested(self, instance) -> None:
        self.observer.rest(instance)
        self.book.key_changed(instance)

    async def sync(self) -> None:
        """One sync with the state store (see quota/book.py), and its outcome in the metrics.

        Every sync reports, the first (at start-up) too: until one has, `state_store_up`
        would read the gauge's initial 0, a store that looks down with no failure counted."""
        await self.book.sync()
        self.observer.metrics.quota(self.book.used_ratios(time.time()), self.book.store_up)

    async def keep_in_step(self) -> None:
        """The worker's background sync with the state store: every `state.sync_seconds`, and
        at once when a key starts a rest."""
        every = self.config.state.sync_seconds
        urgent = self.book.urgent = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(urgent.wait(), every)
            except TimeoutError:
                pass
            urgent.clear()
            await self.sync()

    def attach(self, session) -> Forwarder:
        """The worker's forwarder over its pooled client `session` (made inside the loop)."""
        self.session = session
        self.forwarder = Forwarder(session, self.config.upstream, self.pools, self.observer,
                                   self.redactor, self.reasoning)
        return self.forwarder


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and wrong methods, in the error shape the client's protocol expects."""
    path = request.url.path
    message = (f"{request.method} {path}: {exc.detail}."
               + did_you_mean(path, [p for _, p, _ in ENDPOINTS]) + " This gateway answers "
               f"{endpoint_list()} (GET / lists them); OpenAI clients take the base URL "
               f"{request.base_url}v1, Anthropic and Gemini clients "
               f"{str(request.base_url).rstrip('/')}")
    body = error_body_for(path, request.headers, exc.status_code, message)
    return Response(body, status_code=exc.status_code, media_type="application/json",
                    headers=exc.headers)


class HotPaths:
    """The ASGI app a worker serves: the request checks of gateway/guard.py first, then the
    model endpoints straight to their frontends, everything else through Starlette.

    Starlette's error and exception middlewares and its router cost a coroutine hop each and a
    route match on every request; the frontends already answer every error in the client's
    shape themselves, so the requests that carry the traffic skip them. Anything that is not a
    POST to one of these exact paths (other methods, unknown paths, the lifespan) gets Starlette
    as before.
    """

    def __init__(self, app: Starlette, hot: dict[str, Frontend], max_header_bytes: int):
        self.app = app
        self.state = app.state  # what tests and tools read through the app
        self._hot = hot
        self._max_header_bytes = max_header_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            problem = problem_of(scope["headers"], self._max_header_bytes)
            if problem is not None:
                return await refuse(scope, send, *problem)
            if scope["method"] == "POST":
                frontend = self._hot.get(scope["path"])
                if frontend is not None:
                    scope["app"] = self.app  # Request(scope).app, as Starlette would set it
                    return await frontend(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(gateway: Gateway) -> HotPaths:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        settings = gateway.config.upstream
        gateway.config_path = gateway.config_path or os.environ.get(CONFIG_ENV) or None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            # SIGHUP re-reads the config (the main thread's loop only: a test's app has none)
            loop.add_signal_handler(signal.SIGHUP, gateway.reload)
        try:
            await gateway.store.open()
        except OSError:
            pass  # a Redis that is down: the syncs say so, and keep trying until it is back
        await gateway.sync()  # start from what the other workers (and the last run) know
        gateway.observer.metrics.stream_cap(gateway.streams.cap)  # in the worker, not `serve`
        session = create_session(settings)
        on_shutdown(gateway.attach(session).shutting_down)
        background = [asyncio.create_task(gateway.keep_in_step())]
        if settings.models_refresh_seconds > 0:
            background.append(asyncio.create_task(keep_fresh(
                session, gateway.pools, gateway.catalogues, settings.models_refresh_seconds)))
        if gateway.config.quota.usage_poll_seconds > 0:
            background.append(asyncio.create_task(poll_forever(
                session, gateway.pools, gateway.book, gateway.config.quota.usage_poll_seconds)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await gateway.reasoning.drain()
            await gateway.book.sync()  # what this worker gathered since the last sync
            await gateway.store.close()
            await session.close()
            gateway.observer.close()

    app = Starlette(routes=[
        Route("/", landing, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/anthropic/v1/messages", messages, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/openai/v1/responses", responses, methods=["POST"]),
        Route("/openai/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/anthropic/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
        Route("/v1/doctor", doctor, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/anthropic/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        # Claude Code's connectivity check (first-run preflight, `claude doctor`, warm-up HEAD)
        # wants 200 from `{ANTHROPIC_BASE_URL}/api/hello`.
        Route("/api/hello", healthz, methods=["GET"]),
        Route("/anthropic/api/hello", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *gemini.ROUTES,
    ], lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.gateway = gateway
    return HotPaths(app, {route.path: route.endpoint for route in app.routes
                          if isinstance(route.endpoint, Frontend)},
                    gateway.config.server.max_header_bytes)
