"""Health at a glance, per instance and model, over the last few minutes of this worker:
requests per minute, time to first byte (p50 / p95), and errors split by whose they are —
the client's (a 4xx the request earned) or the upstream's (5xx, 429, a broken stream).

Kept in memory per worker, like the recent errors: one bounded deque of (time, ms, kind) per
instance and model, appended on each finished request and pruned when read.
"""
from __future__ import annotations

import collections
import time

WINDOW_SECONDS = 300.0
_MAX_SAMPLES = 4096      # per instance and model: enough for ~800 requests a minute
_MAX_ROWS = 256          # instance × model pairs; later ones share one row

OK, CLIENT, UPSTREAM = 0, 1, 2


def kind_of(status: int) -> int:
    """Whose failure a status is: 429 and 5xx are the upstream's (or the gateway's way to it)."""
    if status < 400:
        return OK
    return UPSTREAM if status == 429 or status >= 500 else CLIENT


class Health:
    def __init__(self, window: float = WINDOW_SECONDS):
        self.window = window
        self._rows: dict[tuple[str, str], collections.deque] = {}

    def add(self, instance: str, model: str, status: int, milliseconds: float | None) -> None:
        key = (instance, model)
        samples = self._rows.get(key)
        if samples is None:
            if len(self._rows) >= _MAX_ROWS:
                key = ("other", "other")
                samples = self._rows.get(key)
            if samples is None:
                samples = self._rows[key] = collections.deque(maxlen=_MAX_SAMPLES)
        samples.append((time.monotonic(), milliseconds, kind_of(status)))

    def report(self) -> list[dict]:
        """One row per instance and model seen in the window, busiest first."""
        since = time.monotonic() - self.window
        rows = []
        for (instance, model), samples in list(self._rows.items()):
            while samples and samples[0][0] < since:
                samples.popleft()
            if not samples:
                del self._rows[(instance, model)]
                continue
            timings = sorted(ms for _, ms, kind in samples if ms is not None and kind == OK)
            kinds = collections.Counter(kind for _, _, kind in samples)
            rows.append({"instance": instance or None, "model": model or None,
                         "requests": len(samples),
                         "per_minute": round(len(samples) * 60 / self.window, 2),
                         "ttfb_p50_ms": _percentile(timings, 0.50),
                         "ttfb_p95_ms": _percentile(timings, 0.95),
                         "client_errors": kinds[CLIENT], "upstream_errors": kinds[UPSTREAM]})
        rows.sort(key=lambda row: -row["requests"])
        return rows


def _percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)
