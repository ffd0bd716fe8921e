"""How many streams one gateway worker holds open at once, and what each costs in memory.

Starts the fake OpenCode Go upstream and one gateway worker on loopback, reads the gateway's
idle RSS, then opens `--streams` streamed chat requests (in batches of `--batch`) whose answers
the fake spreads over `--hold` seconds. Once every request has its answer's status line (or was
refused), it reads the RSS again: (open - idle) / streams is the memory one open stream costs.
A stream that got no status line at all within `--deadline` seconds is counted as queued: the
project wants none queued silently (a limit answers 503 with Retry-After instead).

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

    @property
    def waiting(self) -> int:
        return self.opened - sum(self.answered.values()) - sum(self.errors.values())


def _raise_file_limit(needed: int) -> None:
    """Each stream takes a socket in this script, two in the gateway (client and upstream) and
    one in the fake: each process needs two per stream at most, and inherits this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
    except (ValueError, OSError):
        raise SystemExit(f"need {needed} open files (ulimit -n is {soft}, hard {hard}); "
                         "raise it, or run as root") from None


def _request(port: int, number: int, hold: float) -> bytes:
    body = json.dumps({"model": "opencode-go/glm-5.1", "stream": True, "messages": [
        {"role": "user", "content": f"stream {number} [[fake: deltas=3 slow={hold / 3:.3f}]]"}]})
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
        return
    tally.opened += 1
    try:
        writer.write(_request(port, number, hold))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline)
        status = int(head.split(b" ", 2)[1])
        tally.answered[status] = tally.answered.get(status, 0) + 1
        if status != 200 and b"\nretry-after:" in head.lower():
            tally.retry_after += 1
        while await reader.read(65536):
            pass
        tally.finished += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
        tally.errors[type(exc).__name__] = tally.errors.get(type(exc).__name__, 0) + 1
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
        await asyncio.sleep(0.05)  # let the batch connect before the next one
        print(f"  opened {tally.opened}/{args.streams}, answered "
              f"{sum(tally.answered.values())}", flush=True)
    while tally.waiting > 0 and time.monotonic() - started < args.deadline:
        await asyncio.sleep(0.2)
    open_rss = gateway.rss_mib() or 0.0
    took = time.monotonic() - started
    await asyncio.gather(*tasks)
    return open_rss, took


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
    _raise_file_limit(2 * args.streams + 512)

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
    finally:
        for server in reversed(servers):
            server.stop()

    ok = tally.answered.get(200, 0)
    per_stream_kb = (open_rss - idle) * 1024 / ok if ok else None
    refused = sum(n for status, n in tally.answered.items() if status != 200)
    print(f"\nstreams asked          {args.streams}")
    print(f"connected              {tally.opened}")
    print(f"answered 200           {ok} (in {took:.1f} s)")
    print(f"refused                {refused} ({tally.retry_after} with Retry-After) "
          f"{dict(sorted(tally.answered.items()))}")
    print(f"queued silently        {tally.waiting if tally.waiting > 0 else 0}")
    print(f"errors                 {tally.errors or 'none'}")
    print(f"read to the end        {tally.finished}")
    print(f"gateway RSS            idle {idle:.1f} MiB, with the streams open {open_rss:.1f} MiB")
    if per_stream_kb is not None:
        print(f"memory per open stream {per_stream_kb:.1f} KB  (goal <= 64 KB; idle goal <= 80 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "streams": args.streams, "connected": tally.opened, "ok": ok, "refused": refused,
            "retry_after": tally.retry_after, "errors": tally.errors, "finished": tally.finished,
            "idle_rss_mib": idle, "open_rss_mib": open_rss, "per_stream_kb": per_stream_kb},
            indent=2))
    silent = tally.waiting > 0 or (refused and tally.retry_after < refused)
    return 1 if silent or tally.errors else 0


if __name__ == "__main__":
    sys.exit(main())
