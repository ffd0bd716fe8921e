"""OpenCode Go's own account of a key: `GET {api_url}/usage` (Bearer), read every few minutes.

`{"usage": {"rolling"|"weekly"|"monthly": {"status": "ok"|"rate-limited", "percent": 42,
"resetsAt": "2026-11-25T14:32:00Z"}}}`: percentages only, no dollars. The figure wins over the
ledger for its window (the ledger covers the time until the next read, and the upstreams that
have no such endpoint: a 404 stops the polling of that key).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import aiohttp
import msgspec

from gateway.errors import DECODE_ERRORS

from gateway.quota.book import KeyBook
from gateway.upstream.forwarder import read_headers
from gateway.upstream.instances import Instance, InstancePool
from gateway.upstream.reading import read_at_most
from gateway.upstream.urls import call_url

_log = logging.getLogger("gateway")
_SESSION = "opencode-gateway-usage"


class _Window(msgspec.Struct):
    percent: float = 0.0
    resetsAt: str | None = None
    status: str | None = None


class _Usage(msgspec.Struct):
    usage: dict[str, _Window] = {}


_decode = msgspec.json.Decoder(_Usage).decode


class NoUsageEndpoint(Exception):
    """The upstream has no `GET /usage` (it answered 404)."""


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def read_usage(session: aiohttp.ClientSession,
                     instance: Instance) -> dict[str, tuple[float, float]]:
    """window -> (percent, resets at) as the upstream reports it for `instance`'s key."""
    headers = read_headers(instance, _SESSION)
    async with session.get(call_url(instance, "usage"), headers=headers,
                           timeout=aiohttp.ClientTimeout(total=15)) as answer:
        body = await read_at_most(answer.content, 256 * 1024)
        if answer.status == 404:
            raise NoUsageEndpoint
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}")
    return usage_figures(body)


def usage_figures(body: bytes) -> dict[str, tuple[float, float]]:
    """window -> (percent, resets at) from a `/usage` answer's body (a rate-limited window
    counts as 100% at least); raises one of DECODE_ERRORS for a body of another shape."""
    figures = {}
    for window, reported in _decode(body).usage.items():
        resets = _epoch(reported.resetsAt)
        if resets is not None:
            percent = 100.0 if reported.status == "rate-limited" else reported.percent
            figures[window] = (max(percent, reported.percent), resets)
    return figures


# How soon a key resting at a usage limit is asked again: a limit OpenCode Go has lifted (or a
# plan that grew) should not keep the key out for hours (book.upstream_usage ends the rest).
LIMITED_RECHECK_SECONDS = 15.0


async def poll_forever(session: aiohttp.ClientSession, pools: dict[str, InstancePool],
                       book: KeyBook, every: float,
                       recheck: float = LIMITED_RECHECK_SECONDS) -> None:
    """Every key's /usage every `every` seconds; a key at a usage limit every `recheck`."""
    silent: set[str] = set()   # keys whose upstream has no /usage
    next_round = 0.0
    while True:
        full = time.monotonic() >= next_round
        if full:
            next_round = time.monotonic() + every
        for pool in pools.values():
            for instance in pool.instances:
                if instance.key_id in silent or not instance.api_key:
                    continue
                if not full and not instance.limited(time.time()):
                    continue
                try:
                    figures = await read_usage(session, instance)
                except NoUsageEndpoint:
                    silent.add(instance.key_id)
                    _log.info("%s: the upstream has no /usage; the ledger alone counts its "
                              "spending", instance.name)
                    continue
                except (aiohttp.ClientError, TimeoutError, OSError, RuntimeError,
                        *DECODE_ERRORS) as exc:
                    _log.warning("%s: could not read the upstream's /usage (%s); the ledger "
                                 "counts until the next try", instance.name, exc)
                    continue
                book.upstream_usage(instance, figures, pool)
        await asyncio.sleep(max(0.0, min(recheck, next_round - time.monotonic())))
