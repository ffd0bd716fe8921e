"""OpenCode Go as it is today (shared/UPSTREAM.md), end to end over real sockets: the session
header, the catalogue on three wires, cost frames, usage-limit answers and the model quirks.

The fake upstream refuses every request without `x-opencode-session`, sends each model id to one
wire only, sends a cost frame after each answer, and answers `GoUsageLimitError` for a key put at
a limit: every answer below passed all of that."""
from __future__ import annotations

import json
import socket
import time
import urllib.request

import anthropic
import openai
import pytest

from tests.conversations import sessions_preferring
from tests.fake_upstream import REASONING_TEXT, answer_text, fake_cost
from tests.http_requests import post_json as post

MODELS = ["opencode-go/glm-5.1", "opencode-go/deepseek-v4-pro", "opencode-go/minimax-m2.7",
          "opencode-go/qwen3.7-plus", "opencode-go/gpt-5.6-luna"]
TWO_KEYS = {"OPENCODE_GO_API_KEY_1": "k1", "OPENCODE_GO_API_KEY_2": "k2"}


def chat(gateway, text="hi", model="opencode-go/glm-5.1", **extra):
    return post(gateway.url + "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": text}], **extra})




@pytest.mark.parametrize("model", MODELS)
def test_both_sdks_get_answers_from_every_wire(gateway, fake, model):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        answer = client.chat.completions.create(model=model, messages=[
            {"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == answer_text()
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(model=model, stream=True, messages=[
                               {"role": "user", "content": "hi"}]) if chunk.choices)
        assert streamed == answer_text()
    with anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0) as client:
        with client.messages.stream(model=model, max_tokens=200,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            assert stream.get_final_text() == answer_text()
    for request in fake.requests():
        assert request["headers"]["x-opencode-session"]
    wire = {"glm-5.1": "/v1/chat/completions", "deepseek-v4-pro": "/v1/chat/completions",
            "minimax-m2.7": "/v1/messages", "qwen3.7-plus": "/v1/messages",
            "gpt-5.6-luna": "/v1/responses"}[model.split("/")[1]]
    assert {request["path"] for request in fake.requests()} == {wire}


def test_one_conversation_one_session_two_conversations_two(gateway, fake):
    first_turn = [{"role": "system", "content": "You help."}, {"role": "user", "content": "hi"}]
    second_turn = first_turn + [{"role": "assistant", "content": "hello"},
                                {"role": "user", "content": "and now?"}]
    for messages in (first_turn, second_turn):
        assert post(gateway.url + "/v1/chat/completions",
                    {"model": "opencode-go/glm-5.1", "messages": messages})[0] == 200
    other = [{"role": "system", "content": "You help."}, {"role": "user", "content": "bye"}]
    assert post(gateway.url + "/v1/chat/completions",
                {"model": "opencode-go/minimax-m2.7", "messages": other})[0] == 200
    sessions = [request["headers"]["x-opencode-session"] for request in fake.requests()]
    assert sessions[0] == sessions[1] != sessions[2]
    assert all(len(s) <= 128 and s.replace("-", "").isalnum() for s in sessions)
    assert "hi" not in sessions[0] and "You help" not in sessions[0]


def test_the_clients_own_session_id_is_the_one_sent(gateway, fake):
    codes = [
        post(gateway.url + "/v1/chat/completions",
             {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "a"}]},
             {"x-opencode-session": "ses_opencode_1"})[0],
        post(gateway.url + "/v1/responses",
             {"model": "opencode-go/glm-5.1", "input": "b", "prompt_cache_key": "codex-uuid-7"})[0],
        post(gateway.url + "/v1/messages",
             {"model": "opencode-go/minimax-m2.7", "max_tokens": 50,
              "messages": [{"role": "user", "content": "c"}],
              "metadata": {"user_id": "user_abc123_account_acc-1_session_0b5c6d7e-1111-2222"}})[0],
        post(gateway.url + "/v1/messages",
             {"model": "opencode-go/minimax-m2.7", "max_tokens": 50,
              "messages": [{"role": "user", "content": "d"}],
              "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "cc-sess-9"})}})[0],
        post(gateway.url + "/v1/chat/completions",
             {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "e"}]},
             {"session-id": "x y/z"})[0],
    ]
    assert codes == [200] * 5
    sessions = [request["headers"]["x-opencode-session"] for request in fake.requests()]
    assert sessions[:4] == ["ses_opencode_1", "codex-uuid-7", "0b5c6d7e-1111-2222", "cc-sess-9"]
    assert sessions[4].startswith("h-") and " " not in sessions[4]  # unsafe characters: hashed


def test_models_lists_what_the_upstream_lists(start_gateway, fake):
    fake.models(add={"glm-6-preview": "chat"}, remove=["hy3"])
    gateway = start_gateway()
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(gateway.url + "/v1/models", timeout=5) as answer:
            ids = {model["id"] for model in json.loads(answer.read())["data"]}
        if "opencode-go/glm-6-preview" in ids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "opencode-go/glm-6-preview" in ids and "opencode-go/hy3" not in ids
    assert "opencode-go/gpt-5.6-luna" in ids
    # The new id is routable bare, now that the upstream lists it.
    assert chat(gateway, model="glm-6-preview")[0] == 200


def test_a_failing_model_list_keeps_the_built_in_one(start_gateway, fake):
    fake.models(list_status=500)
    gateway = start_gateway()
    deadline = time.monotonic() + 10  # the list is read in the background after start
    while "could not read opencode-go's model list" not in gateway.log() and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert "could not read opencode-go's model list" in gateway.log()
    assert "keeping the last good list" not in gateway.log()  # there was none: the table
    with urllib.request.urlopen(gateway.url + "/v1/models", timeout=5) as answer:
        ids = {model["id"] for model in json.loads(answer.read())["data"]}
    assert "opencode-go/glm-5.1" in ids and "opencode-go/minimax-m2.7" in ids


def test_a_model_on_a_wire_nobody_knew_is_learned(gateway, fake):
    fake.models(add={"zeta-1": "messages"})  # a new family, not in any table: the OpenAI wire first
    status, _, body = chat(gateway, model="opencode-go/zeta-1")
    assert status == 200, body
    assert [r["path"] for r in fake.requests()] == ["/v1/chat/completions", "/v1/messages"]
    assert chat(gateway, model="opencode-go/zeta-1")[0] == 200
    assert [r["path"] for r in fake.requests()][2:] == ["/v1/messages"]  # straight there now
    assert "zeta-1 is served on the anthropic wire" in gateway.log()


def raw_stream(gateway, body: dict) -> bytes:
    """The whole HTTP response to a streamed request, read off the socket until it closes."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(payload), payload))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def dechunk(response: bytes) -> bytes:
    head, _, rest = response.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    body = b""
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        body, rest = body + rest[:length], rest[length + 2:]
    return body


@pytest.mark.parametrize("model", ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7"])
def test_no_byte_follows_done_and_the_cost_is_recorded(gateway, fake, model):
    body = dechunk(raw_stream(gateway, {"model": model, "stream": True,
                                        "stream_options": {"include_usage": True},
                                        "messages": [{"role": "user", "content": "hi"}]}))
    assert body.endswith(b"data: [DONE]\n\n")
    assert b'"cost"' not in body
    bare = model.split("/")[1]
    [line] = [line for line in gateway.access_lines(where=lambda line: line.get("model") == bare)
              if line.get("model") == bare]
    charged = fake.charges()["by_key"]["test-key"]
    assert line["cost_usd"] == pytest.approx(charged)
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as answer:
        metrics = answer.read().decode()
    assert f'opencode_gateway_cost_usd_total{{instance="opencode-go",model="{model.split("/")[1]}"}}' in metrics


def test_whole_answers_record_their_cost(gateway, fake):
    assert chat(gateway)[0] == 200
    [line] = gateway.access_lines()
    assert line["cost_usd"] == pytest.approx(fake_cost("glm-5.1", 10, output_tokens=5))


def test_a_key_at_its_5_hour_limit_rests_until_its_reset(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.set_limit("k1", "5 hour", retry_after=14160)
    for session in sessions_preferring("k1", 5):  # each would start on k1
        status, _, body = post(gateway.url + "/v1/chat/completions", {
            "model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "hi"}]},
            {"x-opencode-session": session})
        assert status == 200, body
    # The first learned about the limit and moved on; no other request tried k1 again.
    assert [request["key"] for request in fake.requests()] == ["k1"] + ["k2"] * 5
    [limit_line] = [line for line in gateway.access_lines(where=lambda line: line.get("limit"))
                    if line.get("limit")]
    assert (limit_line["limit"], limit_line["instance"]) == ("5 hour", "opencode-go.2")
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as answer:
        assert 'opencode_gateway_usage_limits_total{instance="opencode-go.1",limit="5 hour"} 1.0' \
               in answer.read().decode()
    with urllib.request.urlopen(gateway.url + "/v1/usage", timeout=5) as answer:
        keys = {key["instance"]: key for key in json.loads(answer.read())["keys"]}
    assert keys["opencode-go.1"]["status"] == "limited"
    assert keys["opencode-go.1"]["limit"] == "5 hour"


def test_every_key_at_a_limit_is_a_429_that_says_which_and_when(start_gateway, fake):
    gateway = start_gateway(env=TWO_KEYS)
    fake.set_limit("k1", "5 hour", retry_after=7200)
    fake.set_limit("k2", "weekly", retry_after=90000)
    status, headers, body = chat(gateway)
    assert status == 429
    message = json.loads(body)["error"]["message"]
    assert "opencode-go.1: 5 hour limit, resets in 2h00m" in message
    assert "opencode-go.2: weekly limit, resets in 25h00m" in message
    assert 7190 <= int(headers["retry-after"]) <= 7200
    fake.reset()
    status, _, body = post(gateway.url + "/v1/messages", {  # no upstream call: both rest
        "model": "opencode-go/glm-5.1", "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}]})
    assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"
    assert fake.requests() == []


def test_reasoning_controls_are_fitted_to_each_model(gateway, fake):
    # GLM takes low/high/max but not `thinking`; models.dev lists no effort for kimi-k2.6;
    # deepseek takes high/max.
    assert chat(gateway, reasoning_effort="high", thinking={"type": "enabled"})[0] == 200
    assert chat(gateway, model="opencode-go/kimi-k2.6", reasoning_effort="high")[0] == 200
    assert chat(gateway, model="opencode-go/deepseek-v4-pro", reasoning_effort="low")[0] == 200
    glm, kimi, deepseek = fake.requests()
    assert glm["body"]["reasoning_effort"] == "high" and "thinking" not in glm["body"]
    assert "reasoning_effort" not in kimi["body"]
    assert deepseek["body"]["reasoning_effort"] == "high"


def test_a_key_pasted_with_its_bearer_prefix_works(start_gateway, fake):
    gateway = start_gateway(env={"OPENCODE_GO_API_KEY": "Bearer sk-pasted"})
    assert chat(gateway)[0] == 200
    assert chat(gateway, model="opencode-go/minimax-m2.7")[0] == 200
    assert [request["key"] for request in fake.requests()] == ["sk-pasted", "sk-pasted"]


def test_deepseek_tool_round_trip_from_an_anthropic_client(gateway, fake):
    with anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0) as client:
        first = client.messages.create(
            model="opencode-go/deepseek-v4-pro", max_tokens=500,
            messages=[{"role": "user", "content": "[[fake: tools=1]] weather?"}])
        assert [block.type for block in first.content] == ["thinking", "tool_use"]
        assert first.content[0].thinking == REASONING_TEXT
        call = first.content[1]
        second = client.messages.create(
            model="opencode-go/deepseek-v4-pro", max_tokens=500, messages=[
                {"role": "user", "content": "[[fake: tools=1]] weather?"},
                {"role": "assistant", "content": [block.model_dump() for block in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                              "content": "sunny"}]}])
    assert second.content[-1].text == answer_text()
    assistant = fake.requests()[1]["body"]["messages"][1]
    assert assistant["reasoning_content"] == REASONING_TEXT
