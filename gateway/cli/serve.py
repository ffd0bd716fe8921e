"""`opencode-gateway serve`: the gateway under hypercorn."""
from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile

from gateway import __version__
from gateway.admission import lift_file_limit
from gateway.app import CONFIG_ENV, RULES_DIR_ENV, Gateway
from gateway.cli.common import in_range, load_gateway
from gateway.logs import setup as setup_logs
from gateway.routing.router import missing_key_message
from gateway.server import hypercorn_config
from gateway.state.store import StoreError
from gateway.upstream.identity import upstream_user_agent
from gateway.upstream.instances import describe_layout

_log = logging.getLogger("gateway")


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
        _log.error("%s", exc)
        raise SystemExit(2) from None
    except OSError as exc:  # a Redis that is down now: the workers serve and keep trying
        _log.warning("state store %r is unreachable (%s); serving on each worker's own view "
                     "until it is back", gateway.store, exc)


def _warn_without_keys(gateway: Gateway) -> None:
    """A gateway without an OpenCode Go key starts (to be tried, or keyed later) but says so."""
    for name, pool in gateway.pools.items():
        if not any(instance.api_key for instance in pool.instances):
            _log.warning("%s; until then every request gets this answer", missing_key_message(name))


def _cannot_bind(exc: OSError, host: str, port: int) -> str:
    """One sentence: why `serve` cannot listen on host:port, and what to do."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another gateway?): stop what listens "
                f"there (`ss -ltnp 'sport = :{port}'` names it) or pick another port with "
                "--port (or server.port in the config)")
    if exc.errno == errno.EACCES:
        return (f"no permission to listen on port {port}: ports below 1024 need root; pick "
                "another port with --port (or server.port in the config)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"{host} is not an address of this machine: use 127.0.0.1, 0.0.0.0 (every "
                "interface) or one of its own addresses with --host (or server.host)")
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


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


class _ForwardedSighup:
    """hypercorn.run's view of the `signal` module, in which SIGHUP is passed on to the workers.

    With several workers hypercorn's own SIGHUP handler restarts them all, and a config that no
    longer loads would then stop the server. Each worker re-reads its config on SIGHUP itself
    (app.py), keeping the one in use when the new one does not load: the serving process only
    has to pass the signal on.
    """

    def __getattr__(self, name):
        return getattr(signal, name)

    @staticmethod
    def signal(signum, handler):
        if signum == signal.SIGHUP:
            def forward(*_):
                for worker in multiprocessing.active_children():
                    os.kill(worker.pid, signal.SIGHUP)
            return signal.signal(signum, forward)
        return signal.signal(signum, handler)


def run(args) -> int:
    import hypercorn.run
    from hypercorn.run import run
    hypercorn.run.signal = _ForwardedSighup()
    # gateway.asgi builds its app when imported, from the environment set below: not before.

    setup_logs()
    open_files = lift_file_limit()  # the workers inherit it
    gateway = load_gateway(args)  # fail here, named, rather than in every worker
    _open_state(gateway)
    _warn_without_keys(gateway)
    server = gateway.config.server
    host = args.host or server.host
    port = server.port if args.port is None else args.port
    workers = args.workers or server.workers
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    if args.rules_dir:
        os.environ[RULES_DIR_ENV] = os.path.abspath(args.rules_dir)
    config = hypercorn_config(server, host, port, workers)
    # hypercorn says "Running on …" once the port is bound; nothing before claims it serves.
    _log.info("opencode-gateway %s starting on %s:%d with %d worker(s), %d models "
              "(`opencode-gateway models` lists them), state in %r", __version__, host, port,
              workers, len(gateway.router.advertised_models()), gateway.store)
    _log.info("each worker takes %d model requests at once (server.max_streams; open-file "
              "limit %d), and answers one more with 503 and Retry-After", gateway.streams.cap,
              open_files)
    for pool in gateway.pools.values():
        first = pool.instances[0]
        _log.info("%s: OpenCode Go's %s (%d key(s)), user agent %s", pool.backend,
                  describe_layout(first), len(pool.instances),
                  upstream_user_agent(None, first.user_agent))
    metrics_dir = _metrics_dir(workers)
    try:
        return run(config)
    except OSError as exc:  # the address is taken, or not this machine's
        _log.error("%s", _cannot_bind(exc, host, port))
        return 2
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
