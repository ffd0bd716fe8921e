"""The official `anthropic` Python SDK against the real gateway process, in front of the fake upstream.

`opencode-go/glm-5.1` is served in the OpenAI flavour, so every answer here is translated
(OpenAI → Anthropic events); `opencode-go/minimax-m2.7` passes through after its request is
normalised for OpenCode Go's `/messages`. The SDK's stream helper must rebuild what the fake sent.
The SDK sends `Authorization: Bearer` and an anthropic-version newer than 2023-06-01.
"""
from __future__ import annotations

import json

import anthropic
import pytest

from tests.fake_upstream import (CACHE_CREATION_TOKENS, CACHE_READ_TOKENS,
                                 FAILING_STREAM_DELTAS, PROMPT_TOKENS_PER_MESSAGE,
                                 REASONING_TEXT, THINKING_SIGNATURE, anthropic_tool_id,
                                 answer_text, completion_tokens, openai_tool_id, tool_arguments,
                                 tool_name)

TRANSLATED = "opencode-go/glm-5.1"
PASS_THROUGH = "opencode-go/minimax-m2.7"
BOTH = pytest.mark.parametrize("model", [TRANSLATED, PASS_THROUGH])


def sdk(base_url: str, **options) -> anthropic.Anthropic:
    # No retries: a retried 429 or 5xx would hide what the gateway answered the first time.
    return anthropic.Anthropic(base_url=base_url, max_retries=0, timeout=30,
                               **({"api_key": "anything"} | options))


@pytest.fixture
def client(gateway):
    with sdk(gateway.url) as sdk_client:
        yield sdk_client


def tool_id(model: str, k: int) -> str:
    """The id the fake gave tool call `k` in the model's flavour (kept through translation)."""
    return openai_tool_id(k) if model == TRANSLATED else anthropic_tool_id(k)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def rebuilt(message) -> list[tuple]:
    """The content blocks of a final message, as comparable tuples."""
    out = []
    for block in message.content:
        if block.type == "thinking":
            out.append(("thinking", block.thinking))
        elif block.type == "text":
            out.append(("text", block.text))
        elif block.type == "tool_use":
            out.append(("tool_use", block.id, block.name, block.input))
        else:
            out.append((block.type,))
    return out


def expected_blocks(model: str, deltas: int = 5, reasoning: bool = False, tools: int = 0,
                    text: bool = False) -> list[tuple]:
    blocks = [("thinking", REASONING_TEXT)] if reasoning else []
    if not tools or text:
        blocks.append(("text", answer_text(deltas)))
    blocks += [("tool_use", tool_id(model, k), tool_name(k), tool_arguments(k))
               for k in range(tools)]
    return blocks


def expected_usage(model: str, messages: int, **script) -> dict:
    """The fake's usage in Anthropic terms; only the Anthropic flavour reports cache tokens."""
    usage = {"input_tokens": PROMPT_TOKENS_PER_MESSAGE * messages,
             "output_tokens": completion_tokens(**script)}
    if model == PASS_THROUGH:
        usage |= {"cache_read_input_tokens": CACHE_READ_TOKENS,
                  "cache_creation_input_tokens": CACHE_CREATION_TOKENS}
    return usage


def strings_in(value) -> list[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for item in value for s in strings_in(item)] if isinstance(value, list) else []


def usage_of(message) -> dict:
    return message.usage.model_dump(exclude_none=True, include={
        "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"})


SCRIPTS = [
    # (directive, the fake's script as completion_tokens() takes it, stop reason)
    ("deltas=7", {"deltas": 7}, "end_turn"),
    ("reasoning", {"reasoning": True}, "end_turn"),
    ("reasoning tools=2 text", {"reasoning": True, "tools": 2, "text": True}, "tool_use"),
    ("tools=3", {"tools": 3}, "tool_use"),
    ("length deltas=4", {"deltas": 4}, "max_tokens"),
]
SCRIPT_IDS = [directive.replace(" ", "_") for directive, _, _ in SCRIPTS]


@BOTH
@pytest.mark.parametrize("directive,script,stop_reason", SCRIPTS, ids=SCRIPT_IDS)
def test_stream_helper_rebuilds_what_the_upstream_sent(client, model, directive, script,
                                                       stop_reason):
    events = []
    with client.messages.stream(model=model, max_tokens=1024,
                                messages=user(f"[[fake: {directive}]] hello")) as stream:
        for event in stream:
            events.append(event)
        text = "".join(event.text for event in events if event.type == "text")
        final = stream.get_final_message()

    assert rebuilt(final) == expected_blocks(model, **script)
    assert text == (answer_text(script.get("deltas", 5))
                    if not script.get("tools") or script.get("text") else "")
    assert final.stop_reason == stop_reason
    assert usage_of(final) == expected_usage(model, 1, **script)
    # The event grammar the helper (and Claude Code) relies on.
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    starts = [event.index for event in events if event.type == "content_block_start"]
    stops = [event.index for event in events if event.type == "content_block_stop"]
    assert starts == stops == list(range(len(final.content)))


@BOTH
@pytest.mark.parametrize("directive,script,stop_reason", SCRIPTS, ids=SCRIPT_IDS)
def test_whole_answer_is_what_the_upstream_sent(client, model, directive, script, stop_reason):
    message = client.messages.create(model=model, max_tokens=1024,
                                     messages=user(f"[[fake: {directive}]] hello"))
    assert rebuilt(message) == expected_blocks(model, **script)
    assert message.stop_reason == stop_reason
    assert usage_of(message) == expected_usage(model, 1, **script)


def test_pass_through_keeps_the_thinking_signature(client):
    with client.messages.stream(model=PASS_THROUGH, max_tokens=1024,
                                messages=user("[[fake: reasoning]]")) as stream:
        final = stream.get_final_message()
    assert final.content[0].signature == THINKING_SIGNATURE


def _tool_round_trip(client, model: str, stream: bool) -> None:
    tools = [{"name": name, "description": f"{name} for a place",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
             for name in ("get_weather", "get_time")]
    conversation = user("[[fake: reasoning tools=2 text]] weather and time?")
    if stream:
        with client.messages.stream(model=model, max_tokens=1024, tools=tools,
                                    messages=conversation) as answer:
            first = answer.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=1024, tools=tools,
                                       messages=conversation)
    assert first.stop_reason == "tool_use"
    # What an agent does next: send the assistant turn back as it came, answer each tool_use.
    conversation.append({"role": "assistant", "content": [
        block.model_dump(exclude_none=True) for block in first.content]})
    conversation.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": block.id, "content": f"{block.name}: sunny"}
        for block in first.content if block.type == "tool_use"]
        + [{"type": "text", "text": "[[fake: deltas=3]] thanks"}]})
    second = client.messages.create(model=model, max_tokens=1024, tools=tools,
                                    messages=conversation)
    assert rebuilt(second) == [("text", answer_text(3))]
    assert second.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_result_round_trip_reaches_glm_as_tool_messages(client, fake, stream):
    _tool_round_trip(client, TRANSLATED, stream)
    sent = fake.last_request()
    assert sent["path"] == "/v1/chat/completions"
    messages = sent["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert [(call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
            for call in messages[1]["tool_calls"]] == [
        (openai_tool_id(k), tool_name(k), tool_arguments(k)) for k in range(2)]
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:4]] == [
        (openai_tool_id(0), "get_weather: sunny"), (openai_tool_id(1), "get_time: sunny")]
    assert "[[fake: deltas=3]] thanks" in json.dumps(messages[4]["content"])


def test_tool_result_round_trip_passes_through_to_minimax(client, fake):
    _tool_round_trip(client, PASS_THROUGH, stream=True)
    messages = fake.last_request()["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[1]["content"]] == ["thinking", "text", "tool_use",
                                                           "tool_use"]
    assert [(b["type"], b.get("tool_use_id")) for b in messages[2]["content"]] == [
        ("tool_result", anthropic_tool_id(0)), ("tool_result", anthropic_tool_id(1)),
        ("text", None)]


# What Claude Code 2.1 sends (see CLIENTS.md), in small: the fields and shapes OpenCode Go's
# /messages refuses or must be assumed not to know.
CLAUDE_CODE_BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,"
                     "context-management-2025-06-27,effort-2025-11-24")
ENVIRONMENT_NOTE = "# Environment\nYou have been invoked in the following environment: /tmp"


def claude_code_shaped(model: str, final_text: str) -> dict:
    return {
        "model": model, "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Use the tools.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nskills\n</system-reminder>"},
                {"type": "text", "text": final_text}]},
            {"role": "system", "content": [
                {"type": "text", "text": ENVIRONMENT_NOTE, "cache_control": {"type": "ephemeral"}}]},
        ],
        "tools": [{"name": "Read", "description": "Read a file", "defer_loading": False,
                   "input_schema": {"type": "object",
                                    "properties": {"file_path": {"type": "string"}}}}],
        "metadata": {"user_id": json.dumps({"device_id": "abc", "session_id": "s-1"})},
        "extra_body": {"thinking": {"type": "adaptive", "display": "omitted"},
                       "context_management": {"edits": [{"type": "clear_thinking_20251015",
                                                          "keep": "all"}]},
                       "output_config": {"effort": "high"}},
        "extra_headers": {"anthropic-beta": CLAUDE_CODE_BETAS},
    }


@BOTH
def test_claude_code_shaped_request_succeeds(client, fake, model):
    with client.messages.stream(**claude_code_shaped(model, "[[fake: reasoning]] say hi")) as stream:
        final = stream.get_final_message()
    assert rebuilt(final) == expected_blocks(model, reasoning=True)

    sent = fake.last_request()
    body, headers = sent["body"], sent["headers"]
    assert "anthropic-beta" not in headers
    for refused in ("thinking", "context_management", "output_config"):
        assert refused not in body
    # The mid-conversation system message still reaches the model.
    assert any(ENVIRONMENT_NOTE in text for text in strings_in(body["messages"]))
    if model == PASS_THROUGH:
        assert headers["anthropic-version"] == "2023-06-01"
        assert [m["role"] for m in body["messages"]] == ["user"]
        # Folded in place, keeping Claude Code's conversation cache breakpoint.
        assert body["messages"][0]["content"][-1] == {
            "type": "text", "text": f"<system-reminder>\n{ENVIRONMENT_NOTE}\n</system-reminder>",
            "cache_control": {"type": "ephemeral"}}
        assert [block.get("cache_control") for block in body["system"]] == [
            None, {"type": "ephemeral"}, {"type": "ephemeral"}]
        assert [tool["name"] for tool in body["tools"]] == ["Read"]
    else:
        assert body["messages"][0]["role"] == "system"
        assert "You are Claude Code." in body["messages"][0]["content"]


@BOTH
def test_claude_code_shaped_whole_request_succeeds(client, model):
    request = claude_code_shaped(model, "[[fake: tools=1]] read it")
    message = client.messages.create(**request)
    assert rebuilt(message) == expected_blocks(model, tools=1)
    assert message.stop_reason == "tool_use"


@BOTH
def test_anthropic_alias_path_serves_messages_and_count_tokens(gateway, fake, model):
    with sdk(gateway.url + "/anthropic") as alias:
        with alias.messages.stream(model=model, max_tokens=100, messages=user("hi")) as stream:
            assert stream.get_final_text() == answer_text()
        counted = alias.messages.count_tokens(model=model, messages=user("hello there"))
    assert counted.input_tokens > 0
    assert len(fake.requests()) == 1  # count_tokens is answered by the gateway itself


def test_count_tokens_estimate_grows_with_the_request(client):
    short = client.messages.count_tokens(model=PASS_THROUGH, messages=user("hi"))
    long = client.messages.count_tokens(
        model=TRANSLATED, messages=user("hi " * 2000), system="You are terse.",
        tools=[{"name": "Read", "input_schema": {"type": "object", "properties": {}}}])
    assert 0 < short.input_tokens < long.input_tokens
    assert long.input_tokens >= 1000  # about four bytes per token


@BOTH
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_upstream_rate_limit_is_a_rate_limit_error_with_its_message(client, model, stream):
    with pytest.raises(anthropic.RateLimitError) as raised:
        if stream:
            with client.messages.stream(model=model, max_tokens=100,
                                        messages=user("[[fake: error=429 retry_after=7]]")) as s:
                s.get_final_message()
        else:
            client.messages.create(model=model, max_tokens=100,
                                   messages=user("[[fake: error=429 retry_after=7]]"))
    assert raised.value.status_code == 429
    assert raised.value.body == {"type": "error", "error": {
        "type": "rate_limit_error", "message": "upstream opencode-go: fake upstream error 429"}}
    assert raised.value.response.headers["retry-after"] == "7"


@BOTH
@pytest.mark.parametrize("failure", ["stream_error", "cut"])
def test_broken_stream_ends_the_sdk_stream_with_an_error(client, model, failure):
    text = ""
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model=model, max_tokens=100,
                                    messages=user(f"[[fake: {failure}]]")) as stream:
            for event in stream:
                if event.type == "text":
                    text += event.text
                assert event.type not in ("message_delta", "message_stop"), \
                    "a broken answer was passed off as complete"
    assert text == answer_text(FAILING_STREAM_DELTAS)
    if failure == "stream_error":
        assert "fake upstream stream error" in str(raised.value)
    else:
        assert "broke off" in str(raised.value)


@BOTH
def test_answer_cut_mid_body_is_a_502_in_anthropic_shape(client, model):
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model=model, max_tokens=100, messages=user("[[fake: cut]]"))
    assert raised.value.status_code == 502
    assert raised.value.body["error"]["type"] == "api_error"
    assert "broke off" in raised.value.body["error"]["message"]


def test_locked_gateway_takes_the_key_as_bearer_or_x_api_key(start_gateway):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "client-key"})
    with sdk(gateway.url, api_key=None, auth_token="client-key") as bearer:
        assert bearer.messages.create(model=PASS_THROUGH, max_tokens=10,
                                      messages=user("hi")).content[0].text == answer_text()
    with sdk(gateway.url, api_key=None, default_headers={"x-api-key": "client-key"}) as header:
        assert header.messages.create(model=TRANSLATED, max_tokens=10,
                                      messages=user("hi")).content[0].text == answer_text()
    with sdk(gateway.url, api_key="wrong-key") as wrong:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            wrong.messages.create(model=TRANSLATED, max_tokens=10, messages=user("hi"))
    assert raised.value.body["error"]["type"] == "authentication_error"


def test_model_list_through_the_sdk_names_both_flavours(client):
    ids = [model.id for model in client.models.list()]
    assert TRANSLATED in ids and PASS_THROUGH in ids
