"""Starting the real gateway (`opencode-gateway serve`) as a process on a free loopback port."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gateway.observer import FLUSH_SECONDS
from tests.fake_upstream_client import free_port

REPO = Path(__file__).resolve().parent.parent


class GatewayProcess:
    def __init__(self, upstream_url: str, *, env: dict[str, str] | None = None,
                 config_text: str | None = None, rules_dir: str | None = None,
                 workers: int = 1, tmp_dir: Path | None = None, nofile: int | None = None):
        self.nofile = nofile  # the open-file limit the gateway runs under, if not the default
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = {key: value for key, value in os.environ.items()
                            if not key.startswith(("OPENCODE_GO_", "GATEWAY_"))}
        self.environment.update({"OPENCODE_GO_API_URL": upstream_url,
                                 "OPENCODE_GO_API_KEY": "test-key", "PYTHONUNBUFFERED": "1",
                                 # each gateway its own ledger, unless a test shares one
                                 "XDG_STATE_HOME": str((tmp_dir or Path("/tmp"))
                                                       / f"state-{self.port}")})
        self.environment.update(env or {})
        self.args = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port),
                     "--workers", str(workers)]
        if config_text is not None:
            config_path = (tmp_dir or Path("/tmp")) / f"gateway-{self.port}.yaml"
            config_path.write_text(config_text)
            self.args += ["--config", str(config_path)]
        if rules_dir is not None:
            self.args += ["--rules-dir", rules_dir]
        self.log_path = (tmp_dir or Path("/tmp")) / f"gateway-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "GatewayProcess":
        self._log = open(self.log_path, "wb")
        limit = self.nofile

        def limit_files() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.process = subprocess.Popen(self.args, cwd=REPO, env=self.environment,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        preexec_fn=limit_files)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def access_lines(self, at_least: int = 1, where=None, timeout: float = 10.0) -> list[dict]:
        """The JSON access-log lines, once they hold `at_least` lines, or one that `where`
        accepts (they are written in batches, every FLUSH_SECONDS, later on a busy machine);
        with `at_least=0`, after one batch's time."""
        wait = timeout if at_least or where else FLUSH_SECONDS + 0.3
        deadline = time.monotonic() + wait
        while True:
            lines = self.logged_lines()
            done = any(where(line) for line in lines) if where else \
                at_least and len(lines) >= at_least
            if done or time.monotonic() >= deadline:
                return lines
            time.sleep(0.05)

    def logged_lines(self) -> list[dict]:
        """The JSON access-log lines written so far (one per request: they have a request id)."""
        return [line for line in self.json_lines() if "request_id" in line]

    def json_lines(self) -> list[dict]:
        """Every JSON line of the log so far: access lines and the server's own."""
        lines = []
        for text in self.log().splitlines():
            if text.startswith("{"):
                try:
                    lines.append(json.loads(text))
                except ValueError:  # a line still being written
                    pass
        return lines

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
