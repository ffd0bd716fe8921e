"""Anthropic Messages answers reach OpenAI clients as chat.completion objects they can read."""
import json

import pytest
from openai.types.chat import ChatCompletion

from gateway.errors import GatewayError
from tests import translations


def to_openai_response(raw):
    body, answer = translations.answer("anthropic", "openai", raw)
    return body, answer.usage.pair() if answer.usage else None


def anthropic_message(content, stop_reason="end_turn", usage=None, **extra):
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "minimax-m2.5", "content": content, "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage if usage is not None else {"input_tokens": 12, "output_tokens": 6},
    }
    message.update(extra)
    return json.dumps(message, ensure_ascii=False).encode()


def translate(content, **kwargs):
    body, counts = to_openai_response(anthropic_message(content, **kwargs))
    return json.loads(body), counts


TOOL_USE = {"type": "tool_use", "id": "toolu_01A", "name": "weather",
            "input": {"place": "Paris", "units": ["c", "f"], "note": "héllo 世界"}}


def test_answer_is_a_chat_completion_the_openai_sdk_parses():
    body, _ = to_openai_response(anthropic_message(
        [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
         {"type": "text", "text": "Let me check."}, TOOL_USE], stop_reason="tool_use"))
    completion = ChatCompletion.model_validate_json(body)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.tool_calls[0].function.name == "weather"


def test_id_object_created_and_model():
    out, _ = translate([{"type": "text", "text": "hi"}])
    assert out["id"] == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert out["object"] == "chat.completion"
    assert isinstance(out["created"], int) and out["created"] > 1_600_000_000
    assert out["model"] == "minimax-m2.5"
    assert out["choices"][0]["index"] == 0
    assert out["choices"][0]["message"]["role"] == "assistant"


def test_text_blocks_are_concatenated_into_content():
    out, _ = translate([{"type": "text", "text": "héllo "}, {"type": "text", "text": "世界 🎉"}])
    assert out["choices"][0]["message"]["content"] == "héllo 世界 🎉"


def test_content_is_null_when_the_answer_is_only_tool_use():
    out, _ = translate([TOOL_USE], stop_reason="tool_use")
    message = out["choices"][0]["message"]
    assert "content" in message and message["content"] is None


def test_tool_use_becomes_a_tool_call_with_json_string_arguments():
    out, _ = translate([{"type": "text", "text": "Checking."}, TOOL_USE], stop_reason="tool_use")
    (call,) = out["choices"][0]["message"]["tool_calls"]
    assert call["id"] == "toolu_01A"
    assert call["type"] == "function"
    assert call["function"]["name"] == "weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == TOOL_USE["input"]
    assert out["choices"][0]["message"]["content"] == "Checking."


def test_parallel_tool_uses_keep_their_order():
    second = {"type": "tool_use", "id": "toolu_02B", "name": "time", "input": {}}
    out, _ = translate([TOOL_USE, second], stop_reason="tool_use")
    calls = out["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_01A", "toolu_02B"]
    assert calls[1]["function"]["arguments"] == "{}"


def test_thinking_becomes_reasoning_content_without_the_signature():
    out, _ = translate([{"type": "thinking", "thinking": "Step 1. ", "signature": "EqQBCg"},
                        {"type": "redacted_thinking", "data": "secret"},
                        {"type": "thinking", "thinking": "Step 2.", "signature": "EqQBCh"},
                        {"type": "text", "text": "42"}])
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == "Step 1. Step 2."
    assert "EqQBCg" not in json.dumps(out) and "secret" not in json.dumps(out)


def test_no_reasoning_content_without_thinking():
    out, _ = translate([{"type": "text", "text": "hi"}])
    assert "reasoning_content" not in out["choices"][0]["message"]
    assert "tool_calls" not in out["choices"][0]["message"]


def test_unknown_block_types_are_skipped():
    out, _ = translate([{"type": "server_tool_use", "id": "srv", "name": "web_search",
                         "input": {"query": "x"}},
                        {"type": "text", "text": "found it"}])
    message = out["choices"][0]["message"]
    assert message["content"] == "found it" and "tool_calls" not in message


@pytest.mark.parametrize("stop_reason, finish_reason", [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("pause_turn", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    (None, "stop"),
])
def test_stop_reason_maps_to_finish_reason(stop_reason, finish_reason):
    out, _ = translate([{"type": "text", "text": "x"}], stop_reason=stop_reason)
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_usage_counts_cached_input_in_prompt_tokens():
    out, counts = translate([{"type": "text", "text": "x"}], usage={
        "input_tokens": 20, "output_tokens": 7,
        "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 300})
    assert out["usage"] == {
        "prompt_tokens": 1320, "completion_tokens": 7, "total_tokens": 1327,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    assert counts == (1320, 7)


def test_usage_without_cache_fields():
    out, counts = translate([{"type": "text", "text": "x"}],
                            usage={"input_tokens": 12, "output_tokens": 6})
    assert out["usage"]["prompt_tokens"] == 12
    assert out["usage"]["total_tokens"] == 18
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert counts == (12, 6)


def test_no_usage_means_no_counts():
    raw = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                      "content": [{"type": "text", "text": "x"}],
                      "stop_reason": "end_turn"}).encode()
    body, counts = to_openai_response(raw)
    assert counts is None
    assert "usage" not in json.loads(body)


def test_body_that_is_not_json_is_a_502():
    with pytest.raises(GatewayError) as caught:
        to_openai_response(b"<html>Bad gateway</html>")
    assert caught.value.status == 502


def test_body_of_the_wrong_shape_is_a_502_naming_the_field():
    with pytest.raises(GatewayError) as caught:
        to_openai_response(b'{"id": "msg_1", "content": "just a string"}')
    assert caught.value.status == 502
    assert "content" in caught.value.message


def test_error_object_in_a_200_body_keeps_its_status_and_message():
    raw = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    with pytest.raises(GatewayError) as caught:
        to_openai_response(raw)
    assert caught.value.status == 529
    assert caught.value.message == "Overloaded"
