"""Codex CLI itself (npm `@openai/codex`, pinned in tests/node/package.json) against the real
gateway's Responses frontend, as CLIENTS.md sets it up: a custom model provider with
`wire_api = "responses"`, run with `codex exec`.

Codex speaks only the Responses API. `opencode-go/glm-5.1` and `opencode-go/deepseek-v4-pro`
are served on the OpenAI wire and `opencode-go/minimax-m2.7` on the Anthropic wire, so every
answer here is translated both ways; `opencode-go/gpt-5.6-luna` is on the Responses wire and
passes through. The tool round trip is Codex's own: the fake asks for `exec_command`, Codex runs
the shell command, and its output reaches the upstream in the next request.
CI installs Codex (`.ci/run`); there a missing install fails the tests, elsewhere it skips them.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gateway import __version__
from tests.fake_upstream import SHELL_MARKER, answer_text
from tests.node_clients import explain, installed_client

MODELS = ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7", "opencode-go/deepseek-v4-pro",
          "opencode-go/gpt-5.6-luna"]
TIMEOUT = 180

CONFIG = """\
model = "{model}"
model_provider = "gw"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false
[analytics]
enabled = false
[feedback]
enabled = false
[otel]
exporter = "none"
[model_providers.gw]
name = "gateway"
base_url = "{base_url}/v1"
env_key = "GW_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


@pytest.fixture(scope="module")
def codex() -> Path:
    return installed_client("codex", "Codex CLI")


def run_codex(codex: Path, gateway_url: str, model: str, prompt: str,
              tmp_path: Path) -> subprocess.CompletedProcess:
    home, codex_home, workdir = (tmp_path / name for name in ("home", "codex-home", "work"))
    for directory in (home, codex_home, workdir):
        directory.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(model=model, base_url=gateway_url))
    env = {name: value for name, value in os.environ.items()
           if name in ("PATH", "LANG", "LC_ALL")}
    env.update({"HOME": str(home), "CODEX_HOME": str(codex_home), "GW_KEY": "anything",
                "NO_COLOR": "1"})
    return subprocess.run(
        [str(codex), "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral",
         "--color", "never", "-C", str(workdir), prompt],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("model", MODELS)
def test_codex_prints_the_answer(codex, gateway, fake, tmp_path, model):
    result = run_codex(codex, gateway.url, model, "say hi", tmp_path)
    assert result.returncode == 0, explain("codex", result, gateway)
    assert answer_text() in result.stdout, explain("codex", result, gateway)
    [sent] = fake.requests()
    wire = {"glm-5.1": "/v1/chat/completions", "deepseek-v4-pro": "/v1/chat/completions",
            "minimax-m2.7": "/v1/messages", "gpt-5.6-luna": "/v1/responses"}[model.split("/")[1]]
    assert sent["path"] == wire
    # OpenCode Go's edge blocks a library's User-Agent: Codex's own goes first, then ours.
    agent = sent["headers"]["user-agent"]
    assert agent.startswith("codex_exec/") and agent.endswith(f" opencode-gateway/{__version__}")
    # Codex's session id (its `session-id` header and `prompt_cache_key`) is the upstream's.
    assert len(sent["headers"]["x-opencode-session"]) >= 32


@pytest.mark.parametrize("model", MODELS)
def test_codex_tool_round_trip(codex, gateway, fake, tmp_path, model):
    result = run_codex(codex, gateway.url, model, "[[fake: run=exec_command]] greet", tmp_path)
    assert result.returncode == 0, explain("codex", result, gateway)
    assert answer_text() in result.stdout, explain("codex", result, gateway)
    first, second = fake.requests()
    assert first["headers"]["x-opencode-session"] == second["headers"]["x-opencode-session"]
    # The command's output went back to the model, in the upstream's own protocol.
    sent_back = json.dumps(second["body"])
    assert SHELL_MARKER in sent_back.replace(f"echo {SHELL_MARKER}", "")
    if model.endswith("deepseek-v4-pro"):
        # DeepSeek wants its reasoning back on the tool-call turn: Codex returns it as a
        # `reasoning` item (summary text), and the gateway puts it back as reasoning_content.
        assistant = next(m for m in second["body"]["messages"] if m.get("tool_calls"))
        assert assistant["reasoning_content"]
