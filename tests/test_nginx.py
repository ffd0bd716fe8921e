"""deploy/nginx.conf in front of two gateway processes: streams arrive event by event, requests
spread over the upstream block, request ids and the body limit carry through.

nginx runs with the deploy file itself; only its listen port, its upstream `server` lines and
its log paths are swapped for test ones. Missing nginx is installed from Debian's packages when
the tests run as root; in CI (CI=true) a missing nginx that cannot be installed is a failure.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gateway.config import Config
from tests.fake_upstream_client import free_port
from tests.gateway_process import REPO

DEPLOY_CONFIG = REPO / "deploy" / "nginx.conf"


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(path)),
        None)
    if found:
        return found
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"`{' '.join(command)}` failed while installing nginx:\n"
                            f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        found = shutil.which("nginx") or "/usr/sbin/nginx"
        if os.path.exists(found):
            return found
        pytest.fail("apt-get installed nginx, but no nginx binary was found")
    if in_ci:
        pytest.fail("nginx is not installed and the tests do not run as root to install it")
    pytest.skip("nginx is not installed (apt-get install -y nginx); run as root to install it")


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    return _nginx_binary()


def site_config(upstream_ports: list[int], listen_port: int, log_dir: Path) -> str:
    """deploy/nginx.conf with the test's ports and log directory, everything else unchanged."""
    text = DEPLOY_CONFIG.read_text()
    servers = re.findall(r"^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", text, flags=re.M)
    assert servers, "deploy/nginx.conf has no `server 127.0.0.1:PORT` line to point at the test"
    indent, options = servers[0]
    lines = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstream_ports)
    text = re.sub(r"(^\s*server 127\.0\.0\.1:\d+( [^;]*)?;\n)+", lambda _: lines, text,
                  count=1, flags=re.M)
    text = re.sub(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{listen_port};", text, flags=re.M)
    assert f"listen 127.0.0.1:{listen_port};" in text, "deploy/nginx.conf no longer `listen 80;`"
    return text.replace("/var/log/nginx/", f"{log_dir}/")


def main_config(prefix: Path, site: Path) -> str:
    """The smallest nginx.conf around the site file, everything inside the test's prefix."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log off;\n{temp}\n    include {site};\n}}\n")


class Nginx:
    def __init__(self, binary: str, prefix: Path, upstream_ports: list[int]):
        self.binary = binary
        self.prefix = prefix
        self.port = free_port()
        self.logs = prefix / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        site = prefix / "opencode-gateway.conf"
        site.write_text(site_config(upstream_ports, self.port, self.logs))
        self.config = prefix / "nginx.conf"
        self.config.write_text(main_config(prefix, site))
        self.args = [binary, "-p", str(prefix), "-c", str(self.config), "-e",
                     str(prefix / "error.log")]
        self.process: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.args + ["-t"], capture_output=True, text=True)

    def start(self) -> "Nginx":
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited {self.process.returncode}:\n{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port}:\n{self.error_log()}")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> str:
        path = self.logs / "opencode-gateway.access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def gateways(start_gateway):
    """Two gateway processes, as the deploy config's upstream block expects."""
    return [start_gateway(), start_gateway()]


@pytest.fixture
def nginx(nginx_binary, gateways, tmp_path):
    server = Nginx(nginx_binary, tmp_path / "nginx", [g.port for g in gateways])
    checked = server.check()
    assert checked.returncode == 0, checked.stderr
    server.start()
    yield server
    server.stop()


# ---- talking HTTP/1.1 over a raw socket, to see when each byte arrives ----

def request_bytes(port: int, body: dict, headers: dict | None = None) -> bytes:
    data = json.dumps(body).encode()
    head = ["POST /v1/chat/completions HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json", f"Content-Length: {len(data)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def timed_exchange(port: int, body: dict, headers: dict | None = None,
                   timeout: float = 30) -> tuple[bytes, list[tuple[float, bytes]]]:
    """(response head, [(seconds since the request was sent, bytes received)]) until close."""
    reads = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes(port, body, headers))
        sent = time.monotonic()
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reads.append((time.monotonic() - sent, data))
    raw = b"".join(data for _, data in reads)
    head, _, _ = raw.partition(b"\r\n\r\n")
    return head, reads


def header(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def chat(text: str, stream: bool = False) -> dict:
    body = {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


def request_ids_logged(gateways, wanted: set[str]) -> list[list[str]]:
    """Each gateway's logged request ids, once all of `wanted` are among them (access lines are
    written in batches)."""
    deadline = time.monotonic() + 10
    while True:
        logged = [[line["request_id"] for line in gateway.logged_lines()]
                  for gateway in gateways]
        if wanted <= set(sum(logged, [])) or time.monotonic() > deadline:
            return logged
        time.sleep(0.1)


# ---- the tests ----

def test_deploy_config_passes_nginx_syntax_check(nginx_binary, tmp_path):
    checked = Nginx(nginx_binary, tmp_path / "nginx", [8001, 8002]).check()
    assert checked.returncode == 0, checked.stderr


def test_body_limit_matches_the_gateways():
    [limit] = re.findall(r"^\s*client_max_body_size (\d+)m;", DEPLOY_CONFIG.read_text(), re.M)
    assert int(limit) * 1024 * 1024 == Config().server.max_body_bytes


def test_a_slow_stream_arrives_through_nginx_chunk_by_chunk(nginx, fake):
    deltas = 6
    head, reads = timed_exchange(nginx.port, chat(f"[[fake: slow=0.3 deltas={deltas}]]",
                                                  stream=True))
    assert head.startswith(b"HTTP/1.1 200"), head
    assert header(head, "content-type").startswith("text/event-stream")
    # When each event arrived: the reads that brought new `data:` lines.
    arrivals = [(at, data.count(b"data: ")) for at, data in reads if b"data: " in data]
    assert sum(count for _, count in arrivals) >= deltas + 1  # the deltas, the end, [DONE]
    first, last = arrivals[0][0], arrivals[-1][0]
    # Buffered to the end, every event would come in the last read or two. Streamed, the first
    # comes while the upstream is still pausing between the rest.
    assert len(arrivals) >= 3
    assert first < last / 2, arrivals


def test_requests_spread_over_both_gateway_processes(nginx, gateways):
    for number in range(6):
        head, _ = timed_exchange(nginx.port, chat("hi"), {"X-Request-ID": f"spread-{number}"})
        assert head.startswith(b"HTTP/1.1 200"), head
    seen = [[rid for rid in logged if rid.startswith("spread-")]
            for logged in request_ids_logged(gateways, {f"spread-{n}" for n in range(6)})]
    assert all(seen), seen
    assert sorted(sum(seen, [])) == [f"spread-{number}" for number in range(6)]


def test_request_ids_pass_through_or_are_made_by_nginx(nginx, gateways):
    head, _ = timed_exchange(nginx.port, chat("hi"), {"X-Request-ID": "client-chosen-7"})
    assert header(head, "x-request-id") == "client-chosen-7"
    head, _ = timed_exchange(nginx.port, chat("hi"))
    made = header(head, "x-request-id")
    assert re.fullmatch(r"[0-9a-f]{32}", made)  # nginx's $request_id
    logged = sum(request_ids_logged(gateways, {"client-chosen-7", made}), [])
    assert "client-chosen-7" in logged and made in logged
    deadline = time.monotonic() + 5
    while f"request_id={made}" not in nginx.access_log() and time.monotonic() < deadline:
        time.sleep(0.05)  # nginx writes its log line once the connection is done
    assert f"request_id={made}" in nginx.access_log()


def test_a_body_over_the_limit_is_refused_by_nginx(nginx):
    limit = Config().server.max_body_bytes
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {limit + 1}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(head)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_metrics_are_not_served_through_nginx(nginx):
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_a_request_framed_two_ways_is_refused_behind_nginx_and_the_connection_closed(nginx, fake):
    from tests.test_hostile_clients import smuggling_attempt
    received = smuggling_attempt(nginx.port)
    assert received.startswith(b"HTTP/1.1 400"), received[:200]
    assert received.count(b"HTTP/1.1 ") == 1  # the request after it was never answered
    assert fake.requests() == []
