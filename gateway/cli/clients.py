"""`opencode-gateway clients add|list|set|revoke`: named clients managed at run time.

They live in the state store (the key only as its hash), so every worker of every gateway on
the same store picks a change up at its next sync (`state.sync_seconds`). Clients in the
config file are changed there (and `opencode-gateway reload`); `revoke` works on both: a config
client stays revoked until it is removed from the file.
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import time

import msgspec

from gateway.access.clients import key_hash
from gateway.cli.common import load_gateway, on_the_store
from gateway.config import Client, ConfigError, check_client
from gateway.quota.report import usage_report
from gateway.state.store import StoredClient

WINDOWS = ("rolling", "weekly", "monthly")


def _dollars(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of dollars") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of dollars")
    return value


def _rpm(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _settings(parser: argparse.ArgumentParser) -> None:
    for window, what in zip(WINDOWS, ("the rolling 5 hours", "the week (from Monday, UTC)",
                                      "the month (from the 1st, UTC)")):
        parser.add_argument(f"--{window}", type=_dollars, metavar="DOLLARS",
                            help=f"budget for {what}")
    parser.add_argument("--models", nargs="+", metavar="GLOB",
                        help="model ids (globs such as glm-*) the client may use")
    parser.add_argument("--rpm", type=_rpm, help="requests per minute, per worker")


def add(commands) -> None:
    clients = commands.add_parser("clients", help="add, list, change or revoke named clients")
    actions = clients.add_subparsers(dest="action", required=True)
    add_ = actions.add_parser("add", help="add a client; prints its key once")
    add_.add_argument("name")
    add_.add_argument("--key", help="the client's key (default: a new random one)")
    _settings(add_)
    listing = actions.add_parser("list", help="every named client, with its spend")
    listing.add_argument("--json", action="store_true")
    change = actions.add_parser("set", help="change a client added with `clients add`")
    change.add_argument("name")
    change.add_argument("--new-key", action="store_true", help="give it a new random key")
    change.add_argument("--all-models", action="store_true", help="drop its model list")
    change.add_argument("--no-rpm", action="store_true", help="drop its request rate limit")
    change.add_argument("--no-budget", choices=WINDOWS, action="append", default=[],
                        help="drop the budget of a window")
    _settings(change)
    revoke = actions.add_parser("revoke", help="stop a client's key working")
    revoke.add_argument("name")
    for parser in (add_, listing, change, revoke):
        parser.add_argument("--config")
    clients.set_defaults(run=run)


def run(args) -> int:
    gateway = load_gateway(args)
    try:
        return on_the_store(gateway, lambda: _ACTIONS[args.action](gateway, args))
    except ConfigError as exc:
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        return 2


def _config_names(gateway) -> set[str]:
    return {client.name for client in gateway.config.server.clients}


def _checked(stored: StoredClient, key: str | None) -> StoredClient:
    """The entry checked as a config client would be (name, budgets, globs)."""
    check_client(Client(stored.name, key or "x" * 8, models=stored.models, rpm=stored.rpm),
                 "clients")
    return stored


def _key_in_use(gateway, key: str) -> bool:
    return gateway.clients.who(key) is not None and gateway.clients.locked


async def _add(gateway, args) -> int:
    name = args.name
    if name in gateway.clients.clients or name in _config_names(gateway):
        raise ConfigError(f"client {name!r} exists already; change it with `clients set`")
    key = args.key or "ocg-" + secrets.token_urlsafe(24)
    if _key_in_use(gateway, key):
        raise ConfigError("that key is already some client's or admin's; every client needs "
                          "its own key")
    stored = _checked(StoredClient(
        name, key_hash(key), {w: getattr(args, w) for w in WINDOWS if getattr(args, w)},
        args.models, args.rpm, changed_at=time.time()), key)
    await gateway.store.put_client(stored)
    print(f"added client {name!r}; its key (shown only now): {key}")
    print(f"every gateway on {gateway.store!r} accepts it within "
          f"{gateway.config.state.sync_seconds:g}s")
    return 0


async def _set(gateway, args) -> int:
    name = args.name
    stored = gateway.clients.stored_clients.get(name)
    if stored is None or stored.revoked:
        if name in _config_names(gateway):
            raise ConfigError(f"client {name!r} is in the config file: change it there, then "
                              "`opencode-gateway reload`")
        raise ConfigError(f"no client {name!r}; add it with `clients add`")
    budget = {w: v for w, v in stored.budget.items() if w not in args.no_budget}
    budget.update({w: getattr(args, w) for w in WINDOWS if getattr(args, w)})
    changes = {"budget": budget, "changed_at": time.time()}
    if args.models:
        changes["models"] = args.models
    if args.all_models:
        changes["models"] = None
    if args.rpm:
        changes["rpm"] = args.rpm
    if args.no_rpm:
        changes["rpm"] = None
    key = None
    if args.new_key:
        key = "ocg-" + secrets.token_urlsafe(24)
        changes["key_hash"] = key_hash(key)
    await gateway.store.put_client(_checked(msgspec.structs.replace(stored, **changes), key))
    print(f"changed client {name!r}" + (f"; its new key (shown only now): {key}" if key else ""))
    return 0


async def _revoke(gateway, args) -> int:
    name = args.name
    if name not in gateway.clients.clients:
        raise ConfigError(f"no client {name!r} to revoke")
    await gateway.store.put_client(StoredClient(name, revoked=True, changed_at=time.time()))
    print(f"revoked client {name!r}: every gateway on {gateway.store!r} refuses its key within "
          f"{gateway.config.state.sync_seconds:g}s")
    if name in _config_names(gateway):
        print("it is in the config file: remove it there too (it stays revoked until then)")
    return 0


async def _list(gateway, args) -> int:
    report = await usage_report(gateway.book, gateway.pools, by=["client"])
    spent = {client["client"]: client["windows"] for client in report["clients"]}
    config_names = _config_names(gateway)
    rows = []
    for name, principal in sorted(gateway.clients.clients.items()):
        rows.append({
            "name": name, "source": "config" if name in config_names else "store",
            "models": list(principal.models) if principal.models else None,
            "rpm": principal.rpm, "windows": spent.get(name, {})})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no named clients (add one with `opencode-gateway clients add NAME`)")
    for row in rows:
        print(f"{row['name']}  ({row['source']})  models: "
              f"{', '.join(row['models']) if row['models'] else 'all'}  rpm: {row['rpm'] or '-'}")
        for window in row["windows"].values():
            budget = window["budget_usd"]
            print(f"  {window['label']:<8} ${window['spent_usd']:.4f}"
                  + (f" of ${budget:g}" + ("  OVER" if window["over"] else "")
                     if budget is not None else "  (no budget)"))
    return 0


_ACTIONS = {"add": _add, "set": _set, "revoke": _revoke, "list": _list}
