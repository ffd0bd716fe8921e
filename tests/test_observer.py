"""The access log (one JSON line per request, no bodies, no keys) and the token counts the
observer reads from answers that pass through untouched."""
import json
import urllib.error
import urllib.request

import pytest

from gateway.upstream import passthrough

SECRET_TEXT = "the-private-prompt-text"


def post(url: str, body: dict, path: str = "/v1/chat/completions",
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def line_for(gateway, request_id: str) -> dict:
    """The access-log line of one request (the lines are written in batches)."""
    lines = gateway.access_lines(where=lambda entry: entry["request_id"] == request_id)
    [line] = [entry for entry in lines if entry["request_id"] == request_id]
    return line


def test_a_pass_through_answer_logs_route_timing_and_tokens(gateway):
    status, headers, _ = post(gateway.url, {
        "model": "opencode-go/glm-5.1",
        "messages": [{"role": "user", "content": SECRET_TEXT}]})
    assert status == 200
    line = line_for(gateway, headers["x-request-id"])
    assert line["frontend"] == "openai" and line["status"] == 200
    assert (line["model"], line["instance"], line["flavour"]) == ("glm-5.1", "opencode-go", "openai")
    assert 0 < line["ttfb_ms"] <= line["duration_ms"]
    assert (line["prompt_tokens"], line["completion_tokens"]) == (10, 5)
    assert "stream" not in line  # false is left out: the line stays short


def test_a_translated_stream_logs_its_flavour_and_tokens(gateway):
    status, headers, _ = post(gateway.url, {
        "model": "opencode-go/minimax-m2.7", "stream": True,
        "messages": [{"role": "user", "content": "[[fake: deltas=3]]"}]})
    assert status == 200
    line = line_for(gateway, headers["x-request-id"])
    assert (line["flavour"], line["stream"], line["completion_tokens"]) == ("anthropic", True, 3)


def test_the_clients_request_id_is_kept(gateway):
    status, headers, _ = post(gateway.url, {"model": "opencode-go/glm-5",
                                            "messages": [{"role": "user", "content": "hi"}]},
                              headers={"x-request-id": "from-nginx-42"})
    assert headers["x-request-id"] == "from-nginx-42"
    assert line_for(gateway, "from-nginx-42")["status"] == 200


def test_a_refused_request_is_logged_with_its_reason(gateway):
    status, headers, _ = post(gateway.url, {"model": "no-such-backend:x", "messages": []})
    assert status == 404
    line = line_for(gateway, headers["x-request-id"])
    assert line["model"] == "no-such-backend:x" and "not served" in line["error"]
    assert "instance" not in line and "ttfb_ms" not in line


def test_the_log_holds_no_bodies_and_no_keys(start_gateway):
    gateway = start_gateway(env={"OPENCODE_GO_API_KEY": "sk-upstream-secret",
                                 "GATEWAY_API_KEYS": "client-secret"})
    body = {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": SECRET_TEXT}]}
    assert post(gateway.url, body, headers={"authorization": "Bearer client-secret"})[0] == 200
    assert post(gateway.url, body, headers={"authorization": "Bearer wrong-secret"})[0] == 401
    assert len(gateway.access_lines(at_least=2)) == 2
    log = gateway.log()
    for secret in (SECRET_TEXT, "sk-upstream-secret", "client-secret", "wrong-secret", "héllo"):
        assert secret not in log


def test_access_log_off_keeps_the_output_quiet(start_gateway):
    gateway = start_gateway(config_text="server:\n  access_log: false\n")
    assert post(gateway.url, {"model": "opencode-go/glm-5",
                              "messages": [{"role": "user", "content": "hi"}]})[0] == 200
    assert gateway.access_lines(at_least=0) == []


# ---- tokens read from pass-through answers ----

OPENAI_STREAM = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,'
    b'"total_tokens":19}}\n\n'
    b'data: [DONE]\n\n')

ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":'
    b'{"input_tokens":4,"cache_read_input_tokens":6,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":9}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def events(stream: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in stream.split(b"\n\n") if event]


def tapped(protocol: str, chunks: list[bytes]):
    tap = passthrough.StreamTap(protocol)
    for chunk in chunks:
        tap(chunk)
    usage = tap.usage()
    return usage.pair() if usage is not None else None


def answer_usage(protocol: str, body: bytes):
    usage, _cost = passthrough.answer_usage(protocol, body)
    return usage.pair() if usage is not None else None


@pytest.mark.parametrize("protocol, stream, expected", [
    ("openai", OPENAI_STREAM, (12, 7)),
    ("anthropic", ANTHROPIC_STREAM, (10, 9)),  # cached prompt tokens count as prompt tokens
])
def test_stream_usage_is_read_however_the_events_arrive(protocol, stream, expected):
    assert tapped(protocol, [stream]) == expected                     # all in one read
    assert tapped(protocol, events(stream)) == expected               # one event per read
    assert tapped(protocol, [stream[:-20], stream[-20:]]) == expected  # last event split
    usage_at = stream.rindex(b'"usage"')
    assert tapped(protocol, [stream[:usage_at], stream[usage_at:]]) == expected


def test_newer_anthropic_message_delta_input_counts_replace_the_start_ones():
    stream = ANTHROPIC_STREAM.replace(b'"usage":{"output_tokens":9}',
                                      b'"usage":{"input_tokens":40,"output_tokens":9}')
    assert tapped("anthropic", events(stream)) == (46, 9)


def test_stream_without_usage_reports_none():
    without = OPENAI_STREAM.replace(b'"usage"', b'"other"')
    assert tapped("openai", events(without)) is None
    assert tapped("openai", []) is None


def test_whole_answer_usage_in_either_flavour():
    assert answer_usage("openai", b'{"id":"c","choices":[],"usage":{"prompt_tokens":3,'
                                  b'"completion_tokens":2,"total_tokens":5}}') == (3, 2)
    assert answer_usage("anthropic", b'{"id":"m","content":[],"usage":{"input_tokens":3,'
                                     b'"cache_creation_input_tokens":2,"output_tokens":8}}') == (5, 8)
    assert answer_usage("openai", b'{"choices":[]}') is None
    assert answer_usage("openai", b"not json") is None
