"""Gemini CLI itself (npm `@google/gemini-cli`, pinned in tests/node/package.json) against the real
gateway process, in front of the fake upstream, run as CLIENTS.md says: a scratch HOME whose
settings select API-key auth, `GOOGLE_GEMINI_BASE_URL` at the gateway, `gemini -p`.

Gemini CLI speaks only Google's API (`POST /v1beta/models/<model>:streamGenerateContent?alt=sse`),
so every answer here is translated: from the Chat wire (glm-5.1) and from the Messages wire
(minimax-m2.7). CI installs the client; elsewhere a missing install skips these tests.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fake_upstream import SHELL_MARKER, answer_text
from tests.node_clients import explain, installed_client

MODELS = {"opencode-go/glm-5.1": "/v1/chat/completions",
          "opencode-go/minimax-m2.7": "/v1/messages"}
TIMEOUT = 240
# Without it, versions from 0.44 on refuse a custom base URL at start.
SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}}


@pytest.fixture(scope="module")
def gemini() -> Path:
    return installed_client("gemini", "Gemini CLI")


def run_gemini(gemini: Path, gateway_url: str, model: str, prompt: str, tmp_path: Path,
               *extra_args: str, api_key: str = "anything") -> subprocess.CompletedProcess:
    """`gemini -p PROMPT -m MODEL` with a fresh HOME; only PATH and the locale carry over."""
    home = tmp_path / "home"
    project = tmp_path / "project"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    project.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
    env.update({"HOME": str(home), "GEMINI_CLI_TRUST_WORKSPACE": "true",
                "GEMINI_API_KEY": api_key, "GOOGLE_GEMINI_BASE_URL": gateway_url})
    return subprocess.run([str(gemini), "-p", prompt, "-m", model, *extra_args], cwd=project,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("model", MODELS)
def test_gemini_cli_prints_the_answer(gemini, gateway, fake, tmp_path, model):
    result = run_gemini(gemini, gateway.url, model, "say hi", tmp_path)

    assert result.returncode == 0, explain("gemini", result, gateway)
    assert answer_text() in result.stdout, explain("gemini", result, gateway)
    [sent] = fake.requests()
    assert sent["path"] == MODELS[model]
    # Gemini CLI's own system prompt and its tools reach the model.
    assert "Gemini CLI" in json.dumps(sent["body"])
    assert len(sent["body"]["tools"]) > 3


@pytest.mark.parametrize("model", MODELS)
def test_gemini_cli_runs_the_shell_command_the_model_asked_for(gemini, gateway, fake, tmp_path,
                                                               model):
    result = run_gemini(gemini, gateway.url, model, "[[fake: run=run_shell_command]] greet me",
                        tmp_path, "--yolo")

    assert result.returncode == 0, explain("gemini", result, gateway)
    assert answer_text() in result.stdout, explain("gemini", result, gateway)
    first, second = fake.requests()
    assert "run_shell_command" in json.dumps(first["body"]["tools"])
    sent_back = json.dumps(second["body"]).replace(f"echo {SHELL_MARKER}", "")
    assert SHELL_MARKER in sent_back  # the command ran, and its output reached the model


def test_gemini_cli_on_a_locked_gateway_sends_its_key(gemini, start_gateway, fake, tmp_path):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "client-key"})
    result = run_gemini(gemini, gateway.url, "opencode-go/glm-5.1", "say hi", tmp_path,
                        api_key="client-key")
    assert result.returncode == 0, explain("gemini", result, gateway)
    assert answer_text() in result.stdout
    assert fake.last_request()["key"] == "test-key"
