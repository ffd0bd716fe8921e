"""The real npm clients (Claude Code, opencode) the client tests drive, pinned in
tests/node/package.json and installed by .ci/run. Missing ones skip a local run and fail CI."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.gateway_process import REPO

NODE_BIN = REPO / "tests" / "node" / "node_modules" / ".bin"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def installed_client(name: str, what: str) -> Path:
    """The client's executable, or the test's skip (locally) / failure (in CI) naming the fix."""
    path = NODE_BIN / name
    if not path.exists():
        message = f"{what} is not installed at {path}: run `cd tests/node && npm install` (.ci/run does)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def explain(name: str, result: subprocess.CompletedProcess, gateway) -> str:
    """What a failed client run printed, with the end of the gateway's log beside it."""
    return (f"{name} exited {result.returncode}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}\ngateway log:\n{gateway.log()[-4000:]}")
