"""Resilience over real sockets: failover across keys, Retry-After, cool-down, cancellation,
broken and stalled upstream streams, timeouts and graceful shutdown.

Every test runs the real gateway process in front of the fake upstream with two numbered keys,
`k1` (instance opencode-go.1) and `k2` (opencode-go.2), and injects the fault there.
"""
import email.utils
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.frontends.common import upstream_payload
from gateway.upstream.forwarder import create_session
from tests.conversations import sessions_preferring
from tests.fake_upstream_client import free_port

TWO_KEYS = {"OPENCODE_GO_API_KEY_1": "k1", "OPENCODE_GO_API_KEY_2": "k2"}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
# (frontend, model): both pass-through routes and both translated ones.
ROUTES = [("openai", "opencode-go/glm-5.1"), ("openai", "opencode-go/minimax-m2.7"),
          ("anthropic", "opencode-go/glm-5.1"), ("anthropic", "opencode-go/minimax-m2.7")]
ROUTE_IDS = ["openai-passthrough", "openai-to-anthropic", "anthropic-to-openai",
             "anthropic-passthrough"]


def request_body(frontend: str, model: str, text: str = "hi", stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if frontend == "anthropic":
        body["max_tokens"] = 256
    return body


def post(url: str, body: dict, timeout: float = 15,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def ask(gateway, frontend: str = "openai", model: str = "opencode-go/glm-5.1", text: str = "hi",
        stream: bool = False, session: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"x-opencode-session": session} if session else None
    return post(gateway.url + PATHS[frontend], request_body(frontend, model, text, stream),
                headers=headers)


def key_status(gateway, instance: str) -> str:
    """What `GET /v1/usage` says of an instance: ok, resting or limited."""
    with urllib.request.urlopen(gateway.url + "/v1/usage", timeout=15) as answer:
        keys = json.loads(answer.read())["keys"]
    return next(key["status"] for key in keys if key["instance"] == instance)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def keys_seen(fake) -> list[str]:
    """The upstream key of every request the fake received, oldest first."""
    return [seen["key"] for seen in fake.requests()]


def stream_outcome(frontend: str, raw: bytes) -> tuple[str | None, bool]:
    """(the message of an in-stream error event, whether the stream ended normally)."""
    error = None
    if frontend == "openai":
        payloads = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        for payload in payloads:
            if payload != "[DONE]" and "error" in json.loads(payload):
                error = json.loads(payload)["error"]["message"]
        return error, "[DONE]" in payloads
    names = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in lines:
            names.append(lines["event"])
            if lines["event"] == "error":
                error = json.loads(lines["data"])["error"]["message"]
    return error, "message_stop" in names


def hang_up_mid_stream(gateway, frontend: str, body: dict) -> bytes:
    """Send a streaming request, read until the first event arrives, then close the socket."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (PATHS[frontend].encode(), len(payload),
                                                        payload))
        received = b""
        while b"\r\n\r\n" not in received or b"data: " not in received.split(b"\r\n\r\n", 1)[1]:
            chunk = sock.recv(65536)
            assert chunk, f"the gateway closed before the first event: {received!r}"
            received += chunk
    return received


# --- failover across keys --------------------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403, 429, 500, 503, 529])
def test_a_failing_key_moves_the_request_to_the_other_key(start_gateway, fake, status):
    gateway = start_gateway(env=TWO_KEYS)
    fake.set_key("k1", status)
    for _ in range(2):  # round robin puts one of the two requests on k1 first
        answer_status, _, body = ask(gateway)
        assert answer_status == 200, body
    seen = keys_seen(fake)
    assert "k1" in seen
    assert seen.count("k2") == 2  # every answer came from k2


def test_400_is_returned_at_once_without_trying_another_key(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    status, _, body = ask(gateway, text="[[fake: error=400]]")
    assert status == 400
    message = json.loads(body)["error"]["message"]
    assert message.startswith("upstream opencode-go.")  # the instance that said it, no key
    assert message.endswith(": fake upstream error 400")
    assert len(fake.requests()) == 1


@pytest.mark.parametrize("retry_after", [
    lambda: "30",
    lambda: email.utils.formatdate(time.time() + 30, usegmt=True),
], ids=["seconds", "http-date"])
def test_a_throttled_key_rests_until_its_retry_after(start_gateway, fake, retry_after):
    gateway = start_gateway(env=TWO_KEYS)
    fake.set_key("k1", 429, retry_after=retry_after())
    assert ask(gateway)[0] == 200
    assert keys_seen(fake) == ["k1", "k2"]
    fake.set_key("k1", None)  # k1 would answer now, but its Retry-After has not passed
    for _ in range(4):
        assert ask(gateway)[0] == 200
    assert keys_seen(fake)[2:] == ["k2"] * 4


def test_a_rested_key_is_used_again_once_retry_after_has_passed(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    first, later, last = sessions_preferring("k1", 3)
    fake.set_key("k1", 429, retry_after="1")
    assert ask(gateway, session=first)[0] == 200
    assert keys_seen(fake) == ["k1", "k2"]
    assert ask(gateway, session=later)[0] == 200   # k1 rests: the new conversation goes to k2
    assert keys_seen(fake)[2:] == ["k2"]
    fake.set_key("k1", None)
    assert wait_for(lambda: key_status(gateway, "opencode-go.1") == "ok", 5)
    assert ask(gateway, session=last)[0] == 200
    assert keys_seen(fake)[3:] == ["k1"]


def test_a_pinned_request_gets_the_429_with_retry_after_and_is_not_moved(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.set_key("k1", 429, retry_after="30")
    for frontend in ("openai", "anthropic"):
        status, headers, body = ask(gateway, frontend, model="opencode-go.1:glm-5.1")
        assert status == 429
        assert headers["retry-after"] == "30"
        error = json.loads(body)["error"]
        assert error["message"] == "upstream opencode-go.1: fake upstream error 429"
        assert error["type"] == "rate_limit_error"
    assert keys_seen(fake) == ["k1", "k1"]


def test_every_key_throttled_gives_the_client_the_429_and_its_retry_after(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.set_key("k1", 429, retry_after="20")
    fake.set_key("k2", 429, retry_after="40")
    status, headers, body = ask(gateway)
    assert status == 429 and "retry-after" in headers
    assert json.loads(body)["error"]["type"] == "rate_limit_error"
    assert sorted(keys_seen(fake)) == ["k1", "k2"]


def test_failover_hops_bounds_how_many_keys_a_request_tries(start_gateway, fake):
    env = {f"OPENCODE_GO_API_KEY_{n}": f"k{n}" for n in range(1, 5)}
    gateway = start_gateway(env=env, config_text="upstream: {failover_hops: 1}\n")
    for n in range(1, 5):
        fake.set_key(f"k{n}", 503)
    assert ask(gateway)[0] == 503
    assert len(fake.requests()) == 2  # the first instance and one hop


def test_repeated_failures_put_a_key_in_cool_down(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS, config_text=(
        "upstream: {cooldown_after_failures: 2, cooldown_seconds: 60}\n"))
    fake.set_key("k1", 500)
    for session in sessions_preferring("k1", 6):
        assert ask(gateway, session=session)[0] == 200
    assert keys_seen(fake).count("k1") == 2  # then it rests and is not tried again


async def test_an_unreachable_instance_fails_over_to_the_next(fake):
    """Instances share the backend's URL in config, so instance 1 is pointed at a closed port
    here, in process; both connections are real sockets."""
    env = {"OPENCODE_GO_API_URL": fake.url, **TWO_KEYS}
    gateway = Gateway(load_config(None, env), env=env)
    dead_instance = gateway.pools["opencode-go"].instances[0]
    dead_instance.api_url = f"http://127.0.0.1:{free_port()}/v1"
    session = create_session(gateway.config.upstream)
    forwarder = gateway.attach(session)
    try:
        async def send(model):
            body = request_body("openai", model)
            ctx = await gateway.router.route(model, "openai", body)
            return ctx, await forwarder.forward(ctx, upstream_payload(ctx))

        ctx, response = await send("opencode-go/glm-5.1")
        assert response.status == 200 and ctx.instance.name == "opencode-go.2"
        assert keys_seen(fake) == ["k2"]
        with pytest.raises(GatewayError) as pinned:
            await send("opencode-go.1:glm-5.1")
        assert pinned.value.status == 502
        assert "opencode-go.1" in pinned.value.message and "connect" in pinned.value.message
        assert "k1" not in pinned.value.message.split()
    finally:
        await session.close()


# --- cancellation ----------------------------------------------------------------------------

@pytest.mark.parametrize("frontend, model", ROUTES, ids=ROUTE_IDS)
def test_a_client_hang_up_ends_the_upstream_stream_at_once(start_gateway, fake, frontend, model):
    gateway = start_gateway()
    # Twenty events a few seconds apart: left running, this stream would last over a minute.
    body = request_body(frontend, model, "[[fake: deltas=20 slow=4]]", stream=True)
    hang_up_mid_stream(gateway, frontend, body)
    stats = fake.wait_stats(lambda s: s["aborted_streams"] == 1 and s["active_streams"] == 0,
                            timeout=5.0)  # "at once": well before the minute it would run
    assert stats["aborted_streams"] == 1 and stats["active_streams"] == 0, stats
    assert ask(gateway, frontend, model)[0] == 200  # and the gateway serves on


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole-answer"])
def test_a_client_hang_up_before_the_answer_starts_cancels_the_upstream_request(
        start_gateway, fake, stream):
    """A whole answer is silent upstream until it is complete, which can take minutes: a client
    that gives up meanwhile must not leave the upstream generating for nobody."""
    gateway = start_gateway()
    payload = json.dumps(request_body("openai", "opencode-go/glm-5.1", "[[fake: ttfb=30]]",
                                      stream)).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(payload), payload))
        deadline = time.monotonic() + 5
        while not fake.requests() and time.monotonic() < deadline:
            time.sleep(0.02)  # until the request is upstream, waiting for its answer
        assert fake.requests()
    if stream:  # the fake counts a stream it could not finish as aborted
        stats = fake.wait_stats(lambda s: s["aborted_streams"] == 1, timeout=5.0)
        assert stats["aborted_streams"] == 1 and stats["active_streams"] == 0, stats
    else:  # and a whole answer whose caller went away while it waited
        stats = fake.wait_stats(lambda s: s["abandoned_answers"] == 1, timeout=5.0)
        assert stats["abandoned_answers"] == 1, stats
    deadline = time.monotonic() + 5.0
    while '"status":499' not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert '"status":499' in gateway.log()
    assert ask(gateway)[0] == 200


def test_a_client_hang_up_is_logged_as_499(start_gateway, fake):
    gateway = start_gateway()
    hang_up_mid_stream(gateway, "openai", request_body(
        "openai", "opencode-go/glm-5.1", "[[fake: deltas=20 slow=4]]", stream=True))
    fake.wait_stats(lambda s: s["aborted_streams"] == 1)
    deadline = time.monotonic() + 5
    while '"status":499' not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"status":499' in gateway.log()


# --- broken and stalled streams --------------------------------------------------------------

@pytest.mark.parametrize("frontend, model", ROUTES, ids=ROUTE_IDS)
def test_an_upstream_cut_mid_stream_reaches_the_client_as_an_error_event(
        start_gateway, fake, frontend, model):
    gateway = start_gateway()
    status, _, raw = ask(gateway, frontend, model, "[[fake: cut]]", stream=True)
    assert status == 200  # the answer had started before the upstream broke
    error, completed = stream_outcome(frontend, raw)
    assert error is not None and "broke off" in error
    assert not completed  # no [DONE], no message_stop: the client must not take it as whole
    assert "héllo" in raw.decode()  # what arrived before the cut was passed on
    status, _, raw = ask(gateway, frontend, model, stream=True)
    assert status == 200 and stream_outcome(frontend, raw) == (None, True)


def test_an_upstream_cut_in_a_whole_answer_is_a_502_in_the_frontends_shape(start_gateway):
    gateway = start_gateway()
    status, _, body = ask(gateway, "anthropic", text="[[fake: cut]]")
    assert status == 502
    answer = json.loads(body)
    assert answer["type"] == "error" and "broke off" in answer["error"]["message"]
    assert ask(gateway, "anthropic")[0] == 200


@pytest.mark.parametrize("frontend, model", ROUTES, ids=ROUTE_IDS)
def test_a_stalled_stream_ends_with_an_error_after_idle_timeout(start_gateway, frontend, model):
    gateway = start_gateway(config_text="upstream: {idle_timeout: 0.5}\n")
    status, _, raw = ask(gateway, frontend, model, "[[fake: slow=2]]", stream=True)
    assert status == 200
    error, completed = stream_outcome(frontend, raw)
    assert error is not None and "idle_timeout" in error
    assert not completed


def test_idle_timeout_does_not_cut_a_slow_start(start_gateway):
    """A whole answer is silent until it is complete: that wait is first_byte_timeout's."""
    gateway = start_gateway(config_text="upstream: {idle_timeout: 0.5, first_byte_timeout: 10}\n")
    assert ask(gateway, text="[[fake: ttfb=1.5]]")[0] == 200


@pytest.mark.parametrize("frontend, model", ROUTES, ids=ROUTE_IDS)
def test_a_streams_gaps_are_idle_timeouts_not_first_byte_timeouts(start_gateway, frontend, model):
    """Once the answer has started, only idle_timeout may end a silence (here first_byte_timeout
    is the shorter: the read timeout armed before the stream started must not fire later)."""
    gateway = start_gateway(config_text="upstream: {idle_timeout: 10, first_byte_timeout: 0.5}\n")
    status, _, raw = ask(gateway, frontend, model, "[[fake: deltas=3 slow=1.5]]", stream=True)
    assert status == 200
    assert stream_outcome(frontend, raw) == (None, True)


def test_no_answer_within_first_byte_timeout_is_504_after_trying_each_key(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS, config_text="upstream: {first_byte_timeout: 0.5}\n")
    status, _, body = ask(gateway, text="[[fake: ttfb=3]]")
    assert status == 504
    assert "first_byte_timeout" in json.loads(body)["error"]["message"]
    assert sorted(keys_seen(fake)) == ["k1", "k2"]


def test_a_pinned_request_times_out_on_its_own_instance_only(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS, config_text="upstream: {first_byte_timeout: 0.5}\n")
    status, _, body = ask(gateway, "anthropic", model="opencode-go.2:glm-5.1",
                          text="[[fake: ttfb=3]]", stream=True)
    assert status == 504
    assert json.loads(body)["type"] == "error"
    assert json.loads(body)["error"]["type"] == "timeout_error"  # Anthropic's type for a 504
    assert keys_seen(fake) == ["k2"]


# --- graceful shutdown -----------------------------------------------------------------------

def test_sigterm_lets_a_running_stream_finish_refuses_new_connections_and_exits_0(
        start_gateway, fake):
    gateway = start_gateway(config_text="server: {graceful_timeout: 20}\n")
    outcome = {}
    first_event = threading.Event()

    def stream():
        request = urllib.request.Request(
            gateway.url + PATHS["openai"], headers={"content-type": "application/json"},
            data=json.dumps(request_body("openai", "opencode-go/glm-5.1",
                                         "[[fake: deltas=6 slow=0.4]]", stream=True)).encode())
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.readline()
            first_event.set()
            outcome["raw"] = raw + answer.read()

    reader = threading.Thread(target=stream)
    reader.start()
    assert first_event.wait(10)
    gateway.process.send_signal(signal.SIGTERM)
    refused = False
    deadline = time.monotonic() + 5
    while not refused and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", gateway.port), timeout=1).close()
            time.sleep(0.05)
        except ConnectionRefusedError:
            refused = True
    assert refused, "the gateway still accepted connections after SIGTERM"
    reader.join(30)
    assert stream_outcome("openai", outcome["raw"]) == (None, True)
    assert gateway.process.wait(30) == 0
    assert fake.stats()["completed_streams"] == 1
