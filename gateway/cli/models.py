"""`opencode-gateway models`: every model id with its wire, limits, prices and where each fact
came from; `opencode-gateway models refresh [URL|FILE]`: a newer models.dev catalogue, checked
and stored in the state directory for the next start."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from gateway.cli.common import load_gateway, load_settings, working
from gateway.routing import catalogue_store
from gateway.routing.models_dev import CatalogueFileError, parse
from gateway.upstream.catalogue_refresh import refresh_once
from gateway.upstream.forwarder import create_session
from gateway.upstream.reading import read_at_most

MODELS_DEV_URL = "https://models.dev/api.json"


def add(commands) -> None:
    models = commands.add_parser(
        "models", help="list every model id with its wire, limits, prices and their sources")
    models.add_argument("--config")
    models.add_argument("--rules-dir")
    models.add_argument("--offline", action="store_true",
                        help="do not read the upstream's model list")
    models.set_defaults(run=run)
    actions = models.add_subparsers(dest="action")
    refresh = actions.add_parser(
        "refresh", help="fetch or read a newer models.dev api.json and keep it for the next start")
    refresh.add_argument("source", nargs="?", default=MODELS_DEV_URL,
                         help=f"a URL or a file: the whole api.json or its opencode-go object "
                              f"(default {MODELS_DEV_URL})")
    refresh.add_argument("--config")
    refresh.set_defaults(run=run_refresh)


async def _download(url: str) -> bytes:
    headers = {"User-Agent": "opencode-gateway (models refresh)"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url, headers=headers) as answer:
            body = await read_at_most(answer.content, catalogue_store.MAX_FILE_BYTES)
            if answer.status != 200:
                raise CatalogueFileError(f"{url}: HTTP {answer.status}")
            return body


def _read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            with working(f"fetching {source}"):
                return asyncio.run(_download(source))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise CatalogueFileError(f"{source}: cannot be fetched: "
                                     f"{type(exc).__name__}: {exc}") from None
    return catalogue_store.read_raw(Path(source))


def run_refresh(args) -> int:
    config = load_settings(args)
    path = catalogue_store.stored_path(config)
    before = catalogue_store.load(config)
    try:
        provider = parse(_read_source(args.source), args.source)
    except CatalogueFileError as exc:
        kept = (f"the refresh of {before.refreshed}" if before.refreshed
                else f"the snapshot of {before.snapshot_day}")
        print(f"opencode-gateway: models refresh refused {exc}; the catalogue in use stays "
              f"({kept})", file=sys.stderr)
        return 1
    catalogue_store.store(provider, args.source, path)
    after = catalogue_store.load(config)
    added = sorted(set(after.models) - set(before.models))
    print(f"stored {len(provider.models)} opencode-go models from {args.source} in {path}; "
          f"{len(after.models)} ids in the catalogue, used from the next start or reload")
    if added:
        print("new ids: " + ", ".join(added))
    return 0


def _money(value: float) -> str:
    return f"{value:g}"


def run(args) -> int:
    """Every model id the backends list, with its wire, limits, prices and their sources."""
    gateway = load_gateway(args)

    async def read_upstream_lists():
        session = create_session(gateway.config.upstream)
        try:
            await refresh_once(session, gateway.pools, gateway.catalogues)
        finally:
            await session.close()

    if not args.offline:
        with working("reading the upstream's model list"):
            asyncio.run(read_upstream_lists())
    known = gateway.known_models
    origin = (f"models.dev refresh of {known.refreshed} from {known.refreshed_from} "
              f"over the snapshot of {known.snapshot_day}" if known.refreshed
              else f"the snapshot of {known.snapshot_day} (refresh: opencode-gateway models "
                   f"refresh)")
    print(f"catalogue: {origin}")
    sources: dict[str, int] = {}

    def cite(source: str) -> str:
        if source in ("-", "", None):
            return ""
        return f"[{sources.setdefault(source, len(sources) + 1)}]"

    for name, catalogue in gateway.catalogues.items():
        if catalogue.upstream_ids is None:
            note = "not read (--offline)" if args.offline else "unavailable, see the warning above"
        else:
            note = f"{len(catalogue.upstream_ids)} ids"
        print(f"backend {name}: upstream model list {note}")
        rows = [("model id", "wire", "output/context", "$/M in/out/cache", "efforts",
                 "listed by")]
        for model_id in catalogue.ids():
            wire, wire_source = catalogue.wire(model_id)
            facts = catalogue.facts(model_id)
            if facts is None:
                limits = prices = efforts = "?"
            else:
                limits = (f"{facts.output_limit or '?'}/{facts.context_limit or '?'} "
                          f"{cite(facts.limit_source)}").strip()
                price = gateway.book.prices.price(model_id) if facts.price else None
                prices = (f"{_money(price.input)}/{_money(price.output)}/"
                          f"{_money(price.cache_read)}"
                          + (f" x{price.multiplier:g}" if price.multiplier != 1 else "")
                          + " " + ("[config]" if model_id in gateway.book.prices.overridden
                                   else cite(facts.price_source))) if price else "?"
                efforts = ("?" if facts.efforts is None else ",".join(facts.efforts) or "none")
                if facts.efforts is not None:
                    efforts += " " + cite(facts.effort_source)
                if facts.status == "deprecated":
                    efforts += " (deprecated)"
            shown_wire = f"{wire} {cite(wire_source) or '(' + wire_source + ')'}"
            rows.append((model_id, shown_wire, limits, prices, efforts,
                         catalogue.listers(model_id)))
        widths = [max(len(row[column]) for row in rows) for column in range(5)]
        for row in rows:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                  + "  " + row[5])
    if sources:
        print("sources:")
        for source, number in sources.items():
            print(f"  [{number}] {source}")
    return 0
