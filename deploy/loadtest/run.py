"""Load-test the gateway with hey and write a report and a latency chart.

One command, from the repository root:

    python deploy/loadtest/run.py [--workers 2] [-n 5000] [-c 50] [--out deploy/loadtest/out]

starts the project's fake OpenCode Go upstream (`python -m tests.fake_upstream --no-record`,
which answers at once) and the gateway (`opencode-gateway serve --workers N`) on loopback, then
runs `hey -n N -c C -o csv` for three cases:

    non-stream     opencode-go/glm-5.1, a whole answer (pass-through)
    stream         opencode-go/glm-5.1, a 50-delta stream (pass-through)
    translated     opencode-go/minimax-m2.7 to an OpenAI client: Anthropic upstream, 50 deltas,
                   translated both ways

and writes into the output directory `report.md` (requests/s, p50/p90/p99, errors, status
codes, the gateway's peak RSS, and its own /metrics count next to hey's), `latency.png` (the
latency distribution of each case) and `results.json`. Because the upstream is instant, the
figures are the gateway's own cost on this machine, not OpenCode Go's latency.

Needs `hey` (apt-get install -y hey) and matplotlib (pip install -e '.[loadtest]').
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "bench"))

from compare_floor import CASES, start_servers  # noqa: E402  (the same workloads as the bench)
from hey import Result, Server, http, percentile, run_hey_csv  # noqa: E402

DEFAULT_OUT = REPO / "deploy" / "loadtest" / "out"
CASE_TITLES = {
    "non-stream": "non-stream (pass-through)",
    "stream": "stream, 50 deltas (pass-through)",
    "translated": "translated stream, 50 deltas",
}


class PeakRSS:
    """Samples a server's resident memory (workers included) while a case runs."""

    def __init__(self, server: Server, every: float = 0.2):
        self._server, self._every = server, every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._server.rss_mib() or 0.0)
            self._stop.wait(self._every)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def metrics_count(root: str) -> dict[str, float]:
    """requests_total by status from the gateway's /metrics (all workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(root + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "opencode_gateway_requests_total":
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0.0) + sample.value
    return counts


def _machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs{f' ({cpu})' if cpu else ''}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(result: Result, fraction: float) -> float | None:
    return percentile(sorted(result.latencies_ms), fraction)


def write_report(path: Path, args, rows: list[tuple[str, Result, float]], idle_rss: float | None,
                 counted: dict[str, float], answered: int, chart: str) -> str:
    lines = [
        "# Gateway load test",
        "",
        f"`python deploy/loadtest/run.py --workers {args.workers} -n {args.requests} "
        f"-c {args.concurrency}` on {datetime.now(timezone.utc):%Y-%m-%d}, {_machine()}. "
        "hey, the gateway and the fake upstream share the machine; the fake answers at once, so "
        "the latencies are the gateway's own (plus hey's and the fake's) on loopback.",
        "",
        "| case | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | status codes "
        "| gateway RSS peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, result, peak in rows:
        errors = sum(count for count, _ in result.errors)
        statuses = ", ".join(f"{code}: {count}" for code, count in sorted(result.statuses.items()))
        worst = max(result.latencies_ms) if result.latencies_ms else None
        lines.append(
            f"| {CASE_TITLES[name]} | {args.requests} | {result.rps:.0f} | {_ms(result.p50_ms)} "
            f"| {_ms(_pct(result, 0.90))} | {_ms(result.p99_ms)} | {_ms(worst)} | {errors} "
            f"| {statuses or 'none'} | {peak:.0f} MiB |")
    lines += [
        "",
        f"Gateway RSS at rest before the load: {idle_rss:.0f} MiB ("
        + ("one process" if args.workers == 1 else
           f"{args.workers} workers and the process that started them") + ")."
        if idle_rss else "",
        f"The gateway's own `/metrics` (all workers) counted {counted.get('200', 0):.0f} "
        f"answers with status 200; the clients received {answered} (measured runs, warm-ups "
        "and one check request per case).",
        "",
        f"![Latency distribution per case]({chart})",
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def draw_chart(path: Path, rows: list[tuple[str, Result, float]], subtitle: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (hist_ax, pct_ax) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c")
    all_ms = [ms for _, result, _ in rows for ms in result.latencies_ms if ms > 0]
    # hey reports times to 0.1 ms: bins narrower than that near 1 ms would show a comb.
    bins = np.geomspace(max(min(all_ms), 1.0), max(max(all_ms), 2.0), 45)
    for (name, result, _), color in zip(rows, colors):
        latencies = np.asarray(result.latencies_ms)
        if latencies.size == 0:
            continue
        label = f"{CASE_TITLES[name]}: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
        hist_ax.hist(np.clip(latencies, bins[0], None), bins=bins, histtype="step",
                     linewidth=1.8, color=color)
        ordered = np.sort(latencies)
        ranks = np.arange(1, ordered.size + 1) / ordered.size * 100
        pct_ax.plot(ranks, ordered, color=color, linewidth=1.8, label=label)
        for fraction, marker in ((0.5, "o"), (0.99, "s")):
            pct_ax.plot(fraction * 100, np.percentile(latencies, fraction * 100), marker,
                        color=color, markersize=6)
    hist_ax.set_xscale("log")
    hist_ax.set_xlabel("latency per request (ms, log scale)")
    hist_ax.set_ylabel("requests")
    hist_ax.set_title("How latencies are spread")
    hist_ax.grid(True, which="both", alpha=0.25)
    pct_ax.set_yscale("log")
    pct_ax.set_xlim(0, 100)
    pct_ax.set_xlabel("percentile of requests (circle p50, square p99)")
    pct_ax.set_ylabel("latency (ms, log scale)")
    pct_ax.set_title("Latency by percentile")
    pct_ax.legend(fontsize=8, loc="upper left")
    pct_ax.grid(True, which="both", alpha=0.25)
    fig.suptitle(f"opencode-gateway under hey: {subtitle}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="gateway workers (default 2)")
    parser.add_argument("-n", "--requests", type=int, default=5000,
                        help="requests per case (default 5000)")
    parser.add_argument("-c", "--concurrency", type=int, default=50,
                        help="hey -c, concurrent clients (default 50)")
    parser.add_argument("--warmup", type=int, default=500,
                        help="requests per case before the measured run, not reported (default 500)")
    parser.add_argument("--cases", default=",".join(CASE_TITLES),
                        help=f"comma-separated subset of {', '.join(CASE_TITLES)}")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="directory for report.md, latency.png, results.json "
                             "(default deploy/loadtest/out)")
    args = parser.parse_args(argv)

    if not shutil.which("hey"):
        print("hey is not installed: `apt-get install -y hey` (Debian/Ubuntu), or "
              "`go install github.com/rakyll/hey@latest`", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is missing: pip install -e '.[loadtest]'", file=sys.stderr)
        return 2
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASE_TITLES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASE_TITLES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    servers_args = argparse.Namespace(gateway_only=True, floor_only=False, fake_port=None,
                                      gateway_url=None, gateway_cmd=None, workers=args.workers,
                                      floor=None)
    targets, servers = start_servers(servers_args)
    gateway = next(server for server in servers if server.name == "gateway")
    url = targets["gateway"]
    root = url.rsplit("/v1/", 1)[0]
    rows: list[tuple[str, Result, float]] = []
    answered = 0  # 200s the clients received, to hold against the gateway's own count
    try:
        time.sleep(0.5)  # let every worker finish starting before measuring memory at rest
        idle_rss = gateway.rss_mib()
        print(f"gateway {root} with {args.workers} worker(s); hey -n {args.requests} "
              f"-c {args.concurrency} per case", flush=True)
        for name in names:
            body = CASES[name].gateway_body
            status, answer = http("POST", url, body)
            if status != 200:
                raise SystemExit(f"{name}: the gateway answered {status} before the load: "
                                 f"{answer[:300].decode(errors='replace')}")
            answered += 1
            if args.warmup:
                warm = run_hey_csv(url, body, max(args.warmup, args.concurrency), args.concurrency)
                answered += warm.statuses.get(200, 0)
            print(f"  {CASE_TITLES[name]} ...", flush=True)
            with PeakRSS(gateway) as rss:
                result = run_hey_csv(url, body, args.requests, args.concurrency)
            rows.append((name, result, rss.peak))
            answered += result.statuses.get(200, 0)
            errors = sum(count for count, _ in result.errors)
            print(f"    {result.rps:.0f} req/s, p50 {_ms(result.p50_ms)} ms, p99 "
                  f"{_ms(result.p99_ms)} ms, statuses {result.statuses}, errors {errors}",
                  flush=True)
        counted = metrics_count(root)
    finally:
        for server in reversed(servers):
            server.stop()

    subtitle = (f"{args.workers} worker(s), hey -n {args.requests} -c {args.concurrency}, "
                f"fake upstream on loopback, {os.cpu_count()} CPUs")
    draw_chart(out / "latency.png", rows, subtitle)
    report = write_report(out / "report.md", args, rows, idle_rss, counted, answered,
                          "latency.png")
    (out / "results.json").write_text(json.dumps({
        "workers": args.workers, "requests": args.requests, "concurrency": args.concurrency,
        "idle_rss_mib": idle_rss, "metrics_requests_total": counted,
        "cases": {name: {"rps": r.rps, "ok_rps": r.ok_rps, "total_secs": r.total_secs,
                         "p50_ms": r.p50_ms, "p90_ms": _pct(r, 0.90), "p99_ms": r.p99_ms,
                         "statuses": {str(k): v for k, v in r.statuses.items()},
                         "errors": r.errors, "rss_peak_mib": peak}
                  for name, r, peak in rows}}, indent=2))
    print("\n" + report)
    print(f"written: {out / 'report.md'}, {out / 'latency.png'}, {out / 'results.json'}")
    return 0 if all(result.clean for _, result, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
