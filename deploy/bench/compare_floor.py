"""Gateway throughput against the floor proxy, measured in one run on this machine.

Starts the fake OpenCode Go upstream (`tests/fake_upstream.py`, without request recording), the
floor proxy (`shared/bench/floor_proxy.py`: the project's stack with no features) and the
gateway, all on loopback, then loads each with `hey` for three cases:

    non-stream     gateway `opencode-go/glm-5.1`            vs floor `glm-5.1`
    stream         gateway `opencode-go/glm-5.1`, 50 deltas vs floor `glm-5.1`, 50 deltas
    translated     gateway `opencode-go/minimax-m2.7` over the OpenAI frontend (Anthropic
                   upstream, translated both ways) vs the floor's pass-through stream
    composed       gateway `opencode-go/minimax-m2.7` over the Responses frontend (a Responses
                   client on the Anthropic wire: two codecs composed around the hub) vs the
                   floor's pass-through stream

The floor and the gateway of a case run back to back, so the ratio gateway/floor holds even
when absolute figures drift. The ratio is taken over successful (HTTP 200) requests per second;
every other status and every transport error is printed next to it, never folded into a rate.

Run from the repository root:
    python deploy/bench/compare_floor.py [-z 8s] [-c 50] [--floor PATH] [--gateway-only]
Needs `hey` (apt-get install -y hey).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Server start-up and the hey runner live in hey.py, shared with deploy/loadtest/run.py.
from hey import Result, Server, run_hey
from hey import free_port as _free_port
from hey import http as _http
from hey import tcp_open as _tcp_open

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FLOOR = REPO.parent / "shared" / "bench" / "floor_proxy.py"
STREAM_DELTAS = 50


def chat_body(model: str, stream: bool, text: str = "benchmark",
              include_usage: bool = True) -> str:
    """A chat request for hey; streamed ones ask the fake for STREAM_DELTAS deltas."""
    content = f"{text} [[fake: deltas={STREAM_DELTAS}]]" if stream else text
    body: dict = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"))


@dataclass
class Case:
    name: str
    gateway_body: str
    floor_body: str
    goal: float  # the least gateway/floor ratio the project aims for (PERFORMANCE.md)
    gateway_path: str = "/v1/chat/completions"


def responses_body(model: str) -> str:
    """A streamed Responses request for hey, asking the fake for STREAM_DELTAS deltas."""
    return json.dumps({"model": model, "stream": True,
                       "input": f"benchmark [[fake: deltas={STREAM_DELTAS}]]"},
                      separators=(",", ":"))


CASES = {
    "non-stream": Case("non-stream", chat_body("opencode-go/glm-5.1", False),
                       chat_body("glm-5.1", False), 0.9),
    "stream": Case(f"stream {STREAM_DELTAS} deltas", chat_body("opencode-go/glm-5.1", True),
                   chat_body("glm-5.1", True), 0.9),
    "translated": Case(f"translated stream {STREAM_DELTAS}", chat_body("opencode-go/minimax-m2.7", True),
                       chat_body("glm-5.1", True), 0.75),
    "composed": Case(f"responses<-anthropic {STREAM_DELTAS}",
                     responses_body("opencode-go/minimax-m2.7"), chat_body("glm-5.1", True),
                     0.75, gateway_path="/v1/responses"),
}


# ---------------------------------------------------------------------------------------------
# Servers

def _gateway_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.gateway_cmd:
        base = shlex.split(args.gateway_cmd)
    else:
        script = Path(sys.executable).parent / "opencode-gateway"
        found = str(script) if script.exists() else shutil.which("opencode-gateway")
        base = [found] if found else [sys.executable, "-m", "gateway"]
        base.append("serve")
    cmd = base + ["--host", "127.0.0.1", "--port", str(port)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    return cmd


def start_servers(args: argparse.Namespace) -> tuple[dict[str, str], list[Server]]:
    """Start what the run needs; the targets' root URLs by name, and the servers."""
    started: list[Server] = []
    targets: dict[str, str] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_GO_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        fake_port = args.fake_port or _free_port()
        fake = Server("fake-upstream", [sys.executable, "-m", "tests.fake_upstream", "--host",
                                        "127.0.0.1", "--port", str(fake_port), "--no-record",
                                        # the floor proxy sends aiohttp's own User-Agent
                                        "--no-edge"],
                      cwd=REPO, env=env, port=fake_port)
        started.append(fake)
        fake_url = f"http://127.0.0.1:{fake_port}/v1"
        fake.wait_ready(lambda: _http("GET", f"http://127.0.0.1:{fake_port}/_fake/stats")[0] == 200)

        if not args.gateway_only:
            floor = Path(args.floor).resolve()
            if not floor.exists():
                raise SystemExit(f"floor proxy not found at {floor}: pass --floor PATH")
            port = _free_port()
            server = Server("floor", [sys.executable, "-m", "hypercorn", "-k", "uvloop", "-b",
                                      f"127.0.0.1:{port}", "--backlog", "2048",
                                      f"{floor.stem}:app"],
                            cwd=floor.parent, env={**env, "UPSTREAM": fake_url,
                                                   "PYTHONPATH": str(floor.parent)}, port=port)
            started.append(server)
            targets["floor"] = f"http://127.0.0.1:{port}"
            server.wait_ready(lambda: _tcp_open(port))

        if not args.floor_only:
            if args.gateway_url:
                targets["gateway"] = args.gateway_url.rstrip("/")
            else:
                port = _free_port()
                server = Server("gateway", _gateway_command(args, port), cwd=REPO,
                                env={**env, "OPENCODE_GO_API_URL": fake_url,
                                     "OPENCODE_GO_API_KEY": "bench",
                                     # a ledger of its own, not the user's
                                     "XDG_STATE_HOME": tempfile.mkdtemp(prefix="bench-state-")},
                                port=port)
                started.append(server)
                targets["gateway"] = f"http://127.0.0.1:{port}"
                server.wait_ready(
                    lambda: _http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return targets, started


# ---------------------------------------------------------------------------------------------
# hey

def smoke(name: str, url: str, body: str) -> None:
    """One request before the load, so a target that cannot answer the case says why."""
    status, answer = _http("POST", url, body)
    if status != 200:
        print(f"  ! {name} answered HTTP {status} before the load: "
              f"{answer[:300].decode(errors='replace')}", flush=True)


# ---------------------------------------------------------------------------------------------
# Report

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _statuses(result: Result) -> str:
    return " ".join(f"{code}x{count}" for code, count in sorted(result.statuses.items())) or "none"


def print_table(rows: list[tuple[Case, dict[str, Result]]]) -> None:
    header = (f"{'case':<26} {'target':<8} {'ok req/s':>9} {'req/s':>9} {'p50 ms':>8} "
              f"{'p99 ms':>8}  {'statuses':<18} errors")
    print("\n" + header + "\n" + "-" * len(header))
    for case, results in rows:
        for target, r in results.items():
            errors = sum(n for n, _ in r.errors)
            flag = "" if r.clean else "  <-- NOT ALL 200"
            print(f"{case.name:<26} {target:<8} {r.ok_rps:>9.1f} {r.rps:>9.1f} {_ms(r.p50_ms):>8} "
                  f"{_ms(r.p99_ms):>8}  {_statuses(r):<18} {errors}{flag}")
            for count, message in r.errors[:5]:
                print(f"{'':<36}error x{count}: {message[:120]}")
        if "gateway" in results and "floor" in results:
            floor = results["floor"].ok_rps
            ratio = results["gateway"].ok_rps / floor if floor else 0.0
            verdict = "meets" if ratio >= case.goal else "BELOW"
            dirty = "" if all(r.clean for r in results.values()) else " (non-200 answers or errors above)"
            print(f"{'':<26} ratio gateway/floor: {ratio:.3f}  goal >= {case.goal:.2f}: "
                  f"{verdict}{dirty}")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-z", "--duration", default="8s", help="hey -z per run (default 8s)")
    parser.add_argument("-c", "--concurrency", type=int, default=50,
                        help="hey -c per run (default 50)")
    parser.add_argument("--warmup", default="1s",
                        help="hey -z warm-up per target and case, not measured (default 1s; 0 skips)")
    parser.add_argument("--floor", default=str(DEFAULT_FLOOR),
                        help=f"path to floor_proxy.py (default {DEFAULT_FLOOR})")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--gateway-only", action="store_true", help="measure the gateway alone")
    only.add_argument("--floor-only", action="store_true", help="measure the floor alone")
    parser.add_argument("--gateway-cmd",
                        help="command that serves the gateway, without --host/--port "
                             "(default: opencode-gateway serve, else python -m gateway serve)")
    parser.add_argument("--gateway-url",
                        help="measure an already running gateway at this root URL instead of "
                             "starting one (point it at the fake: see --fake-port)")
    parser.add_argument("--fake-port", type=int, help="port for the fake upstream (default: free)")
    parser.add_argument("--workers", type=int, help="gateway --workers (default: its own default)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    if not shutil.which("hey"):
        print("hey is not installed: `apt-get install -y hey` (Debian/Ubuntu), or "
              "`go install github.com/rakyll/hey@latest`", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")

    targets, servers = start_servers(args)
    rows: list[tuple[Case, dict[str, Result]]] = []
    try:
        print(f"hey -z {args.duration} -c {args.concurrency}; targets: "
              + ", ".join(f"{t} {u}" for t, u in targets.items()), flush=True)
        for name in names:
            case = CASES[name]
            results: dict[str, Result] = {}
            for target, root in targets.items():
                gateway = target == "gateway"
                body = case.gateway_body if gateway else case.floor_body
                url = root + (case.gateway_path if gateway else "/v1/chat/completions")
                smoke(target, url, body)
                if args.warmup not in ("0", "0s", ""):
                    run_hey(url, body, args.warmup, args.concurrency)
                print(f"  {case.name}: {target} ...", flush=True)
                results[target] = run_hey(url, body, args.duration, args.concurrency)
            rows.append((case, results))
        rss = {s.name: s.rss_mib() for s in servers if s.name != "fake-upstream"}
    finally:
        for server in reversed(servers):
            server.stop()

    print_table(rows)
    print("RSS after the run: " + (", ".join(f"{n} {v:.0f} MiB" for n, v in rss.items() if v)
                                    or "n/a"))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "duration": args.duration, "concurrency": args.concurrency,
            "cases": {case.name: {t: {**r.__dict__, "ok_rps": r.ok_rps,
                                      "statuses": {str(k): v for k, v in r.statuses.items()}}
                                  for t, r in results.items()} for case, results in rows},
            "rss_mib": rss}, indent=2))
    return 0 if all(r.clean for _, results in rows for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
