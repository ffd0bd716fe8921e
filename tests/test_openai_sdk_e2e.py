"""The official `openai` Python SDK against the real gateway process, in front of the fake upstream.

`opencode-go/minimax-m2.7` is served in the Anthropic flavour, so every answer here is translated
(Anthropic → OpenAI); `opencode-go/glm-5.1` passes through. Either way the SDK must see what the
fake upstream sent: the same text, reasoning, parallel tool calls, finish reason and usage.
"""
from __future__ import annotations

import json

import openai
import pytest

from tests.fake_upstream import (CACHE_CREATION_TOKENS, CACHE_READ_TOKENS,
                                 FAILING_STREAM_DELTAS, PROMPT_TOKENS_PER_MESSAGE,
                                 REASONING_TEXT, anthropic_tool_id, answer_text,
                                 completion_tokens, openai_tool_id, tool_arguments, tool_name)

TRANSLATED = "opencode-go/minimax-m2.7"
PASS_THROUGH = "opencode-go/glm-5.1"
BOTH = pytest.mark.parametrize("model", [TRANSLATED, PASS_THROUGH])


@pytest.fixture
def client(gateway):
    # No retries: a retried 429 or 502 would hide what the gateway answered the first time.
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="anything", max_retries=0,
                       timeout=30) as sdk_client:
        yield sdk_client


def tool_id(model: str, k: int) -> str:
    """The id the fake gave tool call `k` in the model's flavour (kept through translation)."""
    return anthropic_tool_id(k) if model == TRANSLATED else openai_tool_id(k)


def expected_usage(model: str, messages: int, **script) -> dict:
    """The usage the fake reported, in OpenAI terms: a translated prompt count includes the
    Anthropic cache reads and writes, which Anthropic's `input_tokens` leaves out."""
    prompt = PROMPT_TOKENS_PER_MESSAGE * messages
    if model == TRANSLATED:
        prompt += CACHE_READ_TOKENS + CACHE_CREATION_TOKENS
    completion = completion_tokens(**script)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def reasoning_of(message_or_delta) -> str | None:
    """`reasoning_content` is not in the SDK's types: it arrives as an extra field."""
    return (message_or_delta.model_extra or {}).get("reasoning_content")


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


class StreamedAnswer:
    """What a client rebuilds from the chunks of one streamed answer."""

    def __init__(self, stream):
        self.text = ""
        self.reasoning = ""
        self.calls: dict[int, dict] = {}
        self.finish_reason = None
        self.usage = None
        self.cached = None
        self.roles = []
        for chunk in stream:
            self.add(chunk)

    def add(self, chunk) -> None:
        if chunk.usage is not None:
            self.usage = chunk.usage.model_dump(include={"prompt_tokens", "completion_tokens",
                                                         "total_tokens"})
            self.cached = (chunk.usage.prompt_tokens_details.cached_tokens
                           if chunk.usage.prompt_tokens_details else None)
        for choice in chunk.choices:
            assert choice.index == 0
            delta = choice.delta
            if delta.role:
                self.roles.append(delta.role)
            self.text += delta.content or ""
            self.reasoning += reasoning_of(delta) or ""
            for call in delta.tool_calls or ():
                entry = self.calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                if call.id:
                    assert entry["id"] is None, "a tool call's id came twice"
                    entry["id"] = call.id
                if call.function and call.function.name:
                    entry["name"] += call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason


SCRIPTS = [
    # (directive, the fake's script as completion_tokens() takes it, finish reason)
    ("deltas=7", {"deltas": 7}, "stop"),
    ("reasoning", {"reasoning": True}, "stop"),
    ("reasoning tools=2 text", {"reasoning": True, "tools": 2, "text": True}, "tool_calls"),
    ("tools=3", {"tools": 3}, "tool_calls"),
    ("length deltas=4", {"deltas": 4}, "length"),
]
SCRIPT_IDS = [directive.replace(" ", "_") for directive, _, _ in SCRIPTS]


@BOTH
@pytest.mark.parametrize("directive,script,finish_reason", SCRIPTS, ids=SCRIPT_IDS)
def test_answer_is_what_the_upstream_sent(client, model, directive, script, finish_reason):
    answer = client.chat.completions.create(
        model=model, messages=user(f"[[fake: {directive}]] hello"))

    [choice] = answer.choices
    message = choice.message
    tools = script.get("tools", 0)
    expected_text = answer_text(script.get("deltas", 5)) if not tools or script.get("text") else None
    assert message.content == expected_text
    assert reasoning_of(message) == (REASONING_TEXT if script.get("reasoning") else None)
    calls = [(call.id, call.function.name, json.loads(call.function.arguments))
             for call in message.tool_calls or ()]
    assert calls == [(tool_id(model, k), tool_name(k), tool_arguments(k)) for k in range(tools)]
    assert choice.finish_reason == finish_reason
    assert answer.usage.model_dump(include={"prompt_tokens", "completion_tokens",
                                            "total_tokens"}) == expected_usage(model, 1, **script)


@BOTH
@pytest.mark.parametrize("directive,script,finish_reason", SCRIPTS, ids=SCRIPT_IDS)
def test_streamed_answer_is_what_the_upstream_sent(client, model, directive, script,
                                                   finish_reason):
    stream = client.chat.completions.create(
        model=model, messages=user(f"[[fake: {directive}]] hello"), stream=True,
        stream_options={"include_usage": True})
    answer = StreamedAnswer(stream)

    tools = script.get("tools", 0)
    expected_text = answer_text(script.get("deltas", 5)) if not tools or script.get("text") else ""
    assert answer.roles == ["assistant"]
    assert answer.text == expected_text
    assert answer.reasoning == (REASONING_TEXT if script.get("reasoning") else "")
    calls = [(call["id"], call["name"], json.loads(call["arguments"]))
             for _, call in sorted(answer.calls.items())]
    assert sorted(answer.calls) == list(range(tools))
    assert calls == [(tool_id(model, k), tool_name(k), tool_arguments(k)) for k in range(tools)]
    assert answer.finish_reason == finish_reason
    assert answer.usage == expected_usage(model, 1, **script)


def test_translated_usage_reports_cached_prompt_tokens(client):
    answer = client.chat.completions.create(model=TRANSLATED, messages=user("hello"))
    assert answer.usage.prompt_tokens_details.cached_tokens == CACHE_READ_TOKENS
    streamed = StreamedAnswer(client.chat.completions.create(
        model=TRANSLATED, messages=user("hello"), stream=True,
        stream_options={"include_usage": True}))
    assert streamed.cached == CACHE_READ_TOKENS


@BOTH
def test_stream_without_include_usage_has_no_usage_chunk(client, model):
    answer = StreamedAnswer(client.chat.completions.create(
        model=model, messages=user("hello"), stream=True))
    assert answer.text == answer_text()
    assert answer.usage is None


def test_tool_round_trip_reaches_minimax_as_valid_anthropic_messages(client, fake):
    tools = [{"type": "function", "function": {
        "name": name, "description": f"{name} for a place",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
        for name in ("get_weather", "get_time")]
    conversation = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "[[fake: tools=2 text]] weather and time?"}]
    first = client.chat.completions.create(model=TRANSLATED, messages=conversation, tools=tools)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"

    # What an agent does next: keep the assistant turn as the SDK gave it, answer each call.
    conversation.append(message.model_dump(exclude_none=True))
    conversation += [{"role": "tool", "tool_call_id": call.id,
                      "content": f"{call.function.name}: sunny"} for call in message.tool_calls]
    conversation.append({"role": "user", "content": "[[fake: deltas=3]] thanks, and tomorrow?"})
    second = client.chat.completions.create(model=TRANSLATED, messages=conversation, tools=tools)

    assert second.choices[0].message.content == answer_text(3)
    assert second.choices[0].finish_reason == "stop"
    sent = fake.last_request()
    assert sent["path"] == "/v1/messages"
    body = sent["body"]
    assert body["system"] in ("You are terse.", [{"type": "text", "text": "You are terse."}])
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": answer_text()},
        {"type": "tool_use", "id": anthropic_tool_id(0), "name": "get_weather",
         "input": tool_arguments(0)},
        {"type": "tool_use", "id": anthropic_tool_id(1), "name": "get_time",
         "input": tool_arguments(1)}]
    results, question = body["messages"][2]["content"][:2], body["messages"][2]["content"][2:]
    assert [(r["type"], r["tool_use_id"]) for r in results] == [
        ("tool_result", anthropic_tool_id(0)), ("tool_result", anthropic_tool_id(1))]
    assert "get_weather: sunny" in json.dumps(results[0]["content"])
    assert [block["text"] for block in question] == ["[[fake: deltas=3]] thanks, and tomorrow?"]
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "get_time"]


def test_tool_round_trip_streamed_through_minimax(client, fake):
    conversation = user("[[fake: tools=2]] weather and time?")
    first = StreamedAnswer(client.chat.completions.create(
        model=TRANSLATED, messages=conversation, stream=True))
    conversation.append({"role": "assistant", "content": first.text or None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}
        for _, call in sorted(first.calls.items())]})
    conversation += [{"role": "tool", "tool_call_id": call["id"], "content": "done"}
                     for call in first.calls.values()]
    second = StreamedAnswer(client.chat.completions.create(
        model=TRANSLATED, messages=conversation, stream=True))

    # The tool results are the final turn: the fake answers its default text.
    assert second.text == answer_text()
    assert second.finish_reason == "stop"
    body = fake.last_request()["body"]
    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_use", "tool_use"]
    assert [block["type"] for block in body["messages"][2]["content"]] == [
        "tool_result", "tool_result"]


@BOTH
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_upstream_rate_limit_is_a_rate_limit_error_with_its_message(client, model, stream):
    with pytest.raises(openai.RateLimitError) as raised:
        answer = client.chat.completions.create(
            model=model, messages=user("[[fake: error=429 retry_after=7]]"), stream=stream)
        if stream:
            list(answer)
    assert raised.value.status_code == 429
    assert raised.value.body["message"] == "upstream opencode-go: fake upstream error 429"
    assert raised.value.body["type"] == "rate_limit_error"
    assert raised.value.response.headers["retry-after"] == "7"


@BOTH
@pytest.mark.parametrize("failure", ["stream_error", "cut"])
def test_broken_stream_ends_the_sdk_stream_with_an_error(client, model, failure):
    answer = StreamedAnswer([])
    stream = client.chat.completions.create(model=model, messages=user(f"[[fake: {failure}]]"),
                                            stream=True, stream_options={"include_usage": True})
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            answer.add(chunk)
    # The part that did arrive is there, but the SDK was told the answer is broken: no finish
    # reason, no usage passing it off as complete.
    assert answer.text == answer_text(FAILING_STREAM_DELTAS)
    assert answer.finish_reason is None and answer.usage is None
    if failure == "stream_error":
        assert "fake upstream stream error" in raised.value.message
    else:
        assert "broke off" in raised.value.message


@BOTH
def test_answer_cut_mid_body_is_a_502(client, model):
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model=model, messages=user("[[fake: cut]]"))
    assert raised.value.status_code == 502
    assert "broke off" in raised.value.message


def test_n_above_one_is_refused_with_a_clear_message_for_minimax(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=TRANSLATED, messages=user("hello"), n=2)
    assert raised.value.body["param"] == "n"
    assert "n=2 is not supported" in raised.value.body["message"]


def test_model_list_through_the_sdk_names_both_flavours(client):
    ids = [model.id for model in client.models.list()]
    assert TRANSLATED in ids and PASS_THROUGH in ids
