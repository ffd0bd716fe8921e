"""Keeps each backend's catalogue in step with the upstream's own `GET {api_url}/models`.

Read at start and every `upstream.models_refresh_seconds` (5 minutes) with one key, in the
background: start-up never waits on it, and a failure is logged while the last good list stays.
"""
from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import msgspec

from gateway.errors import DECODE_ERRORS
from gateway.masking import mask_url

from gateway.routing.catalogue import Catalogue
from gateway.upstream.forwarder import read_headers
from gateway.upstream.instances import Instance, InstancePool
from gateway.upstream.reading import read_at_most
from gateway.upstream.urls import call_url

_log = logging.getLogger("gateway")
_LIST_LIMIT = 4 * 1024 * 1024
# OpenCode Go wants a session on every request; listing models belongs to no conversation.
_SESSION = "opencode-gateway-catalogue"


class _Model(msgspec.Struct):
    id: str


class _ModelList(msgspec.Struct):
    data: list[_Model]


_decode_list = msgspec.json.Decoder(_ModelList).decode


class CatalogueError(Exception):
    pass


async def fetch_model_ids(session: aiohttp.ClientSession, instance: Instance,
                          timeout: float = 15.0) -> frozenset[str]:
    """The ids the upstream lists, read with `instance`'s key."""
    headers = read_headers(instance, _SESSION)
    try:
        async with session.get(call_url(instance, "models"), headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
            body = await read_at_most(answer.content, _LIST_LIMIT)
            if answer.status != 200:
                raise CatalogueError(f"HTTP {answer.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CatalogueError(f"{type(exc).__name__}: {exc}") from None
    try:
        listed = _decode_list(body)
    except DECODE_ERRORS as exc:
        raise CatalogueError(f"not a model list: {exc}") from None
    return frozenset(model.id for model in listed.data if model.id)


async def refresh_once(session: aiohttp.ClientSession, pools: dict[str, InstancePool],
                       catalogues: dict[str, Catalogue]) -> None:
    now = time.time()
    for backend, catalogue in catalogues.items():
        pool = pools[backend]
        instance = next((i for i in pool.instances if i.available(now) and i.api_key),
                        pool.instances[0])
        try:
            ids = await fetch_model_ids(session, instance)
        except CatalogueError as exc:
            _log.warning("could not read %s's model list from %s (%s); %s", backend,
                         mask_url(call_url(instance, "models")), exc,
                         "keeping the last good list"
                         if catalogue.upstream_ids is not None else "using the model catalogue")
            continue
        catalogue.upstream_ids = ids
        catalogue.upstream_fetched_at = time.time()


async def keep_fresh(session: aiohttp.ClientSession, pools: dict[str, InstancePool],
                     catalogues: dict[str, Catalogue], every: float) -> None:
    while True:
        await refresh_once(session, pools, catalogues)
        await asyncio.sleep(every)
