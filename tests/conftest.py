"""Shared fixtures: the fake OpenCode Go upstream, running as a real server for the session."""
from __future__ import annotations

import pytest

from tests.fake_upstream_client import FakeUpstream


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
