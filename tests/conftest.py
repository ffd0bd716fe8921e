"""Shared fixtures: the fake OpenCode Go upstream, running as a real server for the session."""
from __future__ import annotations

import os
import tempfile

import pytest

from tests.fake_upstream_client import FakeUpstream

# Gateways built inside the test process keep their state under a scratch directory, never in
# the user's own ~/.local/state.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="opencode-gateway-tests-")


@pytest.fixture(scope="session")
def fake_upstream():
    """The fake upstream in a subprocess, started once per test session."""
    fake = FakeUpstream.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_upstream):
    """The session's fake upstream, reset (no failing keys, no recorded requests) for this test.

    A stream an earlier test left behind would end during this one and change its stream
    counts, so the reset waits (a few seconds at most) until no stream is active.
    """
    fake_upstream.wait_stats(lambda s: s["active_streams"] == 0, timeout=5.0)
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture
def start_gateway(fake, tmp_path):
    """Start the real gateway (`opencode-gateway serve`) against the fake upstream.

    `start_gateway(env=..., config_text=..., rules_dir=..., workers=...)` returns a running
    GatewayProcess (`.url`, `.log()`, `.alive()`); every one started is stopped after the test.
    """
    from tests.gateway_process import GatewayProcess

    started = []

    def start(**options):
        gateway = GatewayProcess(fake.url, tmp_dir=tmp_path, **options).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway):
    """A gateway on the built-in config, one instance keyed `test-key`, pointed at the fake."""
    return start_gateway()
