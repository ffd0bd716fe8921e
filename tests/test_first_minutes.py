"""The first ten minutes: each usual mistake a new user makes is answered with one sentence that
names the cause and the fix (issue 27)."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway import __version__
from tests.gateway_process import REPO, GatewayProcess
from tests.http_requests import post_json
from tests.node_clients import in_ci

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def cli(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_GO_")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, env={**environment, **(env or {})})


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def message_of(body: bytes) -> str:
    return json.loads(body)["error"]["message"]


# --- no OpenCode Go key ---------------------------------------------------------------------------

def test_without_a_key_the_start_warns_and_each_request_says_the_gateway_has_no_key(start_gateway):
    gateway = start_gateway(env={"OPENCODE_GO_API_KEY": ""})
    warnings = [line for line in gateway.json_lines() if line.get("level") == "warning"]
    assert any("OPENCODE_GO_API_KEY" in line["message"] and "no OpenCode Go key" in line["message"]
               for line in warnings), gateway.log()
    status, _, body = post_json(gateway.url + CHAT, chat("opencode-go/glm-5.1"))
    assert status == 503
    message = message_of(body)
    assert "gateway has no OpenCode Go key" in message       # the cause: the gateway's, not yours
    assert "set OPENCODE_GO_API_KEY" in message and "restart" in message   # the fix
    status, _, body = post_json(gateway.url + MESSAGES, {**chat("opencode-go/glm-5.1"),
                                                         "max_tokens": 10})
    assert status == 503 and "OPENCODE_GO_API_KEY" in json.loads(body)["error"]["message"]


# --- misspelt model ids ---------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["glm5.1", "GLM-5.1", "opencod-go/glm-5.1"])
def test_a_misspelt_model_gets_the_id_it_meant(gateway, typed):
    status, _, body = post_json(gateway.url + CHAT, chat(typed))
    assert status == 404
    message = message_of(body)
    assert f"model {typed!r} is not served" in message
    assert "Did you mean opencode-go/glm-5.1?" in message
    # the suggestion comes before the list, where a reader sees it
    assert message.index("Did you mean") < message.index("Available models")


def test_a_model_far_from_any_id_gets_no_guess(gateway):
    status, _, body = post_json(gateway.url + CHAT, chat("claude-3-haiku"))
    assert status == 404 and "Did you mean" not in message_of(body)


class _RefusesModels(BaseHTTPRequestHandler):
    """OpenCode Go for an id it does not serve (UPSTREAM.md: 401 ModelError)."""

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "glm-5.1"}, {"id": "kimi-k2.6"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        model = "glm-5.l"
        self._send(401, {"type": "error", "error": {"type": "ModelError",
                                                    "message": f"Model {model} is not supported"}})

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_misspelt_id_with_the_backend_named_gets_the_id_it_meant(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusesModels)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gateway = GatewayProcess(f"http://127.0.0.1:{server.server_port}/v1", tmp_dir=tmp_path).start()
    try:
        status, _, body = post_json(gateway.url + CHAT, chat("opencode-go/glm-5.l"))
        assert 400 <= status < 500
        message = message_of(body)
        assert "not supported" in message and message.endswith("Did you mean opencode-go/glm-5.1?")
    finally:
        gateway.stop()
        server.shutdown()


# --- misspelt config ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, cause, fix", [
    ("upstream:\n  max_conections: 10\n", "unknown field `max_conections` in `upstream`",
     "Did you mean `max_connections`?"),
    ("backends:\n  opencode-go:\n    extra:\n      model_protocol_overrides: {my-model: openia}\n",
     "`openia` is not one of", "Did you mean `openai`?"),
    ("state:\n  backend: sqllite\n", "`state.backend`: `sqllite`", "Did you mean `sqlite`?"),
])
def test_a_misspelt_config_field_or_value_gets_the_one_it_meant(tmp_path, text, cause, fix):
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert str(path) in line and cause in line and fix in line


# --- the command line -----------------------------------------------------------------------------

def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"opencode-gateway {__version__}"


def test_the_bare_command_prints_help_listing_the_commands():
    result = cli()
    assert result.returncode == 0 and result.stderr == ""
    for command in ("serve", "routes", "models", "usage", "check-config"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout


def test_a_port_in_use_is_one_line_naming_it_and_nothing_claims_to_serve(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), timeout=30,
                     env={"OPENCODE_GO_API_KEY": "k", "XDG_STATE_HOME": str(tmp_path)})
    assert result.returncode == 2
    lines = [json.loads(line) for line in (result.stdout + result.stderr).splitlines()]
    errors = [line["message"] for line in lines if line["level"] == "error"]
    assert len(errors) == 1
    assert f"port {port}" in errors[0] and "already in use" in errors[0] and "--port" in errors[0]
    assert not [line for line in lines if re.search(r"serving|Running on", line["message"])]


def test_usage_without_any_ledger_says_so_instead_of_printing_zeros(tmp_path):
    result = cli("usage", env={"XDG_STATE_HOME": str(tmp_path)})
    assert result.returncode == 1 and result.stdout == ""
    assert "no usage recorded yet" in result.stderr and "opencode-gateway serve" in result.stderr
    assert "/v1/usage" in result.stderr


def test_usage_with_a_ledger_prints_it(start_gateway):
    gateway = start_gateway()
    assert post_json(gateway.url + CHAT, chat("opencode-go/glm-5.1"))[0] == 200
    env = {"XDG_STATE_HOME": gateway.environment["XDG_STATE_HOME"],
           "OPENCODE_GO_API_KEY": "test-key"}

    def glm_requests():
        report = json.loads(cli("usage", "--json", env=env).stdout)
        return sum(m["requests"] for m in report["models_today"] if m["model"] == "glm-5.1")

    deadline = time.monotonic() + 10
    while glm_requests() < 1:    # the gateway writes its ledger every state.sync_seconds
        assert time.monotonic() < deadline, "the ledger never showed the request"
        time.sleep(0.2)
    text = cli("usage", env=env)
    assert text.returncode == 0 and "glm-5.1" in text.stdout and "5 hours" in text.stdout


# --- the log --------------------------------------------------------------------------------------

def test_every_log_line_is_json_and_the_readme_jq_recipe_works(start_gateway):
    gateway = start_gateway(workers=2)
    assert post_json(gateway.url + CHAT, chat("opencode-go/glm-5.1"))[0] == 200
    assert post_json(gateway.url + CHAT, chat("nope"))[0] == 404
    gateway.access_lines(at_least=2)
    gateway.stop()   # the shutdown's lines too
    lines = gateway.log().splitlines()
    assert len(lines) > 4
    for line in lines:
        json.loads(line)   # hypercorn's "Running on" and the shutdown included
    readme = (REPO / "README.md").read_text()
    [recipe] = re.findall(r"opencode-gateway serve 2>&1 \| jq -c '([^']+)'", readme)
    jq = shutil.which("jq")
    if jq is None:
        message = "jq is not installed (apt-get install jq; .ci/run does)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([jq, "-c", recipe], input=gateway.log(), text=True,
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    [failed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert failed["status"] == 404 and failed["model"] == "nope"


# --- where am I -----------------------------------------------------------------------------------

def get(url: str, accept: str = "*/*") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, answer.headers["content-type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read()


def test_the_root_names_the_endpoints_the_dashboard_and_the_version(gateway):
    status, kind, body = get(gateway.url + "/")
    assert status == 200 and kind.startswith("application/json")
    landing = json.loads(body)
    assert landing["version"] == __version__ and landing["dashboard"] == "/dashboard"
    paths = {endpoint["path"] for endpoint in landing["endpoints"]}
    assert {"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/models"} <= paths
    status, kind, page = get(gateway.url + "/", "text/html,application/xhtml+xml")
    assert status == 200 and kind.startswith("text/html")
    assert b'href="/dashboard"' in page and __version__.encode() in page
    assert b"/v1/chat/completions" in page


def test_an_unknown_path_names_the_endpoints_and_the_base_urls(gateway):
    # An OpenAI client whose base URL lacks /v1 asks for /chat/completions.
    status, _, body = post_json(gateway.url + "/chat/completions", chat("opencode-go/glm-5.1"))
    assert status == 404
    message = message_of(body)
    assert "POST /chat/completions" in message                 # the cause
    assert "POST /v1/chat/completions" in message               # the doors
    assert f"base URL {gateway.url}/v1" in message              # the fix
    assert "Did you mean /v1/chat/completions?" in message


def test_a_misspelt_path_gets_the_one_it_meant(gateway):
    status, _, body = post_json(gateway.url + "/v1/chat/completion", chat("opencode-go/glm-5.1"))
    assert status == 404 and "Did you mean /v1/chat/completions?" in message_of(body)


def test_slow_commands_say_what_they_wait_for_on_a_terminal_only(fake):
    """`doctor` on a terminal shows what it waits for, then erases it; piped, nothing extra."""
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_GO_")}
    env.update({"OPENCODE_GO_API_URL": fake.url, "OPENCODE_GO_API_KEY": "test-key"})
    command = [sys.executable, "-m", "gateway", "doctor"]
    main, side = pty.openpty()
    try:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=side, text=True)
        out, _ = process.communicate(timeout=60)
        os.close(side)
        side = None
        seen = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:   # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if side is not None:
            os.close(side)
        os.close(main)
    assert "… asking OpenCode Go about 1 key(s)" in seen.decode()
    assert "\x1b[K" in seen.decode()                 # erased once done
    piped = cli("doctor", env={"OPENCODE_GO_API_URL": fake.url, "OPENCODE_GO_API_KEY": "test-key"})
    assert "…" not in piped.stderr and "…" not in piped.stdout
    assert out.splitlines()[0] == piped.stdout.splitlines()[0]   # the report itself, unchanged
