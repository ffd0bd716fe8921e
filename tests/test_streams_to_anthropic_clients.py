"""OpenAI chat.completion.chunk stream → Anthropic Messages SSE."""
import json
import re

import anthropic
import httpx2
import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.translate.sse import SSEParser
from tests import translations


def OpenAIToAnthropicStream(model):
    return translations.stream("openai", "anthropic", model=model)

_validate_event = pydantic.TypeAdapter(RawMessageStreamEvent).validate_python


def _chunk(delta=None, finish_reason=None, **fields):
    body = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1,
            "model": "glm-5.1",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]}
    body.update(fields)
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage(prompt=50, completion=12, cached=None):
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return (b"data: " + json.dumps({"id": "chatcmpl-7", "model": "glm-5.1", "choices": [],
                                    "usage": usage}).encode() + b"\n\n")


_DONE = b"data: [DONE]\n\n"


def _tool(index, id=None, name=None, arguments=None):
    call = {"index": index}
    if id is not None:
        call.update(id=id, type="function")
    function = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        call["function"] = function
    return {"tool_calls": [call]}


def _realistic_stream():
    """Reasoning, text, two parallel tool calls with fragmented arguments, then usage."""
    return [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "The user wants "}),
        _chunk({"reasoning_content": "two files."}),
        _chunk({"content": ""}),
        _chunk({"content": "Reading both "}),
        _chunk({"content": "files."}),
        _chunk(_tool(0, id="call_a", name="Read", arguments="")),
        _chunk(_tool(0, arguments="{\"file_")),
        _chunk(_tool(0, arguments="path\": \"a.py\"}")),
        _chunk(_tool(1, id="call_b", name="Read", arguments="{\"file_path\"")),
        _chunk(_tool(1, arguments=": \"b.py\"}")),
        _chunk({}, finish_reason="tool_calls"),
        _usage(prompt=900, completion=40, cached=700),
        _DONE,
    ]


def _run(pieces, *, model="glm-5.1", end=True):
    translator = OpenAIToAnthropicStream(model=model)
    out = b"".join(translator.feed(piece) for piece in pieces)
    if end:
        out += translator.end()
    return out, translator


def _events(sse: bytes):
    parser = SSEParser()
    events = [(name, json.loads(data)) for name, data in parser.feed(sse)]
    assert not parser.pending, "output ends inside an event"
    return events


_DELTA_FOR_BLOCK = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"},
                    "tool_use": {"input_json_delta"}}


def _check_grammar(events):
    """Asserts the Anthropic stream rules of TRANSLATION.md; returns the event names."""
    names = [name for name, _ in events]
    for name, data in events:
        assert data["type"] == name, "event name and data type differ"
        if name != "error":
            _validate_event(data)
    assert names, "nothing was sent"
    if names[-1] == "error":
        assert names.count("error") == 1
        assert "message_stop" not in names and "message_delta" not in names
    else:
        assert names[0] == "message_start"
        assert names.count("message_start") == 1
        assert names[-2:] == ["message_delta", "message_stop"]
        assert names.count("message_delta") == 1
    open_index, open_type, next_index = None, None, 0
    signed = False
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None, "a block started while another was open"
            assert data["index"] == next_index, "block indexes are not contiguous from 0"
            open_index, open_type, next_index = data["index"], data["content_block"]["type"], \
                next_index + 1
            signed = False
        elif name == "content_block_delta":
            assert data["index"] == open_index, "delta for a block that is not open"
            assert data["delta"]["type"] in _DELTA_FOR_BLOCK[open_type]
            if data["delta"]["type"] == "signature_delta":
                signed = True
        elif name == "content_block_stop":
            assert data["index"] == open_index, "stop for a block that is not open"
            if open_type == "thinking":
                assert signed, "thinking block closed without a signature_delta"
            open_index = None
        elif name in ("message_delta", "message_stop"):
            assert open_index is None, "message ended with a block still open"
    return names


def _blocks(events):
    """The content the client ends up with: list of (type, accumulated text/json)."""
    blocks = []
    for name, data in events:
        if name == "content_block_start":
            blocks.append([data["content_block"]["type"], data["content_block"], ""])
        elif name == "content_block_delta":
            delta = data["delta"]
            blocks[data["index"]][2] += (delta.get("text") or delta.get("thinking")
                                         or delta.get("partial_json") or "")
    return blocks


def _sdk_final_message(sse: bytes):
    """The message the official Anthropic SDK assembles from the stream (in-process transport)."""
    def answer(request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse)

    client = anthropic.Anthropic(
        api_key="test", base_url="http://gateway.test", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))
    with client.messages.stream(model="glm-5.1", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


# --- the realistic stream, end to end ----------------------------------------------------------

def test_realistic_stream_keeps_the_anthropic_event_grammar():
    out, _ = _run(_realistic_stream())
    names = _check_grammar(_events(out))
    assert names.count("content_block_start") == 4


def test_realistic_stream_assembles_in_the_official_sdk():
    out, _ = _run(_realistic_stream())
    message = _sdk_final_message(out)
    assert message.id.startswith("msg_")
    assert message.model == "glm-5.1"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "The user wants two files."
    assert message.content[0].signature
    assert message.content[1].text == "Reading both files."
    assert (message.content[2].id, message.content[2].input) == ("call_a", {"file_path": "a.py"})
    assert (message.content[3].id, message.content[3].input) == ("call_b", {"file_path": "b.py"})
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 200
    assert message.usage.cache_read_input_tokens == 700
    assert message.usage.output_tokens == 40


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_output_does_not_depend_on_where_the_upstream_bytes_were_split(cuts):
    whole = b"".join(_realistic_stream())
    points = sorted({c % (len(whole) + 1) for c in cuts})
    pieces = [whole[a:b] for a, b in zip([0] + points, points + [len(whole)])]
    reference, _ = _run([whole])
    split, _ = _run(pieces)
    # The message id is the only thing allowed to differ: it is fresh for every answer.
    def without_message_id(out):
        return re.sub(rb'"id":"msg_[0-9a-f]+"', b'"id":"msg_"', out)
    assert without_message_id(split) == without_message_id(reference)


def test_usage_attribute_reports_upstream_tokens():
    _, translator = _run(_realistic_stream())
    assert translator.usage == (900, 40)


# --- one test per TRANSLATION.md line ----------------------------------------------------------

def test_message_start_comes_first_with_id_role_model_empty_content_and_usage():
    out, _ = _run([_chunk({"role": "assistant", "content": ""})])
    name, data = _events(out)[0]
    assert name == "message_start"
    message = data["message"]
    assert message["id"].startswith("msg_")
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "glm-5.1"
    assert message["content"] == []
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_message_start_uses_the_given_model_when_chunks_name_none():
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'
    out, _ = _run([chunk, _DONE], model="kimi-k2.5")
    assert _events(out)[0][1]["message"]["model"] == "kimi-k2.5"


def test_leading_empty_text_opens_no_block():
    out, _ = _run([_chunk({"role": "assistant", "content": ""}), _chunk({"content": ""}),
                   _chunk({}, finish_reason="stop"), _usage(), _DONE])
    events = _events(out)
    _check_grammar(events)
    assert "content_block_start" not in [name for name, _ in events]


def test_text_block_opens_on_first_non_empty_text():
    out, _ = _run([_chunk({"content": ""}), _chunk({"content": "Hel"}),
                   _chunk({"content": "lo"}), _chunk({}, finish_reason="stop"), _usage()])
    events = _events(out)
    _check_grammar(events)
    [(kind, start, text)] = _blocks(events)
    assert kind == "text" and start == {"type": "text", "text": ""}
    assert text == "Hello"


def test_reasoning_opens_a_thinking_block_before_the_text():
    out, _ = _run([_chunk({"reasoning_content": "think"}), _chunk({"content": "answer"}),
                   _chunk({}, finish_reason="stop"), _usage()])
    events = _events(out)
    _check_grammar(events)
    assert [(b[0], b[2]) for b in _blocks(events)] == [("thinking", "think"),
                                                       ("text", "answer")]


def test_reasoning_field_named_reasoning_is_thinking_too():
    out, _ = _run([_chunk({"reasoning": "think"}), _chunk({}, finish_reason="stop"), _usage()])
    assert [b[0] for b in _blocks(_events(out))] == ["thinking"]


def test_thinking_block_is_signed_before_it_closes():
    out, _ = _run([_chunk({"reasoning_content": "think"}), _chunk({"content": "x"}),
                   _chunk({}, finish_reason="stop"), _usage()])
    names_and_types = [(n, d.get("delta", {}).get("type")) for n, d in _events(out)]
    stop = names_and_types.index(("content_block_stop", None))
    assert names_and_types[stop - 1] == ("content_block_delta", "signature_delta")


def test_new_tool_call_closes_the_open_block_and_starts_tool_use_with_empty_input():
    out, _ = _run([_chunk({"content": "Let me check."}),
                   _chunk(_tool(0, id="call_1", name="Bash", arguments="")),
                   _chunk({}, finish_reason="tool_calls"), _usage()])
    events = _events(out)
    _check_grammar(events)
    names = [name for name, _ in events]
    text_stop = names.index("content_block_stop")
    tool_start = [i for i, (n, d) in enumerate(events) if n == "content_block_start"][1]
    assert text_stop < tool_start
    assert events[tool_start][1]["content_block"] == {
        "type": "tool_use", "id": "call_1", "name": "Bash", "input": {}}


def test_argument_fragments_pass_through_untouched():
    fragments = ["{\"comm", "and\": \"ls", " -la\"", "}"]
    pieces = [_chunk(_tool(0, id="call_1", name="Bash"))]
    pieces += [_chunk(_tool(0, arguments=f)) for f in fragments]
    out, _ = _run(pieces + [_chunk({}, finish_reason="tool_calls"), _usage()])
    deltas = [d["delta"]["partial_json"] for n, d in _events(out)
              if n == "content_block_delta"]
    assert deltas == fragments


def test_calls_all_at_index_zero_with_new_ids_become_separate_blocks():
    out, _ = _run([_chunk(_tool(0, id="a", name="f", arguments="{}")),
                   _chunk(_tool(0, id="b", name="g", arguments="{\"x\": 1}")),
                   _chunk({}, finish_reason="tool_calls"), _usage()])
    events = _events(out)
    _check_grammar(events)
    assert [(b[1]["id"], b[2]) for b in _blocks(events)] == [("a", "{}"), ("b", "{\"x\": 1}")]


def test_interleaved_arguments_for_a_closed_call_end_in_an_error_not_a_corrupt_call():
    out, _ = _run([_chunk(_tool(0, id="a", name="f", arguments="{\"x\"")),
                   _chunk(_tool(1, id="b", name="g", arguments="{}")),
                   _chunk(_tool(0, arguments=": 1}")),
                   _chunk({}, finish_reason="tool_calls"), _usage(), _DONE])
    events = _events(out)
    names = _check_grammar(events)
    assert names[-1] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


def test_empty_repeat_of_a_finished_call_is_ignored():
    out, _ = _run([_chunk(_tool(0, id="a", name="f", arguments="{}")),
                   _chunk(_tool(1, id="b", name="g", arguments="{}")),
                   _chunk(_tool(0, arguments="")),
                   _chunk({}, finish_reason="tool_calls"), _usage()])
    names = _check_grammar(_events(out))
    assert names[-1] == "message_stop"


@pytest.mark.parametrize("finish, stop", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "refusal"),
])
def test_finish_reason_maps_to_stop_reason(finish, stop):
    out, _ = _run([_chunk({"content": "x"}), _chunk({}, finish_reason=finish), _usage()])
    delta = [d for n, d in _events(out) if n == "message_delta"][0]
    assert delta["delta"] == {"stop_reason": stop, "stop_sequence": None}


def test_tool_calls_with_finish_stop_still_stop_for_tool_use():
    out, _ = _run([_chunk(_tool(0, id="a", name="f", arguments="{}")),
                   _chunk({}, finish_reason="stop"), _usage()])
    delta = [d for n, d in _events(out) if n == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_message_delta_waits_for_the_usage_chunk():
    translator = OpenAIToAnthropicStream(model="glm-5.1")
    early = translator.feed(_chunk({"content": "x"}) + _chunk({}, finish_reason="stop"))
    assert b"message_delta" not in early
    assert b"content_block_stop" in early  # the last block ends as soon as the answer does
    late = translator.feed(_usage(prompt=30, completion=5))
    [(_, delta), (name, _)] = _events(late)
    assert delta["usage"] == {"input_tokens": 30, "output_tokens": 5}
    assert name == "message_stop"


def test_usage_riding_on_the_finish_chunk_is_used_at_done():
    finish = _chunk({}, finish_reason="stop",
                    usage={"prompt_tokens": 8, "completion_tokens": 2})
    out, _ = _run([_chunk({"content": "x"}), finish, _DONE])
    delta = [d for n, d in _events(out) if n == "message_delta"][0]
    assert delta["usage"] == {"input_tokens": 8, "output_tokens": 2}


def test_end_closes_block_and_sends_message_delta_and_stop_without_done():
    translator = OpenAIToAnthropicStream(model="glm-5.1")
    translator.feed(_chunk({"content": "x"}) + _chunk({}, finish_reason="stop"))
    tail = translator.end()
    assert [n for n, _ in _events(tail)] == ["message_delta", "message_stop"]
    assert b"[DONE]" not in tail


def test_done_without_usage_still_finishes_with_zero_usage():
    out, translator = _run([_chunk({"content": "x"}), _chunk({}, finish_reason="stop"), _DONE])
    names = _check_grammar(_events(out))
    assert names[-1] == "message_stop"
    assert translator.usage is None


def test_output_never_contains_done():
    out, _ = _run(_realistic_stream())
    assert b"[DONE]" not in out


def test_done_without_finish_reason_is_a_finished_answer():
    out, _ = _run([_chunk({"content": "x"}), _DONE])
    events = _events(out)
    _check_grammar(events)
    assert [d for n, d in events if n == "message_delta"][0]["delta"]["stop_reason"] == \
        "end_turn"


def test_cut_stream_ends_in_an_error_event_without_message_stop():
    out, _ = _run([_chunk({"content": "partial"})])
    events = _events(out)
    names = _check_grammar(events)
    assert names[-1] == "error"
    assert events[-1][1] == {"type": "error", "error": {
        "type": "api_error", "message": events[-1][1]["error"]["message"]}}
    assert "closed" in events[-1][1]["error"]["message"]


def test_cut_in_the_middle_of_an_event_is_an_error():
    whole = _chunk({"content": "partial"}) + _chunk({}, finish_reason="stop")
    out, _ = _run([whole[:-20]])
    assert _check_grammar(_events(out))[-1] == "error"


def test_fail_sends_an_error_event_and_silences_the_stream():
    translator = OpenAIToAnthropicStream(model="glm-5.1")
    translator.feed(_chunk({"content": "x"}))
    error = translator.fail(504, "upstream timed out")
    [(name, data)] = _events(error)
    assert name == "error"
    assert data["error"]["message"] == "upstream timed out"
    assert translator.feed(_chunk({"content": "more"})) == b""
    assert translator.end() == b""
    assert translator.fail(500, "again") == b""


def test_upstream_error_object_becomes_an_error_event_with_its_status_type():
    error = b'data: {"error": {"message": "rate limited", "code": 429}}\n\n'
    out, _ = _run([_chunk({"content": "x"}), error, _chunk({"content": "ignored"}), _DONE])
    events = _events(out)
    _check_grammar(events)
    assert events[-1][1]["error"] == {"type": "rate_limit_error", "message": "rate limited"}


def test_upstream_error_without_a_status_code_is_an_api_error():
    out, _ = _run([b'data: {"error": {"message": "boom", "code": "internal"}}\n\n'])
    assert _events(out) == [("error", {"type": "error", "error": {"type": "api_error",
                                                                  "message": "boom"}})]


def test_invalid_chunk_json_is_an_error_event():
    out, _ = _run([_chunk({"content": "x"}), b"data: {not json\n\n"])
    assert _check_grammar(_events(out))[-1] == "error"


def test_nothing_is_sent_after_message_stop():
    translator = OpenAIToAnthropicStream(model="glm-5.1")
    translator.feed(_chunk({"content": "x"}) + _chunk({}, finish_reason="stop") + _usage())
    assert translator.feed(_chunk({"content": "late"}) + _DONE) == b""
    assert translator.end() == b""


def test_every_answer_gets_its_own_message_id_even_when_the_upstream_repeats_one():
    # Claude Code files a turn's blocks under the message id: a repeated id merges two turns,
    # and drops thinking it cannot match to the rest of its turn.
    ids = set()
    for _ in range(3):
        translator = OpenAIToAnthropicStream(model="glm-5.1")
        out = translator.feed(_chunk({"content": "hi"}, id="chatcmpl-same")) + translator.end()
        ids.add(_events(out)[0][1]["message"]["id"])
    assert len(ids) == 3 and all(i.startswith("msg_") for i in ids)
