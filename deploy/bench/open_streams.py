"""How many streams one gateway worker holds open at once, and what each costs in memory.

Starts the fake OpenCode Go upstream and one gateway worker on loopback, reads the gateway's
idle RSS, then opens `--streams` streamed chat requests, `--batch` at a time (the next batch once
the last one has its answers' status lines), whose answers the fake spreads over `--hold`
seconds. Once every request has its answer's status line (or was refused), it reads the RSS
again: (open - idle) / streams held is the memory one open stream costs.
A stream that got no status line at all within `--deadline` seconds is counted as queued: the
project wants none queued silently. A worker takes what its open-file limit holds
(`server.max_streams`, two descriptors a stream) and answers the rest with 503 and Retry-After;
the script runs the gateway under the largest open-file limit it may set (its hard limit).

    python deploy/bench/open_streams.py [--streams 10000] [--hold 30] [--batch 500]

The project's goal (issue 28): 10,000 open streams per worker, <= 64 KB each, idle RSS <= 80 MB.
The tests run it tiny (tests/test_bench.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hey import Server, free_port, http

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tally:
    opened: int = 0
    answered: dict[int, int] = field(default_factory=dict)   # status line received, by status
    retry_after: int = 0          # refusals that said when to come back
    errors: dict[str, int] = field(default_factory=dict)
    finished: int = 0             # streams read to their end
    settled: int = 0              # streams with a status line, or that failed before one

    @property
    def waiting(self) -> int:
        return self.opened - sum(self.answered.values()) - sum(self.errors.values())


def _lift_file_limit(needed: int) -> int:
    """The soft open-file limit raised to the hard one (the fake and the gateway inherit it).

    Each stream takes a socket in this script and in the fake, two in the gateway (client and
    upstream): the gateway takes what its limit holds and refuses the rest with 503 (its
    `server.max_streams`), but this script and the fake must hold one per stream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"need {needed} open files (ulimit -n is {soft}, hard {hard}); "
                         "raise the hard limit, or ask for fewer streams")
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _request(port: int, number: int, hold: float) -> bytes:
    # deltas=3: the fake sends 7 events (role, 3 deltas, finish, usage, [DONE]), `slow` apart.
    body = json.dumps({"model": "opencode-go/glm-5.1", "stream": True, "messages": [
        {"role": "user", "content": f"stream {number} [[fake: deltas=3 slow={hold / 6:.3f}]]"}]})
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nUser-Agent: open-streams-bench/1\r\n"
            f"x-opencode-session: bench-{number}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()


async def _one_stream(port: int, number: int, hold: float, tally: Tally,
                      deadline: float) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        tally.errors[type(exc).__name__] = tally.errors.get(type(exc).__name__, 0) + 1
        tally.settled += 1
        return
    tally.opened += 1
    settled = False
    try:
        writer.write(_request(port, number, hold))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline)
        settled = True
        tally.settled += 1
        status = int(head.split(b" ", 2)[1])
        tally.answered[status] = tally.answered.get(status, 0) + 1
        if status != 200 and b"\nretry-after:" in head.lower():
            tally.retry_after += 1
        while await reader.read(65536):
            pass
        tally.finished += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
        tally.errors[type(exc).__name__] = tally.errors.get(type(exc).__name__, 0) + 1
        if not settled:
            tally.settled += 1
    finally:
        writer.close()


async def _open_all(port: int, args: argparse.Namespace, tally: Tally,
                    gateway: Server) -> tuple[float, float]:
    """Open every stream; the gateway's RSS (MiB) once all have answered, and the time it took."""
    started = time.monotonic()
    tasks = []
    for first in range(0, args.streams, args.batch):
        for number in range(first, min(first + args.batch, args.streams)):
            tasks.append(asyncio.create_task(_one_stream(port, number, args.hold, tally,
                                                         args.deadline)))
        # The next batch once this one has its status lines: clients arriving as fast as the
        # worker answers them. Thousands of connections in the same second overflow any listen
        # backlog, and the kernel's SYN cookies then reset some of them before the gateway
        # could see them.
        while tally.settled < len(tasks) and time.monotonic() - started < args.deadline:
            await asyncio.sleep(0.02)
        print(f"  opened {tally.opened}/{args.streams}, answered "
              f"{sum(tally.answered.values())}", flush=True)
    while tally.waiting > 0 and time.monotonic() - started < args.deadline:
        await asyncio.sleep(0.2)
    open_rss = gateway.rss_mib() or 0.0
    took = time.monotonic() - started
    await asyncio.gather(*tasks)
    return open_rss, took


def _gateway_counts(port: int) -> dict[str, int]:
    """The gateway's stream cap and refusals, from its /metrics."""
    status, body = http("GET", f"http://127.0.0.1:{port}/metrics")
    counted = {}
    for line in body.decode().splitlines() if status == 200 else ():
        for name in ("max_streams", "streams_refused_total"):
            if line.startswith(f"opencode_gateway_{name} "):
                counted[name] = int(float(line.split()[1]))
    return counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10_000, help="streams to hold open")
    parser.add_argument("--hold", type=float, default=30.0,
                        help="seconds each answer takes (default 30)")
    parser.add_argument("--batch", type=int, default=500, help="streams opened at once")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="seconds a stream may wait for its status line (default 60)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    open_files = _lift_file_limit(args.streams + 512)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCODE_GO_", "GATEWAY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    state = tempfile.mkdtemp(prefix="bench-streams-")
    config = Path(state) / "gateway.yaml"
    # One upstream connection per open stream: the cap is the thing measured, not a queue.
    config.write_text(f"upstream:\n  max_connections: {args.streams + 100}\n"
                      "server:\n  access_log: false\n")
    servers: list[Server] = []
    try:
        fake_port = free_port()
        fake = Server("fake-upstream", [sys.executable, "-m", "tests.fake_upstream", "--host",
                                        "127.0.0.1", "--port", str(fake_port), "--no-record"],
                      cwd=REPO, env=env, port=fake_port)
        servers.append(fake)
        fake.wait_ready(lambda: http("GET", f"http://127.0.0.1:{fake_port}/_fake/stats")[0] == 200)
        port = free_port()
        gateway = Server("gateway", [sys.executable, "-m", "gateway", "serve", "--port", str(port),
                                     "--config", str(config)], cwd=REPO,
                         env={**env, "OPENCODE_GO_API_URL": f"http://127.0.0.1:{fake_port}/v1",
                              "OPENCODE_GO_API_KEY": "bench", "XDG_STATE_HOME": state},
                         port=port)
        servers.append(gateway)
        gateway.wait_ready(lambda: http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200)
        idle = gateway.rss_mib() or 0.0
        tally = Tally()
        print(f"gateway idle RSS {idle:.1f} MiB; opening {args.streams} streams "
              f"held {args.hold:g} s each ...", flush=True)
        open_rss, took = asyncio.run(_open_all(port, args, tally, gateway))
        counted = _gateway_counts(port)
    finally:
        for server in reversed(servers):
            server.stop()

    ok = tally.answered.get(200, 0)
    per_stream_kb = (open_rss - idle) * 1024 / ok if ok else None
    refused = sum(n for status, n in tally.answered.items() if status != 200)
    print(f"\nopen-file limit        {open_files} (the gateway takes "
          f"{counted.get('max_streams', '?')} streams at once)")
    print(f"streams asked          {args.streams}")
    print(f"connected              {tally.opened}")
    print(f"answered 200           {ok} (in {took:.1f} s)")
    print(f"refused                {refused} ({tally.retry_after} with Retry-After) "
          f"{dict(sorted(tally.answered.items()))}; the gateway counted "
          f"{counted.get('streams_refused_total', '?')}")
    print(f"queued silently        {tally.waiting if tally.waiting > 0 else 0}")
    print(f"errors                 {tally.errors or 'none'}")
    print(f"read to the end        {tally.finished}")
    print(f"gateway RSS            idle {idle:.1f} MiB, with the streams open {open_rss:.1f} MiB")
    if per_stream_kb is not None:
        print(f"memory per open stream {per_stream_kb:.1f} KB  (goal <= 64 KB; idle goal <= 80 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "open_files": open_files, "max_streams": counted.get("max_streams"),
            "refused_counted": counted.get("streams_refused_total"),
            "streams": args.streams, "connected": tally.opened, "ok": ok, "refused": refused,
            "retry_after": tally.retry_after, "errors": tally.errors, "finished": tally.finished,
            "idle_rss_mib": idle, "open_rss_mib": open_rss, "per_stream_kb": per_stream_kb},
            indent=2))
    silent = tally.waiting > 0 or (refused and tally.retry_after < refused)
    return 1 if silent or tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
