"""The fake upstream speaks OpenCode Go's three wires the way the official SDKs expect, and
keeps today's rules: the session header, the catalogue's wires, cost frames, usage limits.

If these pass, a gateway test that fails against the fake is the gateway's fault: the SDKs
themselves rebuild the fake's answers (text, reasoning, parallel tool calls, finish reasons,
usage) and see its rejections, errors and broken streams for what they are.
"""
from __future__ import annotations

import datetime
import http.client
import json
import math
import socket
import time
import urllib.error
import urllib.request

import anthropic
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fake_upstream import (
    CACHE_CREATION_TOKENS, CACHE_READ_TOKENS, CATALOGUE, CONSOLE_REGIONS_MESSAGE, DECEMBER_IDS,
    EDGE_RAY_ID, OUTPUT_LIMITS, REASONING_DELTAS, REASONING_TEXT, THINKING_SIGNATURE,
    anthropic_tool_id, answer_deltas, answer_text, completion_tokens, cost_string, fake_cost,
    Script, model_cap_message, openai_tool_id, parse_script, responses_call_item_id,
    tool_arguments, tool_name, usage_limit_message, wire_of,
)
from tests.fake_upstream_client import SESSION_HEADERS, TEST_USER_AGENT

USER = [{"role": "user", "content": "hi"}]
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
BEARER = {"Authorization": "Bearer k"}


def _ask(directive: str) -> list[dict]:
    return [{"role": "user", "content": f"hi [[fake: {directive}]]"}]


@pytest.fixture
def oai(fake):
    return openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0,
                         default_headers=SESSION_HEADERS)


@pytest.fixture
def claude(fake):
    # Current SDKs send the API key as a Bearer token, which OpenCode Go's /messages refuses.
    return anthropic.Anthropic(base_url=fake.root, api_key="k", max_retries=0,
                               default_headers={"x-api-key": "k", **SESSION_HEADERS})


def _send(fake, method: str, path: str, body: dict | None, headers: dict[str, str],
          session: bool) -> tuple[int, dict, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fake.root + path, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": TEST_USER_AGENT,
                                          **(SESSION_HEADERS if session else {}), **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _post(fake, path: str, body: dict, headers: dict[str, str],
          session: bool = True) -> tuple[int, dict, bytes]:
    """POST with the session header (unless `session=False`); status, headers, raw body."""
    return _send(fake, "POST", path, body, headers, session)


def _get(fake, path: str, headers: dict[str, str], session: bool = True) -> tuple[int, dict, bytes]:
    return _send(fake, "GET", path, None, headers, session)


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
    assert data[-2] == "[DONE]"   # then OpenCode Go's cost frame
    assert json.loads(data[-1]) == {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
        "model": "glm-5.1", "choices": [], "cost": cost_string(fake_cost("glm-5.1", 10, 0, 0, 5))}
    chunks = [json.loads(d) for d in data[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"] for c in chunks), "a usage chunk came without include_usage"


def test_openai_usage_chunk_only_with_include_usage(fake):
    _, _, raw = _post(fake, "/v1/chat/completions",
                      {"model": "glm-5.1", "messages": USER, "stream": True,
                       "stream_options": {"include_usage": True}},
                      {"Authorization": "Bearer k"})
    usage_chunk = json.loads(_sse_data(raw)[-3])
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
    deltas = [json.loads(d)["choices"][0]["delta"] for d in _sse_data(raw)[:-2]]
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
    # By name, so that a new directive key leaves these expectations as they are.
    assert script._asdict() == {**Script()._asdict(), "deltas": 7, "reasoning": True,
                                "tools": 2, "text": True, "length": True, "error": 503,
                                "retry_after": "4", "stream_error": True, "cut": True,
                                "slow": 0.5, "ttfb": 1.5}
    assert parse_script("[[fake: run=Bash]]").run == "Bash"
    assert parse_script("[[fake: leak error200 bad_utf8 garbage=9 split=4 keysplit=3]]") \
        ._asdict() == {**Script()._asdict(), "leak": True, "error200": True, "bad_utf8": True,
                       "garbage": 9, "split": 4, "keysplit": 3}
    assert parse_script("[[fake: refuse=edge]]").refuse == "edge"
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
        "content_block_delta"] * 5 + ["content_block_stop", "message_delta", "message_stop",
                                      "ping"]
    start = json.loads(_sse_data(raw)[0])["message"]
    assert start["usage"]["input_tokens"] > 0
    assert start["usage"]["cache_read_input_tokens"] > 0
    assert start["usage"]["cache_creation_input_tokens"] > 0
    assert json.loads(_sse_data(raw)[-3])["usage"] == {"output_tokens": 5}
    assert json.loads(_sse_data(raw)[-1]) == {"type": "ping", "cost": cost_string(fake_cost(
        "minimax-m2.7", 10, CACHE_READ_TOKENS, CACHE_CREATION_TOKENS, 5))}


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
    # This SDK lets the HTTP library's own error through unwrapped while streaming, and its class
    # and wording change with the HTTP library: what matters is that the stream breaks off.
    received = []
    with pytest.raises(Exception) as broken:
        with claude.messages.stream(model="minimax-m2.7", max_tokens=100,
                                    messages=_ask("cut")) as stream:
            received.extend(stream.text_stream)
    assert not isinstance(broken.value, AssertionError)
    assert "".join(received) == answer_text(3)  # what came before the cut, then the break


def test_cut_breaks_a_plain_answer(oai):
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="glm-5.1", messages=_ask("cut"))


def test_ttfb_holds_the_headers_back(fake):
    client = openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0, timeout=0.3,
                           default_headers=SESSION_HEADERS)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="glm-5.1", messages=_ask("ttfb=3"))


# --- stats and recording ---------------------------------------------------------------------

def test_finished_streams_count_as_completed(oai, claude, fake):
    list(oai.chat.completions.create(model="glm-5.1", messages=USER, stream=True))
    with claude.messages.stream(model="minimax-m2.7", max_tokens=100, messages=USER) as s:
        s.get_final_message()
    assert fake.wait_stats(lambda s: s["completed_streams"] == 2) == {
        "active_streams": 0, "completed_streams": 2, "aborted_streams": 0, "abandoned_answers": 0}


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
    conn.request("POST", path, json.dumps(body),
                 {"Content-Type": "application/json", **SESSION_HEADERS, **headers})
    if "ttfb" not in json.dumps(body):
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read(10)
    assert fake.wait_stats(lambda s: s["active_streams"] == 1)["active_streams"] == 1
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert fake.wait_stats(lambda s: s["aborted_streams"] == 1) == {
        "active_streams": 0, "completed_streams": 0, "aborted_streams": 1, "abandoned_answers": 0}


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


# --- the session rule ------------------------------------------------------------------------

_MISSING_SESSION = {"type": "error", "error": {
    "type": "MissingSessionID",
    "message": "Error from provider (Console Go): Request is missing x-opencode-session and "
               "cannot be routed efficiently"}}


@pytest.mark.parametrize("method, path, body, headers", [
    ("POST", "/v1/chat/completions", {"model": "glm-5.1", "messages": USER}, BEARER),
    ("POST", "/v1/messages", _messages_body(), ANTHROPIC_HEADERS),
    ("POST", "/v1/responses", {"model": "gpt-5.6-luna", "input": "hi"}, BEARER),
    ("GET", "/v1/models", None, BEARER),
    ("GET", "/v1/usage", None, BEARER),
    ("POST", "/v1/chat/completions", {"model": "glm-5.1", "messages": USER}, {}),  # before auth
])
@pytest.mark.parametrize("session", [None, "", "  "])
def test_every_api_request_needs_a_session_header(fake, method, path, body, headers, session):
    if session is not None:
        headers = {**headers, "x-opencode-session": session}
    status, _, raw = _send(fake, method, path, body, headers, session=False)
    assert (status, json.loads(raw)) == (400, _MISSING_SESSION)
    assert fake.last_request(everything=True)["path"] == path  # recorded all the same


# --- catalogue and wires ---------------------------------------------------------------------

_WIRE_CALLS = {
    "chat": ("/v1/chat/completions", lambda m: {"model": m, "messages": USER}, BEARER),
    "messages": ("/v1/messages", lambda m: _messages_body(model=m), ANTHROPIC_HEADERS),
    "responses": ("/v1/responses", lambda m: {"model": m, "input": "hi"}, BEARER),
}
_FORMATS = {"chat": "oa-compat", "messages": "anthropic", "responses": "openai"}


def _call_wire(fake, wire: str, model: str) -> tuple[int, dict, bytes]:
    path, body, headers = _WIRE_CALLS[wire]
    return _post(fake, path, body(model), headers)


def test_catalogue_holds_todays_ids():
    assert len(CATALOGUE) == 38
    assert {m for m, w in CATALOGUE.items() if w == "responses"} == {
        "gpt-5.6-luna", "gpt-6-luna", "grok-4.6", "grok-4.7", "muse-spark-1.2-contributor",
        "muse-spark-1.3-contributor"}
    assert {m for m, w in CATALOGUE.items() if w == "messages"} == {
        "minimax-m2.5", "minimax-m2.7", "minimax-m3", "qwen3.5-plus", "qwen3.6-plus",
        "qwen3.7-max", "qwen3.7-plus", "qwen3.8-flash", "qwen3.8-max"}
    assert (wire_of("minimax-m9"), wire_of("qwen4-max"), wire_of("gpt-7"),
            wire_of("brand-new")) == ("messages", "messages", "responses", None)


@pytest.mark.parametrize("model, wire, on", [
    ("minimax-m2.7", "messages", "chat"), ("gpt-5.6-luna", "responses", "chat"),
    ("glm-5.1", "chat", "messages"), ("gpt-5.6-luna", "responses", "messages"),
    ("glm-5.1", "chat", "responses"), ("qwen3.8-max", "messages", "responses"),
    ("minimax-m9", "messages", "chat"), ("qwen9-new", "messages", "responses"),
    ("gpt-7-new", "responses", "chat"), ("gpt-7-new", "responses", "messages"),
    ("brand-new-model", None, "responses"),
])
def test_a_model_on_the_wrong_wire_is_refused_in_opencode_shape(fake, model, wire, on):
    status, _, raw = _call_wire(fake, on, model)
    assert status == 400
    assert json.loads(raw) == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": f"Error from provider (Console Go): Model {model} is not supported for "
                   f"format {_FORMATS[on]}"}}
    if wire is not None:
        assert _call_wire(fake, wire, model)[0] == 200


@pytest.mark.parametrize("on", ["chat", "messages"])
def test_an_unknown_id_is_taken_on_chat_and_messages(fake, on):
    assert _call_wire(fake, on, "brand-new-model")[0] == 200


def test_every_catalogue_id_answers_on_its_wire(fake):
    for model, wire in CATALOGUE.items():
        assert _call_wire(fake, wire, model)[0] == 200, model


def test_v1_models_lists_the_catalogue(fake, oai):
    status, _, raw = _get(fake, "/v1/models", BEARER)
    assert status == 200
    listed = json.loads(raw)
    assert listed["object"] == "list"
    assert listed["data"] == [{"id": m, "object": "model", "created": 1700000000,
                               "owned_by": "opencode"} for m in sorted(CATALOGUE)]
    assert [m.id for m in oai.models.list()] == sorted(CATALOGUE)
    assert _get(fake, "/v1/models", {})[0] == 401
    assert _get(fake, "/v1/models", {"x-api-key": "k"})[0] == 401


def test_fake_models_edits_the_catalogue_until_reset(fake):
    got = fake.models(add={"future-1": "responses", "future-2": "messages"},
                      remove=["glm-5.1", "minimax-m2.7"])
    assert got["models"]["future-1"] == "responses" and "glm-5.1" not in got["models"]
    assert _call_wire(fake, "chat", "future-1")[0] == 400      # added ids are strict
    assert _call_wire(fake, "responses", "future-1")[0] == 200
    assert _call_wire(fake, "chat", "future-2")[0] == 400
    assert _call_wire(fake, "messages", "glm-5.1")[0] == 200   # removed: judged as unknown
    assert _call_wire(fake, "chat", "minimax-m2.7")[0] == 400  # still minimax-*: messages only
    ids = [m["id"] for m in json.loads(_get(fake, "/v1/models", BEARER)[2])["data"]]
    assert "future-1" in ids and "glm-5.1" not in ids and ids == sorted(ids)
    assert fake.models(list_status=500)["list_status"] == 500
    status, _, raw = _get(fake, "/v1/models", BEARER)
    assert status == 500 and json.loads(raw)["type"] == "error"
    assert fake.models()["list_status"] == 500                  # left out: unchanged
    fake.models(list_status=None)
    assert _get(fake, "/v1/models", BEARER)[0] == 200
    fake.models(list_status=503)
    fake.reset()
    status, _, raw = _get(fake, "/v1/models", BEARER)
    assert status == 200 and len(json.loads(raw)["data"]) == len(CATALOGUE)
    assert _call_wire(fake, "messages", "glm-5.1")[0] == 400


# --- the Responses wire ----------------------------------------------------------------------

_STREAM_EVENT = TypeAdapter(ResponseStreamEvent)


def _responses(fake, directive: str | None = None, stream: bool = False, model="gpt-5.6-luna",
               **changes) -> tuple[int, dict, bytes]:
    text = "hi" if directive is None else f"hi [[fake: {directive}]]"
    return _post(fake, "/v1/responses", {"model": model, "input": text, "stream": stream,
                                         **changes}, BEARER)


def _response_events(raw: bytes) -> list[dict]:
    """The stream's events, each checked: `event:` names its data's type, the SDK parses it,
    sequence numbers count up from 0."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data[6:])
        assert event["type"] == name[7:]
        assert _STREAM_EVENT.validate_python(event).type == event["type"]
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def _item_events(kind: str, n_deltas: int) -> list[str]:
    inner = {"message": ["response.content_part.added"] + ["response.output_text.delta"]
             * n_deltas + ["response.output_text.done", "response.content_part.done"],
             "reasoning": ["response.reasoning_summary_part.added"]
             + ["response.reasoning_summary_text.delta"] * n_deltas
             + ["response.reasoning_summary_text.done", "response.reasoning_summary_part.done"],
             "function_call": ["response.function_call_arguments.delta"] * n_deltas
             + ["response.function_call_arguments.done"]}[kind]
    return ["response.output_item.added", *inner, "response.output_item.done"]


def test_responses_plain_answer(fake, oai):
    done = oai.responses.create(model="gpt-5.6-luna", input="hi")
    assert done.output_text == answer_text(5)
    assert (done.id, done.status, done.model) == ("resp_fake", "completed", "gpt-5.6-luna")
    assert [item.type for item in done.output] == ["message"]
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (
        10, 5, 15)
    assert done.usage.input_tokens_details.cached_tokens == 0
    assert done.usage.output_tokens_details.reasoning_tokens == 0
    assert done.model_extra["cost"] == cost_string(fake_cost("gpt-5.6-luna", 10, 0, 0, 5))
    status, _, raw = _responses(fake)
    body = json.loads(raw)
    assert status == 200 and Response.model_validate(body).output_text == answer_text(5)
    assert body["output"][0]["id"] and body["parallel_tool_calls"] is True
    assert body["tool_choice"] == "auto" and body["tools"] == []


def test_responses_stream_event_sequence(fake):
    status, headers, raw = _responses(fake, "deltas=4", stream=True)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = _response_events(raw)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", *_item_events("message", 4),
        "response.completed"]
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == \
        answer_deltas(4)
    assert events[0]["response"]["status"] == "in_progress"
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == answer_text(4)
    assert final["usage"]["output_tokens"] == 4 and final["usage"]["input_tokens"] == 10
    assert final["cost"] == cost_string(fake_cost("gpt-5.6-luna", 10, 0, 0, 4))
    assert "cost" not in events[0]["response"]


def test_responses_stream_through_the_sdk(oai):
    with oai.responses.stream(model="gpt-5.6-luna", input="hi [[fake: deltas=7]]") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        done = stream.get_final_response()
    assert deltas == answer_deltas(7)
    assert done.output_text == answer_text(7)
    assert done.usage.output_tokens == 7


@pytest.mark.parametrize("stream", [False, True])
def test_responses_reasoning(fake, oai, stream):
    if stream:
        _, _, raw = _responses(fake, "reasoning", stream=True)
        events = _response_events(raw)
        assert [e["type"] for e in events] == [
            "response.created", "response.in_progress", *_item_events("reasoning", 3),
            *_item_events("message", 5), "response.completed"]
        assert [e["delta"] for e in events
                if e["type"] == "response.reasoning_summary_text.delta"] == list(REASONING_DELTAS)
        done = Response.model_validate(events[-1]["response"])
    else:
        done = oai.responses.create(model="gpt-5.6-luna", input="hi [[fake: reasoning]]")
    reasoning, message = done.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == REASONING_TEXT
    assert message.content[0].text == answer_text(5)
    assert done.usage.output_tokens_details.reasoning_tokens == len(REASONING_DELTAS)
    assert done.usage.output_tokens == completion_tokens(reasoning=True)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools, text", [(3, False), (2, True)])
def test_responses_function_calls(fake, stream, tools, text):
    _, _, raw = _responses(fake, f"tools={tools}" + (" text" if text else ""), stream=stream)
    if stream:
        events = _response_events(raw)
        assert [e["type"] for e in events] == [
            "response.created", "response.in_progress",
            *(_item_events("message", 5) if text else []),
            *_item_events("function_call", 3) * tools, "response.completed"]
        for k in range(tools):
            fragments = [e["delta"] for e in events
                         if e["type"] == "response.function_call_arguments.delta"
                         and e["item_id"] == responses_call_item_id(k)]
            assert len(fragments) > 1 and json.loads("".join(fragments)) == tool_arguments(k)
        body = events[-1]["response"]
    else:
        body = json.loads(raw)
    done = Response.model_validate(body)
    calls = [item for item in done.output if item.type == "function_call"]
    assert [c.call_id for c in calls] == [openai_tool_id(k) for k in range(tools)]
    assert [c.id for c in calls] == [responses_call_item_id(k) for k in range(tools)]
    assert [c.name for c in calls] == [tool_name(k) for k in range(tools)]
    assert [json.loads(c.arguments) for c in calls] == [tool_arguments(k) for k in range(tools)]
    assert done.output_text == (answer_text(5) if text else "")
    assert done.usage.output_tokens == completion_tokens(tools=tools, text=text)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_length_is_incomplete(fake, stream):
    _, _, raw = _responses(fake, "length", stream=stream)
    if stream:
        events = _response_events(raw)
        assert events[-1]["type"] == "response.incomplete"
        assert "cost" in events[-1]["response"]
        body = events[-1]["response"]
    else:
        body = json.loads(raw)
    done = Response.model_validate(body)
    assert done.status == "incomplete"
    assert done.incomplete_details.reason == "max_output_tokens"


def test_responses_error_directive(fake, oai):
    status, headers, raw = _responses(fake, "error=429 retry_after=7")
    assert (status, headers["Retry-After"]) == (429, "7")
    assert json.loads(raw)["error"]["message"] == "fake upstream error 429"
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="gpt-5.6-luna", input="hi [[fake: error=500]]")


def test_responses_stream_error_ends_in_response_failed(fake):
    _, _, raw = _responses(fake, "stream_error", stream=True)
    events = _response_events(raw)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added"] + ["response.output_text.delta"] * 3 + ["response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "fake upstream stream error"}


def test_responses_cut_breaks_the_stream(oai):
    received = []
    with pytest.raises(openai.APIConnectionError):
        for event in oai.responses.create(model="gpt-5.6-luna", input="hi [[fake: cut]]",
                                          stream=True):
            if event.type == "response.output_text.delta":
                received.append(event.delta)
    assert "".join(received) == answer_text(3)


_CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": "{}"}
_OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}


def test_responses_reads_a_codex_conversation(fake):
    # What Codex sends on a later turn: developer prompt, ids on every item, reasoning items.
    conversation = [
        {"type": "message", "role": "developer", "content": [
            {"type": "input_text", "text": "be brief"}]},
        {"type": "message", "id": "m1", "role": "user", "content": [
            {"type": "input_text", "text": "weather? [[fake: tools=1]]"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": None},
        _CALL, _OUTPUT,
        {"type": "message", "id": "m2", "role": "assistant", "content": [
            {"type": "output_text", "text": "sunny", "annotations": []}]},
        {"role": "user", "content": "thanks [[fake: deltas=2]]"},
    ]
    status, _, raw = _post(fake, "/v1/responses", {
        "model": "gpt-5.6-luna", "input": conversation, "store": False, "stream": False,
        "include": ["reasoning.encrypted_content"], "reasoning": {"summary": "auto"},
        "parallel_tool_calls": True, "prompt_cache_key": "abc", "tools": [
            {"type": "function", "name": "exec_command", "parameters": {}},
            {"type": "web_search"}]}, BEARER)
    body = json.loads(raw)
    assert status == 200, body
    assert Response.model_validate(body).output_text == answer_text(2)
    assert body["usage"]["input_tokens"] == 10 * len(conversation)
    # After the tool output, with no user turn since, the directive of the earlier turn is gone.
    _, _, raw = _post(fake, "/v1/responses", {"model": "gpt-5.6-luna",
                                              "input": conversation[:5]}, BEARER)
    assert Response.model_validate(json.loads(raw)).output_text == answer_text(5)


@pytest.mark.parametrize("changes, named", [
    ({"input": [{"role": "user", "content": "hi"}, _OUTPUT]}, "No tool call found"),
    ({"input": [{"role": "user", "content": "hi"}, _CALL,
                {**_OUTPUT, "call_id": "call_9"}]}, "call_9"),
    ({"input": [{"role": "user", "content": "hi"}, _CALL,
                {"role": "user", "content": "and?"}]}, "No tool output found"),
    ({"previous_response_id": "resp_123"}, "previous_response_id is not supported"),
    ({"input": []}, "input"),
    ({"input": [{"role": "tool", "content": "x"}]}, "role"),
    ({"input": [{"role": "user", "content": [{"type": "image", "text": "x"}]}]}, "type"),
    ({"model": "opencode-go/gpt-5.6-luna"}, "bare model id"),
    ({"input": "hi [[fake: delta=2]]"}, "bad directive item"),
])
def test_responses_rejects(fake, changes, named):
    status, _, raw = _post(fake, "/v1/responses",
                           {"model": "gpt-5.6-luna", "input": "hi", **changes}, BEARER)
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error"
    assert named in error["message"]


def test_responses_requires_bearer_key(fake):
    for headers in ({}, {"x-api-key": "k"}):
        status, _, raw = _post(fake, "/v1/responses", {"model": "gpt-5.6-luna", "input": "hi"},
                               headers)
        assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"


# --- costs and charges -----------------------------------------------------------------------

def test_fake_cost_follows_the_price_table():
    assert fake_cost("glm-5.1", 10, 0, 0, 5) == pytest.approx((10 * 1.4 + 5 * 4.4) / 1e6)
    assert fake_cost("minimax-m2.7", 10, 6, 2, 5) == pytest.approx(
        (10 * 0.3 + 6 * 0.06 + 2 * 0.3 + 5 * 1.2) / 1e6)
    assert fake_cost("kimi-k3", 10, 0, 0, 5) == pytest.approx(2 * (10 * 3 + 5 * 15) / 1e6)
    assert fake_cost("minimax-m3", 10, 6, 2, 5) == pytest.approx(
        3 * (10 * 0.3 + 6 * 0.06 + 2 * 0.3 + 5 * 1.2) / 1e6)
    assert fake_cost("no-such-model", 1_000_000, 1_000_000, 0, 1_000_000) == pytest.approx(5.1)
    assert cost_string(fake_cost("glm-5.1", 10, 0, 0, 5)) == "0.000036"
    assert cost_string(fake_cost("deepseek-v4-flash", 0, 1, 0, 0)) == "0.0000000028"
    assert cost_string(0.0) == "0" and cost_string(12.5) == "12.5"


@pytest.mark.parametrize("model, wire, cost", [
    ("glm-5.1", "chat", fake_cost("glm-5.1", 10, 0, 0, 5)),
    ("kimi-k3", "chat", fake_cost("kimi-k3", 10, 0, 0, 5)),
    ("minimax-m3", "messages", fake_cost("minimax-m3", 10, CACHE_READ_TOKENS,
                                         CACHE_CREATION_TOKENS, 5)),
    ("qwen3.7-max", "messages", fake_cost("qwen3.7-max", 10, CACHE_READ_TOKENS,
                                          CACHE_CREATION_TOKENS, 5)),
    ("gpt-5.6-luna", "responses", fake_cost("gpt-5.6-luna", 10, 0, 0, 5)),
])
def test_plain_answers_carry_a_top_level_cost(fake, model, wire, cost):
    status, _, raw = _call_wire(fake, wire, model)
    assert status == 200
    assert json.loads(raw)["cost"] == cost_string(cost)
    assert fake.charges()["by_key_model"] == {"k": {model: pytest.approx(cost)}}


def test_chat_stream_sends_its_cost_after_done_even_without_usage(fake, oai):
    for options in ({}, {"stream_options": {"include_usage": True}}):
        _, _, raw = _post(fake, "/v1/chat/completions", {
            "model": "kimi-k3", "stream": True, "messages": _ask("tools=2"), **options}, BEARER)
        data = _sse_data(raw)
        assert data[-2] == "[DONE]"
        assert json.loads(data[-1])["cost"] == cost_string(
            fake_cost("kimi-k3", 10, 0, 0, completion_tokens(tools=2)))
    # the SDK stops at [DONE] and does not trip over the frame after it
    chunks = list(oai.chat.completions.create(model="glm-5.1", messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_charges_add_up_per_key_and_model(fake):
    for _ in range(3):
        _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
              {"Authorization": "Bearer one"})
    _post(fake, "/v1/messages", _messages_body(), {**ANTHROPIC_HEADERS, "x-api-key": "one"})
    _post(fake, "/v1/responses", {"model": "gpt-5.6-luna", "input": "hi", "stream": True},
          {"Authorization": "Bearer two"})
    _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": _ask("error=500")},
          {"Authorization": "Bearer two"})        # an error is not charged
    chat = fake_cost("glm-5.1", 10, 0, 0, 5)
    messages = fake_cost("minimax-m2.7", 10, CACHE_READ_TOKENS, CACHE_CREATION_TOKENS, 5)
    responses = fake_cost("gpt-5.6-luna", 10, 0, 0, 5)
    charges = fake.charges()
    assert charges["by_key"] == {"one": pytest.approx(3 * chat + messages),
                                 "two": pytest.approx(responses)}
    assert charges["by_key_model"] == {
        "one": {"glm-5.1": pytest.approx(3 * chat), "minimax-m2.7": pytest.approx(messages)},
        "two": {"gpt-5.6-luna": pytest.approx(responses)}}
    assert charges["requests"] == {"one": 4, "two": 1}
    fake.reset()
    assert fake.charges() == {"by_key": {}, "by_key_model": {}, "requests": {}}


def test_a_failing_stream_is_charged_for_what_it_sent(fake, oai):
    with pytest.raises(openai.APIConnectionError):
        list(oai.chat.completions.create(model="glm-5.1", messages=_ask("cut deltas=9"),
                                         stream=True))
    with pytest.raises(openai.APIError):
        list(oai.chat.completions.create(model="glm-5.1", messages=_ask("stream_error"),
                                         stream=True))
    assert fake.charges()["by_key"]["k"] == pytest.approx(
        2 * fake_cost("glm-5.1", 10, 0, 0, 3))


# --- usage limits ----------------------------------------------------------------------------

def _limit_body(limit_name: str, retry_after: int) -> dict:
    return {"type": "error",
            "error": {"type": "GoUsageLimitError",
                      "message": usage_limit_message(limit_name, retry_after)},
            "metadata": {"workspace": "wrk_fake", "limitName": limit_name}}


def test_usage_limit_message():
    assert usage_limit_message("5 hour", 14160) == (
        "5-hour usage limit reached. Resets in 3hr 56min. Upgrade or wait for the reset.")
    assert usage_limit_message("weekly", 3 * 86400 + 7200).startswith(
        "Weekly usage limit reached. Resets in 3day 2hr.")
    assert "Monthly usage limit reached. Resets in 5min." in usage_limit_message("monthly", 300)


@pytest.mark.parametrize("limit", ["5 hour", "weekly", "monthly"])
def test_manual_usage_limit_refuses_every_model_call(fake, limit):
    fake.set_key("k", limit=limit, retry_after=14160)
    for wire, model in (("chat", "glm-5.1"), ("messages", "minimax-m2.7"),
                        ("responses", "gpt-5.6-luna")):
        status, headers, raw = _call_wire(fake, wire, model)
        assert (status, headers["retry-after"]) == (429, "14160")
        assert json.loads(raw) == _limit_body(limit, 14160)
    assert _get(fake, "/v1/models", BEARER)[0] == 200   # listing costs nothing
    usage = json.loads(_get(fake, "/v1/usage", BEARER)[2])["usage"]
    window = {"5 hour": "rolling", "weekly": "weekly", "monthly": "monthly"}[limit]
    assert usage[window]["status"] == "rate-limited" and usage[window]["percent"] >= 100
    fake.set_key("k")   # restored
    assert _call_wire(fake, "chat", "glm-5.1")[0] == 200


def test_manual_limit_through_the_sdks(fake, oai, claude):
    fake.set_limit("k", "5 hour", 14160)
    with pytest.raises(openai.RateLimitError, match="5-hour usage limit reached"):
        oai.chat.completions.create(model="glm-5.1", messages=USER)
    with pytest.raises(anthropic.RateLimitError) as err:
        claude.messages.create(model="minimax-m2.7", max_tokens=100, messages=USER)
    assert err.value.body["error"]["type"] == "GoUsageLimitError"
    fake.set_limit("k", None)
    assert oai.chat.completions.create(model="glm-5.1", messages=USER).choices


def _next_monday(now: datetime.datetime) -> datetime.datetime:
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + datetime.timedelta(days=7 - day.weekday())


def _next_month(now: datetime.datetime) -> datetime.datetime:
    day = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (day + datetime.timedelta(days=32)).replace(day=1)


@pytest.mark.parametrize("window, limit_name", [
    ("rolling", "5 hour"), ("weekly", "weekly"), ("monthly", "monthly")])
def test_automatic_usage_limit(fake, window, limit_name):
    cost = fake_cost("glm-5.1", 10, 0, 0, 5)
    fake.set_limits("k", **{window: 2.5 * cost})
    for _ in range(3):      # the request that crosses the limit is still answered
        assert _call_wire(fake, "chat", "glm-5.1")[0] == 200
    status, headers, raw = _call_wire(fake, "messages", "minimax-m2.7")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert status == 429
    retry_after = int(headers["retry-after"])
    assert json.loads(raw) == _limit_body(limit_name, retry_after)
    expected = {"rolling": 5 * 3600,
                "weekly": (_next_monday(now) - now).total_seconds(),
                "monthly": (_next_month(now) - now).total_seconds()}[window]
    assert expected - 5 <= retry_after <= expected + 1
    assert _call_wire(fake, "chat", "glm-5.1")[0] == 429
    _, _, raw = _post(fake, "/v1/chat/completions", {"model": "glm-5.1", "messages": USER},
                      {"Authorization": "Bearer other"})
    assert json.loads(raw)["choices"]                    # limits are per key
    fake.set_limits("k")                                 # back to $12 / $30 / $60
    assert _call_wire(fake, "chat", "glm-5.1")[0] == 200


def test_v1_usage_reports_the_windows(fake):
    cost = fake_cost("glm-5.1", 10, 0, 0, 5)
    fake.set_limits("k", rolling=4 * cost, weekly=10 * cost, monthly=100 * cost)
    before = time.time()
    _call_wire(fake, "chat", "glm-5.1")
    status, _, raw = _get(fake, "/v1/usage", BEARER)
    assert status == 200
    body = json.loads(raw)
    assert (body["workspaceID"], body["userID"]) == ("wrk_fake", "usr_fake")
    usage = body["usage"]
    assert {w: (u["status"], u["percent"]) for w, u in usage.items()} == {
        "rolling": ("ok", 25), "weekly": ("ok", 10), "monthly": ("ok", 1)}
    resets = {w: datetime.datetime.fromisoformat(u["resetsAt"].replace("Z", "+00:00"))
              for w, u in usage.items()}
    assert all(u["resetsAt"].endswith("Z") for u in usage.values())
    assert math.floor(before) + 5 * 3600 <= resets["rolling"].timestamp() <= time.time() + 5 * 3600
    now = datetime.datetime.now(datetime.timezone.utc)
    assert resets["weekly"] == _next_monday(now) and resets["weekly"].weekday() == 0
    assert resets["monthly"] == _next_month(now) and resets["monthly"].day == 1
    for _ in range(3):
        _call_wire(fake, "chat", "glm-5.1")
    usage = json.loads(_get(fake, "/v1/usage", BEARER)[2])["usage"]
    assert (usage["rolling"]["status"], usage["rolling"]["percent"]) == ("rate-limited", 100)
    assert _call_wire(fake, "chat", "glm-5.1")[0] == 429


def test_v1_usage_of_a_fresh_key_and_overrides(fake):
    usage = json.loads(_get(fake, "/v1/usage", {"Authorization": "Bearer fresh"})[2])["usage"]
    assert {w: (u["status"], u["percent"]) for w, u in usage.items()} == {
        w: ("ok", 0) for w in ("rolling", "weekly", "monthly")}
    rolling_reset = datetime.datetime.fromisoformat(
        usage["rolling"]["resetsAt"].replace("Z", "+00:00")).timestamp()
    assert abs(rolling_reset - (time.time() + 5 * 3600)) < 5
    fake.set_usage("fresh", rolling=90, weekly=100)
    usage = json.loads(_get(fake, "/v1/usage", {"Authorization": "Bearer fresh"})[2])["usage"]
    assert {w: (u["status"], u["percent"]) for w, u in usage.items()} == {
        "rolling": ("ok", 90), "weekly": ("rate-limited", 100), "monthly": ("ok", 0)}
    fake.set_usage("fresh", status=404)
    assert _get(fake, "/v1/usage", {"Authorization": "Bearer fresh"})[0] == 404
    fake.set_usage("fresh")
    assert _get(fake, "/v1/usage", {"Authorization": "Bearer fresh"})[0] == 200


def test_v1_usage_reads_only_bearer(fake):
    status, _, raw = _get(fake, "/v1/usage", {"x-api-key": "k"})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"


# --- DeepSeek's thinking mode ----------------------------------------------------------------

_DEEPSEEK_REFUSAL = {"error": {
    "message": "The `reasoning_content` in the thinking mode must be passed back to the API.",
    "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}}


def _tool_turn(**reasoning) -> list[dict]:
    return [*USER, {"role": "assistant", "content": None, **reasoning, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]


@pytest.mark.parametrize("stream", [False, True])
def test_deepseek_always_reasons(oai, stream):
    if stream:
        with oai.chat.completions.stream(model="deepseek-v4-flash", messages=USER) as s:
            done = s.get_final_completion()
    else:
        done = oai.chat.completions.create(model="deepseek-v4-flash", messages=USER)
    assert done.choices[0].message.model_extra["reasoning_content"] == REASONING_TEXT
    assert done.usage is None or done.usage.completion_tokens == completion_tokens(reasoning=True)


@pytest.mark.parametrize("reasoning", [{}, {"reasoning_content": None}])
def test_deepseek_refuses_a_tool_turn_without_its_reasoning(fake, reasoning):
    status, _, raw = _post(fake, "/v1/chat/completions",
                           {"model": "deepseek-v4-pro", "messages": _tool_turn(**reasoning)},
                           BEARER)
    assert (status, json.loads(raw)) == (400, _DEEPSEEK_REFUSAL)
    # other models do not mind
    assert _post(fake, "/v1/chat/completions",
                 {"model": "glm-5.1", "messages": _tool_turn(**reasoning)}, BEARER)[0] == 200


@pytest.mark.parametrize("reasoning", ["", "I should look it up."])
def test_deepseek_takes_a_tool_turn_with_its_reasoning(fake, reasoning):
    status, _, raw = _post(fake, "/v1/chat/completions", {
        "model": "deepseek-v4-pro", "messages": _tool_turn(reasoning_content=reasoning)}, BEARER)
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == answer_text(5)


@pytest.mark.parametrize("tool, argument", [("Bash", "command"), ("exec_command", "cmd")])
def test_run_calls_the_clients_own_shell_tool(fake, tool, argument):
    status, _, raw = _post(fake, "/v1/chat/completions", {
        "model": "glm-5.1", "messages": [{"role": "user", "content": f"[[fake: run={tool}]] go"}]},
        {"Authorization": "Bearer k"})
    assert status == 200
    [call] = json.loads(raw)["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == tool
    assert json.loads(call["function"]["arguments"])[argument] == "echo opencode-go-fake-ran"


# --- December 2026: the edge, the inference layout, OpenCode's odd errors --------------------

@pytest.mark.parametrize("agent", [None, "", "Python-urllib/3.12", "python-requests/2.32",
                                   "curl/8.5.0", "Go-http-client/1.1"])
def test_the_edge_blocks_a_missing_or_library_user_agent(fake, agent):
    headers = {"Authorization": "Bearer k", **SESSION_HEADERS}
    headers.pop("User-Agent")
    if agent is not None:
        headers["User-Agent"] = agent
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:   # http.client sends no User-Agent of its own
        conn.request("POST", "/v1/chat/completions",
                     json.dumps({"model": "glm-5.1", "messages": USER}), headers)
        resp = conn.getresponse()
        page = resp.read()
    finally:
        conn.close()
    assert resp.status == 403
    assert resp.getheader("Content-Type").startswith("text/html")
    assert b"1010" in page and b"browser's signature" in page
    assert EDGE_RAY_ID.encode() in page and resp.getheader("cf-ray").startswith(EDGE_RAY_ID)
    assert fake.charges()["by_key"] == {}


def test_the_inference_layout_answers_like_the_zen_one(fake):
    bearer = {"Authorization": "Bearer k"}
    for path, body in (("/inference/go/openai/v1/chat/completions",
                        {"model": "glm-5.1", "messages": USER}),
                       ("/inference/go/openai/v1/responses",
                        {"model": "gpt-5.6-luna", "input": "hi"}),
                       ("/inference/go/anthropic/v1/messages", _messages_body())):
        headers = {**bearer, "anthropic-version": "2023-06-01"} if "anthropic" in path else bearer
        status, _, raw = _post(fake, path, body, headers)
        assert status == 200, raw
        assert answer_text() in raw.decode()
    assert _get(fake, "/inference/go/v1/models", bearer)[0] == 200
    assert _get(fake, "/inference/go/v1/usage", bearer)[0] == 200
    assert fake.charges()["requests"] == {"k": 3}


def test_opencodes_odd_errors(fake):
    bearer = {"Authorization": "Bearer k"}
    chat = {"model": "glm-5.1", "messages": USER}
    fake.refuse_key("k", "credits")
    status, _, raw = _post(fake, "/v1/chat/completions", chat, bearer)
    assert (status, json.loads(raw)) == (401, {"type": "CreditsError",
                                               "message": "Insufficient balance"})
    fake.refuse_key("k", "entitlement")
    status, _, raw = _post(fake, "/v1/chat/completions", chat, bearer)
    assert status == 403 and json.loads(raw)["error"]["type"] == "EntitlementError"
    fake.limit_in_200("k", "weekly")
    status, _, raw = _post(fake, "/v1/chat/completions", chat, bearer)
    assert status == 200 and json.loads(raw)["error"]["type"] == "GoUsageLimitError"
    fake.set_key("k", None)
    fake.cap_model("k", "deepseek-v4-pro", "5 hour", retry_after=600)
    status, headers, raw = _post(fake, "/v1/chat/completions",
                                 {"model": "deepseek-v4-pro", "messages": USER}, bearer)
    assert (status, headers["retry-after"]) == (429, "600")
    assert json.loads(raw)["error"]["message"] == model_cap_message("5 hour", "deepseek-v4-pro",
                                                                    600)
    assert _post(fake, "/v1/chat/completions", chat, bearer)[0] == 200   # other models pass
    status, _, raw = _post(fake, "/v1/chat/completions",
                           {"model": "glm-9", "messages": _ask("refuse=model")}, bearer)
    assert (status, json.loads(raw)) == (401, {"type": "ModelError",
                                               "message": "Model glm-9 is not supported"})
    status, _, raw = _post(fake, "/v1/chat/completions",
                           {"model": "glm-5.1", "messages": _ask("refuse=regions")}, bearer)
    assert status == 400 and CONSOLE_REGIONS_MESSAGE in json.loads(raw)["error"]["message"]
    status, headers, raw = _post(fake, "/v1/messages", _messages_body(
        messages=_ask("refuse=edge")), ANTHROPIC_HEADERS)
    assert status == 403 and headers["Content-Type"].startswith("text/html")


# --- December ids, output limits, reasoning efforts --------------------------------------------

@pytest.mark.parametrize("model, wire", sorted(DECEMBER_IDS.items()))
def test_december_ids_answer_on_their_wire_only(fake, model, wire):
    assert _call_wire(fake, wire, model)[0] == 200
    other = "chat" if wire == "responses" else "responses"
    assert _call_wire(fake, other, model)[0] == 400


@pytest.mark.parametrize("path, body, headers", [
    ("/v1/chat/completions", {"model": "glm-5.3", "max_tokens": 131_073,
                              "messages": [{"role": "user", "content": "hi"}]}, BEARER),
    ("/v1/chat/completions", {"model": "glm-5.3", "max_completion_tokens": 200_000,
                              "messages": [{"role": "user", "content": "hi"}]}, BEARER),
    ("/v1/responses", {"model": "grok-4.7", "max_output_tokens": 500_001, "input": "hi"}, BEARER),
    ("/v1/messages", {"model": "minimax-m3", "max_tokens": 131_073,
                      "messages": [{"role": "user", "content": "hi"}]}, ANTHROPIC_HEADERS),
])
def test_a_bound_above_the_models_output_limit_is_refused(fake, path, body, headers):
    assert _post(fake, path, body, headers)[0] == 400
    field = next(name for name in ("max_tokens", "max_completion_tokens", "max_output_tokens")
                 if name in body)
    body[field] = OUTPUT_LIMITS[body["model"]]
    assert _post(fake, path, body, headers)[0] == 200


@pytest.mark.parametrize("model, refused, taken", [
    ("glm-5.3", "none", "max"), ("mimo-v2.6-pro", "xhigh", "high"),
    ("mimo-v2.6-flash", "max", "none"), ("kimi-k3", "medium", "none")])
def test_a_reasoning_effort_the_model_does_not_take_is_refused(fake, model, refused, taken):
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    assert _post(fake, "/v1/chat/completions", {**chat, "reasoning_effort": refused},
                 BEARER)[0] == 400
    assert _post(fake, "/v1/chat/completions", {**chat, "reasoning_effort": taken},
                 BEARER)[0] == 200


def test_responses_reasoning_effort_is_checked_too(fake):
    fake.models(add={"glm-5.3": "responses"})
    body = {"model": "glm-5.3", "input": "hi", "reasoning": {"effort": "none"}}
    assert _post(fake, "/v1/responses", body, BEARER)[0] == 400
    body["reasoning"]["effort"] = "low"
    assert _post(fake, "/v1/responses", body, BEARER)[0] == 200


# --- the prompt cache model ------------------------------------------------------------------

def _turns(n: int) -> list[dict]:
    """A conversation's messages at its n-th turn (n user messages, n - 1 answers)."""
    messages = []
    for k in range(n):
        messages += [{"role": "user", "content": f"turn {k}"}, {"role": "assistant",
                                                              "content": "ok"}]
    return messages[:-1]


def _chat_turn(fake, n: int, key: str = "k", session: str = "conv-a") -> dict:
    status, _, raw = _post(fake, "/v1/chat/completions", {"model": "glm-5.1",
                                                          "messages": _turns(n)},
                           {"Authorization": f"Bearer {key}", "x-opencode-session": session},
                           session=False)
    assert status == 200
    return json.loads(raw)


def test_the_cache_model_reads_a_sessions_prefix_from_the_same_key_within_its_lifetime(fake):
    fake.set_cache(0.5)
    first = _chat_turn(fake, 1)
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    second = _chat_turn(fake, 2)
    assert second["usage"]["prompt_tokens"] == 30
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 10
    assert float(second["cost"]) == pytest.approx(fake_cost("glm-5.1", 20, 10, 0, 5))
    other_session = _chat_turn(fake, 3, session="conv-b")
    assert other_session["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    moved = _chat_turn(fake, 3, key="k2")     # another key holds nothing of it: a hot move
    assert moved["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    seen = fake.conversations()["conv-a"]
    assert (seen["key"], seen["turns"], seen["moves"], seen["hot_moves"]) == ("k2", 3, 1, 1)
    assert (seen["prompt_tokens"], seen["cached_tokens"]) == (10 + 30 + 50, 10)


def test_the_cache_model_forgets_after_its_lifetime_and_a_later_move_is_cold(fake):
    fake.set_cache(0.2)
    _chat_turn(fake, 1)
    time.sleep(0.3)   # the lifetime itself must pass
    assert _chat_turn(fake, 2)["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    time.sleep(0.3)
    _chat_turn(fake, 3, key="k2")
    seen = fake.conversations()["conv-a"]
    assert (seen["moves"], seen["hot_moves"]) == (1, 0)


def test_the_cache_model_on_the_messages_wire_and_spending_before_the_test(fake):
    fake.set_cache(5)
    fake.spend("k", 1.25)
    headers = {**ANTHROPIC_HEADERS, "x-opencode-session": "conv-m"}
    _post(fake, "/v1/messages", _messages_body(), headers, session=False)
    status, _, raw = _post(fake, "/v1/messages", _messages_body(messages=[
        *USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]),
        headers, session=False)
    usage = json.loads(raw)["usage"]
    assert status == 200
    assert (usage["input_tokens"], usage["cache_read_input_tokens"],
            usage["cache_creation_input_tokens"]) == (20, 10, 0)
    charged = fake.charges()["by_key"]["k"]
    assert charged == pytest.approx(1.25 + fake_cost("minimax-m2.7", 10, 0, 0, 5)
                                    + fake_cost("minimax-m2.7", 20, 10, 0, 5))
    fake.reset()
    assert fake.conversations() == {}
