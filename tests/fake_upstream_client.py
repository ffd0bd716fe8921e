"""Start the fake OpenCode Go upstream in a subprocess and steer it from a test.

`FakeUpstream.start()` runs `python -m tests.fake_upstream` on a free loopback port and waits
until it answers; the helpers talk to its `/_fake/` control endpoints with plain urllib, so they
work from sync and async tests alike. Requests to the fake's /v1 endpoints need an
`x-opencode-session` header and a User-Agent that names a tool (`SESSION_HEADERS`), as OpenCode
Go's do.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

_REPO = Path(__file__).resolve().parent.parent
_KEEP = object()   # `models(list_status=...)` left out: unchanged
TEST_USER_AGENT = "opencode-gateway-tests/1.0"   # not a library's default: the edge lets it by
SESSION_HEADERS = {"x-opencode-session": "ses_fake_test",   # what every /v1 request needs
                   "User-Agent": TEST_USER_AGENT}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUpstream:
    """A running fake upstream: `.url` is the base URL the gateway is configured with (…/v1)."""

    def __init__(self, process: subprocess.Popen, port: int, log):
        self.process = process
        self._log = log
        self.port = port
        self.root = f"http://127.0.0.1:{port}"
        self.url = self.root + "/v1"                       # the zen layout
        self.inference_url = self.root + "/inference/go"   # the inference layout

    @classmethod
    def start(cls, record: bool = True, timeout: float = 15.0) -> FakeUpstream:
        port = free_port()
        cmd = [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1",
               "--port", str(port)]
        if not record:
            cmd.append("--no-record")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))}
        # A file, not a pipe: a pipe nobody reads would block the fake once its logs fill it.
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(cmd, cwd=_REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        fake = cls(process, port, log)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError("fake upstream exited at start: " + fake.log_text())
            try:
                fake.stats()
                return fake
            except OSError:
                if time.monotonic() > deadline:
                    fake.stop()
                    raise RuntimeError(f"fake upstream did not answer on port {port} "
                                       f"within {timeout} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def log_text(self) -> str:
        """What the fake printed (its start line, aiohttp's error logs)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.root + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def requests(self, everything: bool = False) -> list[dict[str, Any]]:
        """Recorded model calls, oldest first (of the last 200 requests): path, headers, body,
        key. A gateway also reads `GET /v1/models` and `GET /v1/usage` in the background; those
        are left out unless `everything`."""
        recorded = self._call("GET", "/_fake/requests")
        if everything:
            return recorded
        return [request for request in recorded
                if request["path"] not in ("/v1/models", "/v1/usage")]

    def last_request(self, everything: bool = False) -> dict[str, Any]:
        recorded = self.requests(everything)
        if not recorded:
            raise AssertionError("the fake upstream received no request")
        return recorded[-1]

    def set_key(self, key: str, status: int | None = None, retry_after: str | int | None = None,
                limit: str | None = None) -> None:
        """Every request with `key` fails with `status` from now on; or, with `limit` ("5 hour",
        "weekly", "monthly"), its model calls get OpenCode Go's usage-limit 429 (`retry_after`
        seconds, default 3600). Neither: the key is restored."""
        if limit is not None:
            how: dict[str, Any] | None = {"limit": limit, "retry_after": retry_after}
        elif status is not None:
            how = {"status": status, "retry_after": retry_after}
        else:
            how = None
        self._call("POST", "/_fake/keys", {key: how})

    def refuse_key(self, key: str, refuse: str) -> None:
        """The key's calls get OpenCode's `credits` (401 CreditsError) or `entitlement` (403
        EntitlementError) answer."""
        self._call("POST", "/_fake/keys", {key: {"refuse": refuse}})

    def limit_in_200(self, key: str, limit: str = "5 hour", retry_after: int = 3600) -> None:
        """The key's model calls get the usage-limit body with a 200 status."""
        self._call("POST", "/_fake/keys", {key: {"limit": limit, "retry_after": retry_after,
                                                 "status": 200}})

    def cap_model(self, key: str, model: str, limit: str = "5 hour",
                  retry_after: int = 3600) -> None:
        """Calls of `model` with `key` get a usage limit that names the model; others pass."""
        self._call("POST", "/_fake/keys", {key: {"cap": model, "limit": limit,
                                                 "retry_after": retry_after}})

    def set_limit(self, key: str, limit: str | None = "5 hour",
                  retry_after: int = 14160) -> None:
        """The key's model calls get the usage-limit 429 for `limit`; `limit=None` restores it."""
        self.set_key(key, limit=limit, retry_after=retry_after if limit else None)

    def set_limits(self, key: str, rolling: float | None = None, weekly: float | None = None,
                   monthly: float | None = None) -> None:
        """The key's dollar limits per window (None: the default $12 / $30 / $60); all None
        restores the defaults."""
        how = {name: dollars for name, dollars in
               (("rolling", rolling), ("weekly", weekly), ("monthly", monthly))
               if dollars is not None}
        self._call("POST", "/_fake/limits", {key: how or None})

    def set_cache(self, lifetime: float | None) -> None:
        """Model a prompt cache per key and session that lives `lifetime` seconds idle (None:
        no cache model, the default)."""
        self._call("POST", "/_fake/cache", {"lifetime": lifetime})

    def spend(self, key: str, dollars: float) -> None:
        """Charge the key `dollars` now, as if it had been used before the test."""
        self._call("POST", "/_fake/spend", {key: dollars})

    def conversations(self) -> dict[str, dict[str, Any]]:
        """What the cache model saw per session (key, turns, moves, hot_moves, tokens)."""
        return self._call("GET", "/_fake/sessions")

    def set_usage(self, key: str, rolling: int | None = None, weekly: int | None = None,
                  monthly: int | None = None, status: int | None = None,
                  rate_limited: list[str] | None = None) -> None:
        """What GET /v1/usage says for `key`: these percents (None: the real figure), or
        `status` (an upstream without the endpoint); the `rate_limited` windows say so whatever
        their percent. All None clears the overrides."""
        how = {name: value for name, value in (("rolling", rolling), ("weekly", weekly),
                                               ("monthly", monthly), ("status", status),
                                               ("rate_limited", rate_limited))
               if value is not None}
        self._call("POST", "/_fake/usage", {key: how or None})

    def models(self, add: dict[str, str] | None = None, remove: list[str] | None = None,
               list_status: int | None | object = _KEEP) -> dict[str, Any]:
        """Edit the catalogue (`add`: id -> "chat" | "messages" | "responses" | "google";
        `remove`: ids) and make GET /v1/models fail with `list_status` (None: answer again; left out: unchanged).
        Returns {"models": {id: wire}, "list_status"}; `models()` just reads them."""
        payload: dict[str, Any] = {"add": add or {}, "remove": remove or []}
        if list_status is not _KEEP:
            payload["list_status"] = list_status
        return self._call("POST", "/_fake/models", payload)

    def charges(self) -> dict[str, Any]:
        """{"by_key": {key: dollars}, "by_key_model": {key: {model: dollars}},
        "requests": {key: answers charged}} since the last reset."""
        return self._call("GET", "/_fake/charges")

    def reset(self) -> None:
        """Forget failing keys, limits, usage overrides, charges, recorded requests and
        finished-stream counts; restore the built-in catalogue."""
        self._call("POST", "/_fake/reset", {})

    def stats(self) -> dict[str, int]:
        """{"active_streams", "completed_streams", "aborted_streams"}."""
        return self._call("GET", "/_fake/stats")

    def wait_stats(self, done: Callable[[dict[str, int]], bool],
                   timeout: float = 10.0) -> dict[str, int]:
        """Poll the stream stats until `done(stats)`; the last stats either way.

        Streams end asynchronously (the fake notices a hang-up at its next write or pause), so
        tests wait for the state they expect instead of reading it once.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if done(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)
