"""SSEParser hands out whole events however the network split the upstream's bytes."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.translate.sse import SSEParser


def event(name, payload, newline="\n"):
    lines = [] if name is None else [f"event: {name}"]
    lines.append("data: " + json.dumps(payload, ensure_ascii=False))
    return (newline.join(lines) + newline + newline).encode()


def anthropic_stream(newline):
    def ev(name, payload):
        return event(name, {"type": name, **payload}, newline)
    return b"".join([
        ev("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant",
                                         "model": "minimax-m2.5", "content": [],
                                         "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ev("ping", {}),
        ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("content_block_delta", {"index": 0,
                                   "delta": {"type": "text_delta", "text": "héllo 世界 🎉"}}),
        f": keep-alive comment{newline}".encode(),
        ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        ev("content_block_stop", {"index": 0}),
        ev("message_delta", {"delta": {"stop_reason": "end_turn"},
                             "usage": {"output_tokens": 5}}),
        ev("message_stop", {}),
    ])


ANTHROPIC_LF = anthropic_stream("\n")
ANTHROPIC_CRLF = anthropic_stream("\r\n")


def openai_chunk(delta, finish_reason=None):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "glm-5.1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


OPENAI_STREAM = b"".join([
    event(None, openai_chunk({"role": "assistant", "content": ""})),
    event(None, openai_chunk({"reasoning_content": "思考中…"})),
    event(None, openai_chunk({"content": "héllo 世界 🎉"})),
    event(None, openai_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                              "function": {"name": "f", "arguments": ""}}]})),
    event(None, openai_chunk({"tool_calls": [{"index": 0,
                                              "function": {"arguments": "{\"q\": \"ü\"}"}}]})),
    event(None, openai_chunk({}, "tool_calls")),
    b"data: [DONE]\n\n",
])

RECORDED = [ANTHROPIC_LF, ANTHROPIC_CRLF, OPENAI_STREAM]


def parse_in_pieces(stream, cuts):
    parser = SSEParser()
    events = []
    start = 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        events.extend(parser.feed(stream[start:cut]))
        start = cut
    return events, parser


def test_event_name_and_data_are_read():
    assert SSEParser().feed(b'event: ping\ndata: {"type": "ping"}\n\n') == [
        ("ping", b'{"type": "ping"}')]


def test_event_without_a_name_has_none():
    assert SSEParser().feed(b"data: [DONE]\n\n") == [(None, b"[DONE]")]


def test_multiple_data_lines_join_with_newlines():
    assert SSEParser().feed(b"data: a\ndata: b\n\n") == [(None, b"a\nb")]


def test_data_without_a_space_after_the_colon():
    assert SSEParser().feed(b"data:x\n\n") == [(None, b"x")]


def test_comments_are_ignored():
    assert SSEParser().feed(b": keep-alive\n\ndata: x\n\n") == [(None, b"x")]


def test_crlf_and_lone_cr_line_endings_are_understood():
    assert SSEParser().feed(b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n") == [
        ("a", b"1"), ("b", b"2"), (None, b"3")]


def test_split_between_cr_and_lf_makes_no_extra_event_boundary():
    parser = SSEParser()
    assert parser.feed(b"data: 1\r") == []
    assert parser.feed(b"\ndata: 2\r\n\r\n") == [(None, b"1\n2")]


def test_an_unfinished_event_is_held_and_reported_pending():
    parser = SSEParser()
    assert parser.feed(b"event: message_stop\ndata: {") == []
    assert parser.pending
    assert parser.feed(b'"type": "message_stop"}\n\n') == [
        ("message_stop", b'{"type": "message_stop"}')]
    assert not parser.pending


def test_recorded_streams_parse_to_the_expected_events():
    events = SSEParser().feed(ANTHROPIC_CRLF)
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert json.loads(events[3][1])["delta"]["text"] == "héllo 世界 🎉"
    openai_events = SSEParser().feed(OPENAI_STREAM)
    assert openai_events[-1] == (None, b"[DONE]") and len(openai_events) == 7


def test_every_single_split_point_gives_the_same_events():
    # Exhaustive over one cut: covers every byte inside a multi-byte character and every
    # position between a \r and its \n.
    for stream in RECORDED:
        whole = SSEParser().feed(stream)
        for cut in range(1, len(stream)):
            events, parser = parse_in_pieces(stream, [cut])
            assert events == whole, (stream[:40], cut)
            assert not parser.pending


@settings(max_examples=200, deadline=None)
@given(stream=st.sampled_from(RECORDED), data=st.data())
def test_any_chunking_gives_the_same_events(stream, data):
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(stream) - 1), max_size=60))
    events, _ = parse_in_pieces(stream, cuts)
    assert events == SSEParser().feed(stream)
