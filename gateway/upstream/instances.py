"""Backend instances (one per upstream key) and their health.

`OPENCODE_GO_API_KEY_1..N` make `opencode-go.1..N`, each with its own key and the backend's
other settings; with no numbered key the backend is one instance keyed by `OPENCODE_GO_API_KEY`
(or the config's `api_key`). The pool spreads unpinned requests round robin over the instances
that are not resting: a 429 rests an instance until its Retry-After passes, and a run of failures
rests it for the configured cool-down. Health is per worker process.
"""
from __future__ import annotations

import re
import time

from gateway.config import DEFAULT_API_URL, Config, Upstream, env_prefix


def mask_key(key: str) -> str:
    """A form of a key safe to print: enough to tell two keys apart, never enough to use one."""
    if not key:
        return "(none)"
    if len(key) <= 8:
        return "****"
    return "****" + key[-4:]


class Instance:
    __slots__ = ("name", "backend", "number", "api_url", "api_key", "resting_until", "failures")

    def __init__(self, name: str, backend: str, number: int, api_url: str, api_key: str):
        self.name = name
        self.backend = backend
        self.number = number
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.resting_until = 0.0
        self.failures = 0

    def __repr__(self) -> str:  # keys stay out of reprs, tracebacks and logs
        return f"Instance({self.name}, {self.api_url}, key {mask_key(self.api_key)})"


class InstancePool:
    def __init__(self, backend: str, instances: list[Instance], settings: Upstream):
        self.backend = backend
        self.instances = instances
        self._settings = settings
        self._next = 0
        self.on_cooldown = None  # set by the app: callback(instance) for metrics

    def pinned(self, number: int) -> Instance | None:
        for instance in self.instances:
            if instance.number == number:
                return instance
        return None

    def choose(self, avoid: tuple[Instance, ...] = ()) -> Instance | None:
        """The next instance round robin that is not resting and not in `avoid`.

        When every candidate rests, the one whose rest ends first is still tried: an answer from
        the upstream (even its 429) tells the client more than a gateway-made refusal.
        """
        count = len(self.instances)
        now = time.monotonic()
        fallback = None
        for step in range(count):
            instance = self.instances[(self._next + step) % count]
            if instance in avoid:
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
            instance.resting_until = max(instance.resting_until, time.monotonic() + rest)
            if self.on_cooldown is not None:
                self.on_cooldown(instance)

    def succeeded(self, instance: Instance) -> None:
        if instance.failures:
            instance.failures = 0


_NUMBERED = re.compile(r"_API_KEY_([0-9]+)$")


def build_pools(config: Config, env: dict[str, str]) -> dict[str, InstancePool]:
    pools = {}
    for name, backend in config.backends.items():
        prefix = env_prefix(name)
        api_url = backend.api_url or env.get(prefix + "_API_URL") or DEFAULT_API_URL
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
