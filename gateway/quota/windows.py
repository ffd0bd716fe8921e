"""OpenCode Go's three spending windows per key, in UTC.

- `rolling`: the last 5 hours, moving;
- `weekly`: the calendar week from Monday 00:00 UTC;
- `monthly`: the month from the key's anchor day (the day its subscription started; on a
  shorter month, its last day), 00:00 UTC.
The ledger buckets usage by minute and by day, so a window's start is a minute or a day.
"""
from __future__ import annotations

import calendar
import datetime as dt

WINDOWS = ("rolling", "weekly", "monthly")
# What OpenCode Go calls each window in its GoUsageLimitError (`metadata.limitName`).
LIMIT_NAMES = {"rolling": "5 hour", "weekly": "weekly", "monthly": "monthly"}
ROLLING_SECONDS = 5 * 3600


def minute_of(now: float) -> int:
    return int(now // 60)


def day_of(when: dt.datetime) -> int:
    return (when.date() - dt.date(1970, 1, 1)).days


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.timezone.utc)


def rolling_start_minute(now: float) -> int:
    return minute_of(now - ROLLING_SECONDS) + 1


def week_start(now: float) -> dt.datetime:
    today = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=today.weekday())


def _anchor_in(year: int, month: int, anchor_day: int) -> dt.datetime:
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return dt.datetime(year, month, day, tzinfo=dt.timezone.utc)


def month_start(now: float, anchor_day: int) -> dt.datetime:
    today = _utc(now)
    start = _anchor_in(today.year, today.month, anchor_day)
    if start > today:
        year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        start = _anchor_in(year, month, anchor_day)
    return start


def month_end(now: float, anchor_day: int) -> dt.datetime:
    start = month_start(now, anchor_day)
    year, month = (start.year, start.month + 1) if start.month < 12 else (start.year + 1, 1)
    return _anchor_in(year, month, anchor_day)


def resets_at(window: str, now: float, anchor_day: int, oldest_spend: float | None) -> float:
    """When the window's spending starts to fall: the rolling one when its oldest spend leaves
    it (5 hours after `oldest_spend`, or now + 5 hours when nothing was spent)."""
    if window == "rolling":
        return (oldest_spend if oldest_spend is not None else now) + ROLLING_SECONDS
    if window == "weekly":
        return (week_start(now) + dt.timedelta(days=7)).timestamp()
    return month_end(now, anchor_day).timestamp()
