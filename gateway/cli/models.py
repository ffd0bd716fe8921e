"""`opencode-gateway models`: every model id with its wire and where that came from."""
from __future__ import annotations

import asyncio

from gateway.cli.common import load_gateway
from gateway.upstream.catalogue_refresh import refresh_once
from gateway.upstream.forwarder import create_session


def add(commands) -> None:
    models = commands.add_parser("models", help="list every model id with its wire and source")
    models.add_argument("--config")
    models.add_argument("--rules-dir")
    models.add_argument("--offline", action="store_true",
                        help="do not read the upstream's model list")
    models.set_defaults(run=run)


def run(args) -> int:
    """Every model id the backends list, with its wire and where that came from."""
    gateway = load_gateway(args)

    async def read_upstream_lists():
        session = create_session(gateway.config.upstream)
        try:
            await refresh_once(session, gateway.pools, gateway.catalogues)
        finally:
            await session.close()

    if not args.offline:
        asyncio.run(read_upstream_lists())
    for name, catalogue in gateway.catalogues.items():
        if catalogue.upstream_ids is None:
            note = "not read (--offline)" if args.offline else "unavailable, see the warning above"
        else:
            note = f"{len(catalogue.upstream_ids)} ids"
        print(f"backend {name}: upstream model list {note}")
        rows = [("model id", "wire", "wire from", "listed by")] + catalogue.rows()
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        for row in rows:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                  + "  " + row[3])
    return 0
