"""`opencode-gateway rests [clear [INSTANCE]]`: which keys rest, why and until when; lift them.

Read from and written to the state store, like `usage`: no running gateway is needed, and the
running ones follow a lift within `state.sync_seconds` (the store carries it, see
quota/book.py).
"""
from __future__ import annotations

import sys
import time

from gateway.cli.common import load_gateway, nothing_to_read, on_the_store
from gateway.upstream.instances import describe_wait


def add(commands) -> None:
    rests = commands.add_parser(
        "rests", help="list the keys that rest, with reason and end; `rests clear` lifts them",
        description="List the keys (instances) that rest, why and until when. `rests clear` "
                    "lifts every rest, `rests clear INSTANCE` one key's; running gateways "
                    "follow within state.sync_seconds.")
    rests.add_argument("action", nargs="?", choices=["clear"])
    rests.add_argument("instance", nargs="?", help="with clear: the instance, e.g. opencode-go.2")
    rests.add_argument("--config")
    rests.set_defaults(run=run)


def _describe(instance, now: float) -> list[str]:
    """Each rest of `instance` still running: its reason and its end."""
    said = []
    if instance.limit_until > now:
        said.append(f"at its OpenCode Go {instance.limit_name or 'usage'} limit "
                    + _until(instance.limit_until, now))
    if instance.resting_until > now:
        said.append("resting after a 429 or failures in a row "
                    + _until(instance.resting_until, now))
    return said


def _until(epoch: float, now: float) -> str:
    return (f"until {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(epoch))} "
            f"(in {describe_wait(epoch - now)})")


def run(args) -> int:
    if args.instance and not args.action:
        print(f"opencode-gateway: to lift {args.instance}'s rests: opencode-gateway rests clear "
              f"{args.instance}", file=sys.stderr)
        return 2
    gateway = load_gateway(args)
    nothing = nothing_to_read(gateway, "rests")
    if nothing:
        print(f"opencode-gateway: {nothing}", file=sys.stderr)
        return 1
    instances = [i for pool in gateway.pools.values() for i in pool.instances]
    if args.instance and args.instance not in {i.name for i in instances}:
        print(f"opencode-gateway: no instance is called {args.instance}; the instances are: "
              + ", ".join(i.name for i in instances), file=sys.stderr)
        return 2

    async def read_and_lift() -> list[str]:
        now = time.time()
        lines = []
        for instance in instances:
            said = _describe(instance, now)
            if args.action == "clear" and said and args.instance in (None, instance.name):
                gateway.book.lift(instance)
                lines.append(f"{instance.name}: lifted ({'; '.join(said)})")
            elif said:
                lines.append(f"{instance.name}: {'; '.join(said)}")
        await gateway.book.sync()   # the lift, for every gateway using this store
        return lines

    lines = on_the_store(gateway, read_and_lift)
    print("\n".join(lines) if lines else "no key is resting")
    if args.action == "clear" and lines:
        print(f"running gateways take requests on these keys again within "
              f"{gateway.config.state.sync_seconds:g}s")
    return 0
