"""OpenAI chat.completion → Anthropic message."""
import json

import pytest
from anthropic.types import Message

from gateway.errors import GatewayError
from tests import translations


def to_anthropic_response(raw):
    body, answer = translations.answer("openai", "anthropic", raw)
    return body, answer.usage.pair() if answer.usage else None


def _completion(message=None, finish_reason="stop", usage=None, **fields):
    body = {"id": "chatcmpl-42", "object": "chat.completion", "created": 1,
            "model": "kimi-k2.5",
            "choices": [{"index": 0, "message": {"role": "assistant", **(message or {})},
                         "finish_reason": finish_reason}]}
    if usage is not None:
        body["usage"] = usage
    body.update(fields)
    return json.dumps(body).encode()


def _translate(*args, **kwargs):
    raw, tokens = to_anthropic_response(_completion(*args, **kwargs))
    return json.loads(raw), tokens


def test_answer_is_an_anthropic_message_the_sdk_accepts():
    answer, _ = _translate({"content": "Hello!"},
                           usage={"prompt_tokens": 10, "completion_tokens": 3})
    message = Message.model_validate(answer)
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "kimi-k2.5"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello!"


def test_blocks_come_in_order_thinking_text_tool_use():
    answer, _ = _translate({
        "content": "Let me look.",
        "reasoning_content": "The user wants a file.",
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "Read", "arguments": "{\"path\": \"a.py\"}"}}]},
        finish_reason="tool_calls")
    message = Message.model_validate(answer)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "The user wants a file."
    assert message.content[2].id == "call_1"
    assert message.content[2].name == "Read"
    assert message.content[2].input == {"path": "a.py"}


def test_thinking_block_carries_a_non_empty_signature():
    answer, _ = _translate({"content": "4", "reasoning_content": "2+2"})
    assert answer["content"][0]["type"] == "thinking"
    assert answer["content"][0]["signature"]


def test_reasoning_field_is_read_like_reasoning_content():
    answer, _ = _translate({"content": "4", "reasoning": "2+2"})
    assert answer["content"][0] == {"type": "thinking", "thinking": "2+2",
                                    "signature": answer["content"][0]["signature"]}


@pytest.mark.parametrize("content", ["", None])
def test_no_text_block_when_content_is_empty(content):
    answer, _ = _translate({"content": content, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        finish_reason="tool_calls")
    assert [b["type"] for b in answer["content"]] == ["tool_use"]


def test_refusal_text_is_shown_when_there_is_no_content():
    answer, _ = _translate({"content": None, "refusal": "I can't help with that."},
                           finish_reason="content_filter")
    assert answer["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert answer["stop_reason"] == "refusal"


@pytest.mark.parametrize("arguments", ["", "{\"path\": ", "[1, 2]", None])
def test_tool_arguments_that_are_not_a_json_object_become_empty_input(arguments):
    function = {"name": "Read"}
    if arguments is not None:
        function["arguments"] = arguments
    answer, _ = _translate({"tool_calls": [{"id": "c", "type": "function",
                                            "function": function}]},
                           finish_reason="tool_calls")
    assert answer["content"][0]["input"] == {}


def test_tool_call_without_id_gets_one():
    answer, _ = _translate({"tool_calls": [{"type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}]},
                           finish_reason="tool_calls")
    assert answer["content"][0]["id"].startswith("toolu_")


@pytest.mark.parametrize("finish, stop", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "refusal"), (None, "end_turn"), ("something_new", "end_turn"),
])
def test_finish_reason_maps_to_stop_reason(finish, stop):
    answer, _ = _translate({"content": "x"}, finish_reason=finish)
    assert answer["stop_reason"] == stop
    assert answer["stop_sequence"] is None


def test_tool_calls_with_finish_stop_still_stop_for_tool_use():
    answer, _ = _translate({"tool_calls": [{"id": "c", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}]},
                           finish_reason="stop")
    assert answer["stop_reason"] == "tool_use"


def test_usage_without_cache():
    answer, tokens = _translate({"content": "x"},
                                usage={"prompt_tokens": 120, "completion_tokens": 30,
                                       "total_tokens": 150})
    assert answer["usage"] == {"input_tokens": 120, "output_tokens": 30}
    assert tokens == (120, 30)


def test_cached_prompt_tokens_become_cache_reads_outside_input_tokens():
    answer, tokens = _translate({"content": "x"}, usage={
        "prompt_tokens": 1000, "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 800}})
    assert answer["usage"] == {"input_tokens": 200, "output_tokens": 50,
                               "cache_read_input_tokens": 800}
    assert tokens == (1000, 50)


def test_moonshot_top_level_cached_tokens_count_as_cache_reads():
    answer, _ = _translate({"content": "x"}, usage={
        "prompt_tokens": 1000, "completion_tokens": 50, "cached_tokens": 600})
    assert answer["usage"]["input_tokens"] == 400
    assert answer["usage"]["cache_read_input_tokens"] == 600


def test_missing_usage_gives_zero_usage_and_no_token_count():
    answer, tokens = _translate({"content": "x"})
    assert answer["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert tokens is None


def test_invalid_json_is_a_502():
    with pytest.raises(GatewayError) as caught:
        to_anthropic_response(b"<html>oops</html>")
    assert caught.value.status == 502


def test_error_body_with_status_200_is_a_502_with_the_upstream_message():
    with pytest.raises(GatewayError) as caught:
        to_anthropic_response(b'{"error": {"message": "model overloaded", "code": 503}}')
    assert caught.value.status == 502
    assert caught.value.message == "model overloaded"


def test_completion_without_choices_is_a_502():
    with pytest.raises(GatewayError) as caught:
        to_anthropic_response(b'{"id": "x", "choices": []}')
    assert caught.value.status == 502
