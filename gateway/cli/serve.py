"""`opencode-gateway serve`: the gateway under hypercorn."""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile

from gateway.app import CONFIG_ENV, RULES_DIR_ENV, Gateway
from gateway.cli.common import in_range, load_gateway
from gateway.server import hypercorn_config
from gateway.state.store import StoreError
from gateway.upstream.identity import upstream_user_agent
from gateway.upstream.instances import describe_layout


def add(commands) -> None:
    serve = commands.add_parser("serve", help="serve the gateway with hypercorn")
    serve.add_argument("--config", help="YAML config file (default: built-in)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=in_range(1, 65535), help="port to bind (default 8000)")
    serve.add_argument("--workers", type=in_range(1, 256), help="worker processes (default 1)")
    serve.add_argument("--rules-dir", help="directory of extra rule modules")
    serve.set_defaults(run=run)


def _open_state(gateway: Gateway) -> None:
    """Open the state store once before any worker starts, so a broken or unwritable ledger
    stops start-up with its reason instead of failing in every worker."""
    async def open_and_close():
        await gateway.store.open()
        await gateway.store.close()

    try:
        asyncio.run(open_and_close())
    except StoreError as exc:
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # a Redis that is down now: the workers serve and keep trying
        print(f"opencode-gateway: warning: state store {gateway.store!r} is unreachable "
              f"({exc}); serving on each worker's own view until it is back", file=sys.stderr)


def _metrics_dir(workers: int) -> str | None:
    """Where several workers share their metric values (prometheus-client's multiprocess mode).

    A PROMETHEUS_MULTIPROC_DIR the user set is emptied of an earlier run's files, which would
    otherwise add old counts to the new ones. Otherwise each multi-worker `serve` gets a fresh
    temporary directory, returned so it is removed at exit; one worker keeps values in memory.
    """
    own = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if own:
        os.makedirs(own, exist_ok=True)
        for name in os.listdir(own):
            if name.endswith(".db"):
                os.remove(os.path.join(own, name))
        return None
    if workers <= 1:
        return None
    # Every counter update writes to these files' memory maps: on tmpfs that stays a memory
    # write, on a disk filesystem writeback keeps turning it into page faults.
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
    path = tempfile.mkdtemp(prefix="opencode-gateway-metrics-", dir=where)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path  # the spawned workers inherit it
    return path


def run(args) -> int:
    from hypercorn.run import run
    # gateway.asgi builds its app when imported, from the environment set below: not before.

    gateway = load_gateway(args)  # fail here, named, rather than in every worker
    _open_state(gateway)
    server = gateway.config.server
    host = args.host or server.host
    port = server.port if args.port is None else args.port
    workers = args.workers or server.workers
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    if args.rules_dir:
        os.environ[RULES_DIR_ENV] = os.path.abspath(args.rules_dir)
    config = hypercorn_config(server, host, port, workers)
    print(f"opencode-gateway: serving on http://{host}:{port} with {workers} worker(s), "
          f"{len(gateway.router.advertised_models())} models (`opencode-gateway models` lists "
          f"them), state in {gateway.store!r}", file=sys.stderr, flush=True)
    for pool in gateway.pools.values():
        first = pool.instances[0]
        print(f"opencode-gateway: {pool.backend}: OpenCode Go's {describe_layout(first)} "
              f"({len(pool.instances)} key(s)), user agent "
              f"{upstream_user_agent(None, first.user_agent)}", file=sys.stderr, flush=True)
    metrics_dir = _metrics_dir(workers)
    try:
        return run(config)
    except OSError as exc:  # the address is taken, or not this machine's
        print(f"opencode-gateway: cannot serve on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
