"""Backend instances (one per upstream key) and their health.

`OPENCODE_GO_API_KEY_1..N` make `opencode-go.1..N`, each with its own key and the backend's
other settings; with no numbered key the backend is one instance keyed by `OPENCODE_GO_API_KEY`
(or the config's `api_key`). A key pasted with its `Bearer ` prefix is taken without it.

An instance rests in two ways:
- a short rest after a plain 429 (its `Retry-After`) or a run of failures (the configured
  cool-down): when every instance rests so, the one back first is still tried, because an
  answer from the upstream tells the client more than a refusal the gateway made up;
- a usage-limit rest after OpenCode Go's `GoUsageLimitError` (5-hour, weekly or monthly dollar
  limit), a `CreditsError` (the balance is spent) or an `EntitlementError` (the key's workspace
  has no Go subscription), until the reset the upstream gave: such a key is not used at all until
  then, and when every key is limited the client gets a 429 saying which limit ran out on which
  key (a 403 when it is the subscription that is missing everywhere);
- a per-model cap: a limit that names one model (one 5-hour window capped DeepSeek V4 Pro while
  Flash still had room) rests the key for that model only.

Times are wall-clock seconds, so a state store can share them between workers and machines.
"""
from __future__ import annotations

import hashlib
import math
import re
import time

from gateway.config import DEFAULT_API_URL, Config, ConfigError, Upstream, check_api_url, env_prefix
from gateway.errors import GatewayError
from gateway.masking import mask_url
from gateway.upstream.identity import GATEWAY_TOKEN, check_own_token
from gateway.upstream.urls import ZEN, Layout, place, unplaceable


def mask_key(key: str) -> str:
    """A form of a key safe to print: enough to tell two keys apart, never enough to use one."""
    if not key:
        return "(none)"
    if len(key) <= 8:
        return "****"
    return "****" + key[-4:]


def key_fingerprint(key: str) -> str:
    """A key's stable name in the usage ledger and shared state: not reversible to the key."""
    return hashlib.sha256(b"opencode-gateway key\0" + key.encode()).hexdigest()[:16]


def clean_key(key: str) -> str:
    """The key as the upstream wants it: a pasted `Bearer ` prefix and whitespace removed."""
    key = key.strip()
    if key[:7].lower() == "bearer ":
        key = key[7:].strip()
    return key


def describe_wait(seconds: float) -> str:
    seconds = max(0, int(math.ceil(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


# `limit_name`s that are not a spending window.
BALANCE = "balance"                  # CreditsError: the allowance and Zen balance are spent
NO_SUBSCRIPTION = "no Go subscription"  # EntitlementError


class Instance:
    __slots__ = ("name", "backend", "number", "api_url", "api_key", "key_id", "resting_until",
                 "failures", "limit_until", "limit_name", "rested_at", "layout", "user_agent",
                 "model_caps")

    def __init__(self, name: str, backend: str, number: int, api_url: str, api_key: str,
                 layout: Layout = ZEN, user_agent: str = GATEWAY_TOKEN):
        self.name = name
        self.backend = backend
        self.number = number
        self.api_url = api_url.rstrip("/")  # the layout's base: a call is api_url + its path
        self.layout = layout
        self.user_agent = user_agent       # the token that ends this instance's User-Agent
        self.api_key = clean_key(api_key)
        self.key_id = key_fingerprint(self.api_key)
        self.resting_until = 0.0   # a short rest (plain 429, run of failures)
        self.failures = 0
        self.limit_until = 0.0     # a usage-limit rest (GoUsageLimitError, CreditsError, ...)
        self.limit_name = ""       # "5 hour", "weekly", "monthly", BALANCE, NO_SUBSCRIPTION
        self.model_caps: dict[str, tuple[float, str]] = {}  # model -> (until, limit name)
        self.rested_at = 0.0       # when the latest rest began (a lift voids rests before it)

    def lift(self) -> None:
        """End every rest now (`rests clear`, or the upstream's /usage showing room)."""
        self.limit_until = self.resting_until = 0.0
        self.limit_name = ""
        self.failures = 0
        self.model_caps.clear()

    def limited(self, now: float) -> bool:
        return self.limit_until > now

    def available(self, now: float) -> bool:
        return self.limit_until <= now and self.resting_until <= now

    def capped(self, model: str, now: float) -> bool:
        """At a limit for `model` alone (other models still go to this key)."""
        caps = self.model_caps
        if not caps:
            return False
        cap = caps.get(model)
        if cap is None:
            return False
        if cap[0] > now:
            return True
        del caps[model]
        return False

    def __repr__(self) -> str:  # keys stay out of reprs, tracebacks and logs
        return f"Instance({self.name}, {mask_url(self.api_url)}, key {mask_key(self.api_key)})"


class InstancePool:
    def __init__(self, backend: str, instances: list[Instance], settings: Upstream):
        self.backend = backend
        self.instances = instances
        self._settings = settings
        self._next = 0
        # Set by the app: callback(instance) when an instance starts a rest (metrics, state).
        self.on_rest = None

    def pinned(self, number: int) -> Instance | None:
        for instance in self.instances:
            if instance.number == number:
                return instance
        return None

    def choose(self, avoid: tuple[Instance, ...] = (), model: str = "") -> Instance | None:
        """The next instance round robin that is not resting and not in `avoid`.

        When every candidate rests briefly, the one whose rest ends first is still tried; an
        instance at a usage limit (for every model, or for `model`) is never chosen before its
        reset.
        """
        count = len(self.instances)
        now = time.time()
        fallback = None
        for step in range(count):
            instance = self.instances[(self._next + step) % count]
            if instance in avoid or instance.limited(now) or instance.capped(model, now):
                continue
            if instance.resting_until <= now:
                self._next = (self._next + step + 1) % count
                return instance
            if fallback is None or instance.resting_until < fallback.resting_until:
                fallback = instance
        return fallback

    def failed(self, instance: Instance, retry_after: float | None = None) -> None:
        instance.failures += 1
        rest = 0.0
        if retry_after is not None:
            rest = retry_after
        if instance.failures >= self._settings.cooldown_after_failures:
            rest = max(rest, self._settings.cooldown_seconds)
        if rest > 0:
            instance.rested_at = time.time()
            instance.resting_until = max(instance.resting_until, instance.rested_at + rest)
            if self.on_rest is not None:
                self.on_rest(instance)

    def limit_reached(self, instance: Instance, seconds: float, limit_name: str) -> None:
        """OpenCode Go said this key's `limit_name` limit is spent for `seconds` more."""
        instance.rested_at = time.time()
        instance.limit_until = max(instance.limit_until, instance.rested_at + seconds)
        instance.limit_name = limit_name
        if self.on_rest is not None:
            self.on_rest(instance)

    def model_capped(self, instance: Instance, model: str, seconds: float,
                     limit_name: str) -> None:
        """OpenCode Go said this key's limit for `model` alone is spent for `seconds` more."""
        instance.model_caps[model] = (time.time() + seconds, limit_name)
        if self.on_rest is not None:
            self.on_rest(instance)

    def succeeded(self, instance: Instance) -> None:
        if instance.failures:
            instance.failures = 0

    def all_resting_error(self, instances: list[Instance] | None = None,
                          model: str = "") -> GatewayError:
        """The 429 for a request no key can take: which limit ran out on which key (for every
        model, or for `model` alone), and when the first one is back; a 403 when every key's
        workspace lacks a Go subscription."""
        now = time.time()
        rests = []   # (until, instance name, what ran out)
        for i in instances or self.instances:
            if i.limited(now):
                rests.append((i.limit_until, i.name, i.limit_name))
            elif model and i.capped(model, now):
                until, name = i.model_caps[model]
                rests.append((until, i.name, f"{name} limit for {model}"))
        if not rests:
            return GatewayError(503, f"no instance of {self.backend} can take the request now")
        rests.sort()
        if all(what == NO_SUBSCRIPTION for _, _, what in rests):
            names = ", ".join(name for _, name, _ in rests)
            return GatewayError(
                403, f"OpenCode Go says the workspace of {names} has no Go subscription "
                     "(EntitlementError): subscribe to Go in that workspace's console, or give "
                     "the gateway a key of a workspace that has one", code="no_go_subscription")
        # A spent balance has no known reset: the gateway only knows when it asks again.
        parts = [f"{name}: {_describe_rest(what)}, "
                 f"{'tried again' if what == BALANCE else 'resets'} in "
                 f"{describe_wait(until - now)} "
                 f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(until))})"
                 for until, name, what in rests]
        wait = max(1, int(math.ceil(rests[0][0] - now)))
        return GatewayError(
            429, f"every key of {self.backend} has reached an OpenCode Go usage limit: "
                 + "; ".join(parts) + f". The first is back in {describe_wait(wait)}.",
            code="usage_limit_reached", headers={"retry-after": str(wait)})


def _describe_rest(limit_name: str) -> str:
    if limit_name == BALANCE:
        return "balance spent (Insufficient balance: the Go allowance and any Zen balance)"
    if limit_name == NO_SUBSCRIPTION:
        return "no Go subscription in its workspace"
    if " limit for " in limit_name:  # a per-model cap, already worded
        return limit_name
    return f"{limit_name or 'usage'} limit"


_NUMBERED = re.compile(r"_API_KEY_([0-9]+)$")


def build_pools(config: Config, env: dict[str, str]) -> dict[str, InstancePool]:
    pools = {}
    for name, backend in config.backends.items():
        prefix = env_prefix(name)
        api_url = backend.api_url or env.get(prefix + "_API_URL") or DEFAULT_API_URL
        url_field = (f"`backends.{name}.api_url`" if backend.api_url
                     else f"{prefix}_API_URL" if env.get(prefix + "_API_URL") else None)
        if url_field and not backend.api_url:
            check_api_url(api_url, url_field)
        numbered = {}
        for var, value in env.items():
            if var.startswith(prefix + "_API_KEY_") and value:
                match = _NUMBERED.search(var)
                if match and var == f"{prefix}_API_KEY_{match.group(1)}":
                    numbered[int(match.group(1))] = value
        if numbered:
            # An instance keeps its variable's number, so `opencode-go.4` is always KEY_4.
            instances = [Instance(f"{name}.{number}", name, number, api_url, numbered[number])
                         for number in sorted(numbered)]
        else:
            key = backend.api_key or env.get(prefix + "_API_KEY", "")
            instances = [Instance(name, name, 1, api_url, key)]
        names = ", ".join(i.name for i in instances)
        placed = place(api_url)
        if placed is None:
            raise ConfigError(unplaceable(api_url, f"instance {names}: {url_field}"))
        unknown = set(backend.instances) - {i.name for i in instances}
        if unknown:
            raise ConfigError(f"`backends.{name}.instances` names {sorted(unknown)}, which are "
                              f"not instances of {name} (its instances: {names})")
        for instance in instances:
            instance.api_url, instance.layout = placed
            instance.user_agent = _own_token(instance, backend, env)
        pools[name] = InstancePool(name, instances, config.upstream)
    return pools


def _own_token(instance: Instance, backend, env: dict[str, str]) -> str:
    """The token that ends `instance`'s User-Agent: its own `user_agent`, else the backend's
    (or `<NAME>_USER_AGENT`), else the gateway's; an empty one stops start-up, named."""
    name, prefix = instance.backend, env_prefix(instance.backend)
    token, field = backend.user_agent, f"`backends.{name}.user_agent`"
    if token is None and prefix + "_USER_AGENT" in env:
        token, field = env[prefix + "_USER_AGENT"], f"{prefix}_USER_AGENT"
    settings = backend.instances.get(instance.name)
    if settings is not None and settings.user_agent is not None:
        token = settings.user_agent
        field = f"`backends.{name}.instances.{instance.name}.user_agent`"
    if token is None:
        return GATEWAY_TOKEN
    problem = check_own_token(token, field)
    if problem:
        raise ConfigError(f"instance {instance.name}: {problem}")
    return token.strip()


def describe_layout(instance: Instance) -> str:
    """How start-up and `routes` say where an instance's calls go."""
    return f"{instance.layout.name} layout at {mask_url(instance.api_url)}"
