"""deploy/bench/abuse.py runs each of its attacks small against the real gateway (in front of the
fake upstream), and every attack holds."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.gateway_process import REPO

sys.path.insert(0, str(REPO / "deploy" / "bench"))
from abuse import ATTACKS  # noqa: E402

CONFIG = "server:\n  write_timeout: 1\nupstream:\n  idle_timeout: 1\n"


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_abuse_script_attack_holds_small(start_gateway, attack):
    gateway = start_gateway(config_text=CONFIG)
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "bench" / "abuse.py"), "--url", gateway.url,
         "--attack", attack, "--json", "--pid", str(gateway.process.pid), "--idle-timeout", "1",
         "--write-timeout", "1",
         # the bound a loaded test machine can keep; the full-size run checks 100 ms
         "--healthz-ms", "500"], cwd=REPO, capture_output=True, text=True, timeout=300)
    outcome = json.loads(result.stdout)[attack]
    assert outcome["held"], outcome
    assert result.returncode == 0
    assert "Traceback" not in gateway.log()
