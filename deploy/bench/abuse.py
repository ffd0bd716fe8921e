"""Hostile clients against a running gateway: each attack of the issue-26 pass, at full size or
small, with a verdict (held or not) and the figures it measured.

The gateway must run in front of the project's fake upstream (tests/fake_upstream.py), whose
`[[fake: …]]` directives script the streams the attacks need. Start both, then for example:

    python -m tests.fake_upstream --port 9100 &
    OPENCODE_GO_API_URL=http://127.0.0.1:9100/v1 OPENCODE_GO_API_KEY=sk-bench-0123456789abcdef \\
        python -m gateway serve --port 8000 &
    curl -X POST http://127.0.0.1:9100/_fake/limits \\
        -d '{"sk-bench-0123456789abcdef": {"rolling": 1e6, "weekly": 1e6, "monthly": 1e6}}'
    python deploy/bench/abuse.py --url http://127.0.0.1:8000 --pid $(pgrep -f 'gateway serve')
    python deploy/bench/abuse.py --url http://127.0.0.1:8000 --attack unread_streams --full

The key needs a real key's length: the gateway masks its key wherever it stands as a word in an
answer, so a one-letter key sends every chunk that holds that letter down the slow path (it made
a full-size run measure the redactor). The lifted limits let the full-size streams (1,024 of
them) be answered rather than refused with the fake's usage-limit 429.

Without --full every attack runs small (what tests/test_abuse.py does); `--json` prints the
results as JSON. `--pid` (the gateway's process id) adds its resident memory to the figures.
`--idle-timeout` and `--write-timeout` must match the gateway's `upstream.idle_timeout` and
`server.write_timeout` (the attacks that wait them out). `--count N` sets the size of the attacks
that have one (clients, streams, requests, objects), whatever --full says. Exit status 0 when
every attack held.

Attacks (full size / small):
    http2           prior-knowledge HTTP/2, receive window 0, 100 / 3 streams: no h2 session
    h2c_upgrade     an `Upgrade: h2c` request is answered in HTTP/1.1
    smuggling       Content-Length and Transfer-Encoding in one request: 400, connection closed
    big_headers     128 KiB of headers: 431
    header_flood    1,000 / 50 connections, each with ~55 KiB of headers: all answered
    pipelining      1,000 / 50 pipelined requests on one connection: all answered in order
    unread_streams  1,024 / 3 streamed requests whose clients never read (as many as the
                    default upstream.max_connections): requests meanwhile are answered within
                    the pool timeout, the streams end after the write timeout as client stalls
    nested_body     a 28 MB body of 500k objects / 60k objects: 413, /healthz stays quick
    many_tools      100k / 60k tools: refused, /healthz stays quick
    big_string      a 30 MB / 3 MB string in one message: served, /healthz stays quick
    big_lines       30 MB / 3 MB of tabs and line breaks in one message (text dense in
                    escapes, the most work per byte): served, /healthz stays quick
    hostile_bodies  500 / 40 malformed bodies: every one a 4xx, no 5xx
    hangups         200 / 5 streams hung up after 10 events: every one in the ledger
    idle_cut        a stream whose upstream goes silent past idle_timeout: charged
    url_secrets     the usage view's state "where" shows no password
    open_streams    3,000 / 20 slow streams open at once: /healthz answers, memory per stream
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODEL = "opencode-go/glm-5.1"
CHAT = "/v1/chat/completions"


class Target:
    def __init__(self, url: str, pid: int | None, idle_timeout: float, write_timeout: float,
                 healthz_ms: float = 100.0):
        self.healthz_ms = healthz_ms
        self.pool_timeout = 30.0
        self.url = url.rstrip("/")
        host, _, port = self.url.split("://", 1)[1].partition(":")
        self.host, self.port = host, int(port or 80)
        self.pid = pid
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.count: int | None = None  # --count: the size of an attack, overriding --full

    def size(self, full: bool, at_full: int, small: int) -> int:
        """How many clients, streams, requests or objects an attack uses."""
        if self.count is not None:
            return self.count
        return at_full if full else small

    def connect(self, timeout: float = 30, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect((self.host, self.port))
        return sock

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, path: str, body: bytes, timeout: float = 60) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def rss_mib(self) -> float | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def metric(self, name: str, labelled: str = "") -> float | None:
        """The sum of a /metrics series' samples whose labels hold `labelled` (None when
        /metrics did not answer in time)."""
        try:
            _, body = self.get("/metrics", timeout=10)
        except OSError:
            return None
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                   if line.startswith((name + " ", name + "{")) and labelled in line)

    def streams_in_flight(self) -> int | None:
        """Streams the gateway relays now (None when /metrics did not answer in time)."""
        live = self.metric("opencode_gateway_streams_in_flight")
        return None if live is None else int(live)

    def wait_streams(self, done, timeout: float) -> int:
        """Streams being relayed, once `done(streams)` holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.streams_in_flight()
            if live is not None and done(live) or time.monotonic() > deadline:
                return live
            time.sleep(0.2)

    def ledger(self) -> tuple[int, float]:
        """(requests, dollars) of today, from the usage view."""
        _, body = self.get("/v1/usage")
        rows = json.loads(body)["models_today"]
        return sum(r["requests"] for r in rows), sum(r["cost_usd"] for r in rows)

    def ledger_after(self, before: tuple[int, float], expected: int,
                     timeout: float = 10) -> tuple[int, float]:
        """The ledger's growth since `before`, once it counts `expected` more requests (the
        workers write it every state.sync_seconds) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            requests, dollars = self.ledger()
            grown = (requests - before[0], dollars - before[1])
            if grown[0] >= expected or time.monotonic() > deadline:
                return grown
            time.sleep(0.2)


def chat(text: str, stream: bool = False) -> bytes:
    return json.dumps({"model": MODEL, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


def request_head(path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def read_until_closed(sock: socket.socket, timeout: float = 15) -> bytes:
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return received
        if not chunk:
            return received
        received += chunk


def send_body(target: Target, path: str, body: bytes) -> bytes:
    """POST `body` over a raw socket, as much as the gateway takes; its answer."""
    with target.connect(timeout=120) as sock:
        try:
            sock.sendall(request_head(path, len(body), "Connection: close\r\n") + body)
        except OSError:
            pass  # refused before the whole body was sent
        return read_until_closed(sock, timeout=120)


def healthz_worst_while(target: Target, running: threading.Thread) -> float:
    """The slowest /healthz answer, in ms, while `running` is alive."""
    worst = 0.0
    while running.is_alive():
        started = time.monotonic()
        target.get("/healthz")
        worst = max(worst, time.monotonic() - started)
    return round(worst * 1000, 1)


def in_background(function, *args) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    return thread, result


# ---- the attacks: each (target, full) -> {"held": bool, figures...} ----

def http2(target: Target, full: bool) -> dict:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.settings
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    client.initiate_connection()
    body = chat("[[fake: deltas=20000]]", stream=True)
    for _ in range(target.size(full, 100, 3)):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, [(":method", "POST"), (":path", CHAT), (":scheme", "http"),
                                        (":authority", "g"), ("content-type", "application/json"),
                                        ("content-length", str(len(body)))])
        client.send_data(stream_id, body, end_stream=True)
    before = target.rss_mib()
    with target.connect() as sock:
        sock.sendall(client.data_to_send())
        received = read_until_closed(sock, timeout=5)
    try:
        events = client.receive_data(received)
    except Exception as exc:  # noqa: BLE001 - not HTTP/2 at all: no h2 session either
        events = [exc]
    answered = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    code = ended[0].error_code if ended else None
    return {"held": not answered and code == h2.errors.ErrorCodes.HTTP_1_1_REQUIRED,
            "h2_streams_answered": len(answered), "goaway": str(code),
            "rss_mib_before": before, "rss_mib_after": target.rss_mib()}


def h2c_upgrade(target: Target, full: bool) -> dict:
    with target.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: Upgrade, HTTP2-Settings"
                     b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        first = sock.recv(65536).split(b"\r\n", 1)[0].decode()
    return {"held": first.startswith("HTTP/1.1 200"), "status_line": first}


def smuggling(target: Target, full: bool) -> dict:
    body = chat("hi")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with target.connect() as sock:
        sock.sendall(request_head(CHAT, 4, "Transfer-Encoding: chunked\r\n") + chunked
                     + b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n")
        received = read_until_closed(sock)
    answers = received.count(b"HTTP/1.1 ")
    first = received.split(b"\r\n", 1)[0].decode()
    return {"held": first.startswith("HTTP/1.1 400") and answers == 1,
            "status_line": first, "answers_on_the_connection": answers}


def big_headers(target: Target, full: bool) -> dict:
    padding = "".join(f"X-Pad-{i}: {'x' * 4000}\r\n" for i in range(32))  # ~128 KiB
    with target.connect() as sock:
        try:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: g\r\n{padding}\r\n".encode())
        except OSError:
            pass
        first = read_until_closed(sock).split(b"\r\n", 1)[0].decode()
    return {"held": first.startswith("HTTP/1.1 431"), "status_line": first}


def header_flood(target: Target, full: bool) -> dict:
    padding = "".join(f"X-Flood-{i}: {'y' * 40}\r\n" for i in range(1000))  # ~55 KiB

    def one(_) -> str:
        with target.connect() as sock:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n{padding}"
                         "\r\n".encode())
            return read_until_closed(sock).split(b"\r\n", 1)[0].decode()

    with ThreadPoolExecutor(32) as pool:
        lines = list(pool.map(one, range(target.size(full, 1000, 50))))
    answered = sum(1 for line in lines if line.startswith("HTTP/1.1 200"))
    status, _ = target.get("/healthz")
    return {"held": answered == len(lines) and status == 200, "answered": answered,
            "sent": len(lines)}


def pipelining(target: Target, full: bool) -> dict:
    count = target.size(full, 1000, 50)
    with target.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n" * count
                     + b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
        received = read_until_closed(sock, timeout=60)
    answered = received.count(b"HTTP/1.1 200")
    return {"held": answered == count + 1, "answered": answered, "sent": count + 1}


class PeakMemory:
    """The gateway's largest resident memory, sampled every 0.2 s while the block runs."""

    def __init__(self, target: Target):
        self.target, self.peak, self._done = target, target.rss_mib(), threading.Event()

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            rss = self.target.rss_mib()
            if rss is not None and (self.peak is None or rss > self.peak):
                self.peak = rss

    def __enter__(self) -> "PeakMemory":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()


def unread_streams(target: Target, full: bool) -> dict:
    count = target.size(full, 1024, 3)
    # ~6 MB each: more than the socket buffers on both ends hold (Linux lets a send buffer grow
    # to 4 MB), so the stream stalls. On the fake's cheapest model (a thousand of them cost
    # more than the fake key's default $12 rolling limit: lift it with POST /_fake/limits).
    body = json.dumps({"model": "opencode-go/deepseek-v4-flash", "stream": True, "messages": [
        {"role": "user", "content": "[[fake: deltas=40000]]"}]}).encode()
    requests = "opencode_gateway_requests_total"
    ended_before = {status: target.metric(requests, f'status="{status}"') or 0
                    for status in (499, 502)}
    refused_before = target.metric("opencode_gateway_upstream_pool_timeouts_total") or 0
    rss_before = target.rss_mib()
    sockets, probes = [], []
    with PeakMemory(target) as memory:
        for _ in range(count):
            sock = target.connect(receive_buffer=4096)
            sock.sendall(request_head(CHAT, len(body)) + body)
            sockets.append(sock)
        stalled = target.wait_streams(lambda live: live >= count, timeout=30 + count / 20)
        started = time.monotonic()
        # Another user's requests, one after another, while the stalled streams hold the
        # upstream connections: each waits for a free one up to pool_timeout, then gets 503.
        # Each stalled stream ends once the write timeout passes (its upstream request closed).
        live = stalled
        while live != 0 and time.monotonic() < started + target.write_timeout + 60:
            probe_started = time.monotonic()
            try:
                status, _ = target.post(CHAT, chat("hi"), timeout=target.pool_timeout + 30)
            except OSError:
                status = None
            probes.append((status, round(time.monotonic() - probe_started, 2)))
            live = target.streams_in_flight()
        live = target.wait_streams(lambda live: live == 0, timeout=30)
        freed = round(time.monotonic() - started, 1)
    for sock in sockets:
        sock.close()
    after_started = time.monotonic()
    after_status, _ = target.post(CHAT, chat("hi"))
    after = round(time.monotonic() - after_started, 2)
    ended = {status: int((target.metric(requests, f'status="{status}"') or 0) - before)
             for status, before in ended_before.items()}
    refused = int((target.metric("opencode_gateway_upstream_pool_timeouts_total") or 0)
                  - refused_before)
    slowest = max((seconds for _, seconds in probes), default=None)
    # Either way (200 or 503), not for as long as the stalls last; the stalls are client
    # stalls (499), never blamed on the upstream (502).
    held = (bool(probes) and all(status in (200, 503) for status, _ in probes)
            and slowest < target.pool_timeout + 5 and live == 0 and ended[499] >= count
            and ended[502] == 0 and after_status == 200)
    return {"held": held, "streams": count, "stalled_at_once": stalled,
            "probes": len(probes), "probe_statuses": sorted({str(s) for s, _ in probes}),
            "probe_median_seconds": sorted(seconds for _, seconds in probes)[len(probes) // 2]
            if probes else None,
            "probe_slowest_seconds": slowest, "pool_timeouts": refused,
            "ended_499": ended[499], "ended_502": ended[502],
            "seconds_until_all_ended": freed, "after_status": after_status,
            "after_seconds": after, "rss_mib_before": rss_before, "rss_mib_peak": memory.peak,
            "rss_mib_after": target.rss_mib()}


def _refused_quickly(target: Target, body: bytes, path: str = CHAT,
                     refused: tuple[str, ...] = ("413", "400")) -> dict:
    sender, outcome = in_background(send_body, target, path, body)
    worst = healthz_worst_while(target, sender)
    sender.join()
    first = outcome[0].split(b"\r\n", 1)[0].decode() if outcome and outcome[0] else ""
    return {"held": first[9:12] in refused and worst < target.healthz_ms, "status_line": first,
            "healthz_worst_ms": worst, "body_mb": round(len(body) / 1e6, 1)}


def nested_body(target: Target, full: bool) -> dict:
    part = json.dumps({"type": "text", "text": "a" * 40, "x": {"y": 1}})
    objects = target.size(full, 500_000, 60_000)
    body = (b'{"model": "%s", "messages": [{"role": "user", "content": [' % MODEL.encode()
            + ",".join([part] * (objects // 2)).encode() + b"]}]}")
    return _refused_quickly(target, body)


def many_tools(target: Target, full: bool) -> dict:
    tool = json.dumps({"type": "function", "function": {"name": "t", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}}}}})
    count = target.size(full, 100_000, 60_000)
    body = (b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "tools": ['
            % MODEL.encode() + ",".join([tool] * count).encode() + b"]}")
    return _refused_quickly(target, body)


def big_string(target: Target, full: bool) -> dict:
    body = chat("a" * target.size(full, 30_000_000, 3_000_000))
    return _refused_quickly(target, body, refused=("200",))


def big_lines(target: Target, full: bool) -> dict:
    body = chat("\t\n" * target.size(full, 7_500_000, 750_000))
    return _refused_quickly(target, body, refused=("200",))


def hostile_bodies(target: Target, full: bool) -> dict:
    shapes = [b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"model": 5}',
              b'{"model": "opencode-go/glm-5.1", "messages": "x"}',
              b'{"model": "opencode-go/glm-5.1", "messages": [{"role": 1}]}',
              b'{"model": "' + b"m" * 5000 + b'", "messages": []}',
              b'{"a":' * 5000 + b"1" + b"}" * 5000,
              b'{"model": "opencode-go/glm-5.1", "messages": [], "max_tokens": "lots"}']
    randomness = random.Random(26)
    bodies = [randomness.choice(shapes) for _ in range(target.size(full, 500, 40))]
    bodies += [bytes(randomness.getrandbits(8) for _ in range(200)) for _ in range(20)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda body: target.post(CHAT, body)[0], bodies))
    server_errors = [s for s in statuses if s >= 500]
    return {"held": not server_errors and all(400 <= s < 500 for s in statuses),
            "sent": len(statuses), "5xx": len(server_errors)}


def hangups(target: Target, full: bool) -> dict:
    count = target.size(full, 200, 5)
    before = target.ledger()
    body = chat("[[fake: deltas=400 slow=0.02]]", stream=True)

    def one(_) -> None:
        with target.connect() as sock:
            sock.sendall(request_head(CHAT, len(body)) + body)
            received = b""
            while received.count(b"\n\n") < 10:
                chunk = sock.recv(65536)
                if not chunk or not received.startswith(b"HTTP/1.1 200") and b"\r\n\r\n" in \
                        (received := received + chunk):
                    break  # not a stream: nothing to hang up on

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(one, range(count)))
    recorded, dollars = target.ledger_after(before, count)
    return {"held": recorded >= count and dollars > 0, "hung_up": count,
            "recorded": recorded, "recorded_usd": round(dollars, 6)}


def idle_cut(target: Target, full: bool) -> dict:
    before = target.ledger()
    silence = target.idle_timeout + 2
    status, answer = target.post(CHAT, chat(f"[[fake: deltas=3 slow={silence:g}]]", stream=True),
                                 timeout=silence * 3 + 30)
    recorded, dollars = target.ledger_after(before, 1)
    return {"held": recorded >= 1 and dollars > 0 and b"idle_timeout" in answer,
            "status": status, "recorded": recorded, "recorded_usd": round(dollars, 6)}


def url_secrets(target: Target, full: bool) -> dict:
    import re
    _, body = target.get("/v1/usage")
    where = json.loads(body)["state"]["where"]
    leaked = re.search(r"(password|pass|key|token)=(?!\*\*\*)[^&]+|:(?!\*\*\*@)[^:/@]+@", where)
    return {"held": leaked is None, "where": where}


def open_streams(target: Target, full: bool) -> dict:
    count = target.size(full, 3000, 20)
    body = chat("[[fake: deltas=40 slow=0.5]]", stream=True)
    before = target.rss_mib()
    sockets = []
    for _ in range(count):
        sock = target.connect()
        sock.sendall(request_head(CHAT, len(body)) + body)
        sockets.append(sock)
    target.wait_streams(lambda live: live >= count, timeout=60)
    started = time.monotonic()
    status, _ = target.get("/healthz")
    healthz = round((time.monotonic() - started) * 1000, 1)
    during = target.rss_mib()
    for sock in sockets:
        sock.close()
    per_stream = None if before is None or during is None else \
        round((during - before) * 1024 / count, 1)
    return {"held": status == 200, "streams": count, "healthz_ms": healthz,
            "rss_mib_before": before, "rss_mib_during": during, "kib_per_stream": per_stream}


ATTACKS = {attack.__name__: attack for attack in (
    http2, h2c_upgrade, smuggling, big_headers, header_flood, pipelining, nested_body,
    many_tools, big_string, big_lines, hostile_bodies, url_secrets, hangups, idle_cut,
    open_streams, unread_streams)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the gateway's root URL")
    parser.add_argument("--attack", action="append", choices=sorted(ATTACKS),
                        help="run this attack (repeatable); default: all")
    parser.add_argument("--full", action="store_true", help="full size (default: small)")
    parser.add_argument("--count", type=int,
                        help="the size of the attacks that have one (overrides --full)")
    parser.add_argument("--pid", type=int, help="the gateway's process id (for its memory)")
    parser.add_argument("--idle-timeout", type=float, default=300.0,
                        help="the gateway's upstream.idle_timeout (default 300)")
    parser.add_argument("--write-timeout", type=float, default=30.0,
                        help="the gateway's server.write_timeout (default 30)")
    parser.add_argument("--pool-timeout", type=float, default=30.0,
                        help="the gateway's upstream.pool_timeout (default 30)")
    parser.add_argument("--healthz-ms", type=float, default=100.0,
                        help="the slowest /healthz answer an attack may cause (default 100)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    target = Target(args.url, args.pid, args.idle_timeout, args.write_timeout, args.healthz_ms)
    target.pool_timeout = args.pool_timeout
    target.count = args.count
    results = {}
    for name in args.attack or list(ATTACKS):
        started = time.monotonic()
        try:
            results[name] = ATTACKS[name](target, args.full)
        except Exception as exc:  # noqa: BLE001 - an attack that crashed did not hold
            results[name] = {"held": False, "error": f"{type(exc).__name__}: {exc}"}
        results[name]["seconds"] = round(time.monotonic() - started, 1)
        if not args.json:
            figures = ", ".join(f"{k}={v}" for k, v in results[name].items() if k != "held")
            print(f"{name:<15} {'held' if results[name]['held'] else 'FAILED':<7} {figures}",
                  flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(result["held"] for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
