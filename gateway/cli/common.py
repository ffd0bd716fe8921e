"""What every command shares: the config and rule chain loaded or a named exit, argparse types."""
from __future__ import annotations

import argparse
import sys

from gateway.app import Gateway
from gateway.config import Config, ConfigError, load_config
from gateway.routing.chain import RuleLoadError


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
