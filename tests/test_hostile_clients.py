"""Hostile clients and cut streams (issue 26), over real sockets against the real gateway: the
HTTP/2 refusal, request framing, header and body bounds, clients that stop reading, the wait for
a free upstream connection, what the ledger records of cut streams, and secrets in URLs."""
from __future__ import annotations

import json
import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.errors
import pytest

from tests.http_requests import post_bytes

CHAT = "/v1/chat/completions"


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        received += chunk
    return received


def chat_body(text: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "opencode-go/glm-5.1", "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


# --- HTTP/2: the gateway speaks HTTP/1.1 only ---------------------------------------------------

def test_a_prior_knowledge_http2_client_is_told_to_use_http11(gateway):
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, [(":method", "GET"), (":path", "/healthz"),
                                    (":scheme", "http"), (":authority", "g")], end_stream=True)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(client.data_to_send())
        received = read_all(sock)
    events = client.receive_data(received)
    assert not [e for e in events if isinstance(e, h2.events.ResponseReceived)]  # no h2 session
    [ended] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended.error_code == h2.errors.ErrorCodes.HTTP_1_1_REQUIRED
    assert gateway.alive()


def test_an_h2c_upgrade_is_answered_in_http11(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200"), received[:100]


# --- request framing and header bounds -----------------------------------------------------------

def smuggling_attempt(port: int) -> bytes:
    """A POST framed two ways, then a second request on the same connection."""
    body = chat_body("hi")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunked
                     + b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n")
        return read_all(sock)


def test_content_length_with_transfer_encoding_is_a_400_and_the_connection_closes(gateway, fake):
    received = smuggling_attempt(gateway.port)
    assert received.startswith(b"HTTP/1.1 400"), received[:200]
    assert received.count(b"HTTP/1.1 ") == 1  # the request after it was never answered
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert "Content-Length and Transfer-Encoding" in json.loads(body)["error"]["message"]
    assert fake.requests() == []


@pytest.mark.parametrize("size_kib, status", [(60, 200), (100, 431), (120, 431), (1024, 431)])
def test_headers_over_the_documented_64_kib_are_a_431(gateway, size_kib, status):
    padding = "x" * 4000
    headers = "".join(f"X-Pad-{i}: {padding}\r\n" for i in range(size_kib * 1024 // 4020))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        try:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: g\r\n{headers}\r\n".encode())
        except OSError:
            pass  # refused before all of it was sent
        received = read_all(sock)
    assert received.startswith(f"HTTP/1.1 {status}".encode()), received[:100]


# --- clients that stop reading -------------------------------------------------------------------

def open_unread_stream(port: int, path: str, body: bytes) -> socket.socket:
    """A streamed request from a client that never reads (a small receive window, soon shut)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


@pytest.mark.parametrize("path, model", [(CHAT, "opencode-go/glm-5.1"),
                                         ("/v1/messages", "opencode-go/glm-5.1")],
                         ids=["passthrough", "translated"])
def test_a_client_that_stops_reading_is_cut_after_write_timeout_and_logged_as_a_stall(
        start_gateway, fake, path, model):
    gateway = start_gateway(config_text="server:\n  write_timeout: 1\n")
    body = {"model": model, "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": "[[fake: deltas=60000]]"}]}
    sock = open_unread_stream(gateway.port, path, json.dumps(body).encode())
    try:
        lines = gateway.access_lines(where=lambda line: line["status"] == 499, timeout=30)
        [line] = [line for line in lines if line["status"] == 499]
        assert "client stall" in line["error"] and "server.write_timeout" in line["error"]
        # the upstream request was closed with it, not left generating for nobody
        fake.wait_stats(lambda s: s["active_streams"] == 0, timeout=10)
        assert fake.stats()["active_streams"] == 0
    finally:
        sock.close()
    assert "upstream" not in line["error"]


# --- the wait for a free upstream connection -----------------------------------------------------

def test_the_wait_for_a_free_upstream_connection_is_bounded_503_with_retry_after(start_gateway,
                                                                                fake):
    import threading
    import urllib.request
    gateway = start_gateway(config_text="upstream:\n  max_connections: 1\n  pool_timeout: 1\n")
    holder = threading.Thread(target=post_bytes, args=(
        gateway.url + CHAT, chat_body("[[fake: deltas=30 slow=0.3]]", stream=True)))
    holder.start()  # holds the one upstream connection for ~9 s
    try:
        fake.wait_stats(lambda s: s["active_streams"] == 1)
        started = time.monotonic()
        status, headers, body = post_bytes(gateway.url + "/v1/messages", json.dumps({
            "model": "opencode-go/glm-5.1", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}]}).encode())
        waited = time.monotonic() - started
    finally:
        holder.join()
    assert status == 503, body
    assert waited < 6
    assert int(headers["retry-after"]) > 0
    error = json.loads(body)
    assert error["type"] == "error"  # the Anthropic client's own shape
    assert "upstream.max_connections" in error["error"]["message"]
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert "opencode_gateway_upstream_pool_timeouts_total 1.0" in metrics


# --- large and deeply nested bodies ------------------------------------------------------------

def many_objects_body(objects: int) -> bytes:
    """A chat body of ~`objects` small JSON objects in one message's content (~40 bytes each)."""
    part = json.dumps({"type": "text", "text": "a" * 12, "x": {"y": 1}})
    parts = ",".join([part] * (objects // 2))
    return (b'{"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": ['
            + parts.encode() + b"]}]}")


def send_refused_early(port: int, path: str, body: bytes) -> bytes:
    """POST `body`, as much of it as the server takes before it answers; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json"
                         f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body)
        except OSError:
            pass  # answered and closed before the whole body was sent
        return read_all(sock, timeout=60)


def healthz_worst_latency(url: str, while_running) -> float:
    """The slowest /healthz answer while `while_running` (a started thread) is alive."""
    import urllib.request
    worst = 0.0
    while while_running.is_alive():
        started = time.monotonic()
        with urllib.request.urlopen(url + "/healthz", timeout=30) as answer:
            answer.read()
        worst = max(worst, time.monotonic() - started)
    return worst


def healthz_longest_silence(url: str, while_running) -> float:
    """The longest time between two /healthz answers, asked one after the other, while
    `while_running` (a started thread) is alive: while the loop is held, none is answered, so
    this is at least the longest hold, whenever it starts."""
    import urllib.request
    longest = 0.0
    last = time.monotonic()
    while while_running.is_alive():
        with urllib.request.urlopen(url + "/healthz", timeout=30) as answer:
            answer.read()
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


@pytest.mark.parametrize("frontend_path", [CHAT, "/v1/messages", "/v1/messages/count_tokens"])
def test_a_body_of_half_a_million_objects_is_refused_without_stalling_healthz(gateway,
                                                                             frontend_path):
    import threading
    body = many_objects_body(500_000)
    outcome = []
    sender = threading.Thread(target=lambda: outcome.append(
        send_refused_early(gateway.port, frontend_path, body)))
    sender.start()
    worst = healthz_worst_latency(gateway.url, sender)
    sender.join()
    [answer] = outcome
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"server.max_body_containers" in answer
    # Before the bound: the decode held the loop for over a second (a loaded machine: slower).
    assert worst < 0.5, worst


def test_healthz_stays_answerable_while_a_big_body_of_text_is_relayed(gateway, fake):
    """A 30 MB body of text, tabs and line breaks only (an empty table): text dense in escapes,
    the most work per byte. Its decoding, and its encoding again for the upstream, were one call
    each that held the loop; now its long strings go in pieces (gateway/big_body.py), and the
    upstream still gets the text whole."""
    import threading
    text = "\t\n" * 7_500_000
    outcome = []
    sender = threading.Thread(target=lambda: outcome.append(
        send_refused_early(gateway.port, CHAT, chat_body(text))))
    sender.start()
    silence = healthz_longest_silence(gateway.url, sender)
    sender.join()
    [answer] = outcome
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert fake.last_request()["body"]["messages"][0]["content"] == text
    # On a loaded 2-CPU machine: 380-690 ms without an answer before, 40-95 ms after; the bound
    # sits between them with room on both sides (the aim is under 100 ms).
    assert silence < 0.25, silence


@pytest.mark.parametrize("field, count, bound", [
    ("tools", 1001, "server.max_tools"), ("messages", 10_001, "server.max_messages"),
    ("parts", 10_001, "server.max_parts")])
def test_counts_over_their_bounds_are_a_400_naming_the_bound(gateway, fake, field, count, bound):
    body = {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "hi"}]}
    if field == "tools":
        body["tools"] = [{"type": "function", "function": {"name": f"t{i}"}}
                         for i in range(count)]
    elif field == "messages":
        body["messages"] = [{"role": "user", "content": "hi"}] * count
    else:
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "a"}] * count}]
    status, _, answer = post_bytes(gateway.url + CHAT, json.dumps(body).encode())
    assert status == 400
    assert bound in json.loads(answer)["error"]["message"]
    assert fake.requests() == []


# --- every request that reached the upstream is charged ------------------------------------------

def ledger_requests(gateway, at_least: int, timeout: float = 10) -> dict:
    """{model: (requests, dollars)} of today from GET /v1/usage, once it counts `at_least`
    requests in all (the workers write the ledger every state.sync_seconds)."""
    import urllib.request
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(gateway.url + "/v1/usage", timeout=5) as answer:
            report = json.loads(answer.read())
        rows = {row["model"]: (row["requests"], row["cost_usd"])
                for row in report["models_today"]}
        if sum(count for count, _ in rows.values()) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


ROUTES = [(CHAT, "passthrough"), ("/v1/messages", "translated")]


@pytest.mark.parametrize("path, route", ROUTES, ids=[r for _, r in ROUTES])
def test_a_client_hanging_up_mid_stream_is_still_charged(gateway, fake, path, route):
    body = {"model": "opencode-go/glm-5.1", "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": "[[fake: deltas=200 slow=0.05]]"}]}
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        received = b""
        while received.count(b"\n\n") < 10:  # some deltas arrived: the upstream is charging
            received += sock.recv(65536)
    lines = gateway.access_lines(where=lambda line: line["status"] == 499)
    [line] = [line for line in lines if line["status"] == 499]
    assert line["cost_estimated"] is True and line["cost_usd"] > 0
    assert line["completion_tokens"] >= 5
    [(requests, dollars)] = ledger_requests(gateway, 1).values()
    assert requests == 1 and dollars == pytest.approx(line["cost_usd"], rel=0.05)


@pytest.mark.parametrize("path, route", ROUTES, ids=[r for _, r in ROUTES])
def test_an_upstream_gone_idle_mid_answer_is_still_charged(start_gateway, fake, path, route):
    gateway = start_gateway(config_text="upstream:\n  idle_timeout: 1\n")
    body = {"model": "opencode-go/glm-5.1", "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": "[[fake: deltas=3 slow=4]]"}]}
    status, _, answer = post_bytes(gateway.url + path, json.dumps(body).encode())
    assert status == 200 and b"idle_timeout" in answer
    [line] = gateway.access_lines()
    assert line["status"] == 502
    assert line["cost_estimated"] is True and line["cost_usd"] > 0
    [(requests, dollars)] = ledger_requests(gateway, 1).values()
    assert requests == 1 and dollars > 0


def test_kill_9_loses_at_most_the_last_sync_seconds_of_the_ledger(gateway, fake):
    """The promise (docs/hardening.md, README "The ledger"): a `kill -9` loses at most what a
    worker gathered since its last write, `state.sync_seconds` (0.5 s) of answers."""
    import signal
    import subprocess
    import sys
    from tests.gateway_process import REPO
    answered_at = []
    started = time.monotonic()
    while time.monotonic() - started < 3:
        status, _, _ = post_bytes(gateway.url + CHAT, chat_body("hi"))
        assert status == 200
        answered_at.append(time.monotonic())
    gateway.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    gateway.process.wait(10)
    result = subprocess.run([sys.executable, "-m", "gateway", "usage", "--json"], cwd=REPO,
                            env=gateway.environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    recorded = sum(row["requests"] for row in json.loads(result.stdout)["models_today"])
    # Everything answered more than one sync period (and the write's own time) before the kill
    # is in the ledger; of the rest, some may be lost.
    safe = sum(1 for at in answered_at if at < killed_at - 2 * 0.5)
    assert safe <= recorded <= len(answered_at), (safe, recorded, len(answered_at))


# --- secrets in URLs -----------------------------------------------------------------------------

SECRET = "sekrit-redis-pw-42"


@pytest.mark.parametrize("url", [
    f"redis://127.0.0.1:1/0?password={SECRET}",
    f"redis://alice:{SECRET}@127.0.0.1:1/0",
    f"rediss://127.0.0.1:1/0?ssl_cert_reqs=none&password={SECRET}",
], ids=["query-password", "acl-user", "rediss-query"])
def test_a_redis_password_is_masked_everywhere_the_url_is_shown(start_gateway, url):
    import subprocess
    import sys
    import urllib.request
    from tests.gateway_process import REPO
    gateway = start_gateway(config_text=f"state:\n  backend: redis\n  url: \"{url}\"\n")
    shown = []
    for path in ("/v1/usage", "/metrics", "/dashboard"):
        with urllib.request.urlopen(gateway.url + path, timeout=10) as answer:
            shown.append(answer.read().decode())
    where = json.loads(shown[0])["state"]["where"]
    assert "***" in where and "127.0.0.1:1" in where
    config = next(arg for arg in gateway.args if arg.endswith(".yaml"))
    for command in ("usage", "check-config"):
        for extra in ([], ["--json"]) if command == "usage" else ([],):
            result = subprocess.run([sys.executable, "-m", "gateway", command, "--config", config,
                                     *extra], cwd=REPO, env=gateway.environment,
                                    capture_output=True, text=True, timeout=60)
            shown += [result.stdout, result.stderr]
    shown.append(gateway.log())
    assert "127.0.0.1:1" in gateway.log()  # the log does name the store it cannot reach
    assert not [text for text in shown if SECRET in text]


def test_an_unset_variable_anywhere_in_the_config_is_named_with_its_field(tmp_path):
    import subprocess
    import sys
    from tests.gateway_process import REPO
    path = tmp_path / "gateway.yaml"
    path.write_text('state:\n  backend: redis\n  url: "redis://:${SURELY_UNSET_REDIS_PW}@h:6379/0"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config",
                             str(path)], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "SURELY_UNSET_REDIS_PW" in result.stderr and "state.url" in result.stderr


def test_an_acl_user_kept_to_the_gateways_keys_runs_the_ledger(start_gateway, fake):
    """The Redis ACL user docs/hardening.md suggests is enough for the gateway."""
    from tests.redis_server import RedisServer, redis_binary
    redis = RedisServer(redis_binary()).start()
    try:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
            sock.sendall(b"ACL SETUSER gateway on >gw-pass-7 ~ocg:* +@all -@dangerous +info\r\n")
            assert sock.recv(64).startswith(b"+OK")
        gateway = start_gateway(config_text=(
            "state:\n  backend: redis\n"
            f"  url: \"redis://gateway:gw-pass-7@127.0.0.1:{redis.port}/0\"\n"))
        assert post_bytes(gateway.url + CHAT, chat_body("hi"))[0] == 200
        [(requests, _)] = ledger_requests(gateway, 1).values()
        assert requests == 1
        import urllib.request
        with urllib.request.urlopen(gateway.url + "/v1/usage", timeout=5) as answer:
            state = json.loads(answer.read())["state"]
        assert state["up"] is True and "gw-pass-7" not in state["where"]
        assert "NOPERM" not in gateway.log() and "unreachable" not in gateway.log()
    finally:
        redis.close()
