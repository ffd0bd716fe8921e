"""The benchmarks run, tiny: they must work here, not be fast (speed is measured by running them
at full size, never asserted in a test)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.gateway_process import REPO
from tests.node_clients import in_ci

BENCH = REPO / "deploy" / "bench"


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def hey():
    if shutil.which("hey") is None:
        if in_ci():
            pytest.fail("hey is not installed: apt-get install hey (.ci/run does)")
        pytest.skip("hey is not installed")


def test_compare_floor_reports_cpu_per_request_ratio_and_added_ttfb(hey, tmp_path):
    out = tmp_path / "floor.json"
    done = _run("compare_floor.py", "-z", "1s", "-c", "4", "--rounds", "2", "--warmup", "0",
                "--ttfb-requests", "40", "--cases", "non-stream,translated,gemini",
                "--floor", str(BENCH / "floor.py"), "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "floor/gateway CPU per request" in done.stdout
    assert "added TTFB over the upstream's" in done.stdout
    report = json.loads(out.read_text())
    for case in report["cases"].values():
        assert len(case["rounds"]["gateway"]) == len(case["rounds"]["floor"]) == 2
        assert case["cpu_us_median"]["gateway"] > 0 and case["cpu_us_median"]["floor"] > 0
        assert len(case["floor_over_gateway_by_round"]) == 2
        assert case["ttfb_ms"]["gateway"]["p50"] > 0
    assert report["rss_mib"]["idle"]["gateway"] > 0


def test_open_streams_holds_every_stream_and_measures_its_memory(tmp_path):
    out = tmp_path / "streams.json"
    done = _run("open_streams.py", "--streams", "60", "--hold", "2", "--batch", "30",
                "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] == report["connected"] == 60
    assert report["finished"] == 60
    assert report["per_stream_kb"] is not None and report["idle_rss_mib"] > 0
