"""OpenCode Go as it is in December 2026 (UPSTREAM.md, "What moved since September 2026"), end
to end over real sockets against the fake upstream, which now blocks a missing or library
User-Agent at its edge, serves both URL layouts and answers OpenCode's odd errors.

Identity: every upstream call says which tool called through which gateway. Layouts: the gateway
finds `/zen/go` or `/inference/go` from the URL. Errors: each is read by what it means (a
CreditsError is a spent balance, a ModelError an unknown id, an HTML 403 Cloudflare's edge, ...),
and every one the client sees names the instance, never its key."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import anthropic
import openai
import pytest

import gateway as gateway_package
from gateway.config import ConfigError, load_config
from gateway.upstream.instances import build_pools
from gateway.upstream.urls import call_url
from tests.conversations import sessions_preferring
from tests.fake_upstream import CONSOLE_REGIONS_MESSAGE, EDGE_RAY_ID, answer_text
from tests.gateway_process import REPO
from tests.http_requests import post_json as post

OWN = f"opencode-gateway/{gateway_package.__version__}"
TWO_KEYS = {"OPENCODE_GO_API_KEY_1": "k1", "OPENCODE_GO_API_KEY_2": "k2"}
MODELS = {"/chat/completions": "opencode-go/glm-5.1", "/messages": "opencode-go/minimax-m2.7",
          "/responses": "opencode-go/gpt-5.6-luna"}


def chat(gateway, text="hi", model="opencode-go/glm-5.1", headers=None, session=None):
    headers = dict(headers or {})
    if session:
        headers["x-opencode-session"] = session
    return post(gateway.url + "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": text}]}, headers)


def message_of(body: bytes) -> str:
    return json.loads(body)["error"]["message"]


def usage_keys(gateway) -> dict:
    with urllib.request.urlopen(gateway.url + "/v1/usage", timeout=5) as answer:
        return {key["instance"]: key for key in json.loads(answer.read())["keys"]}


# --- 1. identity -----------------------------------------------------------------------------

def test_every_upstream_call_says_it_comes_through_the_gateway(gateway, fake):
    """Model calls on each wire, /models and /usage: the client here is urllib, a bare library,
    so the User-Agent is the gateway's own token alone (and the edge lets it through)."""
    for model in MODELS.values():
        status, _, body = chat(gateway, model=model)
        assert status == 200, body
    seen = fake.requests(everything=True)
    assert {r["path"] for r in seen} >= {"/v1/chat/completions", "/v1/messages",
                                         "/v1/responses", "/v1/models", "/v1/usage"}
    assert {r["headers"]["user-agent"] for r in seen} == {OWN}


@pytest.mark.parametrize("client_ua", [
    "claude-cli/2.1.3 (external, cli)", "opencode/1.4.2", "codex_exec/0.169.0 (Ubuntu 24.4.0)",
    "GeminiCLI/0.9.0 (linux; x64)"])
def test_the_clients_own_product_token_comes_first(gateway, fake, client_ua):
    assert chat(gateway, headers={"user-agent": client_ua})[0] == 200
    assert fake.last_request()["headers"]["user-agent"] == f"{client_ua} {OWN}"


@pytest.mark.parametrize("library_ua", [
    "python-requests/2.32.3", "Python/3.12 aiohttp/3.10.5", "python-httpx/0.27.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "undici", "axios/1.7.2",
    "curl/8.5.0", "Go-http-client/2.0", "okhttp/4.12.0", "Java/17.0.2"])
def test_a_bare_library_user_agent_is_dropped(gateway, fake, library_ua):
    assert chat(gateway, headers={"user-agent": library_ua})[0] == 200
    assert fake.last_request()["headers"]["user-agent"] == OWN


def test_the_sdks_say_who_they_are(gateway, fake):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        client.chat.completions.create(model="opencode-go/glm-5.1",
                                       messages=[{"role": "user", "content": "hi"}])
    with anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0) as client:
        client.messages.create(model="opencode-go/minimax-m2.7", max_tokens=50,
                               messages=[{"role": "user", "content": "hi"}])
    first, second = (r["headers"]["user-agent"] for r in fake.requests())
    assert first.startswith("OpenAI/Python ") and first.endswith(" " + OWN)
    assert second.startswith("Anthropic/Python ") and second.endswith(" " + OWN)


def test_opencode_headers_pass_on_and_none_is_made_up(gateway, fake):
    assert chat(gateway, headers={"x-opencode-project": "proj_42",
                                  "x-opencode-request": "msg_7",
                                  "x-opencode-client": "cli"})[0] == 200
    assert chat(gateway)[0] == 200
    forwarded, plain = (r["headers"] for r in fake.requests())
    assert (forwarded["x-opencode-project"], forwarded["x-opencode-request"]) == (
        "proj_42", "msg_7")
    assert "x-opencode-client" not in forwarded and "x-opencode-client" not in plain
    assert "x-opencode-project" not in plain


def test_an_instance_may_say_its_own_name(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS, config_text="""
backends:
  opencode-go:
    instances:
      opencode-go.2: {user_agent: "acme-router/2.0"}
""")
    for key, session in (("k1", sessions_preferring("k1", 1)[0]),
                         ("k2", sessions_preferring("k2", 1)[0])):
        assert chat(gateway, session=session, headers={"user-agent": "opencode/1.4.2"})[0] == 200
    agents = {r["key"]: r["headers"]["user-agent"] for r in fake.requests()}
    assert agents == {"k1": f"opencode/1.4.2 {OWN}", "k2": "opencode/1.4.2 acme-router/2.0"}


def check_config(tmp_path, text: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


@pytest.mark.parametrize("text, field", [
    ('backends: {opencode-go: {user_agent: ""}}', "`backends.opencode-go.user_agent`"),
    ('backends: {opencode-go: {user_agent: "${UNSET_UA:-}"}}', "`backends.opencode-go.user_agent`"),
    ('backends: {opencode-go: {instances: {opencode-go: {user_agent: "  "}}}}',
     "`backends.opencode-go.instances.opencode-go.user_agent`"),
])
def test_an_empty_user_agent_is_refused_at_start(tmp_path, text, field):
    done = check_config(tmp_path, text)
    assert done.returncode == 2
    assert "instance opencode-go" in done.stderr and field in done.stderr
    assert "empty" in done.stderr


# --- 2. both URL layouts ---------------------------------------------------------------------

def test_the_inference_layout_is_found_and_used(start_gateway, fake):
    gateway = start_gateway(env={"OPENCODE_GO_API_URL": fake.inference_url})
    for model in MODELS.values():
        status, _, body = chat(gateway, model=model)
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"] == answer_text()
    seen = fake.requests(everything=True)
    assert {r["path"] for r in seen} >= {
        "/inference/go/openai/v1/chat/completions", "/inference/go/anthropic/v1/messages",
        "/inference/go/openai/v1/responses", "/inference/go/v1/models",
        "/inference/go/v1/usage"}
    assert all(r["path"].startswith("/inference/go/") for r in seen)
    messages = next(r for r in seen if r["path"].endswith("/messages"))
    assert messages["headers"]["authorization"] == "Bearer test-key"  # Bearer works there
    assert "inference layout at " + fake.inference_url in gateway.log()


def test_routes_says_which_layout(fake):
    def routes(url):
        return subprocess.run([sys.executable, "-m", "gateway", "routes",
                               "opencode-go/minimax-m2.7"], cwd=REPO, capture_output=True,
                              text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "OPENCODE_GO_API_URL": url,
                                   "OPENCODE_GO_API_KEY": "k"}).stdout
    zen, inference = routes("https://opencode.ai/zen/go"), routes("https://opencode.ai/inference/go/")
    assert "URL layout   : zen layout at https://opencode.ai/zen/go/v1" in zen
    assert "POST https://opencode.ai/zen/go/v1/messages" in zen and "x-api-key: <key>" in zen
    assert "URL layout   : inference layout at https://opencode.ai/inference/go" in inference
    assert "POST https://opencode.ai/inference/go/anthropic/v1/messages" in inference


@pytest.mark.parametrize("url, base, layout", [
    ("https://opencode.ai/zen/go", "https://opencode.ai/zen/go/v1", "zen"),
    ("https://opencode.ai/zen/go/", "https://opencode.ai/zen/go/v1", "zen"),
    ("https://opencode.ai/zen/go/v1", "https://opencode.ai/zen/go/v1", "zen"),
    ("https://opencode.ai/inference/go", "https://opencode.ai/inference/go", "inference"),
    ("http://127.0.0.1:9100/v1", "http://127.0.0.1:9100/v1", "zen"),
])
def test_each_url_is_placed(url, base, layout):
    pools = build_pools(load_config(None), {"OPENCODE_GO_API_URL": url,
                                            "OPENCODE_GO_API_KEY": "k"})
    [instance] = pools["opencode-go"].instances
    assert (instance.api_url, instance.layout.name) == (base, layout)


@pytest.mark.parametrize("url, gemini", [
    ("https://opencode.ai/zen/go", "https://opencode.ai/inference/go/google/v1beta"),
    ("https://opencode.ai/inference/go", "https://opencode.ai/inference/go/google/v1beta"),
    ("http://127.0.0.1:9100/v1", "http://127.0.0.1:9100/google/v1beta"),
])
def test_each_layout_builds_every_wires_url(url, gemini):
    pools = build_pools(load_config(None), {"OPENCODE_GO_API_URL": url,
                                            "OPENCODE_GO_API_KEY": "k"})
    [instance] = pools["opencode-go"].instances
    inference = instance.layout.name == "inference"
    assert call_url(instance, "openai") == instance.api_url + (
        "/openai/v1/chat/completions" if inference else "/chat/completions")
    assert call_url(instance, "anthropic").endswith(
        "/anthropic/v1/messages" if inference else "/v1/messages")
    assert call_url(instance, "usage").endswith("/v1/usage")
    assert call_url(instance, "gemini", "glm-5.1", stream=True) == \
        gemini + "/models/glm-5.1:streamGenerateContent?alt=sse"


@pytest.mark.parametrize("url", ["https://opencode.ai/", "https://opencode.ai/inference/go/v1",
                                 "https://proxy.example/api"])
def test_a_url_that_fits_no_layout_is_refused_naming_instance_and_field(tmp_path, url):
    with pytest.raises(ConfigError) as refused:
        build_pools(load_config(None), {"OPENCODE_GO_API_URL": url, **TWO_KEYS})
    message = str(refused.value)
    assert "opencode-go.1, opencode-go.2" in message and "OPENCODE_GO_API_URL" in message
    assert "https://opencode.ai/inference/go" in message  # the fix
    done = check_config(tmp_path, f"backends: {{opencode-go: {{api_url: '{url}'}}}}")
    assert done.returncode == 2 and "`backends.opencode-go.api_url`" in done.stderr


# --- 3. errors by what they mean -------------------------------------------------------------

def test_a_credits_error_is_a_spent_balance_not_a_bad_key(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.refuse_key("k1", "credits")
    for session in sessions_preferring("k1", 3):
        status, _, body = chat(gateway, session=session)
        assert status == 200, body
    assert [r["key"] for r in fake.requests()] == ["k1", "k2", "k2", "k2"]  # k1 rests
    assert usage_keys(gateway)["opencode-go.1"]["limit"] == "balance"
    fake.refuse_key("k2", "credits")
    status, headers, body = chat(gateway)
    assert status == 429 and "retry-after" in headers
    message = message_of(body)
    assert "opencode-go.1: balance spent" in message and "opencode-go.2: balance spent" in message
    assert "tried again in 1h00m" in message or "tried again in 59m" in message
    assert "k1" not in message.replace("opencode-go.1", "")


def test_a_model_error_is_a_404_naming_the_id_and_its_neighbours(gateway, fake):
    status, _, body = chat(gateway, text="[[fake: refuse=model]]", model="opencode-go/glm-5.9")
    assert status == 404
    message = message_of(body)
    assert "'glm-5.9'" in message and "upstream opencode-go:" in message
    assert "nearest known ids: " in message and "glm-5.1" in message.split("nearest")[1]
    assert chat(gateway)[0] == 200  # the key was not rested
    assert [r["key"] for r in fake.requests()] == ["test-key", "test-key"]


def test_a_workspace_without_go_fails_over_and_is_named(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.refuse_key("k1", "entitlement")
    first, later = sessions_preferring("k1", 2)
    assert chat(gateway, session=first)[0] == 200
    assert chat(gateway, session=later)[0] == 200
    assert [r["key"] for r in fake.requests()] == ["k1", "k2", "k2"]
    fake.refuse_key("k2", "entitlement")
    status, _, body = chat(gateway)
    assert status == 403
    message = message_of(body)
    assert "opencode-go.2" in message and "no Go subscription" in message


def test_a_usage_limit_in_a_200_is_a_usage_limit(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.limit_in_200("k1", "weekly")
    session = sessions_preferring("k1", 1)[0]
    status, _, body = chat(gateway, session=session)
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == answer_text()
    assert [r["key"] for r in fake.requests()] == ["k1", "k2"]
    assert usage_keys(gateway)["opencode-go.1"]["limit"] == "weekly"


@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
def test_a_block_at_the_edge_is_said_in_the_clients_shape_and_not_retried(start_gateway, fake,
                                                                          frontend):
    gateway = start_gateway(env=TWO_KEYS)
    if frontend == "openai":
        status, _, body = chat(gateway, text="[[fake: refuse=edge]]")
        error = json.loads(body)["error"]
    else:
        status, _, body = post(gateway.url + "/v1/messages", {
            "model": "opencode-go/glm-5.1", "max_tokens": 20,
            "messages": [{"role": "user", "content": "[[fake: refuse=edge]]"}]})
        parsed = json.loads(body)
        assert parsed["type"] == "error"
        error = parsed["error"]
    assert status == 403
    assert "blocked at OpenCode's edge" in error["message"] and EDGE_RAY_ID in error["message"]
    assert "<html" not in body.decode().lower()
    assert len(fake.requests()) == 1  # another key would be blocked the same way
    assert all(key["status"] == "ok" for key in usage_keys(gateway).values())


@pytest.mark.parametrize("refuse, setting", [("regions", "Global regions"),
                                             ("training", "model training opt-in")])
def test_a_console_setting_is_named(gateway, fake, refuse, setting):
    status, _, body = chat(gateway, text=f"[[fake: refuse={refuse}]]",
                           model="opencode-go/deepseek-v4-flash")
    assert status == 400
    message = message_of(body)
    assert f'"{setting}"' in message and "upstream opencode-go:" in message
    if refuse == "regions":
        assert CONSOLE_REGIONS_MESSAGE in message


def test_a_cap_on_one_model_leaves_the_keys_other_models_served(gateway, fake):
    fake.cap_model("test-key", "deepseek-v4-pro", "5 hour", retry_after=3600)
    status, headers, body = chat(gateway, model="opencode-go/deepseek-v4-pro")
    assert status == 429 and 3500 <= int(headers["retry-after"]) <= 3600
    assert "deepseek-v4-pro" in message_of(body) and "opencode-go" in message_of(body)
    assert chat(gateway, model="opencode-go/deepseek-v4-flash")[0] == 200
    assert chat(gateway, model="opencode-go/deepseek-v4-pro")[0] == 429  # without asking again
    assert [r["body"]["model"] for r in fake.requests()] == ["deepseek-v4-pro",
                                                             "deepseek-v4-flash"]
    key = usage_keys(gateway)["opencode-go"]
    assert key["status"] == "ok"
    assert key["model_caps"]["deepseek-v4-pro"]["limit"] == "5 hour"


def test_a_capped_model_moves_to_the_other_key(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.cap_model("k1", "deepseek-v4-pro")
    first, later, other = sessions_preferring("k1", 3)
    assert chat(gateway, model="opencode-go/deepseek-v4-pro", session=first)[0] == 200
    assert chat(gateway, model="opencode-go/deepseek-v4-pro", session=later)[0] == 200
    assert chat(gateway, model="opencode-go/glm-5.1", session=other)[0] == 200
    assert [(r["key"], r["body"]["model"]) for r in fake.requests()] == [
        ("k1", "deepseek-v4-pro"), ("k2", "deepseek-v4-pro"), ("k2", "deepseek-v4-pro"),
        ("k1", "glm-5.1")]


def test_a_refused_key_is_the_gateways_not_the_clients(gateway, fake):
    fake.set_key("test-key", 401)
    status, _, body = chat(gateway)
    message = message_of(body)
    assert status == 502
    assert "OpenCode Go refused the gateway's key for instance opencode-go" in message
    assert "not the one your client sent" in message and "test-key" not in message
