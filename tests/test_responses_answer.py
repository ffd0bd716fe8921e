"""Answers reach Responses clients (Codex, the openai SDK) from every wire, and Responses-wire
answers reach Chat and Anthropic clients, streamed or whole."""
import json

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import NOT_GIVEN
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from gateway.errors import GatewayError
from tests import fake_upstream, translations

_event = pydantic.TypeAdapter(ResponseStreamEvent).validate_python

TOOLS = [{"type": "function", "name": "get_weather"}, {"type": "function", "name": "get_time"}]
REQUEST = {"model": "opencode-go/glm-5.1", "input": "weather?", "stream": True, "tools": TOOLS}


def chat_chunk(delta, finish=None):
    return b"data: " + json.dumps({
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "glm-5.1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() + b"\n\n"


def chat_usage(prompt=30, completion=12, cached=10, reasoning=None):
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return b"data: " + json.dumps({"id": "c1", "choices": [], "usage": usage}).encode() + b"\n\n"


# Reasoning, text, two parallel calls whose argument fragments interleave, usage, the cost frame.
CHAT_STREAM = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"reasoning_content": "The user "}), chat_chunk({"reasoning_content": "asks."}),
    chat_chunk({"content": "Checking "}), chat_chunk({"content": "now."}),
    chat_chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                "function": {"name": "get_weather", "arguments": ""}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
    chat_chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                "function": {"name": "get_time", "arguments": "{}"}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Zürich\"}"}}]}),
    chat_chunk({}, "tool_calls"),
    chat_usage(reasoning=4),
    b"data: [DONE]\n\n",
    b'data: {"id":"c1","choices":[],"cost":"0.0012"}\n\n',
]


def sse_events(out: bytes) -> list[dict]:
    events = []
    for block in out.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n", 1)
        payload = json.loads(data[len(b"data: "):])
        assert name == b"event: " + payload["type"].encode()
        events.append(payload)
    return events


def accumulate(out: bytes, tools=NOT_GIVEN):
    """The openai SDK's own stream accumulator over the events; its final response."""
    state = ResponseStreamState(input_tools=tools, text_format=NOT_GIVEN)
    for payload in sse_events(out):
        state.handle_event(_event(payload))
    return state._completed_response


def translate_stream(upstream: str, chunks: list[bytes], request=REQUEST):
    translation = translations.stream(upstream, "responses", request, model="glm-5.1")
    out = b"".join(translation.feed(chunk) for chunk in chunks) + translation.end()
    return out, translation


def test_sdk_accumulator_gets_reasoning_text_parallel_calls_and_usage():
    out, translation = translate_stream("openai", CHAT_STREAM)
    final = accumulate(out)
    assert final.status == "completed"
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call",
                                                     "function_call"]
    assert final.output[0].summary[0].text == "The user asks."
    assert final.output_text == "Checking now."
    calls = [(i.call_id, i.name, json.loads(i.arguments)) for i in final.output[2:]]
    assert calls == [("call_a", "get_weather", {"city": "Zürich"}), ("call_b", "get_time", {})]
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (30, 12, 42)
    assert final.usage.input_tokens_details.cached_tokens == 10
    assert final.usage.output_tokens_details.reasoning_tokens == 4
    assert translation.cost == 0.0012 and translation.usage == (30, 12)


def test_event_sequence_is_the_documented_one():
    events = sse_events(translate_stream("openai", CHAT_STREAM)[0])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == 4
    # Every item is done before the answer completes, and each done item is whole: Codex reads
    # the items only from output_item.done.
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done[1]["content"][0]["text"] == "Checking now."
    assert json.loads(done[2]["arguments"]) == {"city": "Zürich"}
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1


def test_a_cut_off_answer_ends_incomplete():
    chunks = [chat_chunk({"content": "partial"}), chat_chunk({}, "length"), chat_usage(),
              b"data: [DONE]\n\n"]
    events = sse_events(translate_stream("openai", chunks)[0])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert not any(e["type"] == "response.completed" for e in events)


@pytest.mark.parametrize("chunks", [
    [chat_chunk({"content": "par"}), b'data: {"error": {"message": "overloaded", "code": 529}}\n\n'],
    [chat_chunk({"content": "par"})],  # the body ends before any finish reason: a cut
])
def test_a_broken_upstream_ends_failed_never_completed(chunks):
    out, translation = translate_stream("openai", chunks)
    events = sse_events(out)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"]
    assert not any(e["type"] == "response.completed" for e in events)
    assert translation.failure is not None


def test_fail_mid_stream_ends_failed():
    translation = translations.stream("openai", "responses", REQUEST)
    translation.feed(chat_chunk({"content": "x"}))
    events = sse_events(translation.fail(504, "upstream timed out"))
    assert [e["type"] for e in events][-1] == "response.failed"
    assert events[-1]["response"]["error"]["message"] == "upstream timed out"
    assert translation.feed(chat_chunk({"content": "more"})) == b""


def test_freeform_tool_calls_come_back_as_custom_tool_call_items():
    request = dict(REQUEST, tools=[{"type": "custom", "name": "apply_patch",
                                    "format": {"type": "text"}}])
    chunks = [chat_chunk({"tool_calls": [{"index": 0, "id": "call_p", "type": "function",
                                          "function": {"name": "apply_patch", "arguments": ""}}]}),
              chat_chunk({"tool_calls": [{"index": 0, "function": {
                  "arguments": json.dumps({"input": "*** Begin Patch\n*** End Patch"})}}]}),
              chat_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    out, _ = translate_stream("openai", chunks, request)
    final = accumulate(out)
    [item] = final.output
    assert (item.type, item.name, item.input) == ("custom_tool_call", "apply_patch",
                                                  "*** Begin Patch\n*** End Patch")


def test_namespaced_calls_come_back_with_their_namespace():
    request = dict(REQUEST, tools=[{"type": "namespace", "name": "multi_agent_v1", "tools": [
        {"type": "function", "name": "close_agent"}]}])
    chunks = [chat_chunk({"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {
        "name": "multi_agent_v1__close_agent", "arguments": "{}"}}]}),
        chat_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    done = [e["item"] for e in sse_events(translate_stream("openai", chunks, request)[0])
            if e["type"] == "response.output_item.done"]
    assert (done[0]["namespace"], done[0]["name"]) == ("multi_agent_v1", "close_agent")


def anthropic_event(name, **payload):
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()


ANTHROPIC_STREAM = [
    anthropic_event("message_start", message={"id": "msg_1", "model": "minimax-m2.7",
                                              "usage": {"input_tokens": 4,
                                                        "cache_read_input_tokens": 6}}),
    anthropic_event("content_block_start", index=0,
                    content_block={"type": "thinking", "thinking": ""}),
    anthropic_event("content_block_delta", index=0,
                    delta={"type": "thinking_delta", "thinking": "Hmm."}),
    anthropic_event("content_block_stop", index=0),
    anthropic_event("content_block_start", index=1, content_block={"type": "text", "text": ""}),
    anthropic_event("content_block_delta", index=1, delta={"type": "text_delta", "text": "Hi!"}),
    anthropic_event("content_block_stop", index=1),
    anthropic_event("content_block_start", index=2, content_block={
        "type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}),
    anthropic_event("content_block_delta", index=2,
                    delta={"type": "input_json_delta", "partial_json": "{\"tz\":\"UTC\"}"}),
    anthropic_event("content_block_stop", index=2),
    anthropic_event("message_delta", delta={"stop_reason": "tool_use"},
                    usage={"output_tokens": 7}),
    anthropic_event("message_stop"),
    anthropic_event("ping", cost="0.0003"),
]


def test_anthropic_wire_answers_reach_responses_clients():
    out, translation = translate_stream("anthropic", ANTHROPIC_STREAM)
    final = accumulate(out)
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output_text == "Hi!"
    assert final.output[2].call_id == "toolu_1"
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (10, 6)
    assert translation.cost == 0.0003


def responses_event(kind, **payload):
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


RESPONSE_DONE = {"id": "resp_up", "object": "response", "model": "gpt-5.6-luna",
                 "status": "completed", "cost": "0.004", "usage": {
                     "input_tokens": 20, "input_tokens_details": {"cached_tokens": 5},
                     "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 3},
                     "total_tokens": 29}}

RESPONSES_STREAM = [
    responses_event("response.created", response={"id": "resp_up", "model": "gpt-5.6-luna",
                                                  "status": "in_progress", "output": []}),
    responses_event("response.output_item.added", output_index=0,
                    item={"type": "reasoning", "id": "rs_1", "summary": []}),
    responses_event("response.reasoning_summary_text.delta", output_index=0, item_id="rs_1",
                    summary_index=0, delta="Plan."),
    responses_event("response.output_item.done", output_index=0,
                    item={"type": "reasoning", "id": "rs_1", "summary": []}),
    responses_event("response.output_item.added", output_index=1,
                    item={"type": "message", "id": "msg_1", "role": "assistant", "content": []}),
    responses_event("response.output_text.delta", output_index=1, item_id="msg_1",
                    content_index=0, delta="Sure, "),
    responses_event("response.output_text.delta", output_index=1, item_id="msg_1",
                    content_index=0, delta="calling."),
    responses_event("response.output_item.added", output_index=2, item={
        "type": "function_call", "id": "fc_1", "call_id": "call_z", "name": "get_time",
        "arguments": ""}),
    responses_event("response.function_call_arguments.delta", output_index=2, item_id="fc_1",
                    delta="{\"tz\":"),
    responses_event("response.function_call_arguments.delta", output_index=2, item_id="fc_1",
                    delta="\"UTC\"}"),
    responses_event("response.output_item.done", output_index=2, item={
        "type": "function_call", "id": "fc_1", "call_id": "call_z", "name": "get_time",
        "arguments": "{\"tz\":\"UTC\"}"}),
    responses_event("response.completed", response=RESPONSE_DONE),
]


def run_reader(client: str, chunks: list[bytes]):
    translation = translations.stream("responses", client, {"stream_options": {"include_usage": True}},
                                      model="gpt-5.6-luna")
    out = b"".join(translation.feed(chunk) for chunk in chunks) + translation.end()
    return out, translation


def chat_deltas(out: bytes):
    chunks = [json.loads(block[6:]) for block in out.split(b"\n\n")[:-1]
              if block != b"data: [DONE]"]
    return chunks


def test_responses_wire_stream_reaches_chat_clients():
    out, translation = run_reader("openai", RESPONSES_STREAM)
    chunks = chat_deltas(out)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Plan."
    assert "".join(d.get("content", "") or "" for d in deltas) == "Sure, calling."
    calls = [c for d in deltas for c in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "call_z", "type": "function",
                        "function": {"name": "get_time", "arguments": ""}}
    assert "".join(c["function"].get("arguments", "") for c in calls) == "{\"tz\":\"UTC\"}"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    assert finish == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 20
    assert out.endswith(b"data: [DONE]\n\n")
    assert translation.cost == 0.004


def test_responses_wire_stream_reaches_anthropic_clients():
    out, _ = run_reader("anthropic", RESPONSES_STREAM)
    names = [block.split(b"\n")[0] for block in out.split(b"\n\n")[:-1]]
    assert names[0] == b"event: message_start" and names[-1] == b"event: message_stop"
    assert b'"stop_reason":"tool_use"' in out and b'"partial_json":"{\\"tz\\":"' in out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(b"".join(RESPONSES_STREAM)) - 1),
                max_size=12))
def test_responses_wire_stream_is_read_the_same_however_it_is_split(cuts):
    whole = b"".join(RESPONSES_STREAM)
    points = sorted(set(cuts))
    pieces = [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)])]
    expected = chat_deltas(run_reader("openai", [whole])[0])
    got = chat_deltas(run_reader("openai", pieces)[0])
    for chunk in expected + got:
        chunk.pop("created", None)
    assert got == expected


def test_a_failed_responses_stream_is_an_error_for_chat_clients():
    chunks = RESPONSES_STREAM[:6] + [responses_event("response.failed", response={
        "id": "resp_up", "status": "failed",
        "error": {"code": "server_error", "message": "the model crashed"}})]
    out, translation = run_reader("openai", chunks)
    assert b"the model crashed" in out and not out.endswith(b"data: [DONE]\n\n")
    assert translation.failure == (500, "the model crashed")


def test_whole_answers_to_responses_clients_are_valid_response_objects():
    completion = {"id": "c1", "object": "chat.completion", "model": "glm-5.1", "choices": [{
        "index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Checking.", "reasoning_content": "Think.",
            "tool_calls": [{"id": "call_a", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"X\"}"}}]}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                  "prompt_tokens_details": {"cached_tokens": 3}}, "cost": "0.0001"}
    raw, answer = translations.answer("openai", "responses", json.dumps(completion).encode(),
                                      REQUEST, model="glm-5.1")
    response = Response.model_validate_json(raw, strict=False)
    assert response.status == "completed" and response.output_text == "Checking."
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert response.output[0].summary[0].text == "Think."
    assert response.usage.input_tokens_details.cached_tokens == 3
    assert answer.cost == 0.0001


def test_a_whole_answer_cut_at_max_tokens_is_incomplete():
    completion = {"id": "c1", "model": "glm-5.1", "choices": [{
        "index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "x"}}]}
    raw, _ = translations.answer("openai", "responses", json.dumps(completion).encode(), REQUEST)
    response = Response.model_validate_json(raw)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"


def test_whole_responses_wire_answers_reach_chat_and_anthropic_clients():
    body = dict(RESPONSE_DONE, output=[
        {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "Plan."}]},
        {"type": "message", "id": "m", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
        {"type": "function_call", "id": "fc", "call_id": "call_z", "name": "get_time",
         "arguments": "{}"}])
    raw, answer = translations.answer("responses", "openai", json.dumps(body).encode())
    message = json.loads(raw)["choices"][0]
    assert message["message"]["content"] == "Hello"
    assert message["message"]["reasoning_content"] == "Plan."
    assert message["finish_reason"] == "tool_calls"
    assert answer.cost == 0.004 and answer.usage.cached_tokens == 5
    raw, _ = translations.answer("responses", "anthropic", json.dumps(body).encode())
    assert [b["type"] for b in json.loads(raw)["content"]] == ["thinking", "text", "tool_use"]


def test_a_failed_whole_responses_answer_is_the_upstreams_error():
    body = {"id": "r", "status": "failed", "output": [],
            "error": {"code": "rate_limit_exceeded", "message": "slow down"}}
    with pytest.raises(GatewayError) as caught:
        translations.answer("responses", "openai", json.dumps(body).encode())
    assert (caught.value.status, caught.value.message) == (429, "slow down")


def test_a_refusal_reaches_chat_clients_as_the_answer_whole_or_streamed():
    body = dict(RESPONSE_DONE, output=[
        {"type": "message", "id": "m", "role": "assistant", "status": "completed",
         "content": [{"type": "refusal", "refusal": "I can't help with that."}]}])
    raw, _ = translations.answer("responses", "openai", json.dumps(body).encode())
    assert json.loads(raw)["choices"][0]["message"]["content"] == "I can't help with that."
    out, _ = run_reader("openai", [
        responses_event("response.created", response={"id": "r", "model": "gpt-5.6-luna"}),
        responses_event("response.refusal.delta", output_index=0, item_id="m", content_index=0,
                        delta="I can't help with that."),
        responses_event("response.completed", response=RESPONSE_DONE)])
    deltas = [c["choices"][0]["delta"] for c in chat_deltas(out) if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "I can't help with that."


def test_reasoning_summary_parts_are_apart_in_a_stream_as_in_a_whole_answer():
    summary = [{"type": "summary_text", "text": "First."}, {"type": "summary_text", "text": "Then."}]
    whole, _ = translations.answer("responses", "openai", json.dumps(dict(RESPONSE_DONE, output=[
        {"type": "reasoning", "id": "rs", "summary": summary}])).encode())
    part = {"item_id": "rs", "output_index": 0}
    out, _ = run_reader("openai", [
        responses_event("response.created", response={"id": "r", "model": "gpt-5.6-luna"}),
        responses_event("response.output_item.added", output_index=0,
                        item={"type": "reasoning", "id": "rs", "summary": []}),
        responses_event("response.reasoning_summary_part.added", **part, summary_index=0,
                        part={"type": "summary_text", "text": ""}),
        responses_event("response.reasoning_summary_text.delta", **part, summary_index=0,
                        delta="First."),
        responses_event("response.reasoning_summary_part.added", **part, summary_index=1,
                        part={"type": "summary_text", "text": ""}),
        responses_event("response.reasoning_summary_text.delta", **part, summary_index=1,
                        delta="Then."),
        responses_event("response.completed", response=RESPONSE_DONE)])
    streamed = "".join(c["choices"][0]["delta"].get("reasoning_content", "")
                       for c in chat_deltas(out) if c["choices"])
    assert streamed == json.loads(whole)["choices"][0]["message"]["reasoning_content"] \
        == "First.\n\nThen."


def _wire_answer(stream: bool, tools: int) -> bytes:
    """A Responses-wire answer with `tools` calls, as the fake upstream renders it: each
    function_call item has an item id (fc_fake_k) and a call id (call_fake_k)."""
    shape = fake_upstream._shape("responses", stream, "gpt-5.6-luna", 1, True,
                                 fake_upstream.Script(tools=tools))
    if stream:
        return b"".join(fake_upstream._responses_events(shape, "0.000100"))
    return fake_upstream._responses_body(shape, "0.000100")


def _tool_call_ids(client: str, out: bytes, stream: bool) -> list[str]:
    if not stream:
        answer = json.loads(out)
        if client == "openai":
            return [call["id"] for call in answer["choices"][0]["message"]["tool_calls"]]
        return [block["id"] for block in answer["content"] if block["type"] == "tool_use"]
    ids = []
    for line in out.decode().split("\n"):
        if not line.startswith("data: {"):
            continue
        event = json.loads(line[len("data: "):])
        for choice in event.get("choices") or ():
            ids += [call["id"] for call in choice["delta"].get("tool_calls") or () if "id" in call]
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            ids.append(block["id"])
    return ids


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["openai", "anthropic"])
def test_a_responses_wire_tool_call_reaches_the_client_by_its_call_id(client, stream):
    """The id a client answers a call with is the item's `call_id`, not its item `id`: the
    upstream matches the tool's result to the call by it."""
    raw = _wire_answer(stream, tools=2)
    if stream:
        translation = translations.stream("responses", client)
        out = translation.feed(raw) + translation.end()
    else:
        out = translations.answer("responses", client, raw)[0]
    expected = [fake_upstream.openai_tool_id(k) for k in range(2)]
    assert _tool_call_ids(client, out, stream) == expected
    assert fake_upstream.responses_call_item_id(0).encode() not in out
