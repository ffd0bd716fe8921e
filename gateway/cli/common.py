"""What every command shares: the config and rule chain loaded or a named exit, argparse types."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from gateway.app import Gateway
from gateway.config import Config, ConfigError, load_config
from gateway.routing.chain import RuleLoadError
from gateway.state.store import StoreError


def load_gateway(args) -> Gateway:
    """Config and rule chain, or exit 2 with the file and the reason."""
    try:
        return Gateway(load_config(args.config), rules_dir=getattr(args, "rules_dir", None))
    except (ConfigError, RuleLoadError) as exc:
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_settings(args) -> Config:
    """The config alone (no keys, pools or rules needed), or exit 2 with the file and reason."""
    try:
        return load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def in_range(low: int, high: int):
    """An argparse type: a whole number from `low` to `high` (a clear message otherwise)."""
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return number


def nothing_to_read(gateway, what: str = "usage") -> str | None:
    """Why there is no recorded `what` to show (rather than a table of zeros), or None."""
    server = gateway.config.server
    ask = f"`curl http://{server.host}:{server.port}/v1/usage`"
    if gateway.config.state.backend == "memory":
        return (f"state.backend is memory: only the running gateway knows its keys' {what}; "
                f"ask it with {ask}, or use state.backend: sqlite to keep a ledger")
    path = getattr(gateway.store, "path", None)
    if path is not None and not path.exists():
        return (f"no {what} recorded yet: no gateway has kept a ledger at {path}; start one with "
                "`opencode-gateway serve` (with the same --config and environment), or, for a "
                f"gateway that keeps its state elsewhere, ask it with {ask}")
    return None


def on_the_store(gateway: Gateway, work):
    """`await work()` with the state store open and the key book read from it (what the running
    gateways know); exit 2 naming the store when it cannot be used."""
    async def run():
        await gateway.store.open()
        try:
            await gateway.book.sync()  # learns the stored clients ...
            await gateway.book.sync()  # ... and reads what they spent
            return await work()
        finally:
            await gateway.store.close()

    try:
        return asyncio.run(run())
    except (StoreError, OSError) as exc:  # OSError: a Redis store that is down
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def working(what: str):
    """`… what` on a terminal's stderr while a slow step runs (network reads, probes), erased
    when it ends; nothing when stderr is a pipe or a file, so output that is read stays clean."""
    shown = sys.stderr.isatty()
    if shown:
        sys.stderr.write(f"\r… {what}")
        sys.stderr.flush()
    try:
        yield
    finally:
        if shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
