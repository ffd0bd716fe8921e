"""Sharing a subscription over real sockets: named clients with budgets, model lists and request
rates, usage per client and agent, who may see what, and clients managed at run time.

Costs: the fake upstream charges a few millionths of a dollar per answer, so the budgets here
are a few of those.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis

from tests.gateway_process import REPO
from tests.redis_server import redis_server, redis_url  # noqa: F401
from tests.test_limits_and_keys import assert_error_shape, call

ALICE, BOB, ADMIN, ANON = "alice-key-0123", "bob-key-4567", "admin-key-8901", "anon-key-2345"
SYNC_SECONDS = 0.25


def config_text(alice: str = "", bob: str = "", state: str = "", extra: str = "") -> str:
    return f"""
server:
  api_keys: ["{ANON}"]
  admin_keys: ["{ADMIN}"]
  clients:
    - name: alice
      key: "{ALICE}"
      {alice}
    - name: bob
      key: "{BOB}"
      {bob}
state: {{sync_seconds: {SYNC_SECONDS}{state}}}
quota: {{usage_poll_seconds: 0}}
{extra}"""


def chat(gateway, key: str, model: str = "opencode-go/glm-5.1", text: str = "hi",
         user_agent: str = "opencode/1.0.0", stream: bool = False):
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    return call(gateway.url + "/v1/chat/completions", body,
                {"authorization": f"Bearer {key}", "user-agent": user_agent})


def messages(gateway, key: str, model: str = "opencode-go/glm-5.1"):
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    return call(gateway.url + "/v1/messages", body,
                {"x-api-key": key, "anthropic-version": "2023-06-01",
                 "user-agent": "claude-cli/2.0.0 (external, cli)"})


def usage(gateway, key: str, by: str = "") -> tuple[int, dict]:
    status, body = call(gateway.url + "/v1/usage" + (f"?by={by}" if by else ""),
                        headers={"authorization": f"Bearer {key}"})
    return status, json.loads(body)


def wait_for(what, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def cli(gateway, *args: str) -> subprocess.CompletedProcess:
    """`opencode-gateway ARGS --config <the gateway's config>` with the gateway's environment."""
    config = gateway.args[gateway.args.index("--config") + 1]
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", config],
                          cwd=REPO, env=gateway.environment, capture_output=True, text=True,
                          timeout=60)


def one_answer_cost(fake) -> float:
    charged = fake.charges()["by_key"]
    return sum(charged.values())


# --- model lists ------------------------------------------------------------------------------

def test_a_model_outside_the_clients_list_is_refused_with_403_in_its_shape(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(alice='models: ["kimi-*", "minimax-*"]'))
    status, body = chat(gateway, ALICE, "opencode-go/glm-5.1")
    assert status == 403
    message = assert_error_shape("openai", body, "permission_error")
    assert "glm-5.1" in message and "alice" in message
    status, body = messages(gateway, ALICE, "opencode-go/glm-5.1")
    assert status == 403
    assert "alice" in assert_error_shape("anthropic", body, "permission_error")
    assert fake.requests() == []  # nothing went upstream
    assert chat(gateway, ALICE, "opencode-go/kimi-k2.5")[0] == 200
    assert chat(gateway, BOB, "opencode-go/glm-5.1")[0] == 200  # bob has no list


def test_gemini_clients_get_the_same_refusals_in_googles_shape(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(alice='models: ["kimi-*"]\n      rpm: 1'))
    url = gateway.url + "/v1beta/models/opencode-go/glm-5.1:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    status, answer = call(url, body, {"x-goog-api-key": ALICE})
    assert status == 403
    error = json.loads(answer)["error"]
    assert error["status"] == "PERMISSION_DENIED" and "alice" in error["message"]
    status, answer = call(gateway.url + "/v1beta/models", headers={"x-goog-api-key": ALICE})
    names = [model["name"] for model in json.loads(answer)["models"]]
    assert names and all(name.startswith("models/opencode-go/kimi-") for name in names)
    kimi = gateway.url + "/v1beta/models/opencode-go/kimi-k2.5:generateContent"
    assert call(kimi, body, {"x-goog-api-key": ALICE})[0] == 200
    status, answer = call(kimi, body, {"x-goog-api-key": ALICE})
    assert status == 429 and json.loads(answer)["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_a_clients_model_lists_show_only_what_it_may_use(start_gateway):
    gateway = start_gateway(config_text=config_text(alice='models: ["kimi-*"]'))
    for headers in ({}, {"anthropic-version": "2023-06-01"}):
        status, body = call(gateway.url + "/v1/models",
                            headers={"authorization": f"Bearer {ALICE}", **headers})
        ids = [model["id"] for model in json.loads(body)["data"]]
        assert status == 200 and ids and all(i.startswith("opencode-go/kimi-") for i in ids)
        status, body = call(gateway.url + "/v1/models",
                            headers={"authorization": f"Bearer {BOB}", **headers})
        assert "opencode-go/glm-5.1" in [model["id"] for model in json.loads(body)["data"]]


# --- budgets and rates ------------------------------------------------------------------------

def test_the_request_that_crosses_the_budget_finishes_and_counts_the_next_is_refused(
        start_gateway, fake):
    probe = start_gateway(config_text=config_text())
    assert chat(probe, BOB)[0] == 200
    cost = one_answer_cost(fake)
    assert cost > 0
    fake.reset()
    # One answer and a half: the first leaves room, the second starts inside the budget and
    # ends over it, the third is refused.
    gateway = start_gateway(config_text=config_text(alice=f"budget: {{rolling: {cost * 1.5}}}"))
    assert chat(gateway, ALICE)[0] == 200
    assert chat(gateway, ALICE)[0] == 200
    status, body = chat(gateway, ALICE)
    assert status == 429
    message = assert_error_shape("openai", body, "rate_limit_error")
    assert "alice" in message and "rolling" in message and "frees up" in message
    status, anthropic = messages(gateway, ALICE)
    assert status == 429
    assert "rolling" in assert_error_shape("anthropic", anthropic, "rate_limit_error")
    assert fake.charges()["requests"] and sum(fake.charges()["requests"].values()) == 2
    assert chat(gateway, BOB)[0] == 200  # bob's own spend is his
    status, report = usage(gateway, ADMIN)
    [alice] = [c for c in report["clients"] if c["client"] == "alice"]
    assert alice["windows"]["rolling"]["over"]
    assert alice["windows"]["rolling"]["spent_usd"] == pytest.approx(2 * cost, rel=1e-3)


def test_over_budget_says_retry_after(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(alice="budget: {weekly: 0.0000001}"))
    assert chat(gateway, ALICE)[0] == 200
    body = {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(gateway.url + "/v1/chat/completions",
                                     data=json.dumps(body).encode(),
                                     headers={"authorization": f"Bearer {ALICE}",
                                              "content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 429
    wait = int(refused.value.headers["retry-after"])
    assert 0 < wait <= 7 * 86400  # the week frees up at most a week from now
    assert "weekly" in json.loads(refused.value.read())["error"]["message"]


def test_over_rpm_is_refused_with_retry_after(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(alice="rpm: 2"))
    assert chat(gateway, ALICE)[0] == 200
    assert chat(gateway, ALICE)[0] == 200
    status, body = chat(gateway, ALICE)
    assert status == 429
    assert "rpm" in assert_error_shape("openai", body, "rate_limit_error")
    assert len(fake.requests()) == 2
    assert chat(gateway, BOB)[0] == 200


# --- usage, the dashboard's data, metrics --------------------------------------------------------

def test_usage_per_client_and_agent_and_who_sees_what(start_gateway, fake):
    gateway = start_gateway(config_text=config_text())
    assert chat(gateway, ALICE, user_agent="opencode/1.0.0")[0] == 200
    assert messages(gateway, BOB)[0] == 200
    assert chat(gateway, ANON, user_agent="OpenAI/Python 1.50.0")[0] == 200

    def grouped(key, by):
        status, report = usage(gateway, key, by)
        assert status == 200, report
        return {group["name"]: group for group in report["spend_by"][by]["today"]}

    clients = wait_for(lambda: len(grouped(ADMIN, "client")) == 3 and grouped(ADMIN, "client"))
    assert set(clients) == {"alice", "bob", "anonymous"}
    assert all(group["requests"] == 1 and group["cost_usd"] > 0 for group in clients.values())
    assert set(grouped(ADMIN, "agent")) == {"opencode", "claude-code", "openai-python"}
    # A client sees only its own usage; everyone's needs the admin key.
    status, own = usage(gateway, ALICE, "client")
    assert status == 200
    assert [g["name"] for g in own["spend_by"]["client"]["today"]] == ["alice"]
    assert [c["client"] for c in own["clients"]] == ["alice"] and own["keys"] == []
    status, refused = usage(gateway, ANON)
    assert status == 403 and "admin" in refused["error"]["message"]
    assert usage(gateway, "nobody-key-1")[0] == 401
    status, bad = usage(gateway, ADMIN, "colour")
    assert status == 400 and "colour" in bad["error"]["message"]
    # /metrics: requests per client.
    status, text = call(gateway.url + "/metrics")
    lines = text.decode().splitlines()
    for name in ("alice", "bob", "anonymous"):
        assert any(line.startswith("opencode_gateway_client_requests_total{")
                   and f'client="{name}"' in line and 'status="200"' in line
                   for line in lines), name


def test_the_usage_command_shows_spend_by_client_and_agent(start_gateway, fake):
    gateway = start_gateway(config_text=config_text())
    assert chat(gateway, ALICE, user_agent="codex_cli_rs/0.60.0")[0] == 200
    assert wait_for(lambda: "alice" in json.dumps(json.loads(
        cli(gateway, "usage", "--by", "client", "--json").stdout)["spend_by"]))
    shown = cli(gateway, "usage", "--by", "agent")
    assert shown.returncode == 0, shown.stderr
    assert "by agent" in shown.stdout and "codex" in shown.stdout
    report = json.loads(cli(gateway, "usage", "--by", "model", "--json").stdout)
    assert [g["name"] for g in report["spend_by"]["model"]["today"]] == ["glm-5.1"]


# --- two gateways on one Redis ------------------------------------------------------------------

def redis_state(url: str) -> str:
    return f", backend: redis, url: '{url}'"


def test_two_gateways_on_one_redis_honour_one_clients_budget_together(start_gateway, fake,
                                                                       redis_url):
    probe = start_gateway(config_text=config_text())
    assert chat(probe, BOB)[0] == 200
    cost = one_answer_cost(fake)
    fake.reset()
    text = config_text(alice=f"budget: {{rolling: {cost * 1.5}}}", state=redis_state(redis_url))
    a, b = start_gateway(config_text=text), start_gateway(config_text=text)
    assert chat(a, ALICE)[0] == 200
    # B learns of A's spend at its next sync; its own answer then crosses the budget.
    assert wait_for(lambda: usage(b, ALICE)[1]["clients"][0]["windows"]["rolling"]
                    ["spent_usd"] > 0, timeout=5)
    assert chat(b, ALICE)[0] == 200
    # Once A has synced what B spent, it refuses too: nothing more goes upstream.
    assert wait_for(lambda: usage(a, ALICE)[1]["clients"][0]["windows"]["rolling"]["over"],
                    timeout=5)
    assert chat(a, ALICE)[0] == 429
    assert chat(b, ALICE)[0] == 429
    assert sum(fake.charges()["requests"].values()) == 2


def test_clients_added_and_revoked_at_run_time_reach_every_gateway(start_gateway, fake,
                                                                    redis_url):
    text = config_text(state=redis_state(redis_url))
    a, b = start_gateway(config_text=text), start_gateway(config_text=text)
    added = cli(a, "clients", "add", "carol", "--weekly", "5", "--models", "glm-*", "--rpm", "30")
    assert added.returncode == 0, added.stderr
    key = added.stdout.split("shown only now): ")[1].split()[0]
    assert wait_for(lambda: chat(a, key)[0] == 200 and chat(b, key)[0] == 200, timeout=5)
    assert chat(b, key, "opencode-go/kimi-k2.5")[0] == 403
    listed = json.loads(cli(a, "clients", "list", "--json").stdout)
    carol = next(row for row in listed if row["name"] == "carol")
    assert carol["source"] == "store" and carol["models"] == ["glm-*"] and carol["rpm"] == 30
    assert carol["windows"]["weekly"]["budget_usd"] == 5
    changed = cli(a, "clients", "set", "carol", "--all-models")
    assert changed.returncode == 0, changed.stderr
    assert wait_for(lambda: chat(b, key, "opencode-go/kimi-k2.5")[0] == 200, timeout=5)
    assert cli(a, "clients", "add", "carol").returncode == 2  # a name is added once
    # The store holds only the key's hash.
    stored = redis.Redis.from_url(redis_url).hgetall("ocg:clients")
    assert b"carol" in stored and key.encode() not in b"".join(stored.values())
    revoked = cli(a, "clients", "revoke", "carol")
    assert revoked.returncode == 0, revoked.stderr
    started = time.monotonic()
    assert wait_for(lambda: chat(b, key)[0] == 401 and chat(a, key)[0] == 401, timeout=5)
    assert time.monotonic() - started < 2 + SYNC_SECONDS * 4
    # A config client revoked from the store stops too; the others go on.
    assert cli(b, "clients", "revoke", "bob").returncode == 0
    assert wait_for(lambda: chat(a, BOB)[0] == 401, timeout=5)
    assert chat(a, ALICE)[0] == 200


# --- reload ------------------------------------------------------------------------------------

def test_sighup_and_the_reload_command_reread_the_config_and_keep_it_when_invalid(
        start_gateway, fake, tmp_path):
    gateway = start_gateway(config_text=config_text())
    config = gateway.args[gateway.args.index("--config") + 1]
    assert chat(gateway, "dave-key-6789")[0] == 401
    with open(config, "a") as handle:
        handle.write("")
    text = open(config).read()
    open(config, "w").write(text.replace(
        "  clients:\n", '  clients:\n    - {name: dave, key: "dave-key-6789"}\n'))
    os.kill(gateway.process.pid, signal.SIGHUP)
    assert wait_for(lambda: chat(gateway, "dave-key-6789")[0] == 200, timeout=5)
    # An invalid config: refused by the command, and the running one kept after SIGHUP.
    open(config, "w").write(text.replace("name: bob", "name: alice"))
    refused = cli(gateway, "reload")
    assert refused.returncode == 2 and "alice" in refused.stderr
    os.kill(gateway.process.pid, signal.SIGHUP)
    assert wait_for(lambda: "config reload refused" in gateway.log(), timeout=5)
    assert chat(gateway, "dave-key-6789")[0] == 200 and chat(gateway, BOB)[0] == 200
    # The command: every worker re-reads at its next sync (dave is gone from this file).
    open(config, "w").write(text)
    done = cli(gateway, "reload")
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: chat(gateway, "dave-key-6789")[0] == 401, timeout=5)


def test_sighup_reaches_every_worker(start_gateway, fake):
    gateway = start_gateway(config_text=config_text(), workers=2)
    assert wait_for(lambda: gateway.log().count("Running on") == 2, timeout=20), gateway.log()
    config = gateway.args[gateway.args.index("--config") + 1]
    text = open(config).read()
    open(config, "w").write(text.replace(
        "  clients:\n", '  clients:\n    - {name: dave, key: "dave-key-6789"}\n'))
    os.kill(gateway.process.pid, signal.SIGHUP)
    # Each request is a new connection, taken by either worker: twenty in a row means both.
    assert wait_for(lambda: all(chat(gateway, "dave-key-6789")[0] == 200 for _ in range(20)),
                    timeout=10)
    assert gateway.log().count("config reloaded") == 2


def test_the_doctor_report_needs_an_admin_key_once_clients_are_named(start_gateway):
    gateway = start_gateway(config_text=config_text())
    for key, status in ((ALICE, 403), (ANON, 403), (ADMIN, 200)):
        assert call(gateway.url + "/v1/doctor",
                    headers={"authorization": f"Bearer {key}"})[0] == status, key
