"""Anthropic Messages request → OpenAI Chat Completions request."""
import copy
import json

import pytest

from gateway.errors import GatewayError
from gateway.translate.anthropic_request import to_hub as to_openai_request


def _request(**fields):
    body = {"model": "glm-5.1", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


def test_model_id_is_kept_as_given():
    assert to_openai_request(_request())["model"] == "glm-5.1"


def test_system_string_becomes_first_system_message():
    out = to_openai_request(_request(system="Be brief."))
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}
    assert out["messages"][1] == {"role": "user", "content": "hi"}


def test_system_text_blocks_become_one_system_message_without_cache_control():
    out = to_openai_request(_request(system=[
        {"type": "text", "text": "You are a coder."},
        {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": ""},
    ]))
    assert out["messages"][0] == {"role": "system",
                                  "content": "You are a coder.\n\nUse tools."}


def test_empty_system_sends_no_system_message():
    out = to_openai_request(_request(system=""))
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_user_text_blocks_become_string_content():
    out = to_openai_request(_request(messages=[{"role": "user", "content": [
        {"type": "text", "text": "first"},
        {"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}]}]))
    assert out["messages"] == [{"role": "user", "content": "first\n\nsecond"}]


def test_base64_image_becomes_data_url():
    out = to_openai_request(_request(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}}]}]))
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_url_image_becomes_image_url():
    out = to_openai_request(_request(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}]}]))
    assert out["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]


def test_tool_use_blocks_become_assistant_tool_calls_with_json_arguments():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris", "units": ["c"]}}]},
    ]))
    assistant = out["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Checking."
    [call] = assistant["tool_calls"]
    assert call["id"] == "toolu_1" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "units": ["c"]}


def test_assistant_with_only_tool_use_has_null_content():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "text", "text": ""},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
    ]))
    assert out["messages"][1]["content"] is None
    assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_tool_results_become_tool_messages_right_after_the_assistant_turn():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "two things"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "a", "name": "f", "input": {}},
            {"type": "tool_use", "id": "b", "name": "g", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "result A"},
            {"type": "tool_result", "tool_use_id": "b",
             "content": [{"type": "text", "text": "result"}, {"type": "text", "text": "B"}]},
            {"type": "text", "text": "and now summarise"}]},
    ]))
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "result A"},
        {"role": "tool", "tool_call_id": "b", "content": "result\n\nB"},
        {"role": "user", "content": "and now summarise"},
    ]


def test_error_tool_result_still_carries_its_text():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a",
                                      "is_error": True, "content": "file not found"}]},
    ]))
    assert out["messages"][-1] == {"role": "tool", "tool_call_id": "a",
                                   "content": "file not found"}


def test_image_in_tool_result_moves_to_the_following_user_message():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "screenshot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "shot",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": [
            {"type": "text", "text": "captured"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": "AAAA"}}]}]},
    ]))
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "a", "content": "captured"}
    assert out["messages"][3] == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]}


def test_tool_result_with_empty_content_gives_empty_tool_message():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a"}]},
    ]))
    assert out["messages"][-1] == {"role": "tool", "tool_call_id": "a", "content": ""}


def test_assistant_thinking_becomes_reasoning_content_without_signature():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need a tool.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "tool_use", "id": "a", "name": "f", "input": {}}]},
    ]))
    assistant = out["messages"][1]
    assert assistant["reasoning_content"] == "Need a tool."
    assert "sig" not in json.dumps(assistant) and "xyz" not in json.dumps(assistant)


def test_stop_sequences_become_stop():
    assert to_openai_request(_request(stop_sequences=["END", "###"]))["stop"] == ["END", "###"]


def test_max_tokens_temperature_top_p_carry_and_top_k_is_dropped():
    out = to_openai_request(_request(max_tokens=500, temperature=0.2, top_p=0.9, top_k=40))
    assert out["max_tokens"] == 500
    assert out["temperature"] == 0.2
    assert out["top_p"] == 0.9
    assert "top_k" not in out


def test_tools_become_function_tools_with_parameters():
    schema = {"type": "object", "properties": {"path": {"type": "string"}},
              "required": ["path"], "$defs": {"x": {"type": "string"}}}
    out = to_openai_request(_request(tools=[
        {"name": "Read", "description": "Read a file", "input_schema": schema,
         "cache_control": {"type": "ephemeral"}},
        {"name": "Noop", "input_schema": {"type": "object"}},
    ]))
    assert out["tools"] == [
        {"type": "function", "function": {"name": "Read", "description": "Read a file",
                                          "parameters": schema}},
        {"type": "function", "function": {"name": "Noop", "parameters": {"type": "object"}}},
    ]


def test_server_tools_are_dropped():
    out = to_openai_request(_request(tools=[
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"name": "Read", "input_schema": {"type": "object"}},
    ]))
    assert [t["function"]["name"] for t in out["tools"]] == ["Read"]


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}),
])
def test_tool_choice_maps_to_openai(choice, expected):
    out = to_openai_request(_request(tools=[{"name": "Read", "input_schema": {}}],
                                     tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_disable_parallel_tool_use_sets_parallel_tool_calls_false():
    out = to_openai_request(_request(
        tools=[{"name": "Read", "input_schema": {}}],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True}))
    assert out["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_not_sent():
    out = to_openai_request(_request(tool_choice={"type": "any"}))
    assert "tool_choice" not in out and "tools" not in out


def test_metadata_user_id_becomes_user():
    user_id = json.dumps({"device_id": "d", "session_id": "s"})
    out = to_openai_request(_request(metadata={"user_id": user_id}))
    assert out["user"] == user_id
    assert "metadata" not in out


def test_streaming_asks_upstream_for_usage():
    out = to_openai_request(_request(stream=True))
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_non_streaming_sends_no_stream_options():
    out = to_openai_request(_request(stream=False))
    assert out.get("stream") is False and "stream_options" not in out


@pytest.mark.parametrize("thinking, effort", [
    ({"type": "enabled", "budget_tokens": 8000}, "low"),
    ({"type": "enabled", "budget_tokens": 16384}, "high"),
    ({"type": "enabled", "budget_tokens": 100_000}, "max"),
    ({"type": "enabled", "budget_tokens": 500}, "minimal"),
    ({"type": "disabled"}, "none")])
def test_a_thinking_budget_becomes_a_reasoning_effort(thinking, effort):
    out = to_openai_request(_request(thinking=thinking, output_config={"effort": "high"}))
    assert "thinking" not in out and "output_config" not in out
    assert out["reasoning_effort"] == effort


def test_adaptive_thinking_leaves_the_effort_to_the_model():
    out = to_openai_request(_request(thinking={"type": "adaptive"},
                                     output_config={"effort": "high"}))
    assert "thinking" not in out and "reasoning_effort" not in out
    assert "output_config" not in out


def test_system_message_mid_conversation_stays_in_place():
    out = to_openai_request(_request(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "how are you"},
    ]))
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "system", "user"]
    assert out["messages"][2]["content"] == "Answer in French."


def test_claude_code_extras_and_unknown_fields_are_dropped():
    out = to_openai_request(_request(
        context_management={"edits": [{"type": "clear_thinking_20251015"}]},
        output_config={"effort": "low"}, cache_control={"type": "ephemeral"},
        service_tier="auto", container="c1", some_future_field=1))
    assert set(out) == {"model", "messages", "max_tokens"}


def test_plain_text_document_becomes_text():
    out = to_openai_request(_request(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "notes"}}]}]))
    assert out["messages"][0]["content"] == "notes"


def test_input_body_is_not_changed():
    body = _request(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
                    messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                    tools=[{"name": "f", "input_schema": {}}], thinking={"type": "adaptive"})
    before = copy.deepcopy(body)
    to_openai_request(body)
    assert body == before


@pytest.mark.parametrize("messages, param", [
    ("hello", "messages"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
    ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "messages[1].role"),
    ([{"role": "user", "content": ["text"]}], "messages[0].content[0]"),
    ([{"role": "user", "content": [{"type": "text", "text": 3}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "image", "source": {"type": "file",
                                                                 "file_id": "f"}}]}],
     "messages[0].content[0].source.type"),
    ([{"role": "user", "content": [{"type": "document", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}],
     "messages[0].content[0]"),
    ([{"role": "user", "content": "a"},
      {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}],
     "messages[1].content[0]"),
    ([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}],
     "messages[0].content[0].tool_use_id"),
    ([{"role": "user", "content": "a"},
      {"role": "assistant", "content": [{"type": "image", "source": {}}]}],
     "messages[1].content[0]"),
])
def test_wrong_shapes_are_a_400_naming_the_field(messages, param):
    with pytest.raises(GatewayError) as caught:
        to_openai_request(_request(messages=messages))
    assert caught.value.status == 400
    assert caught.value.param == param
    assert param.split(".")[-1].split("[")[0] in caught.value.message


def test_tool_without_name_is_a_400():
    with pytest.raises(GatewayError) as caught:
        to_openai_request(_request(tools=[{"input_schema": {}}]))
    assert caught.value.status == 400 and caught.value.param == "tools[0].name"


def test_unknown_tool_choice_is_a_400():
    with pytest.raises(GatewayError) as caught:
        to_openai_request(_request(tools=[{"name": "f", "input_schema": {}}],
                                   tool_choice={"type": "sometimes"}))
    assert caught.value.status == 400 and caught.value.param == "tool_choice"
