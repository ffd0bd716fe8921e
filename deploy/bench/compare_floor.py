"""Gateway throughput against the floor proxy, measured in one run on this machine.

Starts the fake OpenCode Go upstream (`tests/fake_upstream.py`, without request recording), the
floor proxy (`shared/bench/floor_proxy.py`: the project's stack with no features) and the
gateway, all on loopback, then loads each with `hey` for these cases:

    non-stream     gateway `opencode-go/glm-5.1`            vs floor `glm-5.1`
    stream         gateway `opencode-go/glm-5.1`, 50 deltas vs floor `glm-5.1`, 50 deltas
    translated     gateway `opencode-go/minimax-m2.7` over the OpenAI frontend (Anthropic
                   upstream, translated both ways) vs the floor's pass-through stream
    composed       gateway `opencode-go/minimax-m2.7` over the Responses frontend (a Responses
                   client on the Anthropic wire: two codecs composed around the hub) vs the
                   floor's pass-through stream
    gemini         gateway `opencode-go/glm-5.1` over the Gemini frontend, streamed (a Gemini
                   client on the OpenAI Chat wire) vs the floor's pass-through stream

Each case runs in alternating rounds (floor, gateway, then gateway, floor, ...; --rounds, 5 by
default), so both meet the same drift of a busy machine. Per round it reads the CPU time (user +
system) the serving process and its workers spent, and divides by the successful answers: CPU
microseconds per request, the figure the project's goal is set in. The report gives the median
of the rounds and their range, and the ratio floor/gateway (>= 1.0: the gateway costs no more
than the floor) as the median of each round's own ratio: the two runs of a round follow each
other, so the drift of a shared machine cancels in it (the ratio of the medians is printed
beside it). Many short rounds (`-z 2s --rounds 21`) measure the ratio best. Throughput
(successful requests per second) is printed beside it; every other status and every transport
error is printed too, never folded into a rate.

After the rounds, one moderate run per target (`--ttfb-requests` at -c 10, hey's CSV) measures
the time to the first byte of the answer, also straight at the fake upstream, so the gateway's
added p50/p99 TTFB over the upstream's is reported. RSS of each server: idle (before any load)
and after the run.

Run from the repository root:
    python deploy/bench/compare_floor.py [-z 8s] [-c 50] [--rounds 5] [--floor PATH]
        [--cases non-stream,stream,translated,composed,gemini] [--gateway-only]
Needs `hey` (apt-get install -y hey). The floor is ../shared/bench/floor_proxy.py when it is
there, else the project's own copy, deploy/bench/floor.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Server start-up and the hey runner live in hey.py, shared with deploy/loadtest/run.py.
from hey import Result, Server, run_hey, run_hey_csv
from hey import free_port as _free_port
from hey import http as _http
from hey import tcp_open as _tcp_open

REPO = Path(__file__).resolve().parents[2]
_SHARED_FLOOR = REPO.parent / "shared" / "bench" / "floor_proxy.py"
DEFAULT_FLOOR = _SHARED_FLOOR if _SHARED_FLOOR.exists() else Path(__file__).with_name("floor.py")
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
    # The least floor/gateway ratio of CPU per request the project aims for (issue 28: the same
    # wire no dearer than the floor, a translated stream within 1.15x, a composed one and the
    # Gemini frontend 1.25x).
    goal: float
    gateway_path: str = "/v1/chat/completions"


def responses_body(model: str) -> str:
    """A streamed Responses request for hey, asking the fake for STREAM_DELTAS deltas."""
    return json.dumps({"model": model, "stream": True,
                       "input": f"benchmark [[fake: deltas={STREAM_DELTAS}]]"},
                      separators=(",", ":"))


def gemini_body() -> str:
    """A streamed Gemini request for hey (the model is in the path), asking for the deltas."""
    return json.dumps({"contents": [{"role": "user", "parts": [
        {"text": f"benchmark [[fake: deltas={STREAM_DELTAS}]]"}]}]}, separators=(",", ":"))


CASES = {
    "non-stream": Case("non-stream", chat_body("opencode-go/glm-5.1", False),
                       chat_body("glm-5.1", False), 1.0),
    "stream": Case(f"stream {STREAM_DELTAS} deltas", chat_body("opencode-go/glm-5.1", True),
                   chat_body("glm-5.1", True), 1.0),
    "translated": Case(f"translated stream {STREAM_DELTAS}", chat_body("opencode-go/minimax-m2.7", True),
                       chat_body("glm-5.1", True), 0.87),
    "composed": Case(f"responses<-anthropic {STREAM_DELTAS}",
                     responses_body("opencode-go/minimax-m2.7"), chat_body("glm-5.1", True),
                     0.8, gateway_path="/v1/responses"),
    "gemini": Case(f"gemini<-openai {STREAM_DELTAS}", gemini_body(), chat_body("glm-5.1", True),
                   0.8, gateway_path="/v1beta/models/opencode-go/glm-5.1:streamGenerateContent"
                                     "?alt=sse"),
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
    """Start what the run needs; the targets' root URLs by name ("upstream" is the fake
    itself), and the servers."""
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
        targets["upstream"] = f"http://127.0.0.1:{fake_port}"
        # The fake charges every answer against its key's dollar windows, as OpenCode Go does:
        # a benchmark's tens of thousands of answers would spend them and measure 429s.
        unlimited = json.dumps({"bench": {"rolling": 1e12, "weekly": 1e12, "monthly": 1e12}})
        _http("POST", f"http://127.0.0.1:{fake_port}/_fake/limits", unlimited)

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
# Rounds

@dataclass
class Round:
    result: Result
    cpu_us: float | None  # CPU microseconds per successful request; None when not ours to read


@dataclass
class Measured:
    rounds: dict[str, list[Round]]     # by target
    ttfb: dict[str, Result]            # by target, "upstream" included

    def median_cpu(self, target: str) -> float | None:
        values = [r.cpu_us for r in self.rounds.get(target, ()) if r.cpu_us is not None]
        return statistics.median(values) if values else None

    def paired_ratios(self) -> list[float]:
        """floor/gateway CPU per request of each round, sorted. A round's two runs follow each
        other, so they meet the same load from the rest of the machine; the ratio of the medians
        compares runs minutes apart, and a shared VM's speed drifts by more than the difference
        being measured."""
        pairs = zip(self.rounds.get("floor", ()), self.rounds.get("gateway", ()))
        return sorted(floor.cpu_us / gateway.cpu_us for floor, gateway in pairs
                      if floor.cpu_us and gateway.cpu_us)

    def median_rps(self, target: str) -> float:
        return statistics.median(r.result.ok_rps for r in self.rounds[target])


def _one_round(target: str, server: Server | None, url: str, body: str,
               args: argparse.Namespace) -> Round:
    before = server.cpu_seconds() if server else 0.0
    result = run_hey(url, body, args.duration, args.concurrency)
    ok = result.statuses.get(200, 0)
    cpu = (server.cpu_seconds() - before) * 1e6 / ok if server and ok else None
    return Round(result, cpu)


def measure(case: Case, targets: dict[str, str], servers: dict[str, Server],
            args: argparse.Namespace) -> Measured:
    loaded = [t for t in targets if t != "upstream"]
    urls = {t: targets[t] + (case.gateway_path if t == "gateway" else "/v1/chat/completions")
            for t in targets}
    bodies = {t: case.gateway_body if t == "gateway" else case.floor_body for t in targets}
    for target in loaded:
        smoke(target, urls[target], bodies[target])
        if args.warmup not in ("0", "0s", ""):
            run_hey(urls[target], bodies[target], args.warmup, args.concurrency)
    rounds: dict[str, list[Round]] = {t: [] for t in loaded}
    for number in range(args.rounds):
        order = loaded if number % 2 == 0 else loaded[::-1]
        for target in order:
            print(f"  {case.name}: round {number + 1}/{args.rounds} {target} ...", flush=True)
            rounds[target].append(_one_round(target, servers.get(target), urls[target],
                                             bodies[target], args))
    ttfb: dict[str, Result] = {}
    if args.ttfb_requests:
        # The fake wants a session id from whoever calls it; the floor and the gateway send one.
        for target in targets:
            if target == "upstream" and case.gateway_path != "/v1/chat/completions":
                continue  # the fake answers this case's protocol on another path: not comparable
            ttfb[target] = run_hey_csv(urls[target], bodies[target], args.ttfb_requests, 10,
                                       headers=("x-opencode-session: bench",))
    return Measured(rounds, ttfb)


# ---------------------------------------------------------------------------------------------
# Report

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _middle_half(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.2f}-{high:.2f}"


def _statuses(results: list[Result]) -> str:
    total: dict[int, int] = {}
    for result in results:
        for code, count in result.statuses.items():
            total[code] = total.get(code, 0) + count
    return " ".join(f"{code}x{count}" for code, count in sorted(total.items())) or "none"


def print_table(rows: list[tuple[Case, Measured]]) -> bool:
    """The report; whether every answer of every round was a 200."""
    clean = True
    header = (f"{'case':<26} {'target':<8} {'CPU us/req':>10} {'(range)':>15} {'ok req/s':>9} "
              f"{'TTFB p50':>9} {'p99 ms':>7}  statuses")
    print("\n" + header + "\n" + "-" * len(header))
    for case, measured in rows:
        for target, rounds in measured.rounds.items():
            cpus = [r.cpu_us for r in rounds if r.cpu_us is not None]
            span = f"{min(cpus):,.0f}-{max(cpus):,.0f}" if cpus else "-"
            ttfb = measured.ttfb.get(target)
            results = [r.result for r in rounds]
            dirty = not all(r.clean for r in results)
            clean = clean and not dirty
            print(f"{case.name:<26} {target:<8} {_us(measured.median_cpu(target)):>10} "
                  f"{span:>15} {measured.median_rps(target):>9.1f} "
                  f"{_ms(ttfb and ttfb.ttfb_p50_ms):>9} {_ms(ttfb and ttfb.ttfb_p99_ms):>7}  "
                  f"{_statuses(results)}{'  <-- NOT ALL 200' if dirty else ''}")
            for result in results:
                for count, message in result.errors[:3]:
                    print(f"{'':<36}error x{count}: {message[:120]}")
        floor, gateway = measured.median_cpu("floor"), measured.median_cpu("gateway")
        paired = measured.paired_ratios()
        if floor and gateway and paired:
            ratio = statistics.median(paired)
            verdict = "meets" if ratio >= case.goal else "BELOW"
            print(f"{'':<26} floor/gateway CPU per request: {ratio:.2f} (median of the rounds' "
                  f"ratios; middle half {_middle_half(paired)}; ratio of the medians "
                  f"{floor / gateway:.2f})  goal >= {case.goal:.2f}: {verdict};  "
                  f"gateway/floor req/s: "
                  f"{measured.median_rps('gateway') / measured.median_rps('floor'):.2f}")
        upstream, ours = measured.ttfb.get("upstream"), measured.ttfb.get("gateway")
        if upstream and ours and upstream.ttfb_p50_ms is not None and ours.ttfb_p50_ms is not None:
            print(f"{'':<26} added TTFB over the upstream's: p50 "
                  f"{ours.ttfb_p50_ms - upstream.ttfb_p50_ms:+.2f} ms, p99 "
                  f"{ours.ttfb_p99_ms - upstream.ttfb_p99_ms:+.2f} ms")
        print()
    return clean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-z", "--duration", default="8s", help="hey -z per round (default 8s)")
    parser.add_argument("-c", "--concurrency", type=int, default=50,
                        help="hey -c per round (default 50)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds per target and case (default 5)")
    parser.add_argument("--ttfb-requests", type=int, default=2000,
                        help="requests of the time-to-first-byte run per target (default 2000; "
                             "0 skips it)")
    parser.add_argument("--warmup", default="1s",
                        help="hey -z warm-up per target and case, not measured (default 1s; 0 skips)")
    parser.add_argument("--floor", default=str(DEFAULT_FLOOR),
                        help=f"path to the floor proxy (default {DEFAULT_FLOOR})")
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
                             "starting one (point it at the fake: see --fake-port; its CPU is "
                             "not read)")
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
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    targets, servers = start_servers(args)
    by_name = {server.name: server for server in servers}
    idle_rss = {n: s.rss_mib() for n, s in by_name.items() if n != "fake-upstream"}
    rows: list[tuple[Case, Measured]] = []
    try:
        print(f"hey -z {args.duration} -c {args.concurrency}, {args.rounds} alternating rounds; "
              "targets: " + ", ".join(f"{t} {u}" for t, u in targets.items()), flush=True)
        for name in names:
            rows.append((CASES[name], measure(CASES[name], targets, by_name, args)))
        rss = {n: s.rss_mib() for n, s in by_name.items() if n != "fake-upstream"}
    finally:
        for server in reversed(servers):
            server.stop()

    clean = print_table(rows)
    print("RSS idle -> after the run: " + (", ".join(
        f"{n} {idle_rss[n] or 0:.0f} -> {v:.0f} MiB" for n, v in rss.items() if v) or "n/a"))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "duration": args.duration, "concurrency": args.concurrency, "rounds": args.rounds,
            "cases": {case.name: {
                "cpu_us_median": {t: m.median_cpu(t) for t in m.rounds},
                "ok_rps_median": {t: m.median_rps(t) for t in m.rounds},
                "floor_over_gateway_by_round": m.paired_ratios(),
                "rounds": {t: [{"cpu_us": r.cpu_us, "ok_rps": r.result.ok_rps,
                                "statuses": {str(k): v for k, v in r.result.statuses.items()}}
                               for r in rounds] for t, rounds in m.rounds.items()},
                "ttfb_ms": {t: {"p50": r.ttfb_p50_ms, "p99": r.ttfb_p99_ms}
                            for t, r in m.ttfb.items()}}
                for case, m in rows},
            "rss_mib": {"idle": idle_rss, "after": rss}}, indent=2))
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
