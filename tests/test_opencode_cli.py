"""The opencode CLI (npm `opencode-ai`, pinned in tests/node/package.json) on the gateway's OpenAI
frontend, through the `@ai-sdk/openai-compatible` provider as CLIENTS.md sets it up: `opencode run`.

`opencode-go/glm-5.1` passes through; `opencode-go/minimax-m2.7` is translated OpenAI → Anthropic,
including the tool round trip opencode makes when the model calls a tool it does not have.
CI installs the CLI (`.ci/run`); there a missing install fails the tests, elsewhere it skips them.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fake_upstream import anthropic_tool_id, answer_text, openai_tool_id
from tests.node_clients import explain, installed_client

MODELS = ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7"]
TIMEOUT = 240


@pytest.fixture(scope="module")
def opencode() -> Path:
    return installed_client("opencode", "opencode")


def run_opencode(opencode: Path, gateway_url: str, model: str, prompt: str,
                 tmp_path: Path) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    project = tmp_path / "project"
    (home / ".config" / "opencode").mkdir(parents=True, exist_ok=True)
    project.mkdir(exist_ok=True)
    (home / ".config" / "opencode" / "opencode.json").write_text(json.dumps({"provider": {"gw": {
        "npm": "@ai-sdk/openai-compatible", "name": "gateway",
        "options": {"baseURL": gateway_url + "/v1", "apiKey": "anything"},
        "models": {name: {"name": name} for name in MODELS}}}}))
    env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
    env.update({"HOME": str(home), "OPENCODE_DISABLE_AUTOUPDATE": "1",
                "OPENCODE_DISABLE_MODELS_FETCH": "1"})
    return subprocess.run([str(opencode), "run", "-m", f"gw/{model}", prompt], cwd=project,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("model", MODELS)
def test_opencode_prints_the_answer(opencode, gateway, fake, tmp_path, model):
    result = run_opencode(opencode, gateway.url, model, "say hi", tmp_path)

    assert result.returncode == 0, explain("opencode", result, gateway)
    assert answer_text() in result.stdout, explain("opencode", result, gateway)
    paths = {sent["path"] for sent in fake.requests()}
    assert paths == {"/v1/messages" if "minimax" in model else "/v1/chat/completions"}


@pytest.mark.parametrize("model", MODELS)
def test_opencode_tool_round_trip(opencode, gateway, fake, tmp_path, model):
    # The fake calls two tools opencode does not have; opencode answers each call with an error
    # result and asks again, which the fake (no directive in that final turn) answers with text.
    result = run_opencode(opencode, gateway.url, model, "[[fake: tools=2 text]] weather?",
                          tmp_path)

    assert result.returncode == 0, explain("opencode", result, gateway)
    assert result.stdout.count(answer_text()) >= 2  # before the tool calls, and after them
    # opencode also asks for a session title, in parallel: pick the agent's follow-up turn.
    [messages] = [sent["body"]["messages"] for sent in fake.requests()
                  if any(m["role"] == "assistant" for m in sent["body"]["messages"])]
    if "minimax" in model:
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert [(b["type"], b["tool_use_id"]) for b in messages[2]["content"]] == [
            ("tool_result", anthropic_tool_id(0)), ("tool_result", anthropic_tool_id(1))]
    else:
        assert [(m["role"], m.get("tool_call_id")) for m in messages[-2:]] == [
            ("tool", openai_tool_id(0)), ("tool", openai_tool_id(1))]
