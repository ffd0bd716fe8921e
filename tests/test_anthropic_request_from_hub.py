"""OpenAI Chat Completions requests become Anthropic Messages requests the upstream accepts."""
import copy

import pytest

from gateway.errors import GatewayError
from gateway.translate.anthropic_request import THINKING_BUDGET_BY_EFFORT
from gateway.translate.anthropic_request import from_hub as to_anthropic_request

DEFAULT_MAX_TOKENS = 4096


def translate(**fields):
    body = {"model": "minimax-m2.5", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return to_anthropic_request(body, default_max_tokens=DEFAULT_MAX_TOKENS)


def refused(**fields) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        translate(**fields)
    assert caught.value.status == 400
    return caught.value


def test_model_id_is_kept_as_given():
    assert translate()["model"] == "minimax-m2.5"


# ---- system / developer ----

def test_system_and_developer_messages_become_the_top_level_system():
    out = translate(messages=[
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    ])
    assert out["system"] == "Be terse.\n\nAnswer in French."
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_system_message_later_in_the_conversation_still_reaches_the_model():
    out = translate(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Now be formal."},
        {"role": "user", "content": "and now?"},
    ])
    assert out["system"] == "Now be formal."
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


def test_system_cache_control_is_kept_as_text_blocks():
    out = translate(messages=[
        {"role": "system", "content": [
            {"type": "text", "text": "long policy", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "short note"},
        ]},
        {"role": "user", "content": "hi"},
    ])
    assert out["system"] == [
        {"type": "text", "text": "long policy", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "short note"},
    ]


def test_empty_system_content_sends_no_empty_text_block():
    out = translate(messages=[
        {"role": "system", "content": ""},
        {"role": "system", "content": [{"type": "text", "text": "",
                                        "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hi"},
    ])
    assert "system" not in out


def test_image_in_a_system_message_is_refused_with_its_param():
    err = refused(messages=[
        {"role": "system", "content": [{"type": "image_url",
                                        "image_url": {"url": "https://x.test/a.png"}}]},
        {"role": "user", "content": "hi"},
    ])
    assert err.param == "messages[0].content"


# ---- max_tokens ----

def test_default_max_tokens_when_the_client_sends_none():
    assert translate()["max_tokens"] == DEFAULT_MAX_TOKENS


def test_max_tokens_carries_over():
    assert translate(max_tokens=300)["max_tokens"] == 300


def test_max_completion_tokens_wins_over_max_tokens():
    assert translate(max_tokens=300, max_completion_tokens=500)["max_tokens"] == 500


@pytest.mark.parametrize("value", [0, -5, "100", 1.5, True])
def test_max_tokens_that_is_not_a_positive_integer_is_refused(value):
    assert refused(max_tokens=value).param == "max_tokens"


def test_max_tokens_not_above_the_thinking_budget_is_raised_by_the_budget():
    out = translate(max_tokens=300, reasoning_effort="low")
    budget = out["thinking"]["budget_tokens"]
    assert out["max_tokens"] == budget + 300


def test_max_tokens_above_the_thinking_budget_is_kept():
    out = translate(max_tokens=50_000, reasoning_effort="low")
    assert out["max_tokens"] == 50_000


def test_default_max_tokens_is_raised_above_a_large_thinking_budget():
    out = translate(reasoning_effort="high")
    assert out["max_tokens"] > out["thinking"]["budget_tokens"]


# ---- stop / sampling ----

def test_stop_string_becomes_a_stop_sequences_list():
    assert translate(stop="END")["stop_sequences"] == ["END"]


def test_stop_list_becomes_stop_sequences_without_empty_entries():
    assert translate(stop=["END", "", "###"])["stop_sequences"] == ["END", "###"]


def test_stop_of_the_wrong_type_is_refused():
    assert refused(stop=5).param == "stop"


def test_sampling_parameters_carry_over():
    out = translate(temperature=0.2, top_p=0.9, top_k=40)
    assert (out["temperature"], out["top_p"], out["top_k"]) == (0.2, 0.9, 40)


def test_non_numeric_temperature_is_refused():
    assert refused(temperature="hot").param == "temperature"


# ---- tools ----

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"place": {"$ref": "#/$defs/place"}},
    "required": ["place"],
    "$defs": {"place": {"type": "string"}},
}


def test_function_tools_become_anthropic_tools_with_the_whole_schema():
    out = translate(tools=[{"type": "function", "function": {
        "name": "weather", "description": "Current weather", "parameters": WEATHER_SCHEMA,
        "strict": True}}])
    assert out["tools"] == [{"name": "weather", "description": "Current weather",
                             "input_schema": WEATHER_SCHEMA}]


def test_tool_without_parameters_gets_an_empty_object_schema():
    out = translate(tools=[{"type": "function", "function": {"name": "now"}}])
    assert out["tools"] == [{"name": "now",
                             "input_schema": {"type": "object", "properties": {}}}]


def test_tool_that_is_not_a_function_is_refused_with_its_index():
    err = refused(tools=[{"type": "function", "function": {"name": "a"}},
                         {"type": "custom", "custom": {"name": "b"}}])
    assert err.param == "tools[1]"


TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER_SCHEMA}}]


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "weather"}}, {"type": "tool", "name": "weather"}),
])
def test_tool_choice_maps_to_anthropic(choice, expected):
    assert translate(tools=TOOLS, tool_choice=choice)["tool_choice"] == expected


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", {"type": "any", "disable_parallel_tool_use": True}),
    ({"type": "function", "function": {"name": "weather"}},
     {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}),
    (None, {"type": "auto", "disable_parallel_tool_use": True}),
    ("none", {"type": "none"}),
])
def test_parallel_tool_calls_false_disables_parallel_tool_use(choice, expected):
    fields = {"tools": TOOLS, "parallel_tool_calls": False}
    if choice is not None:
        fields["tool_choice"] = choice
    assert translate(**fields)["tool_choice"] == expected


def test_parallel_tool_calls_true_adds_nothing():
    assert "tool_choice" not in translate(tools=TOOLS, parallel_tool_calls=True)


def test_unknown_tool_choice_is_refused():
    assert refused(tools=TOOLS, tool_choice="sometimes").param == "tool_choice"


def test_tool_choice_without_tools_is_not_sent():
    out = translate(tool_choice="auto", parallel_tool_calls=False)
    assert "tool_choice" not in out and "tools" not in out


# ---- assistant tool calls and tool results ----

def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


def test_assistant_tool_calls_become_tool_use_blocks_after_the_text():
    out = translate(messages=[
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            tool_call("call_1", "weather", '{"place": "Paris"}'),
            tool_call("call_2", "weather", '{"place": "Rome"}'),
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
    ])
    assert out["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"place": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"place": "Rome"}},
    ]}


@pytest.mark.parametrize("content", ["", None])
def test_tool_calls_with_empty_content_send_no_empty_text_block(content):
    out = translate(messages=[
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": content, "tool_calls": [tool_call("c", "now", "{}")]},
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
    ])
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c", "name": "now", "input": {}}]


def test_empty_arguments_string_means_no_arguments():
    out = translate(messages=[
        {"role": "user", "content": "time?"},
        {"role": "assistant", "tool_calls": [tool_call("c", "now", "")]},
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
    ])
    assert out["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize("arguments", ['{"place": ', '["Paris"]'])
def test_tool_call_arguments_that_are_not_a_json_object_are_refused_naming_the_message(arguments):
    err = refused(messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [tool_call("c", "weather", arguments)]},
    ])
    assert err.param == "messages[1].tool_calls[0].function.arguments"
    assert "messages[1]" in err.message


def test_tool_results_of_one_turn_go_first_in_one_user_message():
    out = translate(messages=[
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "tool_calls": [tool_call("call_1", "weather", '{"place": "Paris"}'),
                                             tool_call("call_2", "weather", '{"place": "Rome"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2",
         "content": [{"type": "text", "text": "24C"}]},
        {"role": "user", "content": "Which is warmer?"},
    ])
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2",
         "content": [{"type": "text", "text": "24C"}]},
        {"type": "text", "text": "Which is warmer?"},
    ]}
    assert len(out["messages"]) == 3


def test_tool_results_come_first_even_after_a_user_message_sent_before_them():
    out = translate(messages=[
        {"role": "user", "content": "time?"},
        {"role": "assistant", "tool_calls": [tool_call("c", "now", "{}")]},
        {"role": "user", "content": "hurry"},
        {"role": "tool", "tool_call_id": "c", "content": "noon"},
    ])
    assert [b["type"] for b in out["messages"][2]["content"]] == ["tool_result", "text"]


def test_empty_tool_result_sends_no_empty_content():
    out = translate(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [tool_call("c", "run", "{}")]},
        {"role": "tool", "tool_call_id": "c", "content": ""},
    ])
    assert out["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c"}]


def test_tool_message_without_tool_call_id_is_refused():
    err = refused(messages=[{"role": "user", "content": "go"},
                            {"role": "tool", "content": "result"}])
    assert err.param == "messages[1].tool_call_id"


def test_consecutive_same_role_messages_are_merged():
    out = translate(messages=[
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "third"},
    ])
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"},
                                     {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                          {"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": "text", "text": "third"}]},
    ]


def test_user_content_as_a_list_of_text_parts_works_and_skips_empty_parts():
    out = translate(messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "text", "text": ""},
        {"type": "text", "text": "here", "cache_control": {"type": "ephemeral"}}]}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "text", "text": "here", "cache_control": {"type": "ephemeral"}},
    ]


# ---- images ----

def test_data_url_image_becomes_a_base64_source():
    out = translate(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}])
    assert out["messages"][0]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def test_https_url_image_becomes_a_url_source():
    out = translate(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg",
                                            "detail": "high"}}]}])
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


@pytest.mark.parametrize("url", ["ftp://example.com/cat.jpg", "data:image/png,rawbytes"])
def test_image_url_the_upstream_cannot_read_is_refused(url):
    err = refused(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}])
    assert err.param == "messages[0].content[0].image_url.url"


def test_unsupported_content_part_is_refused_with_its_param():
    err = refused(messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}}]}])
    assert err.param == "messages[0].content[0].type"


# ---- reasoning_effort ----

@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high", "xhigh", "max"])
def test_reasoning_effort_turns_thinking_on_with_the_documented_budget(effort):
    out = translate(reasoning_effort=effort)
    budget = THINKING_BUDGET_BY_EFFORT[effort]
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert budget >= 1024
    assert out["max_tokens"] > budget


def test_thinking_budgets_grow_with_the_effort():
    budgets = [THINKING_BUDGET_BY_EFFORT[e]
               for e in ("minimal", "low", "medium", "high", "xhigh", "max")]
    assert budgets == sorted(budgets) and len(set(budgets)) == len(budgets)


def test_an_upstream_without_thinking_keeps_the_clients_max_tokens():
    out = to_anthropic_request({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                               "max_tokens": 1000, "reasoning_effort": "high"},
                              default_max_tokens=4096, thinking=False)
    assert "thinking" not in out and out["max_tokens"] == 1000


def test_reasoning_effort_none_sends_no_thinking():
    assert "thinking" not in translate(reasoning_effort="none")


def test_unknown_reasoning_effort_is_refused():
    assert refused(reasoning_effort="extreme").param == "reasoning_effort"


# ---- the rest ----

def test_user_becomes_metadata_user_id():
    assert translate(user="user-42")["metadata"] == {"user_id": "user-42"}


def test_safety_identifier_becomes_metadata_user_id_without_user():
    assert translate(safety_identifier="hash-1")["metadata"] == {"user_id": "hash-1"}


@pytest.mark.parametrize("n", [2, 5, 0])
def test_n_other_than_one_is_refused_with_a_clear_message(n):
    err = refused(n=n)
    assert err.param == "n"
    assert "n=1" in err.message


def test_n_of_one_is_accepted():
    assert "n" not in translate(n=1)


@pytest.mark.parametrize("stream", [True, False])
def test_stream_carries_over(stream):
    assert translate(stream=stream)["stream"] is stream


def test_openai_only_fields_are_dropped():
    out = translate(
        frequency_penalty=0.5, presence_penalty=0.1, logit_bias={"50256": -100}, logprobs=True,
        top_logprobs=3, response_format={"type": "json_object"}, seed=7, service_tier="auto",
        store=True, stream_options={"include_usage": True}, modalities=["text"],
        metadata={"team": "x"}, prediction={"type": "content", "content": "x"},
        verbosity="low", prompt_cache_key="k", functions=[{"name": "legacy"}],
        function_call="auto", some_future_field={"x": 1}, n=1, parallel_tool_calls=True,
        reasoning_effort="none",
    )
    assert set(out) == {"model", "messages", "max_tokens"}


def test_message_name_fields_are_not_forwarded():
    out = translate(messages=[{"role": "user", "name": "alice", "content": "hi"}])
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_the_client_body_is_not_changed():
    body = {"model": "minimax-m2.5", "tools": TOOLS, "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [tool_call("c", "weather", '{"place": "Oslo"}')]},
        {"role": "tool", "tool_call_id": "c", "content": "1C"},
        {"role": "user", "content": "b"},
    ]}
    before = copy.deepcopy(body)
    to_anthropic_request(body, default_max_tokens=DEFAULT_MAX_TOKENS)
    assert body == before


# ---- wrong shapes ----

def test_unknown_role_is_refused_with_its_param():
    err = refused(messages=[{"role": "user", "content": "hi"},
                            {"role": "function", "name": "f", "content": "x"}])
    assert err.param == "messages[1].role"


@pytest.mark.parametrize("messages", [None, "hi", {"role": "user", "content": "hi"}])
def test_messages_that_are_not_a_list_are_refused(messages):
    assert refused(messages=messages).param == "messages"


def test_message_that_is_not_an_object_is_refused():
    assert refused(messages=[{"role": "user", "content": "hi"}, "hello"]).param == "messages[1]"


def test_content_of_the_wrong_type_is_refused():
    assert refused(messages=[{"role": "user", "content": 42}]).param == "messages[0].content"


def test_conversation_with_only_system_messages_is_refused():
    assert refused(messages=[{"role": "system", "content": "be nice"}]).param == "messages"
