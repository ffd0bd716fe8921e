"""A named client's budget: refused with 429 once a window is spent, from the worker's view.

The view is the book's (`quota/book.py`): what the store held at the last sync plus what this
worker spent since, so no request waits on the store. A request that starts under the budget
runs to its end and is counted, even if it crosses the budget; the next one is refused.
"""
from __future__ import annotations

import math
import time

from gateway.errors import GatewayError
from gateway.quota.book import Account
from gateway.quota.report import WINDOW_LABELS
from gateway.quota.windows import WINDOWS, resets_at
from gateway.upstream.instances import describe_wait


def check_budget(name: str, account: Account | None, now: float | None = None) -> None:
    if account is None:
        return
    now = time.time() if now is None else now
    for index, window in enumerate(WINDOWS):
        limit = account.limits[index]
        spent = account.spent(index)
        if limit == math.inf or spent < limit:
            continue
        # The rolling window frees up as its spending ages out: at the latest 5 hours from now.
        frees = resets_at(window, now, account.anchor_day, None)
        wait = max(1, math.ceil(frees - now))
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(frees))
        bound = "by" if window == "rolling" else "at"
        raise GatewayError(
            429, f"client {name!r} has spent ${spent:.4f} of its ${limit:g} {window} budget "
                 f"({WINDOW_LABELS[window]}); it frees up {bound} {when}, in "
                 f"{describe_wait(wait)}", code="budget_exceeded",
            headers={"retry-after": str(wait)})
