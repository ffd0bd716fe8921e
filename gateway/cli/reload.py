"""`opencode-gateway reload`: every worker of every gateway on this state store re-reads its
config file at its next sync (its keys and clients; other sections need a restart).

The config is checked here first: one that does not load is reported and nothing is asked.
SIGHUP to a single-worker `serve` does the same for that process alone.
"""
from __future__ import annotations

from gateway.cli.common import load_gateway, on_the_store


def add(commands) -> None:
    reload = commands.add_parser("reload", help="make running gateways re-read their config")
    reload.add_argument("--config")
    reload.set_defaults(run=run)


def run(args) -> int:
    gateway = load_gateway(args)  # exits 2, naming the field, for a config that does not load
    count = on_the_store(gateway, gateway.store.request_reload)
    print(f"config OK; every gateway on {gateway.store!r} re-reads its config within "
          f"{gateway.config.state.sync_seconds:g}s (reload #{count})")
    if gateway.store.name == "memory":
        print("warning: state.backend is memory: no running gateway shares it")
    return 0
