"""Where every key stands: the JSON behind `GET /v1/usage`, `opencode-gateway usage` and the
dashboard.

Per key: each window's dollars spent, limit, share used, where the figure came from (the
upstream's `/usage`, or the ledger), and when it resets; whether the key rests and why. Per
named client: each window's dollars spent against its budget. Per model: today's requests,
tokens and dollars (UTC day), and the last 24 hours by hour. `spend_by`: the ledger's spend
grouped by client, agent, model or key, over the rolling 5 hours and today.

A report for one client (`only_client`) holds only that client's own figures: no keys, no other
client, no errors.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

from gateway.quota.book import KeyBook
from gateway.quota.windows import WINDOWS, minute_of, resets_at
from gateway.upstream.instances import InstancePool, mask_key

WINDOW_LABELS = {"rolling": "5 hours", "weekly": "week", "monthly": "month"}
_HOURS = 24
# What the ledger's spend can be grouped by: the field of a usage row each names.
SPEND_BY = {"client": "client", "agent": "agent", "model": "model", "key": "key_id"}


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def usage_report(book: KeyBook, pools: dict[str, InstancePool],
                       recent_errors: list[dict] | None = None,
                       now: float | None = None,
                       health: list[dict] | None = None, by: list[str] | None = None,
                       only_client: str | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    try:
        rows = await book.store.report(minute_of(now) - _HOURS * 60)
    except Exception:  # the store is down: the windows still come from this worker's view
        rows = []
    if only_client is not None:
        rows = [row for row in rows if row.client == only_client]
        pools, recent_errors = {}, []
    oldest: dict[str, float] = {}   # key id -> its oldest spend inside the rolling window
    rolling_from = minute_of(now - 5 * 3600)
    for row in rows:
        if row.minute > rolling_from and row.cost_usd > 0 and row.key_id not in oldest:
            oldest[row.key_id] = row.minute * 60
    keys = []
    for pool in pools.values():
        for instance in pool.instances:
            account = book.account(instance)
            windows = {}
            for index, window in enumerate(WINDOWS):
                figure = account.upstream.get(window)
                fresh = figure is not None and figure.resets_at > now
                resets = figure.resets_at if fresh else resets_at(
                    window, now, account.anchor_day, oldest.get(account.key_id))
                used = account.used(index, now)
                windows[window] = {
                    "label": WINDOW_LABELS[window],
                    "spent_usd": round(account.spent(index), 6),
                    "limit_usd": account.limits[index],
                    "used_ratio": round(used, 4),
                    "used_percent": round(used * 100, 1),
                    "source": "upstream" if fresh else "ledger",
                    "resets_at": _iso(resets),
                    "resets_in_seconds": max(0, int(resets - now)),
                }
            if instance.limited(now):
                status, until = "limited", instance.limit_until
            elif instance.resting_until > now:
                status, until = "resting", instance.resting_until
            else:
                status, until = "ok", None
            keys.append({
                "instance": instance.name, "key": mask_key(instance.api_key),
                "key_id": instance.key_id, "status": status,
                "limit": instance.limit_name if status == "limited" else None,
                "until": _iso(until) if until else None,
                "headroom": round(account.headroom(now), 4),
                # Limits OpenCode Go set on one model of this key (the others still served).
                "model_caps": {model: {"limit": name, "until": _iso(until)}
                               for model, (until, name) in sorted(instance.model_caps.items())
                               if until > now},
                "failures": instance.failures, "windows": windows})
    today = minute_of(now) // 1440 * 1440
    models: dict[str, dict[str, Any]] = {}
    hourly: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        if row.minute >= today:
            _add(models.setdefault(row.model, _zero(model=row.model)), row)
        hour = row.minute // 60 * 60
        _add(hourly.setdefault((hour, row.model), _zero(hour=_iso(hour * 60), model=row.model)),
             row)
    clients = [_client_windows(name, account, now) for name, account in book.clients.items()
               if only_client is None or name == only_client]
    return {
        "generated_at": _iso(now),
        "state": {"backend": book.store.name, "where": repr(book.store), "up": book.store_up,
                  "synced_at": _iso(book.synced_at) if book.synced_at else None},
        "threshold": book.threshold,
        "keys": keys,
        "clients": clients,
        "spend_by": {name: _spend_by(rows, SPEND_BY[name], now) for name in by or SPEND_BY},
        "models_today": sorted(models.values(), key=lambda m: -m["cost_usd"]),
        "hourly": [hourly[key] for key in sorted(hourly)],
        "recent_errors": recent_errors or [],
        # This worker's last 5 minutes per instance and model (gateway/health.py).
        "health": health or [],
    }


def _client_windows(name: str, account, now: float) -> dict[str, Any]:
    """A named client's spend in each window against its budget (None: no budget)."""
    windows = {}
    for index, window in enumerate(WINDOWS):
        limit = account.limits[index]
        budget = limit if limit != float("inf") else None
        spent = account.spent(index)
        windows[window] = {
            "label": WINDOW_LABELS[window], "spent_usd": round(spent, 6), "budget_usd": budget,
            "used_percent": round(spent / budget * 100, 1) if budget else None,
            "over": budget is not None and spent >= budget,
            "resets_at": _iso(resets_at(window, now, account.anchor_day, None))
            if window != "rolling" else None}
    return {"client": name, "windows": windows}


def _spend_by(rows, field: str, now: float) -> dict[str, list[dict[str, Any]]]:
    """The ledger's rows grouped by one field, over the rolling 5 hours and today (UTC)."""
    rolling_from = minute_of(now - 5 * 3600)
    today = minute_of(now) // 1440 * 1440
    windows: dict[str, dict[str, dict[str, Any]]] = {"rolling": {}, "today": {}}
    for row in rows:
        name = getattr(row, field)
        if row.minute > rolling_from:
            _add(windows["rolling"].setdefault(name, _zero(name=name)), row)
        if row.minute >= today:
            _add(windows["today"].setdefault(name, _zero(name=name)), row)
    return {window: sorted(groups.values(), key=lambda g: (-g["cost_usd"], g["name"]))
            for window, groups in windows.items()}


def _zero(**fields) -> dict[str, Any]:
    return {**fields, "requests": 0, "input_tokens": 0, "cached_tokens": 0,
            "output_tokens": 0, "cost_usd": 0.0}


def _add(into: dict[str, Any], row) -> None:
    into["requests"] += row.requests
    into["input_tokens"] += row.input_tokens
    into["cached_tokens"] += row.cached_tokens
    into["output_tokens"] += row.output_tokens
    into["cost_usd"] = round(into["cost_usd"] + row.cost_usd, 6)
