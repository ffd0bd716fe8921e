"""`opencode-gateway serve | routes | models | usage | check-config | doctor`.

One module per command: each has `add(commands)`, which registers its parser and sets `run`.
A new command is a new module and one line in COMMANDS.
"""
from __future__ import annotations

import argparse
import os
import sys

from gateway.cli import check_config, doctor, models, routes, serve, usage

COMMANDS = (serve, routes, models, usage, check_config, doctor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opencode-gateway", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `opencode-gateway models | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
