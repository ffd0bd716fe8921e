"""A real redis-server on a free loopback port, for the tests of the Redis state store.

Nothing is kept on disk (`--save "" --appendonly no`), so a restart starts empty, as a Redis
that lost its data would. `redis_binary()` finds the server, or skips the test (locally) or
fails it (in CI, where .ci/run installs it): `apt-get install -y redis-server`.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.fake_upstream_client import free_port
from tests.node_clients import in_ci


def redis_binary() -> str:
    found = shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
         if os.path.exists(path)), None)
    if found:
        return found
    message = "redis-server is not installed (apt-get install -y redis-server)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


class RedisServer:
    """`start()`, `stop()` (SIGKILL: a crash, not a shutdown), `start()` again on the same port."""

    def __init__(self, binary: str, port: int | None = None):
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="opencode-gateway-redis-"))
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "RedisServer":
        log = open(self.dir / "redis.log", "ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited {self.process.returncode}:\n"
                                   f"{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on {self.port}:\n{self.log()}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the test session; tests that stop it start it again."""
    server = RedisServer(redis_binary()).start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied (and running) for this test."""
    if not redis_server.alive():
        redis_server.start()
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(64).startswith(b"+OK")
    return redis_server.url
