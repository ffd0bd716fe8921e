"""Requests per minute per client, counted in this worker: a sliding minute of start times."""
from __future__ import annotations

import collections
import math

from gateway.errors import GatewayError


class RequestRate:
    def __init__(self) -> None:
        self._seen: dict[str, collections.deque[float]] = {}

    def admit(self, name: str, rpm: int, now: float) -> None:
        """Count one request of `name`, or refuse it with 429 when `rpm` started this minute."""
        seen = self._seen.get(name)
        if seen is None:
            seen = self._seen[name] = collections.deque(maxlen=rpm)
        while seen and seen[0] <= now - 60:
            seen.popleft()
        if len(seen) >= rpm:
            wait = max(1, math.ceil(seen[0] + 60 - now))
            raise GatewayError(429, f"client {name!r} sent {rpm} requests in the last minute, "
                                    f"its limit (rpm: {rpm}); retry in {wait}s",
                               code="rate_limit_exceeded", headers={"retry-after": str(wait)})
        if seen.maxlen != rpm:  # the limit changed (a reload)
            seen = self._seen[name] = collections.deque(seen, maxlen=rpm)
        seen.append(now)

    def forget(self, names: set[str]) -> None:
        """Only clients that still exist keep a window (bounded by the directory)."""
        for name in list(self._seen):
            if name not in names:
                del self._seen[name]
