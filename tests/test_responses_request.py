"""Responses requests (Codex CLI, the openai SDK) reach other wires, and other clients' requests
reach the Responses wire, with nothing the upstream could act on lost."""
import json

import pytest

from gateway.errors import GatewayError
from gateway.translate.responses_request import from_hub, to_hub
from tests import translations

# What Codex 0.169 sends on a tool round trip (trimmed): developer messages instead of
# `instructions`, client-made item ids, the call it ran, its output, a reasoning item it got back.
CODEX_SECOND_TURN = {
    "model": "opencode-go/glm-5.1", "stream": True, "store": False,
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199-session",
    "parallel_tool_calls": True, "tool_choice": "auto", "reasoning": {"summary": "auto"},
    "client_metadata": {"thread_id": "0199"},
    "input": [
        {"type": "message", "id": "msg_1", "role": "developer",
         "content": [{"type": "input_text", "text": "You are a coding agent."}]},
        {"type": "message", "id": "msg_2", "role": "user",
         "content": [{"type": "input_text", "text": "run echo"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text",
                                                          "text": "I should run echo."}],
         "content": None, "encrypted_content": None},
        {"type": "function_call", "status": "completed", "id": "fc_1", "name": "exec_command",
         "arguments": "{\"cmd\": \"echo hi\"}", "call_id": "call_1"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_1",
         "output": "Process exited with code 0\nOutput:\nhi\n"},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "description": "Runs a command",
         "strict": False, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
                                         "required": ["cmd"], "additionalProperties": False}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [
            {"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": False},
    ],
}


def test_codex_history_becomes_a_chat_conversation():
    hub = to_hub(CODEX_SECOND_TURN)
    assert [m["role"] for m in hub["messages"]] == ["system", "user", "assistant", "tool"]
    assert hub["messages"][0]["content"] == "You are a coding agent."
    assistant = hub["messages"][2]
    assert assistant["reasoning_content"] == "I should run echo."
    assert assistant["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "exec_command", "arguments": "{\"cmd\": \"echo hi\"}"}}]
    assert hub["messages"][3] == {"role": "tool", "tool_call_id": "call_1",
                                  "content": "Process exited with code 0\nOutput:\nhi\n"}
    assert hub["stream"] is True and hub["stream_options"] == {"include_usage": True}
    for dropped in ("store", "include", "prompt_cache_key", "client_metadata", "input"):
        assert dropped not in hub


def test_namespaced_functions_are_flattened_and_hosted_tools_dropped_visibly():
    hub = to_hub(CODEX_SECOND_TURN)
    names = [tool["function"]["name"] for tool in hub["tools"]]
    assert names == ["exec_command", "multi_agent_v1__close_agent"]
    assert hub["dropped_tools"] == ["web_search"]
    assert hub["tools"][0]["function"]["parameters"]["required"] == ["cmd"]


def test_a_namespaced_call_sent_back_keeps_its_flat_name():
    body = {"model": "m", "input": [
        {"type": "message", "role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "name": "close_agent",
         "namespace": "multi_agent_v1", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "closed"}]}
    call = to_hub(body)["messages"][1]["tool_calls"][0]
    assert call["function"]["name"] == "multi_agent_v1__close_agent"


def test_freeform_tools_become_a_function_with_one_string_input():
    hub = to_hub({"model": "m", "input": "patch it", "tools": [{
        "type": "custom", "name": "apply_patch", "description": "Edit files.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}]})
    [tool] = hub["tools"]
    assert tool["function"]["name"] == "apply_patch"
    assert tool["function"]["parameters"]["required"] == ["input"]
    assert "start: begin_patch" in tool["function"]["description"]


def test_a_freeform_call_and_its_output_travel_as_a_function_call():
    hub = to_hub({"model": "m", "input": [
        {"type": "message", "role": "user", "content": "patch"},
        {"type": "custom_tool_call", "call_id": "c9", "name": "apply_patch",
         "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "c9", "output": "Done"}]})
    call = hub["messages"][1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch\n"}
    assert hub["messages"][2] == {"role": "tool", "tool_call_id": "c9", "content": "Done"}


def test_images_in_a_tool_output_follow_the_results_as_a_user_turn():
    hub = to_hub({"model": "m", "input": [
        {"type": "message", "role": "user", "content": "look"},
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"}]}]})
    assert [m["role"] for m in hub["messages"]] == ["user", "assistant", "tool", "user"]
    assert hub["messages"][3]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]


def test_an_image_a_tool_returned_stays_before_the_next_call():
    """Codex's loop after view_image: the image was seen before the next call was chosen, and
    the history the upstream gets says so on every later turn (one stable prompt prefix)."""
    hub = to_hub({"model": "m", "input": [
        {"type": "message", "role": "user", "content": "look"},
        {"type": "function_call", "call_id": "a", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": [
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "function_call", "call_id": "b", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "b", "output": "ok"}]})
    assert [m["role"] for m in hub["messages"]] == ["user", "assistant", "tool", "user",
                                                     "assistant", "tool"]
    assert hub["messages"][3]["content"][0]["type"] == "image_url"


def test_tools_from_an_additional_tools_item_join_the_list():
    hub = to_hub({"model": "m", "input": [
        {"type": "additional_tools", "role": "developer", "tools": [
            {"type": "namespace", "name": "functions", "tools": [
                {"type": "function", "name": "wait", "parameters": {"type": "object"}}]}]},
        {"type": "message", "role": "user", "content": "hi"}]})
    assert [t["function"]["name"] for t in hub["tools"]] == ["functions__wait"]


def test_instructions_string_input_and_options():
    hub = to_hub({"model": "m", "instructions": "Be brief.", "input": "hi",
                  "max_output_tokens": 300, "temperature": 0.3, "top_p": 0.9,
                  "reasoning": {"effort": "high"}, "parallel_tool_calls": False,
                  "tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
                  "text": {"format": {"type": "json_schema", "name": "out",
                                      "schema": {"type": "object"}, "strict": True}}})
    assert hub["messages"] == [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "hi"}]
    assert (hub["max_tokens"], hub["temperature"], hub["top_p"]) == (300, 0.3, 0.9)
    assert hub["reasoning_effort"] == "high"
    assert hub["tool_choice"] == "required" and hub["parallel_tool_calls"] is False
    assert hub["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {"type": "object"}, "strict": True}}


@pytest.mark.parametrize("body, param", [
    ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
    ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": "message", "role": "user",
                 "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type"),
    ({"input": []}, "input"),
])
def test_what_cannot_be_carried_is_a_400_naming_the_field(body, param):
    with pytest.raises(GatewayError) as caught:
        to_hub({"model": "m", **body})
    assert caught.value.status == 400 and caught.value.param == param


def test_previous_response_id_says_to_resend_the_conversation():
    with pytest.raises(GatewayError) as caught:
        to_hub({"model": "m", "input": "hi", "previous_response_id": "resp_1"})
    assert "whole conversation" in caught.value.message


def test_codex_request_reaches_the_anthropic_wire_as_valid_messages():
    out = translations.request("responses", "anthropic", dict(CODEX_SECOND_TURN, model="minimax-m2.7"))
    assert out["system"] == "You are a coding agent."
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_use"]
    assert out["messages"][2]["content"][0]["tool_use_id"] == "call_1"
    assert [t["name"] for t in out["tools"]] == ["exec_command", "multi_agent_v1__close_agent"]
    assert "thinking" not in out  # OpenCode Go's /messages refuses it


def test_chat_request_reaches_the_responses_wire():
    body = {"model": "gpt-5.6-luna", "stream": True, "max_tokens": 50, "reasoning_effort": "low",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "what is this"},
                                             {"type": "image_url",
                                              "image_url": {"url": "https://x/y.png"}}]},
                {"role": "assistant", "content": "Let me check.", "reasoning_content": "hmm",
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "look", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d",
                                                        "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}}}
    out = from_hub(body)
    assert out["store"] is False and out["stream"] is True
    assert out["max_output_tokens"] == 50 and out["reasoning"] == {"effort": "low"}
    assert out["input"] == [
        {"type": "message", "role": "system", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "what is this"},
            {"type": "input_image", "image_url": "https://x/y.png"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "a cat"}]
    assert out["tools"] == [{"type": "function", "name": "look", "description": "d",
                             "parameters": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "function", "name": "look"}


def test_anthropic_request_reaches_the_responses_wire():
    out = translations.request("anthropic", "responses", {
        "model": "gpt-5.6-luna", "max_tokens": 100, "system": "Sys.",
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": [
                         {"type": "thinking", "thinking": "t", "signature": "s"},
                         {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}]},
                     {"role": "user", "content": [
                         {"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}]}]})
    kinds = [item.get("type") for item in out["input"]]
    assert kinds == ["message", "message", "function_call", "function_call_output"]
    assert json.loads(out["input"][2]["arguments"]) == {"x": 1}
    assert out["max_output_tokens"] == 100


def test_n_above_one_is_refused_for_the_responses_wire():
    with pytest.raises(GatewayError) as caught:
        from_hub({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]})
    assert caught.value.param == "n"


def test_a_user_id_over_64_characters_becomes_a_stable_64_character_safety_identifier():
    claude_code_user = "user_" + "a" * 64 + "_account_" + "b" * 36 + "_session_" + "c" * 36
    first, again, other = (from_hub({"model": "m", "user": user,
                                     "messages": [{"role": "user", "content": "x"}]})
                           ["safety_identifier"]
                           for user in (claude_code_user, claude_code_user, claude_code_user + "d"))
    assert len(first) == 64 and first == again and first != other
    short = from_hub({"model": "m", "user": "u-1", "messages": [{"role": "user", "content": "x"}]})
    assert short["safety_identifier"] == "u-1"


def test_reasoning_of_an_interrupted_turn_stays_as_an_assistant_turn_with_content():
    hub = to_hub({"model": "m", "input": [
        {"type": "message", "role": "user", "content": "go"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking..."}]},
        {"type": "message", "role": "user", "content": "stop, do this instead"}]})
    assert hub["messages"][1] == {"role": "assistant", "content": "",
                                  "reasoning_content": "thinking..."}
