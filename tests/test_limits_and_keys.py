"""Limits and client keys over real sockets: body and header size, the upstream connection cap,
and `server.api_keys` / GATEWAY_API_KEYS locking the gateway."""
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def request_body(frontend: str, text: str = "hi", stream: bool = False) -> dict:
    model = "opencode-go/glm-5.1" if frontend == "openai" else "opencode-go/minimax-m2.7"
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if frontend == "anthropic":
        body["max_tokens"] = 256
    return body


def call(url: str, body: dict | None = None, headers: dict | None = None,
         timeout: float = 15) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json",
                                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def raw_exchange(port: int, head: bytes, pieces: list[bytes], timeout: float = 5) -> bytes:
    """Write a request head and body pieces by hand and read the answer until the server closes
    or goes quiet; a write refused because the server already answered is fine."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                sock.sendall(piece)
        except OSError:
            pass
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def status_and_body(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_error_shape(frontend: str, body: bytes, error_type: str) -> str:
    """The error's message, once the body is in the frontend's own error shape."""
    answer = json.loads(body)
    if frontend == "openai":
        assert set(answer["error"]) == {"message", "type", "param", "code"}
    else:
        assert answer["type"] == "error" and set(answer["error"]) == {"type", "message"}
    assert answer["error"]["type"] == error_type
    return answer["error"]["message"]


# --- request body ----------------------------------------------------------------------------

@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
def test_a_body_declared_over_the_limit_is_refused_with_413_before_it_is_sent(
        start_gateway, frontend):
    gateway = start_gateway(config_text="server: {max_body_bytes: 2000}\n")
    head = (f"POST {PATHS[frontend]} HTTP/1.1\r\nHost: gateway\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n").encode()
    # Only a sliver of the announced gigabyte is ever written: the answer cannot wait for it.
    raw = raw_exchange(gateway.port, head, [b'{"model": "' + b"x" * 100])
    status, body = status_and_body(raw)
    assert status == 413
    message = assert_error_shape(frontend, body, "request_too_large")
    assert "server.max_body_bytes" in message and "2000" in message
    assert call(gateway.url + "/healthz")[0] == 200


@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
def test_a_chunked_body_growing_past_the_limit_is_refused_with_413_midway(
        start_gateway, frontend):
    gateway = start_gateway(config_text="server: {max_body_bytes: 2000}\n")
    head = (f"POST {PATHS[frontend]} HTTP/1.1\r\nHost: gateway\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    # Three 1000-byte chunks and no final chunk: the body never ends, the 413 comes anyway.
    chunk = b"3e8\r\n" + b" " * 1000 + b"\r\n"
    status, body = status_and_body(raw_exchange(gateway.port, head, [chunk] * 3))
    assert status == 413
    assert_error_shape(frontend, body, "request_too_large")
    assert call(gateway.url + "/healthz")[0] == 200


def test_a_body_within_the_limit_is_served(start_gateway):
    gateway = start_gateway(config_text="server: {max_body_bytes: 2000}\n")
    body = request_body("openai", "x" * 1500)
    assert len(json.dumps(body)) < 2000
    assert call(gateway.url + PATHS["openai"], body)[0] == 200


# --- request headers -------------------------------------------------------------------------

@pytest.mark.parametrize("config_text, header_bytes", [
    (None, 300_000),                                   # default 64 KiB
    ("server: {max_header_bytes: 8192}\n", 100_000),
], ids=["default-limit", "configured-limit"])
def test_an_oversize_header_block_is_refused_and_the_gateway_lives(
        start_gateway, config_text, header_bytes):
    gateway = start_gateway(config_text=config_text)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nX-Padding: "
            + b"a" * header_bytes + b"\r\nContent-Length: 2\r\n\r\n{}")
    pieces = [head[i:i + 4096] for i in range(0, len(head), 4096)]
    status, _ = status_and_body(raw_exchange(gateway.port, b"", pieces))
    assert status == 431
    assert gateway.alive()
    assert call(gateway.url + "/healthz")[0] == 200


def test_a_large_but_allowed_header_is_served(start_gateway):
    gateway = start_gateway()
    status, _ = call(gateway.url + PATHS["openai"], request_body("openai"),
                     headers={"x-padding": "a" * 30_000})
    assert status == 200


# --- upstream connections --------------------------------------------------------------------

def test_requests_over_the_upstream_connection_cap_wait_their_turn(start_gateway, fake):
    # connect_timeout bounds making a connection, not the wait for a free one: the streams
    # queued behind the cap wait longer than it and must still be served.
    gateway = start_gateway(config_text="upstream: {max_connections: 2, connect_timeout: 0.5}\n")
    outcomes = []

    def stream():
        outcomes.append(call(gateway.url + PATHS["openai"],
                             request_body("openai", "[[fake: deltas=4 slow=0.4]]", stream=True),
                             timeout=30))

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    most_active = 0
    while any(thread.is_alive() for thread in threads):
        most_active = max(most_active, fake.stats()["active_streams"])
        time.sleep(0.02)
    assert [status for status, _ in outcomes] == [200] * 4
    assert all(body.rstrip().endswith(b"data: [DONE]") for _, body in outcomes)
    assert most_active <= 2
    assert fake.stats()["completed_streams"] == 4


# --- client keys -----------------------------------------------------------------------------

LOCKED = "server:\n  api_keys: [ck-from-config]\n"
LOCKED_ENV = {"GATEWAY_API_KEYS": "ck-env-one, ck-env-two"}


@pytest.fixture
def locked_gateway(start_gateway):
    return start_gateway(config_text=LOCKED, env=LOCKED_ENV)


@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
@pytest.mark.parametrize("headers", [
    {"authorization": "Bearer ck-from-config"},
    {"authorization": "bearer ck-env-two"},
    {"x-api-key": "ck-env-one"},
], ids=["bearer-config-key", "bearer-env-key", "x-api-key-env-key"])
def test_a_client_key_from_config_or_env_opens_the_gateway(locked_gateway, frontend, headers):
    status, body = call(locked_gateway.url + PATHS[frontend], request_body(frontend),
                        headers=headers)
    assert status == 200, body


@pytest.mark.parametrize("frontend", ["openai", "anthropic"])
@pytest.mark.parametrize("headers", [
    {},
    {"authorization": "Bearer ck-wrong"},
    {"x-api-key": "ck-from-config-but-longer"},
    {"authorization": "Basic ck-from-config"},
    {"authorization": "Bearer "},
], ids=["missing", "wrong-bearer", "wrong-x-api-key", "not-bearer", "empty-bearer"])
def test_a_missing_or_wrong_client_key_is_401_in_the_frontends_shape(
        locked_gateway, fake, frontend, headers):
    status, body = call(locked_gateway.url + PATHS[frontend], request_body(frontend),
                        headers=headers)
    assert status == 401
    message = assert_error_shape(frontend, body, "authentication_error")
    assert "ck-" not in message  # neither the presented key nor a valid one is echoed
    assert fake.requests() == []  # nothing went upstream


def test_a_locked_gateway_locks_models_and_count_tokens_too(locked_gateway):
    url = locked_gateway.url
    assert call(url + "/v1/models")[0] == 401
    assert call(url + "/v1/models", headers={"authorization": "Bearer ck-env-one"})[0] == 200
    status, body = call(url + "/v1/messages/count_tokens", {"messages": []})
    assert status == 401 and json.loads(body)["type"] == "error"


def test_healthz_stays_open_on_a_locked_gateway(locked_gateway):
    assert call(locked_gateway.url + "/healthz") == (200, b'{"status":"ok"}')


def test_without_client_keys_the_gateway_is_open(start_gateway):
    gateway = start_gateway()
    assert call(gateway.url + PATHS["openai"], request_body("openai"))[0] == 200
