"""The gateway as a user runs it: a real process over real sockets, in front of the fake upstream."""
import json
import subprocess
import sys
import urllib.error
import urllib.request

from tests.fake_upstream_client import free_port
from tests.gateway_process import REPO


def post(url, body, headers=None):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json",
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_streamed_answer_through_glm_5_1(gateway, fake):
    status, headers, body = post(gateway.url + "/v1/chat/completions", {
        "model": "opencode-go/glm-5.1", "stream": True,
        "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(event)["choices"][0]["delta"].get("content") or ""
                   for event in events[:-1])
    assert text == "héllo wörld 🎉 héllo wörld"
    [seen] = fake.requests()
    assert seen["body"]["model"] == "glm-5.1"
    assert seen["headers"]["authorization"] == "Bearer test-key"


def test_client_credentials_never_reach_the_upstream(gateway, fake):
    post(gateway.url + "/v1/chat/completions",
         {"model": "opencode-go/glm-5", "messages": [{"role": "user", "content": "hi"}]},
         headers={"authorization": "Bearer client-secret", "x-api-key": "client-secret-2",
                  "cookie": "session=1"})
    [seen] = fake.requests()
    flattened = json.dumps(seen["headers"])
    assert "client-secret" not in flattened and "cookie" not in seen["headers"]


def test_models_lists_every_model_for_both_kinds_of_client(gateway):
    with urllib.request.urlopen(gateway.url + "/v1/models") as answer:
        openai_ids = [model["id"] for model in json.load(answer)["data"]]
    assert "opencode-go/glm-5.1" in openai_ids and "opencode-go/minimax-m2.7" in openai_ids
    request = urllib.request.Request(gateway.url + "/v1/models",
                                     headers={"anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(request) as answer:
        listing = json.load(answer)
    assert [model["id"] for model in listing["data"]] == openai_ids
    assert listing["data"][0]["type"] == "model"


def test_unknown_backend_is_404_listing_models(gateway):
    status, _, body = post(gateway.url + "/v1/chat/completions",
                           {"model": "no-such-backend:x", "messages": []})
    error = json.loads(body)["error"]
    assert status == 404 and "opencode-go/kimi-k2.5" in error["message"]


def test_upstream_error_keeps_status_message_and_retry_after(gateway):
    status, headers, body = post(gateway.url + "/v1/chat/completions", {
        "model": "opencode-go/glm-5.1",
        "messages": [{"role": "user", "content": "[[fake: error=429 retry_after=3]]"}]})
    assert status == 429
    assert headers["retry-after"] == "3"
    assert json.loads(body)["error"]["message"] == "upstream opencode-go: fake upstream error 429"


def test_routes_command_prints_instance_flavour_and_url():
    env = {"PATH": "", "OPENCODE_GO_API_KEY_1": "sk-first-key-aaaa",
           "OPENCODE_GO_API_KEY_2": "sk-second-key-bbbb"}
    result = subprocess.run([sys.executable, "-m", "gateway", "routes", "opencode-go.2:kimi-k2.5"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert "opencode-go.2" in result.stdout
    assert "wire         : openai (models.dev" in result.stdout
    assert "POST https://opencode.ai/zen/go/v1/chat/completions" in result.stdout
    assert "sk-second-key" not in result.stdout and "****bbbb" in result.stdout


def test_check_config_fails_naming_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstream:\n  idle_timeout: soon\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(bad)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "$.upstream.idle_timeout" in result.stderr


def test_broken_rule_module_stops_start_up_with_its_name(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "15_typo.py").write_text("RULE = undefined_name\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--rules-dir", str(rules),
                             "--port", str(free_port())], cwd=REPO, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "15_typo.py" in result.stderr and "undefined_name" in result.stderr


def test_served_process_uses_the_config_file(start_gateway, fake):
    gateway = start_gateway(config_text="backends:\n  opencode-go:\n    extra:\n"
                                        "      model_protocol_overrides:\n        my-model: anthropic\n")
    status, _, body = post(gateway.url + "/v1/chat/completions", {
        "model": "my-model", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, body
    [seen] = fake.requests()
    assert seen["path"].endswith("/messages") and seen["body"]["model"] == "my-model"
