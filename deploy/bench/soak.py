"""Soak: 500 concurrent clients for a minute through the gateway, and every answer accounted for.

Starts the fake OpenCode Go upstream (without request recording) and the gateway on loopback,
then runs `hey -c 500 -z 60s` once per case:

    non-stream    opencode-go/glm-5.1, a whole answer
    stream        opencode-go/glm-5.1, a 50-delta stream (pass-through)
    translated    opencode-go/minimax-m2.7 to an OpenAI client, 50 deltas (not run by default)

and prints, per case, the status-code distribution, hey's error distribution (connection
refused or reset, timeouts), requests per second and latency percentiles; afterwards whether
the gateway still answers /healthz, its resident memory, and any traceback in its log. The goal
is zero errors and nothing but 200s. Exit status 0 when that held for every case.

Run from the repository root (needs `hey`: apt-get install -y hey):
    python deploy/bench/soak.py [-c 500] [-z 60s] [--cases non-stream,stream] [--workers N]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_floor import chat_body, start_servers  # noqa: E402
from hey import Result, Server, http, run_hey  # noqa: E402


def _body(model: str, stream: bool) -> str:
    return chat_body(model, stream, text="soak", include_usage=False)


CASES = {
    "non-stream": _body("opencode-go/glm-5.1", False),
    "stream": _body("opencode-go/glm-5.1", True),
    "translated": _body("opencode-go/minimax-m2.7", True),
}


def raise_file_limit() -> int:
    """Lift this process's open-file limit to its hard maximum; the servers inherit it.

    500 clients cost the gateway about 1,000 descriptors (one toward the client, one toward the
    upstream per request in flight), more than a default soft limit of 1,024 leaves.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def tracebacks(server: Server) -> int:
    text = Path(server.log.name).read_text(errors="replace")
    return text.count("Traceback (most recent call last)")


def report(name: str, result: Result) -> None:
    statuses = " ".join(f"[{code}] {count}" for code, count in sorted(result.statuses.items()))
    errors = sum(count for count, _ in result.errors)
    total = sum(result.statuses.values()) + errors
    print(f"{name}: {total} requests in {result.total_secs:.1f} s, {result.rps:.1f} req/s, "
          f"p50 {result.p50_ms or 0:.1f} ms, p99 {result.p99_ms or 0:.1f} ms")
    print(f"  statuses: {statuses or 'none'}")
    print(f"  errors: {errors}" + ("" if errors else " (none)"))
    for count, message in result.errors[:10]:
        print(f"    x{count}: {message[:160]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--concurrency", type=int, default=500, help="hey -c (default 500)")
    parser.add_argument("-z", "--duration", default="60s", help="hey -z per case (default 60s)")
    parser.add_argument("--cases", default="non-stream,stream",
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--workers", type=int, help="gateway --workers (default: its own)")
    parser.add_argument("--gateway-cmd", help="command that serves the gateway, without "
                                              "--host/--port (default: opencode-gateway serve)")
    args = parser.parse_args(argv)
    if not shutil.which("hey"):
        print("hey is not installed: `apt-get install -y hey`", file=sys.stderr)
        return 2
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")

    files = raise_file_limit()
    setup = argparse.Namespace(fake_port=None, gateway_only=True, floor_only=False, floor=None,
                               gateway_url=None, gateway_cmd=args.gateway_cmd,
                               workers=args.workers)
    targets, servers = start_servers(setup)
    gateway = next(server for server in servers if server.name == "gateway")
    url = targets["gateway"]
    print(f"hey -c {args.concurrency} -z {args.duration} against {url} "
          f"(open-file limit {files})", flush=True)
    clean = True
    try:
        for name in names:
            print(f"  {name} ...", flush=True)
            result = run_hey(url, CASES[name], args.duration, args.concurrency)
            report(name, result)
            clean &= result.clean
        root = url.rsplit("/v1/", 1)[0]
        alive = http("GET", root + "/healthz")[0] == 200
        rss = gateway.rss_mib()
        crashes = tracebacks(gateway)
    finally:
        for server in reversed(servers):
            server.stop()
    print(f"after the load: /healthz {'answers' if alive else 'DOES NOT ANSWER'}, "
          f"gateway RSS {rss:.0f} MiB, tracebacks in its log: {crashes}"
          if rss is not None else f"after the load: /healthz {alive}, tracebacks: {crashes}")
    return 0 if clean and alive and not crashes else 1


if __name__ == "__main__":
    sys.exit(main())
