"""Claude Code itself (npm `@anthropic-ai/claude-code`, pinned in tests/node/package.json) against
the real gateway process, in front of the fake upstream, run as a new user would: `claude -p`.

Claude Code sends what a classic Messages API refuses (`thinking: adaptive`, `context_management`,
`output_config`, `anthropic-beta`, a system-role message inside `messages`); the fake upstream
refuses those on `/messages` with a 400, so an answer on `opencode-go/minimax-m2.7` proves the
gateway's normalisation, and one on `opencode-go/glm-5.1` the Anthropic → OpenAI translation.

CI installs Claude Code (`cd tests/node && npm install`, in .ci/run); there a missing install
fails the tests, elsewhere it skips them.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gateway import __version__
from tests.fake_upstream import (REASONING_TEXT, SHELL_MARKER, anthropic_tool_id, answer_text,
                                 completion_tokens, openai_tool_id, tool_name)
from tests.node_clients import explain, installed_client

# Anthropic wire (passed through, normalised) and OpenAI wire (translated), two models each.
MODELS = ["opencode-go/minimax-m2.7", "opencode-go/glm-5.1", "opencode-go/qwen3.7-plus",
          "opencode-go/deepseek-v4-pro"]
ANTHROPIC_WIRE = ("minimax", "qwen")
# Generous: a cold start of the 400 MB binary on a busy CI machine, and a second turn after tools.
TIMEOUT = 240


@pytest.fixture(scope="module")
def claude() -> Path:
    return installed_client("claude", "Claude Code")


def run_claude(claude: Path, gateway_url: str, model: str, prompt: str, tmp_path: Path,
               *extra_args: str, api_key: str = "anything") -> subprocess.CompletedProcess:
    """`claude -p PROMPT` as CLIENTS.md runs it."""
    return run_claude_command(claude, gateway_url, model, tmp_path, "-p", *extra_args, prompt,
                              api_key=api_key)


def run_claude_command(claude: Path, gateway_url: str, model: str, tmp_path: Path, *args: str,
                       api_key: str = "anything", essential_only: bool = True,
                       minimal_env: bool = False) -> subprocess.CompletedProcess:
    """`claude ARGS` with a fresh HOME and nothing of this machine's own environment that could
    point Claude Code elsewhere (only PATH and the locale carry over). `minimal_env` sets only
    what a new user sets: the base URL, a key and the model."""
    home = tmp_path / "home"
    project = tmp_path / "project"
    home.mkdir(exist_ok=True)
    project.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL") if name in os.environ}
    env.update({
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway_url,
        "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_MODEL": model,
    })
    if not minimal_env:
        env.update({"ANTHROPIC_SMALL_FAST_MODEL": model, "DISABLE_AUTOUPDATER": "1"})
        if essential_only:
            env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    return subprocess.run([str(claude), *args], cwd=project, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_prints_the_answer(claude, gateway, fake, tmp_path, model):
    result = run_claude(claude, gateway.url, model, "say hi", tmp_path)

    assert result.returncode == 0, explain("claude", result, gateway)
    assert answer_text() in result.stdout, explain("claude", result, gateway)
    [sent] = fake.requests()
    # OpenCode Go's edge blocks a library's User-Agent: Claude Code's own goes first, then ours.
    agent = sent["headers"]["user-agent"]
    assert agent.startswith("claude-cli/") and agent.endswith(f" opencode-gateway/{__version__}")
    if any(family in model for family in ANTHROPIC_WIRE):
        assert sent["path"] == "/v1/messages"
        assert "anthropic-beta" not in sent["headers"]
        assert not {"thinking", "context_management", "output_config"} & set(sent["body"])
        assert {m["role"] for m in sent["body"]["messages"]} <= {"user", "assistant"}
    else:
        assert sent["path"] == "/v1/chat/completions"
        assert sent["body"]["stream_options"] == {"include_usage": True}
    # Claude Code's own system prompt and tools reach the model.
    assert "Claude" in json.dumps(sent["body"].get("system") or sent["body"]["messages"][0])
    assert len(sent["body"]["tools"]) > 3


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_with_only_base_url_key_and_model_set(claude, gateway, tmp_path, model):
    # A new user sets just these three; Claude Code then also probes /api/hello and tries its
    # own telemetry hosts (unreachable here), which must not get in the way.
    result = run_claude_command(claude, gateway.url, model, tmp_path, "-p", "say hi",
                                minimal_env=True)
    assert result.returncode == 0, explain("claude", result, gateway)
    assert answer_text() in result.stdout, explain("claude", result, gateway)


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_reports_the_answer_and_usage_as_json(claude, gateway, tmp_path, model):
    result = run_claude(claude, gateway.url, model, "[[fake: reasoning deltas=4]] say hi",
                        tmp_path, "--output-format", "json")

    assert result.returncode == 0, explain("claude", result, gateway)
    report = json.loads(result.stdout)
    assert report["is_error"] is False
    assert report["result"] == answer_text(4)
    assert report["stop_reason"] == "end_turn"
    assert report["usage"]["output_tokens"] == completion_tokens(deltas=4, reasoning=True)


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_tool_round_trip(claude, gateway, fake, tmp_path, model):
    # The fake asks for two tools Claude Code does not have; Claude Code answers each call with
    # an error tool_result and asks again, which the fake answers with text.
    result = run_claude(claude, gateway.url, model,
                        "[[fake: reasoning tools=2 text]] what is the weather", tmp_path)

    assert result.returncode == 0, explain("claude", result, gateway)
    assert answer_text() in result.stdout
    first, second = fake.requests()
    messages = second["body"]["messages"]
    if any(family in model for family in ANTHROPIC_WIRE):
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert [b["type"] for b in messages[1]["content"]] == [
            "thinking", "text", "tool_use", "tool_use"]
        assert [(b["type"], b["tool_use_id"]) for b in messages[2]["content"]] == [
            ("tool_result", anthropic_tool_id(0)), ("tool_result", anthropic_tool_id(1))]
    else:
        assistant = next(m for m in messages if m["role"] == "assistant")
        assert [call["function"]["name"] for call in assistant["tool_calls"]] == [
            tool_name(0), tool_name(1)]
        assert [(m["role"], m["tool_call_id"]) for m in messages[-2:]] == [
            ("tool", openai_tool_id(0)), ("tool", openai_tool_id(1))]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("model", MODELS)
def test_claude_code_runs_the_shell_command_the_model_asked_for(claude, start_gateway, fake,
                                                                tmp_path, model, workers):
    gateway = start_gateway(workers=workers)
    # The prompt goes before --allowedTools, which takes several values.
    result = run_claude_command(claude, gateway.url, model, tmp_path, "-p",
                                "[[fake: run=Bash]] greet me", "--allowedTools", "Bash")
    assert result.returncode == 0, explain("claude", result, gateway)
    assert answer_text() in result.stdout, explain("claude", result, gateway)
    first, second = fake.requests()
    sent_back = json.dumps(second["body"]).replace(f"echo {SHELL_MARKER}", "")
    assert SHELL_MARKER in sent_back  # the command ran, and its output reached the model
    if model.endswith("deepseek-v4-pro"):
        # DeepSeek refuses a tool-call turn without its reasoning: it went back with it.
        assistant = next(m for m in second["body"]["messages"] if m.get("tool_calls"))
        assert assistant["reasoning_content"] == REASONING_TEXT


def test_claude_code_on_a_locked_gateway_sends_its_key(claude, start_gateway, fake, tmp_path):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "client-key"})
    result = run_claude(claude, gateway.url, MODELS[0], "say hi", tmp_path, api_key="client-key")
    assert result.returncode == 0, explain("claude", result, gateway)
    assert answer_text() in result.stdout
    # The client's key is the gateway's business only; the upstream gets the instance key.
    assert fake.last_request()["key"] == "test-key"


def test_claude_doctor_finds_the_gateway_reachable(claude, gateway, tmp_path):
    # Claude Code's connectivity check (also its first-run preflight) asks the base URL's
    # /api/hello and wants a 200; it is skipped when non-essential traffic is off.
    result = run_claude_command(claude, gateway.url, MODELS[0], tmp_path, "doctor",
                                essential_only=False)
    assert result.returncode == 0, explain("claude", result, gateway)
    assert "answered HTTP 200" in result.stdout, explain("claude", result, gateway)
