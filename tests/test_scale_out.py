"""Scale-out over real sockets: two gateway processes sharing one real redis-server
(`state.backend: redis`), in front of the fake OpenCode Go with two keys, and deploy/nginx.conf in
front of both for the load test.

- A usage limit one process ran into is honoured by the other within about a second.
- A conversation stays on its key whichever process serves its turns, even when the other key
  now has more room (where a process that had not heard of the conversation would go).
- The shared ledger's dollars per key equal what the fake charged each key.
- Reasoning one process remembered is put back by the other (DeepSeek's tool loops).
- Redis killed in the middle of a load run through nginx costs no request, and the processes say
  `opencode_gateway_state_store_up 1` again once it is back.
- A Redis that stalls past the read timeout and then runs the writes it had received counts
  nothing twice.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.fake_upstream import REASONING_TEXT
from tests.redis_server import redis_server, redis_url  # noqa: F401
from tests.test_nginx import Nginx, nginx_binary  # noqa: F401

KEYS = {1: "scale-out-key-one-1111", 2: "scale-out-key-two-2222"}
INSTANCE_KEYS = {f"opencode-go.{number}": key for number, key in KEYS.items()}
SYNC_SECONDS = 0.25


def config_text(redis: str, rolling_limit: float = 12.0) -> str:
    # No polling of the upstream's /usage: what one process knows must come from Redis.
    return (f"state: {{backend: redis, url: '{redis}', sync_seconds: {SYNC_SECONDS}}}\n"
            f"quota: {{usage_poll_seconds: 0, limits: {{rolling: {rolling_limit}}}}}\n")


@pytest.fixture
def start_pair(start_gateway, redis_url):
    """`start_pair(**config)`: gateway processes A and B on the shared Redis, both keys each."""
    def start(**config):
        env = {f"OPENCODE_GO_API_KEY_{number}": key for number, key in KEYS.items()}
        text = config_text(redis_url, **config)
        return (start_gateway(env=env, config_text=text),
                start_gateway(env=env, config_text=text))
    return start


def call(url: str, body: dict | None = None, timeout: float = 30,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def chat(gateway, messages: list[dict] | str, model: str = "opencode-go/glm-5.1",
         stream: bool = False) -> bytes:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body = {"model": model, "messages": messages}
    if stream:
        body["stream"] = True
    status, answer = call(gateway.url + "/v1/chat/completions", body)
    assert status == 200, (status, answer[:500], gateway.log()[-2000:])
    return answer


def usage_keys(gateway) -> dict[str, dict]:
    """`GET /v1/usage`'s keys, by instance name."""
    status, answer = call(gateway.url + "/v1/usage")
    assert status == 200, answer[:500]
    return {key["instance"]: key for key in json.loads(answer)["keys"]}


def wait_for(what, timeout: float = 5.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(every)


def key_of(fake, marker: str) -> list[str]:
    """The keys of the upstream requests whose body holds `marker`."""
    return [r["key"] for r in fake.requests() if marker in json.dumps(r["body"])]


def instance_of(key: str) -> str:
    return next(name for name, held in INSTANCE_KEYS.items() if held == key)


def test_a_usage_limit_seen_by_one_process_is_honoured_by_the_other(start_pair, fake):
    a, b = start_pair()
    fake.set_limit(KEYS[1], "5 hour", retry_after=14160)
    # New conversations spread over both keys; one of them lands on key 1, gets the 429 and
    # moves to key 2 (the client still gets its answer).
    for number in range(40):
        chat(a, f"a-conversation-{number:03d}")
        if KEYS[1] in key_of(fake, f"a-conversation-{number:03d}"):
            break
    else:
        pytest.fail("no conversation went to key 1 through gateway A")
    assert usage_keys(a)["opencode-go.1"]["status"] == "limited"
    assert wait_for(lambda: usage_keys(b)["opencode-go.1"]["status"] == "limited", 5), \
        b.log()[-2000:]
    for number in range(20):  # half of these would try key 1 first, were the limit unknown
        chat(b, f"b-conversation-{number:03d}")
    used = [key for number in range(20) for key in key_of(fake, f"b-conversation-{number:03d}")]
    assert len(used) == 20 and KEYS[1] not in used, used
    seen = usage_keys(b)["opencode-go.1"]
    assert (seen["status"], seen["limit"]) == ("limited", "5 hour")


def test_a_conversation_stays_on_its_key_whichever_process_serves_it(start_pair, fake):
    a, b = start_pair(rolling_limit=0.05)
    opening = [{"role": "system", "content": "You plan trips."},
               {"role": "user", "content": "A week in Zürich? sticky-conversation"}]
    answer = json.loads(chat(a, opening))
    [first_key] = key_of(fake, "sticky-conversation")
    home = instance_of(first_key)
    other = next(name for name in INSTANCE_KEYS if name != home)
    # Spend 13% of the conversation's key's 5-hour limit (a request pinned to it): from now
    # on a new conversation goes to the other key, with clearly more room.
    chat(a, "spend [[fake: deltas=1500]]", model=f"{home}:glm-5.1")
    assert wait_for(lambda: usage_keys(b)[home]["windows"]["rolling"]["used_ratio"] > 0.1)
    chat(b, "a new conversation, new-conversation")
    assert key_of(fake, "new-conversation") == [INSTANCE_KEYS[other]]
    messages = opening
    for turn, gateway in enumerate([b, a, b, a, b], start=2):
        messages = messages + [answer["choices"][0]["message"],
                               {"role": "user", "content": f"and on day {turn}?"}]
        answer = json.loads(chat(gateway, messages, stream=False))
    keys = key_of(fake, "sticky-conversation")
    assert keys == [first_key] * 6, [instance_of(key) for key in keys]


def spent(gateway) -> dict[str, float]:
    """Dollars per upstream key in the 5-hour window, as the gateway's `GET /v1/usage` says."""
    return {INSTANCE_KEYS[name]: key["windows"]["rolling"]["spent_usd"]
            for name, key in usage_keys(gateway).items()}


def ledger_matches(gateway, charged: dict[str, float]) -> bool:
    held = spent(gateway)
    return all(abs(held[key] - charged.get(key, 0.0)) < 1e-6 for key in KEYS.values())


def test_the_ledger_equals_what_the_upstream_charged(start_pair, fake):
    a, b = start_pair()
    for number in range(24):
        gateway = (a, b)[number % 2]
        chat(gateway, f"charge-{number} [[fake: deltas={20 + 37 * number}]]",
             stream=number % 3 == 0)
    charged = fake.charges()["by_key"]
    assert set(charged) == set(KEYS.values()), charged  # both keys were used

    for gateway in (a, b):
        assert wait_for(lambda: ledger_matches(gateway, charged)), (spent(gateway), charged)
        assert {key: round(dollars, 2) for key, dollars in spent(gateway).items()} == \
            {key: round(dollars, 2) for key, dollars in charged.items()}


def test_reasoning_remembered_by_one_process_is_put_back_by_the_other(start_pair, fake):
    a, b = start_pair()
    model, headers = "opencode-go/deepseek-v4-pro", {"x-opencode-session": "reasoning-across"}
    first = [{"role": "user", "content": "[[fake: tools=1]] weather in Zürich?"}]
    status, answer = call(a.url + "/v1/chat/completions", {"model": model, "messages": first},
                          headers=headers)
    assert status == 200, answer[:500]
    [tool_call] = json.loads(answer)["choices"][0]["message"]["tool_calls"]
    # At once, as a fast tool would: the answer ended only once its reasoning was stored. A client that keeps only content and tool_calls; DeepSeek refuses the turn without its
    # reasoning, and only gateway A saw it.
    history = first + [{"role": "assistant", "content": None, "tool_calls": [tool_call]},
                       {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny"}]
    status, answer = call(b.url + "/v1/chat/completions", {"model": model, "messages": history},
                          headers=headers)
    assert status == 200, answer[:500]
    assert fake.requests()[-1]["body"]["messages"][1]["reasoning_content"] == REASONING_TEXT
    assert "neutral stand-in" not in b.log()


def metric(gateway, name: str) -> float | None:
    status, text = call(gateway.url + "/metrics")
    assert status == 200
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text.decode(), re.M)
    return float(found.group(1)) if found else None


def test_redis_killed_during_a_load_run_loses_no_request(start_pair, fake, redis_server,
                                                         nginx_binary, tmp_path):
    gateways = start_pair()
    nginx = Nginx(nginx_binary, tmp_path / "nginx", [g.port for g in gateways]).start()
    total, done = 300, []
    lock = threading.Lock()

    def one(number: int) -> int:
        time.sleep(0.1)  # a steady ~90 requests a second from 10 threads: 3 to 4 s
        status, _ = call(f"http://127.0.0.1:{nginx.port}/v1/chat/completions", {
            "model": "opencode-go/glm-5.1",
            "messages": [{"role": "user", "content": f"load {number} [[fake: deltas=3]]"}]})
        with lock:
            done.append(status)
        return status

    try:
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            statuses = pool.map(one, range(total))
            assert wait_for(lambda: len(done) >= total // 3, 30)
            redis_server.stop()
            killed_at = len(done)
            # Down long enough for every process to notice (several syncs).
            assert wait_for(lambda: all(metric(g, "opencode_gateway_state_store_up") == 0
                                        for g in gateways), 5)
            redis_server.start()
            restarted_at = len(done)
            statuses = list(statuses)
    finally:
        nginx.stop()
    assert killed_at < restarted_at < total, (killed_at, restarted_at)
    assert statuses == [200] * total, {s: statuses.count(s) for s in set(statuses)}
    for gateway in gateways:
        assert wait_for(lambda: metric(gateway, "opencode_gateway_state_store_up") == 1, 5), \
            gateway.log()[-2000:]
        assert metric(gateway, "opencode_gateway_state_store_failures_total") >= 1
        assert "is back; shared state reconciled" in gateway.log()


def test_a_redis_that_stalls_and_wakes_counts_nothing_twice(start_pair, fake, redis_server):
    """A stalled Redis (here SIGSTOP) runs the writes that timed out when it wakes, while the
    processes send the same usage again: the ledger must still equal the charges."""
    a, b = start_pair()
    stop = threading.Event()

    answered = []

    def load(gateway, tag: str) -> None:
        number = 0
        while not stop.is_set():
            chat(gateway, f"stall-{tag}-{number:05d} [[fake: deltas={5 + number % 50}]]")
            answered.append(tag)
            number += 1

    threads = [threading.Thread(target=load, args=(gateway, tag))
               for gateway, tag in ((a, "a1"), (b, "b1"), (a, "a2"), (b, "b2"))]
    for thread in threads:
        thread.start()
    try:
        try:
            assert wait_for(lambda: len(answered) >= 20, 10)
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            # Past the read timeout: every process has seen a sync fail, and kept serving.
            assert wait_for(lambda: all(metric(g, "opencode_gateway_state_store_up") == 0
                                        for g in (a, b)), 10)
            stalled_at = len(answered)
            assert wait_for(lambda: len(answered) >= stalled_at + 20, 10)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        # Awake: the writes it held run, the processes write theirs again, under load.
        assert wait_for(lambda: all(metric(g, "opencode_gateway_state_store_up") == 1
                                    for g in (a, b)), 10)
        resumed_at = len(answered)
        assert wait_for(lambda: len(answered) >= resumed_at + 20, 10)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    charged = fake.charges()["by_key"]
    for gateway in (a, b):
        # state_store_up went 0 above: a failed sync, which /metrics counts. (Before the start-up
        # sync reported, a process just started read the gauge's initial 0: a stall shorter
        # than its read timeout then left it with no failure counted.)
        assert metric(gateway, "opencode_gateway_state_store_failures_total") >= 1
        assert wait_for(lambda: ledger_matches(gateway, charged)), (spent(gateway), charged)


def test_processes_started_while_redis_is_down_serve_and_reconcile_once_it_is_up(
        start_pair, fake, redis_server):
    redis_server.stop()
    a, b = start_pair()
    for number in range(10):
        chat((a, b)[number % 2], f"while-down-{number:03d} [[fake: deltas={10 + 9 * number}]]")
    status, answer = call(a.url + "/v1/usage")
    assert status == 200 and json.loads(answer)["state"]["up"] is False, answer[:300]
    redis_server.start()
    charged = fake.charges()["by_key"]
    for gateway in (a, b):  # each process's batches reached Redis: each sees both's spending
        assert wait_for(lambda: metric(gateway, "opencode_gateway_state_store_up") == 1, 5)
        assert wait_for(lambda: ledger_matches(gateway, charged)), (spent(gateway), charged)
