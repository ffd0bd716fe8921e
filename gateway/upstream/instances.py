"""Backend instances (one per upstream key) and their health.

`OPENCODE_GO_API_KEY_1..N` make `opencode-go.1..N`, each with its own key and the backend's
other settings; with no numbered key the backend is one instance keyed by `OPENCODE_GO_API_KEY`
(or the config's `api_key`). A key pasted with its `Bearer ` prefix is taken without it.

An instance rests in two ways:
- a short rest after a plain 429 (its `Retry-After`) or a run of failures (the configured
  cool-down): when every instance rests so, the one back first is still tried, because an
  answer from the upstream tells the client more than a refusal the gateway made up;
- a usage-limit rest after OpenCode Go's `GoUsageLimitError` (5-hour, weekly or monthly dollar
  limit), until the reset the upstream gave: such a key is not used at all until then, and when
  every key is limited the client gets a 429 saying which limit ran out on which key.

Times are wall-clock seconds, so a state store can share them between workers and machines.
"""
from __future__ import annotations

import hashlib
import math
import re
import time

from gateway.config import DEFAULT_API_URL, Config, Upstream, check_api_url, env_prefix
from gateway.errors import GatewayError
from gateway.masking import mask_url


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


class Instance:
    __slots__ = ("name", "backend", "number", "api_url", "api_key", "key_id", "resting_until",
                 "failures", "limit_until", "limit_name", "rested_at")

    def __init__(self, name: str, backend: str, number: int, api_url: str, api_key: str):
        self.name = name
        self.backend = backend
        self.number = number
        self.api_url = api_url.rstrip("/")
        self.api_key = clean_key(api_key)
        self.key_id = key_fingerprint(self.api_key)
        self.resting_until = 0.0   # a short rest (plain 429, run of failures)
        self.failures = 0
        self.limit_until = 0.0     # a usage-limit rest (GoUsageLimitError)
        self.limit_name = ""       # "5 hour", "weekly", "monthly"
        self.rested_at = 0.0       # when the latest rest began (a lift voids rests before it)

    def lift(self) -> None:
        """End every rest now (`rests clear`, or the upstream's /usage showing room)."""
        self.limit_until = self.resting_until = 0.0
        self.limit_name = ""
        self.failures = 0

    def limited(self, now: float) -> bool:
        return self.limit_until > now

    def available(self, now: float) -> bool:
        return self.limit_until <= now and self.resting_until <= now

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

    def choose(self, avoid: tuple[Instance, ...] = ()) -> Instance | None:
        """The next instance round robin that is not resting and not in `avoid`.

        When every candidate rests briefly, the one whose rest ends first is still tried; an
        instance at a usage limit is never chosen before its reset.
        """
        count = len(self.instances)
        now = time.time()
        fallback = None
        for step in range(count):
            instance = self.instances[(self._next + step) % count]
            if instance in avoid or instance.limited(now):
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

    def succeeded(self, instance: Instance) -> None:
        if instance.failures:
            instance.failures = 0

    def all_resting_error(self, instances: list[Instance] | None = None) -> GatewayError:
        """The 429 for a request no key can take: which limit ran out on which key, and when
        the first one is back."""
        now = time.time()
        limited = [i for i in (instances or self.instances) if i.limited(now)]
        if not limited:
            return GatewayError(503, f"no instance of {self.backend} can take the request now")
        limited.sort(key=lambda i: i.limit_until)
        parts = [f"{i.name}: {i.limit_name or 'usage'} limit, resets in "
                 f"{describe_wait(i.limit_until - now)} "
                 f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(i.limit_until))})"
                 for i in limited]
        wait = max(1, int(math.ceil(limited[0].limit_until - now)))
        return GatewayError(
            429, f"every key of {self.backend} has reached an OpenCode Go usage limit: "
                 + "; ".join(parts) + f". The first is back in {describe_wait(wait)}.",
            code="usage_limit_reached", headers={"retry-after": str(wait)})


_NUMBERED = re.compile(r"_API_KEY_([0-9]+)$")


def build_pools(config: Config, env: dict[str, str]) -> dict[str, InstancePool]:
    pools = {}
    for name, backend in config.backends.items():
        prefix = env_prefix(name)
        api_url = backend.api_url or env.get(prefix + "_API_URL") or DEFAULT_API_URL
        if not backend.api_url and env.get(prefix + "_API_URL"):
            check_api_url(api_url, prefix + "_API_URL")
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
        pools[name] = InstancePool(name, instances, config.upstream)
    return pools
