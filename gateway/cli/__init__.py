"""`opencode-gateway serve | routes | models | usage | rests | clients | reload | check-config |
doctor | connect`.

One module per command: each has `add(commands)`, which registers its parser and sets `run`.
A new command is a new module and one line in COMMANDS.
"""
from __future__ import annotations

import argparse
import os
import sys

from gateway import __version__
from gateway.cli import (check_config, clients, connect, doctor, models, reload, rests, routes,
                         serve, usage)

COMMANDS = (serve, routes, models, usage, rests, clients, reload, check_config, doctor, connect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="opencode-gateway",
        description="One backend name, opencode-go, for every OpenCode Go model, to OpenAI, "
                    "Anthropic and Responses clients.",
        epilog="`opencode-gateway COMMAND --help` says more about a command. Start with "
               "`OPENCODE_GO_API_KEY=... opencode-gateway serve`.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.add(commands)
    args = parser.parse_args(argv)
    if args.command is None:  # the bare command: what it can do, not an error
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except BrokenPipeError:  # `opencode-gateway models | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
