"""Secrets: upstream keys stay out of logs, answers and command output; the client's
credentials and hop-by-hop headers never reach the upstream."""
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from aioresponses import aioresponses

from gateway.app import Gateway
from gateway.config import load_config
from gateway.errors import GatewayError
from gateway.frontends.common import upstream_payload
from gateway.upstream.forwarder import create_session
from tests.fake_upstream_client import free_port
from tests.gateway_process import REPO

KEY_1 = "sk-upstream-SECRET-one-1111"
KEY_2 = "sk-upstream-SECRET-two-2222"
SECRET_KEYS = {"OPENCODE_GO_API_KEY_1": KEY_1, "OPENCODE_GO_API_KEY_2": KEY_2}
CLIENT_KEY = "ck-client-SECRET-3333"
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def call(url: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, str]:
    """Status and everything the client saw (headers and body) as one text."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json",
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, str(answer.headers) + answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, str(error.headers) + error.read().decode()


def request_body(frontend: str, model: str, text: str = "hi", stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if frontend == "anthropic":
        body["max_tokens"] = 64
    return body


def assert_no_upstream_key(text: str) -> None:
    assert KEY_1 not in text and KEY_2 not in text
    assert "SECRET-one" not in text and "SECRET-two" not in text  # nor a long piece of one


def test_upstream_keys_stay_out_of_answers_and_logs_whatever_goes_wrong(start_gateway, fake):
    gateway = start_gateway(env={**SECRET_KEYS, "GATEWAY_API_KEYS": CLIENT_KEY})
    auth = {"authorization": "Bearer " + CLIENT_KEY}
    fake.set_key(KEY_1, 429, retry_after="30")       # failover with a rested key
    fake.set_key(KEY_2, 401)                         # the upstream refuses a key
    seen = []
    for frontend in ("openai", "anthropic"):
        for model in ("opencode-go/glm-5.1", "opencode-go/minimax-m2.7",
                      "opencode-go.1:kimi-k2.5", "no-such-backend:x"):
            seen.append(call(gateway.url + PATHS[frontend], request_body(frontend, model), auth))
    fake.set_key(KEY_1, None)
    fake.set_key(KEY_2, None)
    for text in ("[[fake: cut]]", "[[fake: stream_error]]", "[[fake: error=500]]"):
        for frontend in ("openai", "anthropic"):
            seen.append(call(gateway.url + PATHS[frontend],
                             request_body(frontend, "opencode-go/glm-5", text, True), auth))
    seen.append(call(gateway.url + PATHS["openai"], b"{not json", auth))
    seen.append(call(gateway.url + PATHS["openai"], request_body("openai", "opencode-go/glm-5"),
                     {"authorization": "Bearer " + KEY_1}))  # an upstream key as a client key
    statuses = {status for status, _ in seen}
    assert {200, 400, 401, 404, 429}.issubset(statuses)
    for _, text in seen:
        assert_no_upstream_key(text)
    assert_no_upstream_key(gateway.log())
    assert CLIENT_KEY not in gateway.log()


def test_an_unreachable_upstream_is_reported_without_its_key(start_gateway):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gateway = start_gateway(env={**SECRET_KEYS, "OPENCODE_GO_API_URL": dead})
    for frontend in ("openai", "anthropic"):
        status, text = call(gateway.url + PATHS[frontend],
                            request_body(frontend, "opencode-go/glm-5.1"))
        assert status == 502 and "cannot connect" in text
        assert_no_upstream_key(text)
    assert_no_upstream_key(gateway.log())


@pytest.mark.parametrize("command", [
    ["routes", "opencode-go/glm-5.1"],
    ["routes", "opencode-go.2:minimax-m2.7", "--frontend", "anthropic"],
    ["check-config"],
])
def test_command_output_shows_keys_masked(command):
    env = {"PATH": "", **SECRET_KEYS}
    result = subprocess.run([sys.executable, "-m", "gateway", *command], cwd=REPO, env=env,
                            capture_output=True, text=True, check=True)
    assert_no_upstream_key(result.stdout + result.stderr)
    assert "****1111" in result.stdout or "****2222" in result.stdout


def test_check_config_masks_a_key_written_in_the_file(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(f"backends:\n  opencode-go:\n    api_key: {KEY_1}\n"
                      f"server:\n  api_keys: [{CLIENT_KEY}]\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config",
                             str(config)], cwd=REPO, env={"PATH": ""}, capture_output=True,
                            text=True, check=True)
    assert_no_upstream_key(result.stdout + result.stderr)
    assert CLIENT_KEY not in result.stdout + result.stderr
    assert "****1111" in result.stdout


# Headers that belong to the client's hop or to the client itself.
CLIENT_ONLY = {
    "authorization": "Bearer " + CLIENT_KEY,
    "x-api-key": CLIENT_KEY,
    "proxy-authorization": "Basic Y2xpZW50OnNlY3JldA==",
    "cookie": "session=client-cookie",
    "connection": "keep-alive, x-hop",
    "keep-alive": "timeout=5, max=100",
    "x-hop": "named-by-connection",
    "te": "trailers",
    "upgrade": "example/1",
}


@pytest.mark.parametrize("frontend, model", [
    ("openai", "opencode-go/glm-5.1"), ("anthropic", "opencode-go/minimax-m2.7"),
    ("openai", "opencode-go/minimax-m2.7"), ("anthropic", "opencode-go/glm-5.1"),
])
def test_client_credentials_and_hop_by_hop_headers_never_go_upstream(
        start_gateway, fake, frontend, model):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": CLIENT_KEY})
    status, _ = call(gateway.url + PATHS[frontend], request_body(frontend, model), CLIENT_ONLY)
    assert status == 200
    [seen] = fake.requests()
    upstream_headers = seen["headers"]
    for name in ("proxy-authorization", "cookie", "keep-alive", "x-hop", "te", "upgrade"):
        assert name not in upstream_headers, name
    # The gateway's own client may name options of its own connection, never the client's.
    assert "x-hop" not in upstream_headers.get("connection", "")
    # The upstream credential is the instance's key, in the flavour's header.
    credential = ("authorization" if "glm" in model else "x-api-key")
    assert upstream_headers[credential] in ("Bearer test-key", "test-key")
    assert CLIENT_KEY not in json.dumps(seen)
    assert seen["key"] == "test-key"


def test_a_chunked_client_body_reaches_the_upstream_with_its_own_framing(start_gateway, fake):
    gateway = start_gateway()
    body = json.dumps(request_body("openai", "opencode-go/glm-5.1")).encode()

    def pieces():  # a generator body makes urllib send Transfer-Encoding: chunked
        yield body[:10]
        yield body[10:]

    request = urllib.request.Request(gateway.url + PATHS["openai"], data=pieces(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as answer:
        assert answer.status == 200
    [seen] = fake.requests()
    assert "transfer-encoding" not in seen["headers"]
    assert int(seen["headers"]["content-length"]) > 0


def test_the_upstream_is_asked_for_uncompressed_answers(gateway, fake):
    # The gateway relays and translates the bytes as they arrive: a gzip answer would reach
    # the client (or the translator) as unreadable bytes.
    call(gateway.url + PATHS["openai"], request_body("openai", "opencode-go/glm-5.1"))
    [seen] = fake.requests()
    assert seen["headers"]["accept-encoding"] == "identity"


async def test_an_upstream_error_quoting_the_key_reaches_the_client_masked():
    env = {"OPENCODE_GO_API_URL": "http://up.test/v1", **SECRET_KEYS}
    gateway = Gateway(load_config(None, env), env=env)
    session = create_session(gateway.config.upstream)
    forwarder = gateway.attach(session)
    body = request_body("openai", "opencode-go.1:glm-5.1")
    try:
        ctx = await gateway.router.route(body["model"], "openai", body)
        with aioresponses() as mock:
            mock.post("http://up.test/v1/chat/completions", status=401,
                      payload={"error": {"message": f"Incorrect API key provided: {KEY_1}"}})
            with pytest.raises(GatewayError) as refused:
                await forwarder.forward(ctx, upstream_payload(ctx))
    finally:
        await session.close()
    # The gateway's own key was refused: not the client's fault, so not a 401 to the client.
    assert refused.value.status == 502
    assert "Incorrect API key provided: ****1111" in refused.value.message
    assert "refused the gateway's key for instance opencode-go.1" in refused.value.message
