"""Anthropic request → what OpenCode Go's Anthropic-compatible /messages accepts."""
import copy
import json

import pytest

from gateway.translate.anthropic_compat import normalize_for_opencode
from gateway.translate.anthropic_request import to_hub as to_openai_request
from gateway.translate.compose import TRANSLATIONS
from tests import translations

_EPHEMERAL = {"type": "ephemeral"}


def _request(**fields):
    body = {"model": "minimax-m2.7", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


def _roles(body):
    return [m["role"] for m in body["messages"]]


def test_newer_fields_are_dropped_and_classic_ones_kept():
    classic = dict(system="s", metadata={"user_id": "u"}, stop_sequences=["X"], stream=True,
                   temperature=0.5, top_p=0.9, top_k=20,
                   tools=[{"name": "f", "input_schema": {"type": "object"}}],
                   tool_choice={"type": "auto"})
    out = normalize_for_opencode(_request(
        thinking={"type": "adaptive"}, context_management={"edits": []},
        output_config={"effort": "high"}, container="c", service_tier="auto",
        cache_control=_EPHEMERAL, mcp_servers=[], brand_new_field=1, **classic))
    assert set(out) == {"model", "messages", "max_tokens", *classic}
    for name, value in classic.items():
        assert out[name] == value


def test_metadata_keeps_only_user_id():
    out = normalize_for_opencode(_request(metadata={"user_id": "u-1", "other": 2}))
    assert out["metadata"] == {"user_id": "u-1"}


def test_system_message_mid_conversation_is_folded_into_the_next_user_turn_in_place():
    out = normalize_for_opencode(_request(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "how are you"},
    ]))
    assert _roles(out) == ["user", "assistant", "user"]
    assert out["messages"][2]["content"] == [
        {"type": "text", "text": "<system-reminder>\nAnswer in French.\n</system-reminder>"},
        {"type": "text", "text": "how are you"},
    ]
    # The earlier turns are untouched, so the upstream's prompt cache still matches them.
    assert out["messages"][:2] == [{"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "hello"}]


def test_system_message_after_a_user_turn_joins_that_turn():
    out = normalize_for_opencode(_request(messages=[
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
    ]))
    assert _roles(out) == ["user"]
    assert out["messages"][0]["content"][1]["text"] == \
        "<system-reminder>\nBe terse.\n</system-reminder>"


def test_system_message_between_assistant_turns_becomes_a_user_turn():
    out = normalize_for_opencode(_request(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "a"},
        {"role": "system", "content": "note"},
        {"role": "assistant", "content": "b"},
    ]))
    assert _roles(out) == ["user", "assistant", "user", "assistant"]


def test_consecutive_same_role_messages_are_merged():
    out = normalize_for_opencode(_request(messages=[
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": "b"},
    ]))
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                          {"type": "text", "text": "b"}]},
    ]


def test_merged_user_turn_puts_tool_results_first():
    out = normalize_for_opencode(_request(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {}}]},
        {"role": "system", "content": "reminder"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "ok"}]},
    ]))
    assert _roles(out) == ["user", "assistant", "user"]
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "text"]


def test_empty_text_blocks_are_dropped_and_empty_messages_removed():
    out = normalize_for_opencode(_request(messages=[
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "text", "text": ""}]},
        {"role": "assistant", "content": [{"type": "text", "text": "  "}]},
        {"role": "user", "content": "more"},
        {"role": "assistant", "content": ""},
    ]))
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "text", "text": "more"}]}]


def test_empty_system_blocks_are_dropped_and_an_empty_system_removed():
    out = normalize_for_opencode(_request(system=[{"type": "text", "text": ""},
                                                  {"type": "text", "text": "real"}]))
    assert out["system"] == [{"type": "text", "text": "real"}]
    assert "system" not in normalize_for_opencode(_request(system=[{"type": "text",
                                                                    "text": ""}]))
    assert "system" not in normalize_for_opencode(_request(system="  "))


def test_cache_control_is_kept_everywhere():
    out = normalize_for_opencode(_request(
        system=[{"type": "text", "text": "s", "cache_control": _EPHEMERAL}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "q",
                                                "cache_control": _EPHEMERAL}]}],
        tools=[{"name": "f", "input_schema": {}, "cache_control": _EPHEMERAL}]))
    assert out["system"][0]["cache_control"] == _EPHEMERAL
    assert out["messages"][0]["content"][0]["cache_control"] == _EPHEMERAL
    assert out["tools"][0]["cache_control"] == _EPHEMERAL


def test_tools_lose_newer_fields_and_server_tools_are_dropped():
    out = normalize_for_opencode(_request(tools=[
        {"name": "Read", "description": "d", "input_schema": {"type": "object"},
         "strict": True, "defer_loading": False, "input_examples": [{}]},
        {"type": "web_search_20250305", "name": "web_search"},
    ]))
    assert out["tools"] == [{"name": "Read", "description": "d",
                             "input_schema": {"type": "object"}}]


def test_tool_choice_goes_when_no_tool_is_left():
    out = normalize_for_opencode(_request(
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any"}))
    assert "tools" not in out and "tool_choice" not in out


def test_input_body_is_not_changed():
    body = _request(thinking={"type": "adaptive"}, messages=[
        {"role": "user", "content": "a"}, {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text",
                                                                   "text": "b"}]}])
    before = copy.deepcopy(body)
    normalize_for_opencode(body)
    assert body == before


# --- a Claude Code 2.1-style request through both flavours -----------------------------------

def _claude_code_request(model):
    user_id = json.dumps({"device_id": "d" * 64, "account_uuid": "",
                          "session_id": "5f0c0d52-2d0b-4f5e-9d43-3c8e7b1f2a10"})
    schema = {"type": "object", "properties": {"command": {"type": "string"}},
              "required": ["command"], "additionalProperties": False,
              "$schema": "http://json-schema.org/draft-07/schema#"}
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "temperature": 1,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI.",
             "cache_control": _EPHEMERAL},
            {"type": "text", "text": "Use the tools to help the user.",
             "cache_control": _EPHEMERAL},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>cwd: /repo</system-reminder>"},
                {"type": "text", "text": "list the files", "cache_control": _EPHEMERAL}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use Bash.", "signature": "sig-1"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_01", "name": "Bash",
                 "input": {"command": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.py\nb.py"}]},
            {"role": "system", "content": "Output style changed to concise."},
            {"role": "user", "content": [{"type": "text", "text": "now read a.py"},
                                         {"type": "text", "text": ""}]},
        ],
        "tools": [
            {"name": "Bash", "description": "Run a command", "input_schema": schema},
            {"name": "Read", "description": "Read a file", "input_schema": {
                "type": "object", "properties": {"file_path": {"type": "string"}},
                "required": ["file_path"]}},
            {"name": "Edit", "description": "Edit a file", "input_schema": {
                "type": "object", "properties": {"file_path": {"type": "string"},
                                                 "old_string": {"type": "string"},
                                                 "new_string": {"type": "string"}}},
             "cache_control": _EPHEMERAL},
        ],
        "metadata": {"user_id": user_id},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }


def test_claude_code_request_translated_for_an_openai_flavour_model():
    body = _claude_code_request("kimi-k2.5")
    out = to_openai_request(body)
    assert set(out) == {"model", "messages", "max_tokens", "temperature", "tools", "user",
                        "stream", "stream_options"}
    assert out["stream_options"] == {"include_usage": True}
    assert out["user"] == body["metadata"]["user_id"]
    assert [m["role"] for m in out["messages"]] == [
        "system", "user", "assistant", "tool", "system", "user"]
    assert out["messages"][0]["content"].startswith("x-anthropic-billing-header")
    assert "You are Claude Code" in out["messages"][0]["content"]
    assert out["messages"][1]["content"] == \
        "<system-reminder>cwd: /repo</system-reminder>\n\nlist the files"
    assistant = out["messages"][2]
    assert assistant["content"] == "Listing."
    assert assistant["reasoning_content"] == "Use Bash."
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"command": "ls"}
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01",
                                  "content": "a.py\nb.py"}
    assert out["messages"][4] == {"role": "system",
                                  "content": "Output style changed to concise."}
    assert out["messages"][5] == {"role": "user", "content": "now read a.py"}
    assert [t["function"]["name"] for t in out["tools"]] == ["Bash", "Read", "Edit"]
    assert "cache_control" not in json.dumps(out)


def test_claude_code_request_normalised_for_the_anthropic_flavour_upstream():
    body = _claude_code_request("minimax-m2.7")
    out = normalize_for_opencode(body)
    assert set(out) == {"model", "messages", "max_tokens", "temperature", "tools", "metadata",
                        "stream", "system"}
    assert out["system"] == body["system"]
    assert out["metadata"] == body["metadata"]
    assert out["tools"] == body["tools"]
    assert _roles(out) == ["user", "assistant", "user"]
    assert out["messages"][:2] == body["messages"][:2]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.py\nb.py"},
        {"type": "text",
         "text": "<system-reminder>\nOutput style changed to concise.\n</system-reminder>"},
        {"type": "text", "text": "now read a.py"},
    ]


@pytest.mark.parametrize("wire", ["anthropic", "openai"])
def test_server_tools_a_claude_client_sends_are_dropped_and_reported(wire):
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "Read", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}
    ctx = translations.route_ctx(body, "m")
    out = TRANSLATIONS[("anthropic", wire)].request(body, ctx)
    assert len(out["tools"]) == 1 and "web_search" not in str(out["tools"])
    assert ctx.dropped_tools == ["web_search"]
