"""Anthropic SSE streams reach OpenAI clients as chat.completion.chunk streams they can read."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from tests import translations


def AnthropicToOpenAIStream(include_usage):
    body = {"stream_options": {"include_usage": True}} if include_usage else {}
    return translations.stream("anthropic", "openai", body)


def ev(name, newline="\n", **payload):
    data = json.dumps({"type": name, **payload}, ensure_ascii=False)
    return f"event: {name}{newline}data: {data}{newline}{newline}".encode()


def message_start(input_tokens=25, output_tokens=1, **usage):
    return ev("message_start", message={
        "id": "msg_01AbC", "type": "message", "role": "assistant", "model": "minimax-m2.5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, **usage}})


def block_start(index, block):
    return ev("content_block_start", index=index, content_block=block)


def delta(index, **d):
    return ev("content_block_delta", index=index, delta=d)


def block_stop(index):
    return ev("content_block_stop", index=index)


def message_end(stop_reason="end_turn", output_tokens=87):
    return (ev("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": None},
               usage={"output_tokens": output_tokens})
            + ev("message_stop"))


PING = ev("ping")
THINKING = "Let me think… 世界"
TEXT = "héllo 世界 🎉"
WEATHER_FRAGMENTS = ["", '{"city": ', '"Par', 'is", "note": "🎉', '"}']
TIME_FRAGMENTS = ['{"tz":', ' "Europe/Paris"}']


def recorded_stream(newline="\n"):
    """A realistic answer: thinking with signature, text, two parallel tool calls."""
    def e(name, **payload):
        return ev(name, newline, **payload)

    def d(index, **delta_fields):
        return e("content_block_delta", index=index, delta=delta_fields)
    parts = [
        e("message_start", message={
            "id": "msg_01AbC", "type": "message", "role": "assistant", "model": "minimax-m2.5",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1,
                      "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5}}),
        e("ping"),
        e("content_block_start", index=0,
          content_block={"type": "thinking", "thinking": "", "signature": ""}),
        d(0, type="thinking_delta", thinking=THINKING[:7]),
        d(0, type="thinking_delta", thinking=THINKING[7:]),
        d(0, type="signature_delta", signature="EqQBCgIYAh"),
        e("content_block_stop", index=0),
        e("content_block_start", index=1, content_block={"type": "text", "text": ""}),
        d(1, type="text_delta", text=TEXT[:6]),
        e("ping"),
        d(1, type="text_delta", text=TEXT[6:]),
        e("content_block_stop", index=1),
        e("content_block_start", index=2, content_block={
            "type": "tool_use", "id": "toolu_weather", "name": "get_weather", "input": {}}),
        *[d(2, type="input_json_delta", partial_json=f) for f in WEATHER_FRAGMENTS],
        e("content_block_stop", index=2),
        e("content_block_start", index=3, content_block={
            "type": "tool_use", "id": "toolu_time", "name": "get_time", "input": {}}),
        *[d(3, type="input_json_delta", partial_json=f) for f in TIME_FRAGMENTS],
        e("content_block_stop", index=3),
        e("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None},
          usage={"output_tokens": 87}),
        e("message_stop"),
    ]
    return b"".join(parts)


RECORDED_LF = recorded_stream("\n")
RECORDED_CRLF = recorded_stream("\r\n")


def run(stream, *, include_usage=False, pieces=None):
    translator = AnthropicToOpenAIStream(include_usage=include_usage)
    out = b""
    for piece in pieces if pieces is not None else [stream]:
        out += translator.feed(piece)
    out += translator.end()
    return out, translator


def events(out: bytes) -> list:
    """The decoded `data:` payloads; [DONE] stays the string "[DONE]"."""
    assert out == b"" or out.endswith(b"\n\n")
    decoded = []
    for block in out.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        data = block[len(b"data: "):]
        decoded.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return decoded


def chunks(out: bytes) -> list[dict]:
    return [e for e in events(out) if e != "[DONE]"]


def deltas(out: bytes) -> list[dict]:
    return [c["choices"][0]["delta"] for c in chunks(out) if c["choices"]]


# ---- shape of every chunk ----

def test_first_chunk_is_the_assistant_role_with_empty_content():
    out, _ = run(RECORDED_LF)
    assert chunks(out)[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_every_chunk_has_choice_index_zero_and_the_same_id_and_model():
    out, _ = run(RECORDED_LF, include_usage=True)
    all_chunks = chunks(out)
    for chunk in all_chunks:
        assert chunk["id"] == "chatcmpl-msg_01AbC"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "minimax-m2.5"
        assert isinstance(chunk["created"], int)
        assert [c["index"] for c in chunk["choices"]] in ([0], [])
    assert len({c["created"] for c in all_chunks}) == 1


def test_every_chunk_parses_with_the_openai_sdk():
    out, _ = run(RECORDED_LF, include_usage=True)
    parsed = [ChatCompletionChunk.model_validate(chunk) for chunk in chunks(out)]
    assert len(parsed) > 3  # the opening, the text, the tool calls, the finish and the usage
    assert parsed[0].choices[0].delta.role == "assistant"
    assert parsed[-1].usage is not None and parsed[-1].usage.prompt_tokens == 130
    assert any(choice.finish_reason == "tool_calls" for c in parsed for choice in c.choices)


def test_openai_sdk_assembles_the_whole_answer():
    out, _ = run(RECORDED_LF, include_usage=True)
    state = ChatCompletionStreamState()
    for chunk in chunks(out):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    completion = state.get_final_completion()
    message = completion.choices[0].message
    assert message.content == TEXT
    assert completion.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls] == [
        ("toolu_weather", "get_weather", {"city": "Paris", "note": "🎉"}),
        ("toolu_time", "get_time", {"tz": "Europe/Paris"}),
    ]
    assert completion.usage.prompt_tokens == 130


# ---- content ----

def test_text_deltas_become_content():
    out, _ = run(RECORDED_LF)
    assert "".join(d.get("content", "") for d in deltas(out)) == TEXT


def test_thinking_deltas_become_reasoning_content_and_signatures_are_dropped():
    out, _ = run(RECORDED_LF)
    assert "".join(d.get("reasoning_content", "") for d in deltas(out)) == THINKING
    assert b"EqQBCgIYAh" not in out and b"signature" not in out


def test_pings_produce_nothing():
    translator = AnthropicToOpenAIStream(include_usage=False)
    translator.feed(message_start())
    assert translator.feed(PING + PING) == b""


def test_tool_calls_are_numbered_from_zero_not_by_block_index():
    out, _ = run(RECORDED_LF)
    indexes = [call["index"] for d in deltas(out) for call in d.get("tool_calls", [])]
    assert set(indexes) == {0, 1}
    assert indexes == sorted(indexes)


def test_first_tool_chunk_carries_id_type_name_and_empty_arguments():
    out, _ = run(RECORDED_LF)
    first_calls = [d["tool_calls"][0] for d in deltas(out)
                   if "tool_calls" in d and "id" in d["tool_calls"][0]]
    assert first_calls == [
        {"index": 0, "id": "toolu_weather", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "id": "toolu_time", "type": "function",
         "function": {"name": "get_time", "arguments": ""}},
    ]


def test_later_tool_chunks_carry_only_index_and_the_fragment_untouched():
    out, _ = run(RECORDED_LF)
    later = [d["tool_calls"][0] for d in deltas(out)
             if "tool_calls" in d and "id" not in d["tool_calls"][0]]
    assert later == (
        [{"index": 0, "function": {"arguments": f}} for f in WEATHER_FRAGMENTS if f]
        + [{"index": 1, "function": {"arguments": f}} for f in TIME_FRAGMENTS])


def test_tool_use_without_json_deltas_ends_with_empty_object_arguments():
    stream = (message_start()
              + block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}})
              + block_stop(0) + message_end("tool_use"))
    out, _ = run(stream)
    calls = [d["tool_calls"][0] for d in deltas(out) if "tool_calls" in d]
    assert calls[-1] == {"index": 0, "function": {"arguments": "{}"}}
    assert "".join(c["function"]["arguments"] for c in calls) == "{}"


def test_tool_input_given_whole_at_block_start_still_arrives():
    stream = (message_start()
              + block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "weather",
                                "input": {"city": "Oslo"}})
              + block_stop(0) + message_end("tool_use"))
    out, _ = run(stream)
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"]
                        for d in deltas(out) if "tool_calls" in d)
    assert json.loads(arguments) == {"city": "Oslo"}


# ---- end of the stream ----

@pytest.mark.parametrize("stop_reason, finish_reason", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("max_tokens", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
])
def test_last_chunk_carries_the_finish_reason(stop_reason, finish_reason):
    stream = (message_start() + block_start(0, {"type": "text", "text": ""})
              + delta(0, type="text_delta", text="hi") + block_stop(0) + message_end(stop_reason))
    out, _ = run(stream)
    reasons = [c["choices"][0]["finish_reason"] for c in chunks(out)]
    assert reasons[-1] == finish_reason
    assert set(reasons[:-1]) == {None}


def test_without_include_usage_there_is_no_usage_chunk_and_done_ends_the_stream():
    out, _ = run(RECORDED_LF, include_usage=False)
    decoded = events(out)
    assert decoded[-1] == "[DONE]"
    assert all("usage" not in c and c["choices"] for c in decoded[:-1])


def test_with_include_usage_one_usage_chunk_with_no_choices_comes_before_done():
    out, _ = run(RECORDED_LF, include_usage=True)
    decoded = events(out)
    assert decoded[-1] == "[DONE]"
    usage_chunks = [c for c in decoded[:-1] if "usage" in c]
    assert usage_chunks == [decoded[-2]]
    assert decoded[-2]["choices"] == []
    assert decoded[-2]["usage"] == {
        "prompt_tokens": 130, "completion_tokens": 87, "total_tokens": 217,
        "prompt_tokens_details": {"cached_tokens": 100}}


def test_output_tokens_are_the_final_count_not_a_sum():
    stream = (message_start(output_tokens=3) + block_start(0, {"type": "text", "text": ""})
              + delta(0, type="text_delta", text="hi") + block_stop(0)
              + message_end(output_tokens=40))
    _, translator = run(stream)
    assert translator.usage == (25, 40)


def test_usage_is_known_from_message_start():
    translator = AnthropicToOpenAIStream(include_usage=False)
    translator.feed(message_start(input_tokens=10, cache_read_input_tokens=5))
    assert translator.usage == (15, 1)


def test_nothing_comes_before_a_whole_event_arrives():
    translator = AnthropicToOpenAIStream(include_usage=False)
    whole = message_start()
    assert translator.feed(whole[:20]) == b""
    assert translator.feed(whole[20:]) != b""


# ---- failures ----

def test_upstream_error_event_becomes_an_openai_error_and_the_stream_ends_without_done():
    translator = AnthropicToOpenAIStream(include_usage=True)
    out = translator.feed(message_start() + block_start(0, {"type": "text", "text": ""})
                          + delta(0, type="text_delta", text="partial"))
    out += translator.feed(ev("error", error={"type": "overloaded_error",
                                              "message": "Overloaded"}))
    out += translator.feed(delta(0, type="text_delta", text="more") + message_end())
    out += translator.end()
    decoded = events(out)
    assert "[DONE]" not in decoded
    assert decoded[-1] == {"error": {"message": "Overloaded", "type": "overloaded_error",
                                     "param": None, "code": None}}
    assert b"more" not in out


def test_error_event_in_another_shape_still_ends_the_stream_with_its_message():
    out, _ = run(message_start() + b'event: error\ndata: {"error": {"message": "quota exceeded"}}\n\n')
    decoded = events(out)
    assert decoded[-1]["error"]["message"] == "quota exceeded"
    assert "[DONE]" not in decoded


def test_stream_cut_before_message_stop_ends_with_an_error_not_done():
    cut = RECORDED_LF[:RECORDED_LF.index(b"event: message_delta")]
    out, _ = run(cut)
    decoded = events(out)
    assert "[DONE]" not in decoded
    assert decoded[-1]["error"]["type"] == "api_error"
    assert "before the answer was complete" in decoded[-1]["error"]["message"]


def test_cut_inside_an_event_is_still_a_cut():
    out, _ = run(RECORDED_LF[:-5])
    assert "[DONE]" not in events(out)
    assert "error" in events(out)[-1]


def test_fail_mid_stream_gives_the_error_once_and_nothing_after():
    translator = AnthropicToOpenAIStream(include_usage=False)
    translator.feed(message_start())
    failed = translator.fail(504, "the upstream did not answer within 300 s")
    assert events(failed) == [{"error": {"message": "the upstream did not answer within 300 s",
                                         "type": "timeout_error", "param": None, "code": None}}]
    assert translator.feed(message_end()) == b""
    assert translator.end() == b""
    assert translator.fail(500, "again") == b""


def test_end_after_a_complete_stream_adds_nothing():
    translator = AnthropicToOpenAIStream(include_usage=False)
    assert events(translator.feed(RECORDED_LF))[-1] == "[DONE]"
    assert translator.end() == b""


def test_unreadable_event_data_ends_the_stream_with_an_error():
    out, _ = run(message_start() + b"event: content_block_delta\ndata: {not json\n\n")
    decoded = events(out)
    assert decoded[-1]["error"]["type"] == "api_error"
    assert "[DONE]" not in decoded


def test_unknown_event_delta_and_block_types_are_ignored():
    stream = (message_start()
              + ev("some_future_event", payload={"x": 1})
              + block_start(0, {"type": "server_tool_use", "id": "srv_1", "name": "web_search",
                                "input": {}})
              + delta(0, type="input_json_delta", partial_json='{"query": "x"}')
              + block_stop(0)
              + block_start(1, {"type": "text", "text": ""})
              + delta(1, type="citations_delta", citation={"type": "char_location"})
              + delta(1, type="text_delta", text="found")
              + block_stop(1) + message_end())
    out, _ = run(stream)
    assert [d for d in deltas(out)[1:] if d] == [{"content": "found"}]
    assert events(out)[-1] == "[DONE]"


# ---- arbitrary chunk boundaries ----

def normalised(out: bytes) -> list:
    # `created` is the clock at message_start: two runs may straddle a second.
    decoded = events(out)
    for item in decoded:
        if isinstance(item, dict):
            item.pop("created", None)
    return decoded


def pieces_at(stream, cuts):
    edges = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:])]


def test_crlf_stream_translates_like_the_lf_stream():
    assert normalised(run(RECORDED_CRLF)[0]) == normalised(run(RECORDED_LF)[0])


def test_every_single_split_point_gives_the_same_output():
    for stream in (RECORDED_LF, RECORDED_CRLF):
        whole = normalised(run(stream, include_usage=True)[0])
        for cut in range(1, len(stream)):
            out, _ = run(stream, include_usage=True, pieces=pieces_at(stream, [cut]))
            assert normalised(out) == whole, cut


@settings(max_examples=200, deadline=None)
@given(stream=st.sampled_from([RECORDED_LF, RECORDED_CRLF]), include_usage=st.booleans(),
       data=st.data())
def test_any_chunking_gives_the_same_output(stream, include_usage, data):
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=80))
    out, translator = run(stream, include_usage=include_usage, pieces=pieces_at(stream, cuts))
    whole, whole_translator = run(stream, include_usage=include_usage)
    assert normalised(out) == normalised(whole)
    assert translator.usage == whole_translator.usage == (130, 87)
