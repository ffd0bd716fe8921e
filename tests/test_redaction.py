"""The key redactor holds back exactly what could still become a key: whatever the key's length
and place, however the network cuts the stream, however the upstream splits its text into deltas
or escapes it in JSON, no client and no log sees an upstream key.

Property tests drive the redactor alone and the gateway's stream translations; the end-to-end
test runs the gateway over real sockets against a fake upstream that quotes the key in a streamed
delta and cuts its bytes at every offset from inside the key to 16 bytes after it.
"""
from __future__ import annotations

import json
import re
import string
import urllib.request
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.translate.compose import TRANSLATIONS
from gateway.upstream.instances import mask_key
from gateway.translate.hub import StreamWriter, Usage
from gateway.upstream.redact import RedactingWriter, Redactor, key_forms
from tests import fake_upstream
from tests.http_requests import body_for
from tests.translations import route_ctx

KEY_LENGTHS = (12, 24, 48)
KEY_ALPHABET = string.ascii_letters + string.digits + "-_/+=é<>&\"\\🔑"
WORD_BREAKS = " \n\t\"'.,:;()[]{}!?/é"
TEXT_ALPHABET = string.ascii_letters + string.digits + " \n\"\\/.-_é<"
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def keys(draw) -> str:
    length = draw(st.sampled_from(KEY_LENGTHS))
    return draw(st.text(KEY_ALPHABET, min_size=length, max_size=length))


@st.composite
def texts_quoting(draw, key: str) -> str:
    """Text with `key` standing as a whole word somewhere, and maybe an unfinished start of it
    at the very end (held back until the stream ends, then released as it is)."""
    before = draw(st.text(TEXT_ALPHABET, max_size=40))
    after = draw(st.text(TEXT_ALPHABET, max_size=40))
    text = (before + draw(st.sampled_from(WORD_BREAKS)) + key
            + draw(st.sampled_from(WORD_BREAKS)) + after)
    if draw(st.booleans()):
        text += " " + key[:draw(st.integers(1, len(key) - 1))]
    return text


def cut(data: bytes, cuts: set[int]) -> list[bytes]:
    """`data` as the network might deliver it: split at every offset in `cuts`."""
    offsets = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in zip(offsets, offsets[1:])]


def json_encoded(value: object, style: str) -> str:
    """`value` as the JSON encoders upstreams use write it."""
    if style == "ascii":  # Python, most servers
        return json.dumps(value)
    if style == "slash":  # PHP, some Java encoders
        return json.dumps(value).replace("/", "\\/")
    if style == "go":  # Go: HTML characters escaped, everything else UTF-8
        return (json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
                .replace(">", "\\u003e").replace("&", "\\u0026"))
    if style == "upper":  # upper-case hex (some Java and C encoders)
        return re.sub(r"(?<!\\)((?:\\\\)*)\\u([0-9a-f]{4})",  # an escape, not an escaped \\
                      lambda m: m.group(1) + "\\u" + m.group(2).upper(), json.dumps(value))
    return json.dumps(value, ensure_ascii=False)


ENCODERS = ("ascii", "slash", "go", "upper", "utf8")


def chat_chunk(text: str, style: str) -> bytes:
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": text}}]}
    return ("data: " + json_encoded(event, style) + "\n\n").encode()


def client_text(stream: bytes) -> str:
    """The text a client reads from a stream in any of the three protocols: every delta and
    every error message, joined."""
    text = []
    for line in stream.decode("utf-8", "replace").split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[len("data: "):])
        for choice in event.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
        delta = event.get("delta")
        if isinstance(delta, str):  # Responses
            text.append(delta)
        elif isinstance(delta, dict):  # Messages
            text.append(delta.get("text") or delta.get("partial_json") or "")
        error = event.get("error")
        if isinstance(error, dict):
            text.append(error.get("message") or "")
    return "".join(text)


def relay(redactor: Redactor, chunks: list[bytes]) -> list[bytes]:
    stream = redactor.stream()
    return [stream.feed(chunk) for chunk in chunks] + [stream.flush()]


def assert_no_key(key: str, text: str) -> None:
    assert key not in text
    assert mask_key(key) in text  # and the redaction ran where the key stood


# ---------------------------------------------------------------------------------------------
# Pass-through: the bytes as they come

@PROPERTY
@given(data=st.data(), key=keys(), style=st.sampled_from(ENCODERS),
       cuts=st.sets(st.integers(0, 400), max_size=12))
def test_no_cut_of_a_passed_through_stream_lets_a_key_out(data, key, style, cuts):
    text = data.draw(texts_quoting(key))
    stream = chat_chunk("Hello", style) + chat_chunk(text, style) + b"data: [DONE]\n\n"
    redactor = Redactor([key, "another-key-that-is-not-quoted"])
    writes = relay(redactor, cut(stream, cuts))
    out = b"".join(writes)
    assert out == redactor.bytes(stream)  # the same as redacting the whole stream at once
    assert_no_key(key, client_text(out))
    for form in key_forms(key):
        assert not any(form.encode() in write for write in writes)


@pytest.mark.parametrize("length", KEY_LENGTHS)
def test_every_single_cut_and_a_byte_at_a_time_keep_the_key_out(length):
    key = ("oc_sk_" + string.ascii_letters * 2)[:length]
    stream = (chat_chunk("Your key " + key + " was refused", "utf8")
              + chat_chunk(" and " + key + "1 is not it; " + key[:5], "utf8"))
    redactor = Redactor([key])
    whole = redactor.bytes(stream)
    assert mask_key(key).encode() in whole and key.encode() + b"1" in whole  # a longer word stays
    for at in range(len(stream) + 1):
        assert b"".join(relay(redactor, cut(stream, {at}))) == whole
    assert b"".join(relay(redactor, cut(stream, set(range(len(stream)))))) == whole


def test_a_chunk_that_cannot_begin_a_key_goes_out_uncopied():
    redactor = Redactor(["sk-the-upstream-key-0123"])
    stream = redactor.stream()
    for chunk in (b'data: {"choices":[]}\n\n', b'data: {"delta":"an ordinary wo', b'rd"}\n\n'):
        assert stream.feed(chunk) is chunk
    assert stream.flush() == b""


def test_a_key_after_a_json_escaped_line_break_is_still_a_whole_word():
    key = "sk-the-upstream-key-0123"
    body = json.dumps({"error": {"message": "bad key:\n" + key + "\t" + key}}).encode()
    redactor = Redactor([key])
    assert key not in json.loads(redactor.bytes(body))["error"]["message"]
    assert b"".join(relay(redactor, cut(body, set(range(len(body)))))) == redactor.bytes(body)


# ---------------------------------------------------------------------------------------------
# Pass-through: a key split across the text values of several events

# (wire, channel): the events each wire carries a joined text in.
CHANNELS = [("openai", "content"), ("openai", "reasoning_content"), ("openai", "arguments"),
            ("anthropic", "text"), ("anthropic", "thinking"), ("anthropic", "partial_json"),
            ("responses", "output_text"), ("responses", "reasoning_summary_text"),
            ("responses", "function_call_arguments")]
_ANTHROPIC_DELTAS = {"text": "text_delta", "thinking": "thinking_delta",
                     "partial_json": "input_json_delta"}


def delta_event(wire: str, channel: str, text: str, style: str) -> bytes:
    """One event carrying `text` on `channel`, as the `wire` protocol streams it."""
    if wire == "openai":
        delta = ({"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
                 if channel == "arguments" else {channel: text})
        event = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta}]}
        return ("data: " + json_encoded(event, style) + "\n\n").encode()
    if wire == "anthropic":
        event = {"type": "content_block_delta", "index": 0,
                 "delta": {"type": _ANTHROPIC_DELTAS[channel], channel: text}}
        return ("event: content_block_delta\ndata: " + json_encoded(event, style)
                + "\n\n").encode()
    name = f"response.{channel}.delta"
    event = {"type": name, "item_id": "item_1", "output_index": 0, "delta": text}
    return ("event: " + name + "\ndata: " + json_encoded(event, style) + "\n\n").encode()


def channel_stream(wire: str, channel: str, deltas: list[str], style: str) -> bytes:
    end = {"openai": b"data: [DONE]\n\n",
           "anthropic": b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
           "responses": b'event: response.completed\ndata: {"type":"response.completed"}\n\n'}
    return b"".join(delta_event(wire, channel, d, style) for d in deltas) + end[wire]


def channel_text(wire: str, stream: bytes) -> str:
    """The text a client joins from the deltas of a stream made by `channel_stream`."""
    text = []
    for line in stream.decode("utf-8").split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[len("data: "):])
        if wire == "openai":
            delta = event["choices"][0]["delta"]
            text.append(delta["tool_calls"][0]["function"]["arguments"]
                        if "tool_calls" in delta else next(iter(delta.values())))
        elif wire == "anthropic" and "delta" in event:
            text.append(event["delta"][next(k for k in event["delta"] if k != "type")])
        elif "delta" in event:
            text.append(event["delta"])
    return "".join(text)


def relay_passthrough(redactor: Redactor, wire: str, chunks: list[bytes]) -> list[bytes]:
    """What the forwarder's pass-through relay writes for these upstream chunks."""
    stream = redactor.passthrough(wire)
    return [stream.feed(chunk) for chunk in chunks] + [stream.flush()]


@st.composite
def deltas_splitting(draw, text: str, key: str) -> list[str]:
    """`text` in deltas, the (first) quoted `key` split into 2 to 4 of them at random points,
    the text around it maybe split too."""
    at = text.index(key)
    inside = draw(st.sets(st.integers(at + 1, at + len(key) - 1), min_size=1, max_size=3))
    around = draw(st.sets(st.sampled_from([i for i in range(1, len(text))
                                           if not at <= i <= at + len(key)] or [at]),
                          max_size=3))
    splits = sorted((inside | around) - {0, len(text)})
    return [text[a:b] for a, b in zip([0, *splits], [*splits, len(text)])]


# A key with a `"` is left out here: its raw form can match a JSON string's opening quote and
# the text after it (`"` + `0000…`), which the byte redactor then masks across the quote.
unquoted_keys = keys().filter(lambda key: '"' not in key)


@PROPERTY
@given(data=st.data(), key=unquoted_keys, channel=st.sampled_from(CHANNELS),
       style=st.sampled_from(ENCODERS), cuts=st.sets(st.integers(0, 1200), max_size=10))
def test_a_key_split_across_passed_through_deltas_never_reaches_the_client(data, key, channel,
                                                                          style, cuts):
    text = data.draw(texts_quoting(key))
    deltas = data.draw(deltas_splitting(text, key))
    stream = channel_stream(*channel, deltas, style)
    redactor = Redactor([key, "another-key-that-is-not-quoted"])
    writes = relay_passthrough(redactor, channel[0], cut(stream, cuts))
    seen = channel_text(channel[0], b"".join(writes))
    assert_no_key(key, seen)
    assert seen.replace(mask_key(key), "") == text.replace(key, "")  # nothing else touched


@PROPERTY
@given(data=st.data(), key=unquoted_keys, channel=st.sampled_from(CHANNELS),
       style=st.sampled_from(ENCODERS), cuts=st.sets(st.integers(0, 1200), max_size=10))
def test_passed_through_deltas_without_a_key_go_out_byte_for_byte(data, key, channel, style,
                                                                  cuts):
    # Text made of starts of the key: what makes the relay hold a stream and let it go.
    pieces = st.one_of(st.text(TEXT_ALPHABET, max_size=12),
                       st.integers(1, len(key) - 1).map(lambda n: " " + key[:n]))
    deltas = data.draw(st.lists(pieces, min_size=1, max_size=8))
    stream = channel_stream(*channel, deltas, style)
    if key in "".join(deltas) or any(form.encode() in stream for form in key_forms(key)):
        return  # the key, whole after all (`message_stop` is a key too): not this test's case
    writes = relay_passthrough(Redactor([key]), channel[0], cut(stream, cuts))
    assert b"".join(writes) == stream


def test_a_key_in_three_chat_deltas_is_masked_where_it_began():
    key = "sk-the-upstream-key-0123"
    stream = channel_stream("openai", "content", ["xx sk-the", "-upstream-", "key-0123 yy"],
                            "ascii")
    for at in range(len(stream) + 1):
        out = b"".join(relay_passthrough(Redactor([key]), "openai", cut(stream, {at})))
        assert channel_text("openai", out) == "xx " + mask_key(key) + " yy"
        assert out.count(b"\n\n") == stream.count(b"\n\n")  # every event still there


def test_a_plain_chunk_goes_through_the_pass_through_relay_uncopied():
    stream = Redactor(["sk-the-upstream-key-0123"]).passthrough("openai")
    for chunk in (b'data: {"choices":[{"delta":{"content":"an ordinary wo', b'rd"}}]}\n\n'):
        assert stream.feed(chunk) is chunk
    assert stream.flush() == b""


# ---------------------------------------------------------------------------------------------
# Translated routes: the text a client joins from deltas

def upstream_stream(wire: str, deltas: list[str]) -> bytes:
    """A stream of the `wire` protocol as the fake upstream renders it, with these text deltas."""
    flavour = {"openai": "openai", "anthropic": "anthropic", "responses": "responses"}[wire]
    shape = fake_upstream._shape(flavour, True, "glm-5.1", 1, True, fake_upstream.Script())
    render = {"openai": fake_upstream._openai_events, "anthropic": fake_upstream._anthropic_events,
              "responses": fake_upstream._responses_events}[flavour]
    with mock.patch.object(fake_upstream, "_text_deltas", lambda sh: deltas):
        return b"".join(render(shape, "0.000100"))


ROUTES = [(client, wire) for client in ("openai", "anthropic", "responses")
          for wire in ("openai", "anthropic", "responses") if client != wire]


def translate(redactor: Redactor, client: str, wire: str, chunks: list[bytes]) -> bytes:
    """What the forwarder's translated relay sends: each chunk's translation, redacted."""
    translation = redactor.guard(TRANSLATIONS[(client, wire)].stream(route_ctx()))
    out = [redactor.bytes(translation.feed(chunk)) for chunk in chunks]
    out.append(redactor.bytes(translation.end()))
    return b"".join(out)


@PROPERTY
@given(data=st.data(), key=keys(), route=st.sampled_from(ROUTES),
       cuts=st.sets(st.integers(0, 3000), max_size=8))
def test_a_key_split_across_deltas_never_reaches_a_translated_client(data, key, route, cuts):
    text = data.draw(texts_quoting(key))
    splits = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=6)))
    deltas = [text[a:b] for a, b in zip([0, *splits], [*splits, len(text)])]
    redactor = Redactor([key])
    stream = upstream_stream(route[1], deltas)
    seen = client_text(translate(redactor, *route, cut(stream, cuts)))
    assert_no_key(key, seen)
    assert seen == redactor.text(text)  # nothing lost, nothing reordered


def test_a_key_split_across_tool_call_argument_fragments_is_masked():
    key = "sk-the-upstream-key-0123"
    arguments = json.dumps({"command": "echo " + key})
    events = [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
               "type": "function", "function": {"name": "bash", "arguments": ""}}]}}]}]
    events += [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
               "arguments": arguments[at:at + 7]}}]}}]} for at in range(0, len(arguments), 7)]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    stream += b"data: [DONE]\n\n"
    redactor = Redactor([key])
    seen = client_text(translate(redactor, "anthropic", "openai", [stream]))
    assert seen == arguments.replace(key, mask_key(key))


class _Recording(StreamWriter):
    """A client writer that notes every call it gets."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name in ("start", "reasoning", "text", "tool_call", "tool_arguments", "finish",
                    "usage", "end", "error"):
            return lambda *args: self.calls.append((name, *args))
        return super().__getattribute__(name)


def test_each_text_channel_is_held_on_its_own_and_released_in_order():
    key = "sk-the-upstream-key-0123"
    mask = mask_key(key)
    inner = _Recording()
    writer = RedactingWriter(inner, Redactor([key]))
    usage = Usage(10, 5)
    writer.start("id-1", "glm-5.1")
    writer.reasoning("I see sk-the-up")
    writer.reasoning("stream-key-0123 in the prompt: sk")
    writer.text("Your key sk-the")
    writer.text("-upstream-key-0123")
    writer.tool_call(0, "call_a", "bash")
    writer.tool_arguments(0, '{"cmd": "echo sk-the-upstream')
    writer.tool_arguments(0, '-key-0123"}')
    writer.tool_call(1, "call_b", "read")
    writer.tool_arguments(1, '{"path": "sk-the-upstream-k')
    writer.tool_arguments(1, 'ey-0123"}')
    writer.finish("tool_calls")
    writer.usage(usage)
    writer.end()
    assert inner.calls == [
        ("start", "id-1", "glm-5.1"),
        ("reasoning", "I see "), ("reasoning", mask + " in the prompt: "),
        ("reasoning", "sk"),  # what could have begun a key, released when the text starts
        ("text", "Your key "), ("text", mask),  # the held key, released by the tool call
        ("tool_call", 0, "call_a", "bash"),
        ("tool_arguments", 0, '{"cmd": "echo '), ("tool_arguments", 0, mask + '"}'),
        ("tool_call", 1, "call_b", "read"),
        ("tool_arguments", 1, '{"path": "'), ("tool_arguments", 1, mask + '"}'),
        ("finish", "tool_calls"), ("usage", usage), ("end",)]


def test_held_answer_text_goes_out_before_reasoning_that_follows_it():
    inner = _Recording()
    writer = RedactingWriter(inner, Redactor(["sk-the-upstream-key-0123"]))
    writer.text("the answer so far: sk-the")
    writer.reasoning("thinking again")
    writer.end()
    assert inner.calls == [("text", "the answer so far: "), ("text", "sk-the"),
                           ("reasoning", "thinking again"), ("end",)]


@pytest.mark.parametrize("channel", ["text", "reasoning"])
def test_held_tool_arguments_go_out_before_text_or_reasoning_that_follows(channel):
    inner = _Recording()
    writer = RedactingWriter(inner, Redactor(["sk-the-upstream-key-0123"]))
    writer.tool_call(0, "call_a", "bash")
    writer.tool_arguments(0, '{"cmd": "sk-the')
    getattr(writer, channel)("then more.")
    writer.end()
    assert inner.calls == [("tool_call", 0, "call_a", "bash"),
                           ("tool_arguments", 0, '{"cmd": "'), ("tool_arguments", 0, "sk-the"),
                           (channel, "then more."), ("end",)]


def test_arguments_held_for_one_call_go_to_that_call_when_another_calls_fragment_comes():
    inner = _Recording()
    writer = RedactingWriter(inner, Redactor(["sk-the-upstream-key-0123"]))
    writer.tool_arguments(0, '{"a": "sk-the')
    writer.tool_arguments(1, '{"b": 1}')
    writer.end()
    assert inner.calls == [("tool_arguments", 0, '{"a": "'), ("tool_arguments", 0, "sk-the"),
                           ("tool_arguments", 1, '{"b": 1}'), ("end",)]


def test_held_text_goes_out_before_the_error_that_ends_the_stream():
    inner = _Recording()
    writer = RedactingWriter(inner, Redactor(["sk-the-upstream-key-0123"]))
    writer.text("cut short at sk-the")
    writer.error(502, "the upstream broke")
    assert inner.calls == [("text", "cut short at "), ("text", "sk-the"),
                           ("error", 502, "the upstream broke")]
    assert writer.done is inner.done and writer.failure is inner.failure


# ---------------------------------------------------------------------------------------------
# Error bodies and log lines

@PROPERTY
@given(data=st.data(), key=keys(), style=st.sampled_from(ENCODERS))
def test_error_bodies_and_log_lines_never_carry_a_key(data, key, style):
    message = data.draw(texts_quoting(key))
    redactor = Redactor([key])
    body = redactor.bytes(json_encoded({"error": {"message": message}}, style).encode())
    assert_no_key(key, json.loads(body)["error"]["message"])
    assert_no_key(key, redactor.text(message))  # what the access log and error events carry


# ---------------------------------------------------------------------------------------------
# End to end: the gateway over real sockets

FRONTENDS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages",
             "responses": "/v1/responses"}
# Each frontend from a Chat-wire model (pass-through for Chat clients, translated for the
# others) and from a model of its own wire (pass-through).
ROUTES_OVER_SOCKETS = [("openai", "glm-5.1"), ("anthropic", "glm-5.1"),
                       ("anthropic", "minimax-m2.7"), ("responses", "glm-5.1"),
                       ("responses", "gpt-5.6-luna")]


def streamed_request(frontend: str, model: str, text: str) -> dict:
    return body_for(frontend, "opencode-go/" + model, text, stream=True)


def post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as answer:
        return answer.read()


@pytest.mark.parametrize("length", KEY_LENGTHS)
def test_a_key_quoted_in_a_streamed_delta_never_reaches_any_client(start_gateway, fake, length):
    key = ("oc_sk_" + string.ascii_letters + string.digits)[:length]
    gateway = start_gateway(env={"OPENCODE_GO_API_KEY": key})
    for frontend, model in ROUTES_OVER_SOCKETS:
        for offset in range(1, length + 17):
            text = f"[[fake: leak split={offset} slow=0.01]]"
            seen = post(gateway.url + FRONTENDS[frontend], streamed_request(frontend, model, text))
            assert key.encode() not in seen, (frontend, model, offset)
            assert_no_key(key, client_text(seen))
    assert key not in gateway.log()


# Each frontend from a model of its own wire: the upstream's bytes relayed as they come.
PASS_THROUGH_ROUTES = [("openai", "glm-5.1"), ("anthropic", "minimax-m2.7"),
                       ("responses", "gpt-5.6-luna")]


@pytest.mark.parametrize("length", KEY_LENGTHS)
def test_a_key_split_across_two_streamed_deltas_never_reaches_a_passed_through_client(
        start_gateway, fake, length):
    key = ("oc_sk_" + string.ascii_letters + string.digits)[:length]
    mask = mask_key(key)
    gateway = start_gateway(env={"OPENCODE_GO_API_KEY": key})
    for frontend, model in PASS_THROUGH_ROUTES:
        for offset in range(1, length):
            text = f"[[fake: leak keysplit={offset} slow=0.002]]"
            seen = post(gateway.url + FRONTENDS[frontend], streamed_request(frontend, model, text))
            assert key.encode() not in seen, (frontend, model, offset)
            # The text as the model wrote it, the key masked where it stood, nothing else lost.
            assert client_text(seen) == fake_upstream.answer_text().replace("wörld", mask), \
                (frontend, model, offset)
    assert key not in gateway.log()
