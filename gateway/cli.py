"""`opencode-gateway serve | routes | models | usage | check-config`."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile

from gateway.app import CONFIG_ENV, RULES_DIR_ENV, Gateway
from gateway.config import ConfigError, load_config
from gateway.errors import GatewayError
from gateway.quota.report import usage_report
from gateway.routing.chain import RuleLoadError
from gateway.server import hypercorn_config
from gateway.state.store import StoreError
from gateway.upstream.catalogue_refresh import refresh_once
from gateway.upstream.forwarder import ANTHROPIC_VERSION, PATHS, create_session
from gateway.upstream.instances import mask_key


def _gateway(args) -> Gateway:
    """Config and rule chain, or exit 2 with the file and the reason."""
    try:
        return Gateway(load_config(args.config), rules_dir=getattr(args, "rules_dir", None))
    except (ConfigError, RuleLoadError) as exc:
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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


def _in_range(low: int, high: int):
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


def _serve(args) -> int:
    from hypercorn.run import run
    # gateway.asgi builds its app when imported, from the environment set below: not before.

    gateway = _gateway(args)  # fail here, named, rather than in every worker
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


def _routes(args) -> int:
    gateway = _gateway(args)
    body = {"model": args.model, "messages": [], "stream": True}

    async def route():
        return await gateway.router.route(args.model, args.frontend, body)

    try:
        ctx = asyncio.run(route())
    except GatewayError as exc:
        print(f"no route: {exc.message}", file=sys.stderr)
        return 1
    path = PATHS[ctx.protocol]
    auth = (f"x-api-key: <key>, anthropic-version: {ANTHROPIC_VERSION}"
            if ctx.protocol == "anthropic" else "Authorization: Bearer <key>")
    instance = ctx.instance
    print(f"model string : {ctx.requested}")
    print(f"frontend     : {args.frontend}")
    print(f"backend      : {ctx.backend}")
    print(f"instance     : {instance.name} (instance {instance.number}, key {mask_key(instance.api_key)})"
          + (", pinned" if ctx.pinned else ", unpinned: may fail over"))
    print(f"model id     : {ctx.model_id}")
    print(f"wire         : {ctx.protocol} "
          f"({ctx.catalogues[ctx.backend].wire(ctx.model_id).source})")
    print(f"upstream URL : POST {instance.api_url}{path}")
    print(f"upstream auth: {auth}")
    print(f"translation  : {ctx.translation.name}")
    return 0


def _models(args) -> int:
    """Every model id the backends list, with its wire and where that came from."""
    gateway = _gateway(args)

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


def _usage(args) -> int:
    """Where every key stands, read from the state store (no running gateway needed)."""
    gateway = _gateway(args)

    async def read():
        await gateway.store.open()
        try:
            await gateway.book.sync()
            return await usage_report(gateway.book, gateway.pools)
        finally:
            await gateway.store.close()

    try:
        report = asyncio.run(read())
    except (StoreError, OSError) as exc:  # OSError: a Redis store that is down
        print(f"opencode-gateway: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"state: {report['state']['where']}   (at {report['generated_at']})")
    for key in report["keys"]:
        status = key["status"] + (f" ({key['limit']} limit until {key['until']})"
                                  if key["status"] == "limited" else "")
        print(f"\n{key['instance']}  key {key['key']}  {status}")
        for window in key["windows"].values():
            hours, rest = divmod(window["resets_in_seconds"], 3600)
            print(f"  {window['label']:<8} ${window['spent_usd']:>9.4f} of ${window['limit_usd']:<6g}"
                  f" {window['used_percent']:>6.1f}%   resets in {hours}h{rest // 60:02d}m"
                  f"   ({window['source']})")
    print("\ntoday, by model:")
    if not report["models_today"]:
        print("  (nothing yet)")
    for model in report["models_today"]:
        print(f"  {model['model']:<20} {model['requests']:>6} requests  "
              f"{model['input_tokens']:>9} in ({model['cached_tokens']} cached)  "
              f"{model['output_tokens']:>8} out  ${model['cost_usd']:.4f}")
    return 0


def _check_config(args) -> int:
    gateway = _gateway(args)
    config = gateway.config
    print(f"config: {args.config or '(built-in default)'}: OK")
    for name, pool in gateway.pools.items():
        print(f"backend {name}:")
        for instance in pool.instances:
            print(f"  instance {instance.name}: {instance.api_url}, key {mask_key(instance.api_key)}")
            if not instance.api_key:
                print(f"  warning: {instance.name} has no key; set OPENCODE_GO_API_KEY "
                      "(or api_key in the config)")
        overrides = config.backends[name].extra.model_protocol_overrides
        if overrides:
            print(f"  protocol overrides: {', '.join(f'{m}={p}' for m, p in overrides.items())}")
    print(f"rules: {', '.join(os.path.basename(s) for s in gateway.router.chain.sources)}")
    print(f"client keys: {len(gateway.client_keys) or 'none (the gateway is open)'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opencode-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway with hypercorn")
    serve.add_argument("--config", help="YAML config file (default: built-in)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_in_range(1, 65535), help="port to bind (default 8000)")
    serve.add_argument("--workers", type=_in_range(1, 256), help="worker processes (default 1)")
    serve.add_argument("--rules-dir", help="directory of extra rule modules")
    serve.set_defaults(run=_serve)

    routes = commands.add_parser("routes", help="print the route a model string takes")
    routes.add_argument("model", metavar="MODEL")
    routes.add_argument("--config")
    routes.add_argument("--rules-dir")
    routes.add_argument("--frontend", choices=("openai", "anthropic", "responses"),
                        default="openai",
                        help="the protocol the client speaks (default openai)")
    routes.set_defaults(run=_routes)

    models = commands.add_parser("models", help="list every model id with its wire and source")
    models.add_argument("--config")
    models.add_argument("--rules-dir")
    models.add_argument("--offline", action="store_true",
                        help="do not read the upstream's model list")
    models.set_defaults(run=_models)

    usage = commands.add_parser("usage", help="where every key stands in its usage windows")
    usage.add_argument("--config")
    usage.add_argument("--json", action="store_true", help="the same as GET /v1/usage")
    usage.set_defaults(run=_usage)

    check = commands.add_parser("check-config", help="validate a config and exit")
    check.add_argument("--config")
    check.add_argument("--rules-dir")
    check.set_defaults(run=_check_config)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `opencode-gateway models | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
