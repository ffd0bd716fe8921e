"""Model fallbacks over real sockets (`routing.fallbacks`): when no key can serve a model, the
next model in its list answers, before the first byte; the answer names the model that
answered and `x-gateway-fallback` says that a fallback happened and why."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.gateway_process import REPO
from tests.test_limits_and_keys import call

BACKUP_KEY = "backup-key-0001"


def config_text(fake, fallbacks: str, extra: str = "", backup: bool = True) -> str:
    backends = f"""
backends:
  opencode-go: {{}}
  backup: {{api_url: "{fake.url}", api_key: "{BACKUP_KEY}"}}""" if backup else ""
    return f"""{backends}
quota: {{usage_poll_seconds: 0}}
routing:
  fallbacks:
{fallbacks}
{extra}"""


def chat(gateway, model: str, stream: bool = False, key: str | None = None):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    request_headers = {"authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(gateway.url + "/v1/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              **request_headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def upstream_models(fake) -> list[tuple[str, str]]:
    return [(r["key"], r["body"].get("model")) for r in fake.requests()]


def test_every_key_at_its_limit_falls_back_to_the_next_model_that_can_answer(start_gateway,
                                                                           fake):
    gateway = start_gateway(config_text=config_text(
        fake, "    deepseek-v4-pro: [deepseek-v4-flash, backup/glm-5.1]"))
    fake.set_limit("test-key", "5 hour")
    status, headers, body = chat(gateway, "opencode-go/deepseek-v4-pro")
    assert status == 200, body
    assert json.loads(body)["model"] == "glm-5.1"  # the model that answered
    said = {name.lower(): value for name, value in headers.items()}["x-gateway-fallback"]
    assert said.startswith("deepseek-v4-pro -> glm-5.1; ") and "usage limit" in said
    # The limited key was asked once; it was then known to be spent, and the backup answered.
    assert upstream_models(fake) == [("test-key", "deepseek-v4-pro"), (BACKUP_KEY, "glm-5.1")]
    # A stream falls back the same way: nothing had reached the client.
    status, headers, body = chat(gateway, "opencode-go/deepseek-v4-pro", stream=True)
    assert status == 200 and b'"model":"glm-5.1"' in body
    assert "x-gateway-fallback" in {name.lower() for name in headers}


def test_a_model_without_fallbacks_or_a_final_error_is_answered_as_before(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(
        fake, "    deepseek-v4-pro: [backup/glm-5.1]"))
    status, headers, _ = chat(gateway, "opencode-go/deepseek-v4-pro")
    assert status == 200 and "x-gateway-fallback" not in {n.lower() for n in headers}
    fake.reset()
    # An error that is not "no key can serve the model" is the client's answer.
    body = {"model": "opencode-go/deepseek-v4-pro", "stream": False,
            "messages": [{"role": "user", "content": "[[fake: error=400]]"}]}
    status, answer = call(gateway.url + "/v1/chat/completions", body)
    assert status == 400
    assert [model for _, model in upstream_models(fake)] == ["deepseek-v4-pro"]
    fake.set_limit("test-key", "5 hour")
    status, _, answer = chat(gateway, "opencode-go/kimi-k2.5")  # no fallbacks listed
    assert status == 429


def test_a_client_falls_back_only_to_models_it_may_use(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(
        fake, "    deepseek-v4-pro: [backup/glm-5.1, backup/deepseek-v4-flash]",
        extra="server:\n  clients:\n    - {name: alice, key: alice-key-0001, "
              "models: [deepseek-*]}\n"))
    fake.set_limit("test-key", "5 hour")
    status, headers, body = chat(gateway, "opencode-go/deepseek-v4-pro", key="alice-key-0001")
    assert status == 200, body
    assert json.loads(body)["model"] == "deepseek-v4-flash"  # glm-5.1 is not hers
    fake.set_limit(BACKUP_KEY, "weekly")
    status, _, body = chat(gateway, "opencode-go/deepseek-v4-pro", key="alice-key-0001")
    assert status == 429
    assert "fallbacks tried" in json.loads(body)["error"]["message"]


def test_a_model_the_upstream_no_longer_lists_falls_back(start_gateway, fake):
    fake.models(remove=["deepseek-v4-pro"])
    # One backend: a bare id is then its (two backends listing it would make it ambiguous).
    gateway = start_gateway(config_text=config_text(
        fake, "    deepseek-v4-pro: [deepseek-v4-flash]", backup=False))
    deadline = time.monotonic() + 10
    while b"opencode-go/deepseek-v4-pro" in call(gateway.url + "/v1/models")[1]:
        assert time.monotonic() < deadline, "the gateway never read the upstream's list"
        time.sleep(0.1)
    status, headers, body = chat(gateway, "deepseek-v4-pro")
    assert status == 200, body
    assert json.loads(body)["model"] == "deepseek-v4-flash"
    assert "not served" in {n.lower(): v for n, v in headers.items()}["x-gateway-fallback"]


def test_routes_shows_the_fallbacks(tmp_path, fake):
    config = tmp_path / "gateway.yaml"
    config.write_text(config_text(fake, "    deepseek-v4-pro: [deepseek-v4-flash]\n"
                                        "    deepseek-v4-flash: [backup/glm-5.1]"))
    shown = subprocess.run([sys.executable, "-m", "gateway", "routes",
                            "opencode-go/deepseek-v4-pro", "--config", str(config)], cwd=REPO, capture_output=True, text=True,
                           timeout=60, env={"OPENCODE_GO_API_KEY": "k", "PATH": "/usr/bin"})
    assert shown.returncode == 0, shown.stderr
    assert "fallbacks    : deepseek-v4-flash, backup/glm-5.1" in shown.stdout


def test_a_model_capped_on_every_key_falls_back_on_the_same_key(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(
        fake, "    deepseek-v4-pro: [deepseek-v4-flash]", backup=False))
    fake.cap_model("test-key", "deepseek-v4-pro")
    status, headers, body = chat(gateway, "opencode-go/deepseek-v4-pro")
    assert status == 200, body
    assert json.loads(body)["model"] == "deepseek-v4-flash"
    said = {n.lower(): v for n, v in headers.items()}["x-gateway-fallback"]
    assert said.startswith("deepseek-v4-pro -> deepseek-v4-flash; ") and "capped" in said
    # The cap rests the key for that model only: the fallback ran on the same key.
    assert upstream_models(fake)[-1] == ("test-key", "deepseek-v4-flash")
