"""The fake upstream speaks both OpenCode Go flavours the way the official SDKs expect.

If these pass, a gateway test that fails against the fake is the gateway's fault: the SDKs
themselves rebuild the fake's answers (text, reasoning, parallel tool calls, finish reasons,
usage) and see its rejections, errors and broken streams for what they are.
"""
from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

from tests.fake_upstream import (
    CACHE_CREATION_TOKENS, CACHE_READ_TOKENS, REASONING_TEXT, THINKING_SIGNATURE,
    anthropic_tool_id, answer_deltas, answer_text, completion_tokens, openai_tool_id,
    parse_script, tool_arguments, tool_name,
)

USER = [{"role": "user", "content": "hi"}]
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def _ask(directive: str) -> list[dict]:
    return [{"role": "user", "content": f"hi [[fake: {directive}]]"}]


@pytest.fixture
def oai(fake):
    return openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0)


@pytest.fixture
def claude(fake):
    # Current SDKs send the API key as a Bearer token, which OpenCode Go's /messages refuses.
    return anthropic.Anthropic(base_url=fake.root, api_key="k", max_retries=0,
                               default_headers={"x-api-key": "k"})


def _post(fake, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(fake.root + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _sse_data(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


def _sse_events(raw: bytes) -> list[str]:
    return [line[7:] for line in raw.decode().split("\n") if line.startswith("event: ")]


def _messages_body(**changes) -> dict:
    return {"model": "minimax-m2.7", "max_tokens": 100, "messages": USER, **changes}


# --- OpenAI flavour --------------------------------------------------------------------------

def test_openai_answer_has_text_finish_and_usage(oai):
    done = oai.chat.completions.create(model="glm-5.1", messages=USER * 3)
    assert done.choices[0].message.content == answer_text(5) == "héllo wörld 🎉 héllo wörld"
    assert done.choices[0].finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens,
            done.usage.total_tokens) == (30, 5, 35)
    assert done.model == "glm-5.1"


def test_openai_stream_rebuilds_text_and_usage(oai):
    with oai.chat.completions.stream(model="glm-5.1", messages=_ask("deltas=50"),
                                     stream_options={"include_usage": True}) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta" and e.delta]
        done = stream.get_final_completion()
    assert deltas == answer_deltas(50)
    assert done.choices[0].message.content == answer_text(50)
    assert done.choices[0].finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (10, 50)


def test_openai_stream_wire_format(fake):
    status, headers, raw = _post(fake, "/v1/chat/completions",
                                 {"model": "glm-5.1", "messages": USER, "stream": True},
                                 {"Authorization": "Bearer k"})
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    data = _sse_data(raw)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"] for c in chunks), "a usage chunk came without include_usage"


def test_openai_usage_chunk_only_with_include_usage(fake):
    _, _, raw = _post(fake, "/v1/chat/completions",
                      {"model": "glm-5.1", "messages": USER, "stream": True,
                       "stream_options": {"include_usage": True}},
                      {"Authorization": "Bearer k"})
    usage_chunk = json.loads(_sse_data(raw)[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_reasoning_content(oai, stream):
    if stream:
        with oai.chat.completions.stream(model="kimi-k2.5", messages=_ask("reasoning")) as s:
            message = s.get_final_completion().choices[0].message
    else:
        message = oai.chat.completions.create(model="kimi-k2.5",
                                              messages=_ask("reasoning")).choices[0].message
    assert message.model_extra["reasoning_content"] == REASONING_TEXT
    assert message.content == answer_text(5)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools, text", [(3, None), (2, answer_text(5))])
def test_openai_parallel_tool_calls(oai, stream, tools, text):
    directive = f"tools={tools}" + (" text" if text else "")
    if stream:
        with oai.chat.completions.stream(model="glm-5.1", messages=_ask(directive),
                                         stream_options={"include_usage": True}) as s:
            done = s.get_final_completion()
    else:
        done = oai.chat.completions.create(model="glm-5.1", messages=_ask(directive))
    choice = done.choices[0]
    calls = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls"
    assert (choice.message.content or None) == text  # the stream's role chunk carries content ""
    assert [c.id for c in calls] == [openai_tool_id(k) for k in range(tools)]
    assert [c.function.name for c in calls] == [tool_name(k) for k in range(tools)]
    assert [json.loads(c.function.arguments) for c in calls] == [
        tool_arguments(k) for k in range(tools)]
    assert calls[0].function.name == "get_weather" and calls[1].function.name == "get_time"
    assert done.usage.completion_tokens == completion_tokens(tools=tools, text=text is not None)


def test_openai_tool_arguments_arrive_in_fragments(fake):
    _, _, raw = _post(fake, "/v1/chat/completions",
                      {"model": "glm-5.1", "messages": _ask("tools=1"), "stream": True},
                      {"Authorization": "Bearer k"})
    deltas = [json.loads(d)["choices"][0]["delta"] for d in _sse_data(raw)[:-1]]
    tool_deltas = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert tool_deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [d["function"]["arguments"] for d in tool_deltas[1:]]
    assert len(fragments) > 1 and all("id" not in d for d in tool_deltas[1:])
    assert json.loads("".join(fragments)) == tool_arguments(0)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_length_finish(oai, stream):
    answer = oai.chat.completions.create(model="glm-5.1", messages=_ask("length"), stream=stream)
    if stream:
        # (the SDK's stream helper refuses a length-cut answer, so read the chunks)
        finishes = [c.choices[0].finish_reason for c in answer]
        assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    else:
        assert answer.choices[0].finish_reason == "length"


def test_openai_requires_bearer_key(fake):
    for headers in ({}, {"Authorization": "Bearer "}, {"x-api-key": "k"}):
        status, _, raw = _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
                               headers)
        assert status == 401
        assert json.loads(raw)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("model", ["opencode-go/glm-5.1", "opencode-go:glm-5.1"])
def test_openai_rejects_prefixed_model_ids(oai, model):
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model=model, messages=USER)
    assert model in err.value.message and "bare model id" in err.value.message


def test_openai_rejects_tool_message_without_tool_call(oai):
    with pytest.raises(openai.BadRequestError, match="role 'tool'"):
        oai.chat.completions.create(model="glm-5.1", messages=[
            *USER, {"role": "tool", "tool_call_id": "call_x", "content": "sunny"}])


def test_openai_answers_text_after_tool_results(oai):
    done = oai.chat.completions.create(model="glm-5.1", messages=[
        *_ask("tools=1"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    # The directive belongs to an earlier turn: the answer to the tool results is plain text.
    assert done.choices[0].message.content == answer_text(5)
    assert done.choices[0].finish_reason == "stop"


def test_openai_stream_error_reaches_the_client(oai):
    received = []
    with pytest.raises(openai.APIError, match="fake upstream stream error"):
        for chunk in oai.chat.completions.create(model="glm-5.1", messages=_ask("stream_error"),
                                                 stream=True):
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert "".join(received) == answer_text(3)


def test_unknown_directive_key_is_a_loud_400(oai):
    with pytest.raises(openai.BadRequestError, match="bad directive item 'delta=3'"):
        oai.chat.completions.create(model="glm-5.1", messages=_ask("delta=3"))


def test_parse_script_reads_every_key():
    script = parse_script("x [[fake: deltas=7 reasoning tools=2 text length error=503 "
                          "retry_after=4 stream_error cut slow=0.5 ttfb=1.5]] y")
    assert script == (7, True, 2, True, True, 503, "4", True, True, 0.5, 1.5)
    assert parse_script("no directive here").deltas == 5


# --- Anthropic flavour -----------------------------------------------------------------------

def test_anthropic_answer_has_text_stop_reason_and_usage(claude):
    done = claude.messages.create(model="minimax-m2.7", max_tokens=100, messages=USER)
    assert [b.type for b in done.content] == ["text"]
    assert done.content[0].text == answer_text(5)
    assert done.stop_reason == "end_turn"
    assert (done.usage.input_tokens, done.usage.cache_read_input_tokens,
            done.usage.cache_creation_input_tokens, done.usage.output_tokens) == (
        10, CACHE_READ_TOKENS, CACHE_CREATION_TOKENS, 5)


def test_anthropic_stream_rebuilds_text_and_usage(claude):
    with claude.messages.stream(model="minimax-m2.7", max_tokens=100,
                                messages=_ask("deltas=50")) as stream:
        deltas = list(stream.text_stream)
        done = stream.get_final_message()
    assert deltas == answer_deltas(50)
    assert done.content[0].text == answer_text(50)
    assert done.stop_reason == "end_turn"
    assert (done.usage.input_tokens, done.usage.cache_read_input_tokens,
            done.usage.cache_creation_input_tokens, done.usage.output_tokens) == (
        10, CACHE_READ_TOKENS, CACHE_CREATION_TOKENS, 50)


def test_anthropic_stream_wire_format(fake):
    status, headers, raw = _post(fake, "/v1/messages", _messages_body(stream=True),
                                 ANTHROPIC_HEADERS)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert _sse_events(raw) == ["message_start", "ping", "content_block_start"] + [
        "content_block_delta"] * 5 + ["content_block_stop", "message_delta", "message_stop"]
    start = json.loads(_sse_data(raw)[0])["message"]
    assert start["usage"]["input_tokens"] > 0
    assert start["usage"]["cache_read_input_tokens"] > 0
    assert start["usage"]["cache_creation_input_tokens"] > 0
    assert json.loads(_sse_data(raw)[-2])["usage"] == {"output_tokens": 5}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_thinking_block_is_signed(claude, stream):
    if stream:
        with claude.messages.stream(model="minimax-m2.5", max_tokens=100,
                                    messages=_ask("reasoning")) as s:
            done = s.get_final_message()
    else:
        done = claude.messages.create(model="minimax-m2.5", max_tokens=100,
                                      messages=_ask("reasoning"))
    assert [b.type for b in done.content] == ["thinking", "text"]
    assert done.content[0].thinking == REASONING_TEXT
    assert done.content[0].signature == THINKING_SIGNATURE
    assert done.content[1].text == answer_text(5)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools, text", [(3, None), (2, answer_text(5))])
def test_anthropic_parallel_tool_use(claude, stream, tools, text):
    directive = f"tools={tools}" + (" text" if text else "")
    if stream:
        with claude.messages.stream(model="minimax-m2.7", max_tokens=100,
                                    messages=_ask(directive)) as s:
            done = s.get_final_message()
    else:
        done = claude.messages.create(model="minimax-m2.7", max_tokens=100,
                                      messages=_ask(directive))
    uses = [b for b in done.content if b.type == "tool_use"]
    texts = [b.text for b in done.content if b.type == "text"]
    assert done.stop_reason == "tool_use"
    assert texts == ([text] if text else [])
    assert [u.id for u in uses] == [anthropic_tool_id(k) for k in range(tools)]
    assert [u.name for u in uses] == [tool_name(k) for k in range(tools)]
    assert [u.input for u in uses] == [tool_arguments(k) for k in range(tools)]
    assert done.usage.output_tokens == completion_tokens(tools=tools, text=bool(text))


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_length_stop_reason(claude, stream):
    if stream:
        with claude.messages.stream(model="minimax-m2.7", max_tokens=100,
                                    messages=_ask("length")) as s:
            done = s.get_final_message()
    else:
        done = claude.messages.create(model="minimax-m2.7", max_tokens=100, messages=_ask("length"))
    assert done.stop_reason == "max_tokens"


def test_anthropic_requires_x_api_key(fake):
    status, _, raw = _post(fake, "/v1/messages", _messages_body(),
                           {"Authorization": "Bearer k", "anthropic-version": "2023-06-01"})
    error = json.loads(raw)
    assert status == 401
    assert error["type"] == "error" and error["error"]["type"] == "authentication_error"
    assert "x-api-key" in error["error"]["message"]


def test_anthropic_requires_version_header(fake):
    status, _, raw = _post(fake, "/v1/messages", _messages_body(), {"x-api-key": "k"})
    assert status == 400 and "anthropic-version" in json.loads(raw)["error"]["message"]


_TOOL_TURN = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]}


def _result(tool_use_id: str = "toolu_1") -> dict:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": "sunny"}


@pytest.mark.parametrize("body, headers, named", [
    (_messages_body(thinking={"type": "adaptive"}), {}, "thinking"),
    (_messages_body(thinking={"type": "enabled", "budget_tokens": 1024}), {}, "thinking"),
    (_messages_body(), {"anthropic-beta": "interleaved-thinking-2025-05-14"}, "anthropic-beta"),
    (_messages_body(context_management={"edits": []}), {}, "context_management"),
    (_messages_body(output_config={"effort": "high"}), {}, "output_config"),
    (_messages_body(max_tokens=None), {}, "max_tokens"),
    ({"model": "minimax-m2.7", "messages": USER}, {}, "max_tokens"),
    (_messages_body(messages=[*USER, {"role": "system", "content": "be brief"}]), {}, "role"),
    (_messages_body(messages=USER * 2), {}, "alternate"),
    (_messages_body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), {},
     "non-empty"),
    (_messages_body(messages=[{"role": "user", "content": ""}]), {}, "non-empty"),
    (_messages_body(system=[{"type": "text", "text": ""}]), {}, "system"),
    (_messages_body(messages=[*USER, {"role": "assistant", "content": "ok"},
                              {"role": "user", "content": [_result()]}]), {}, "tool_use_id"),
    (_messages_body(messages=[*USER, _TOOL_TURN, {"role": "user", "content": [_result("toolu_9")]}]),
     {}, "tool_use_id"),
    (_messages_body(messages=[*USER, _TOOL_TURN, {"role": "user", "content": "what now?"}]), {},
     "without `tool_result`"),
    (_messages_body(messages=[*USER, _TOOL_TURN, {"role": "user", "content": [
        {"type": "text", "text": "here"}, _result()]}]), {}, "first"),
    (_messages_body(model="opencode-go/minimax-m2.7"), {}, "bare model id"),
])
def test_anthropic_rejects_what_opencode_go_rejects(fake, body, headers, named):
    status, _, raw = _post(fake, "/v1/messages", body, {**ANTHROPIC_HEADERS, **headers})
    assert status == 400
    error = json.loads(raw)
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert named in error["error"]["message"]


def test_anthropic_accepts_a_tool_result_turn(claude):
    done = claude.messages.create(model="minimax-m2.7", max_tokens=100, messages=[
        *_ask("tools=1"), _TOOL_TURN,
        {"role": "user", "content": [_result(), {"type": "text", "text": "go on"}]}])
    assert done.content[0].text == answer_text(5)


def test_anthropic_stream_error_reaches_the_client(claude):
    with pytest.raises(anthropic.APIStatusError, match="Overloaded") as err:
        with claude.messages.stream(model="minimax-m2.7", max_tokens=100,
                                    messages=_ask("stream_error")) as stream:
            for _ in stream:
                pass
    assert err.value.body["error"]["type"] == "overloaded_error"


# --- errors, failing keys, broken streams (both flavours) ------------------------------------

@pytest.mark.parametrize("status", [429, 500, 503, 529])
def test_error_directive_keeps_status_message_and_retry_after(fake, status):
    directive = f"error={status} retry_after=7"
    _, headers, raw = _post(fake, "/v1/chat/completions",
                            {"model": "glm-5.1", "messages": _ask(directive)},
                            {"Authorization": "Bearer k"})
    assert json.loads(raw)["error"]["message"] == f"fake upstream error {status}"
    assert headers["Retry-After"] == "7"
    got, headers, raw = _post(fake, "/v1/messages", _messages_body(messages=_ask(directive)),
                              ANTHROPIC_HEADERS)
    assert got == status and headers["Retry-After"] == "7"
    assert json.loads(raw)["error"]["message"] == f"fake upstream error {status}"


def test_sdks_see_the_error_status(oai, claude):
    with pytest.raises(openai.RateLimitError, match="fake upstream error 429"):
        oai.chat.completions.create(model="glm-5.1", messages=_ask("error=429"))
    with pytest.raises(anthropic.RateLimitError) as err:
        claude.messages.create(model="minimax-m2.7", max_tokens=100, messages=_ask("error=429"))
    assert err.value.body["error"]["type"] == "rate_limit_error"


def test_failing_key_fails_every_request_until_reset(fake):
    fake.set_key("bad", 429, retry_after="2")
    for path, body, headers in (
            ("/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
             {"Authorization": "Bearer bad"}),
            ("/v1/messages", _messages_body(), {**ANTHROPIC_HEADERS, "x-api-key": "bad"})):
        status, got_headers, raw = _post(fake, path, body, headers)
        assert (status, got_headers["Retry-After"]) == (429, "2")
        assert "fake upstream error 429" in raw.decode()
    status, _, _ = _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
                         {"Authorization": "Bearer good"})
    assert status == 200
    fake.reset()
    status, _, _ = _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
                         {"Authorization": "Bearer bad"})
    assert status == 200


def test_cut_breaks_the_openai_stream(oai):
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model="glm-5.1", messages=_ask("cut"),
                                                 stream=True):
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert "".join(received) == answer_text(3)


def test_cut_breaks_the_anthropic_stream(claude):
    # This SDK lets the HTTP library's error through unwrapped while streaming.
    with pytest.raises(Exception, match="peer closed connection|Connection error"):
        with claude.messages.stream(model="minimax-m2.7", max_tokens=100,
                                    messages=_ask("cut")) as stream:
            list(stream.text_stream)


def test_cut_breaks_a_plain_answer(oai):
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="glm-5.1", messages=_ask("cut"))


def test_ttfb_holds_the_headers_back(fake):
    client = openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="glm-5.1", messages=_ask("ttfb=3"))


# --- stats and recording ---------------------------------------------------------------------

def test_finished_streams_count_as_completed(oai, claude, fake):
    list(oai.chat.completions.create(model="glm-5.1", messages=USER, stream=True))
    with claude.messages.stream(model="minimax-m2.7", max_tokens=100, messages=USER) as s:
        s.get_final_message()
    assert fake.wait_stats(lambda s: s["completed_streams"] == 2) == {
        "active_streams": 0, "completed_streams": 2, "aborted_streams": 0}


@pytest.mark.parametrize("path, body, headers", [
    ("/v1/chat/completions", {"model": "glm-5.1", "stream": True,
                              "messages": _ask("deltas=50 slow=0.2")},
     {"Authorization": "Bearer k"}),
    ("/v1/messages", _messages_body(stream=True, messages=_ask("deltas=50 slow=0.2")),
     ANTHROPIC_HEADERS),
    ("/v1/chat/completions", {"model": "glm-5.1", "stream": True, "messages": _ask("ttfb=30")},
     {"Authorization": "Bearer k"}),
])
def test_client_hang_up_counts_as_aborted(fake, path, body, headers):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
    if "ttfb" not in json.dumps(body):
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read(10)
    assert fake.wait_stats(lambda s: s["active_streams"] == 1)["active_streams"] == 1
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert fake.wait_stats(lambda s: s["aborted_streams"] == 1) == {
        "active_streams": 0, "completed_streams": 0, "aborted_streams": 1}


def test_requests_are_recorded_with_key_headers_and_body(fake):
    _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
          {"Authorization": "Bearer sk-one", "X-Custom": "A"})
    _post(fake, "/v1/messages", _messages_body(), {**ANTHROPIC_HEADERS, "x-api-key": "sk-two"})
    first, second = fake.requests()
    assert (first["path"], first["key"], first["body"]) == (
        "/v1/chat/completions", "sk-one", {"model": "glm-5.1", "messages": USER})
    assert first["headers"]["authorization"] == "Bearer sk-one"
    assert first["headers"]["x-custom"] == "A"
    assert (second["path"], second["key"], second["body"]) == (
        "/v1/messages", "sk-two", _messages_body())
    assert second["headers"]["anthropic-version"] == "2023-06-01"
    fake.reset()
    assert fake.requests() == []
