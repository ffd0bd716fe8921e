"""What the load scripts share: starting servers on loopback, and running and reading `hey`.

Used by deploy/bench/compare_floor.py (gateway against the floor proxy) and
deploy/loadtest/run.py (the gateway's load report and latency chart). `hey` prints either its
summary or, with `-o csv`, one line per answered request; `run_hey` reads the first,
`run_hey_csv` the second.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def http(method: str, url: str, body: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer bench"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Server:
    """A server process this script started, in its own process group, logging to a file."""

    def __init__(self, name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], port: int):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        self.process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, probe, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with code {self.process.returncode}:\n"
                                 f"{self.log_tail()}")
            try:
                if probe():
                    return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not become ready on port {self.port} in {timeout:.0f} s "
                         f"({last}):\n{self.log_tail()}")

    def _tree(self) -> list[int]:
        """The process and its descendants (hypercorn's workers) now."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
        pids, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(children.get(pid, ()))
        return pids

    def rss_mib(self) -> float | None:
        """Resident memory of the process and its descendants (workers), in MiB."""
        try:
            total_kib = 0
            for pid in self._tree():
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
            return total_kib / 1024
        except OSError:
            return None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process and its live descendants have used so far.

        The workers live as long as the server, so the difference of two readings around a
        load run is what serving that load cost, wherever the work landed.
        """
        ticks = 0
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / _CLOCK_TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self.log.close()
        os.unlink(self.log.name)


@dataclass
class Result:
    rps: float = 0.0                 # hey's Requests/sec: every answer and error counted
    total_secs: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    # Per answered request (run_hey_csv only), in the order hey finished them.
    latencies_ms: list[float] = field(default_factory=list)
    first_byte_ms: list[float] = field(default_factory=list)
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None

    @property
    def ok_rps(self) -> float:
        return self.statuses.get(200, 0) / self.total_secs if self.total_secs else 0.0

    @property
    def clean(self) -> bool:
        return not self.errors and set(self.statuses) <= {200}


def parse_hey(output: str) -> Result:
    result = Result()
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result.rps = float(m.group(1))
    if m := re.search(r"Total:\s+([\d.]+) secs", output):
        result.total_secs = float(m.group(1))
    if m := re.search(r"50%+ in ([\d.]+) secs", output):
        result.p50_ms = float(m.group(1)) * 1000
    if m := re.search(r"99%+ in ([\d.]+) secs", output):
        result.p99_ms = float(m.group(1)) * 1000
    section = None
    for line in output.splitlines():
        if line.startswith("Status code distribution:"):
            section = "status"
        elif line.startswith("Error distribution:"):
            section = "error"
        elif section and (m := re.match(r"\s+\[(\d+)\]\s+(.*)", line)):
            if section == "status":
                result.statuses[int(m.group(1))] = int(m.group(2).split()[0])
            else:
                result.errors.append((int(m.group(1)), m.group(2).strip()))
        elif line.strip() and not line.startswith(" "):
            section = None
    return result


def _hey_command(url: str, body: str, concurrency: int, *load: str,
                 headers: tuple[str, ...] = ()) -> list[str]:
    extra = [arg for header in headers for arg in ("-H", header)]
    return ["hey", *load, "-c", str(concurrency), "-m", "POST", "-T", "application/json",
            "-H", "Authorization: Bearer bench", *extra, "-d", body, url]


def run_hey(url: str, body: str, duration: str, concurrency: int) -> Result:
    done = subprocess.run(_hey_command(url, body, concurrency, "-z", duration),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hey failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_hey(done.stdout)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not sorted_values:
        return None
    rank = min(max(math.ceil(fraction * len(sorted_values)), 1), len(sorted_values))
    return sorted_values[rank - 1]


def parse_hey_csv(output: str, requests: int) -> Result:
    """A Result from `hey -n REQUESTS -o csv`: one row per answered request.

    hey leaves transport errors (refused, reset, timed out) out of its CSV, so they are the
    requests that have no row; the CSV cannot say which errors they were.
    """
    result = Result()
    end = 0.0
    for row in csv.DictReader(io.StringIO(output)):
        seconds = float(row["response-time"])
        result.latencies_ms.append(seconds * 1000)
        # From the request written to the first byte of the answer: what a stream's reader
        # waits before anything shows.
        result.first_byte_ms.append(float(row["Response-delay"]) * 1000)
        status = int(row["status-code"])
        result.statuses[status] = result.statuses.get(status, 0) + 1
        end = max(end, float(row["offset"]) + seconds)
    missing = requests - len(result.latencies_ms)
    if missing > 0:
        result.errors.append((missing, "transport errors (no answer; hey's CSV does not say "
                                       "which: rerun with compare_floor.py to see them)"))
    result.total_secs = end
    result.rps = requests / end if end else 0.0
    ordered_delays = sorted(result.first_byte_ms)
    result.ttfb_p50_ms = percentile(ordered_delays, 0.50)
    result.ttfb_p99_ms = percentile(ordered_delays, 0.99)
    ordered = sorted(result.latencies_ms)
    result.p50_ms = percentile(ordered, 0.50)
    result.p99_ms = percentile(ordered, 0.99)
    return result


def run_hey_csv(url: str, body: str, requests: int, concurrency: int,
                headers: tuple[str, ...] = ()) -> Result:
    done = subprocess.run(_hey_command(url, body, concurrency, "-n", str(requests), "-o", "csv",
                                       headers=headers),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hey failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_hey_csv(done.stdout, requests)
