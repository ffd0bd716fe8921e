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

from gateway import __version__
from tests.fake_upstream import (REASONING_TEXT, SHELL_MARKER, anthropic_tool_id, answer_text,
                                 openai_tool_id)
from tests.node_clients import explain, installed_client

# OpenAI wire (passed through) and Anthropic wire (translated), two models each.
MODELS = ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7", "opencode-go/deepseek-v4-pro",
          "opencode-go/qwen3.7-plus"]
ANTHROPIC_WIRE = ("minimax", "qwen")
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
    # OpenCode Go's edge blocks a library's User-Agent: opencode's own goes first, then ours.
    agent = fake.requests()[0]["headers"]["user-agent"]
    assert agent.startswith("opencode/") and agent.endswith(f" opencode-gateway/{__version__}")
    assert paths == {"/v1/messages" if any(f in model for f in ANTHROPIC_WIRE)
                     else "/v1/chat/completions"}


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
    if any(family in model for family in ANTHROPIC_WIRE):
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert [(b["type"], b["tool_use_id"]) for b in messages[2]["content"]] == [
            ("tool_result", anthropic_tool_id(0)), ("tool_result", anthropic_tool_id(1))]
    else:
        assert [(m["role"], m.get("tool_call_id")) for m in messages[-2:]] == [
            ("tool", openai_tool_id(0)), ("tool", openai_tool_id(1))]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("model", MODELS)
def test_opencode_runs_the_shell_command_the_model_asked_for(opencode, start_gateway, fake,
                                                             tmp_path, model, workers):
    gateway = start_gateway(workers=workers)
    result = run_opencode(opencode, gateway.url, model, "[[fake: run=bash]] greet me", tmp_path)
    assert result.returncode == 0, explain("opencode", result, gateway)
    # The agent's follow-up turn (opencode also asks for a session title in parallel).
    [follow_up] = [sent["body"] for sent in fake.requests()
                   if any(m["role"] == "assistant" for m in sent["body"]["messages"])]
    assert SHELL_MARKER in json.dumps(follow_up).replace(f"echo {SHELL_MARKER}", "")
    assert answer_text() in result.stdout, explain("opencode", result, gateway)
    if model.endswith("deepseek-v4-pro"):
        assistant = next(m for m in follow_up["messages"] if m.get("tool_calls"))
        assert assistant["reasoning_content"] == REASONING_TEXT
