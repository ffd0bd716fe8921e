"""The official openai SDK's Responses API (`responses.create`, `responses.stream`) against the
real gateway process, on each of OpenCode Go's three wires; Chat and Anthropic clients on the
Responses wire; and the typed check at every frontend's door."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import anthropic
import openai
import pytest

from tests.fake_upstream import REASONING_TEXT, answer_text, tool_arguments, tool_name

MODELS = ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7", "opencode-go/gpt-5.6-luna"]
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
         {"type": "function", "name": "get_time", "parameters": {"type": "object"}}]


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0,
                       timeout=30) as sdk:
        yield sdk


@pytest.mark.parametrize("model", MODELS)
def test_the_stream_accumulator_gets_text_reasoning_parallel_calls_and_usage(client, fake, model):
    with client.responses.stream(model=model, input="[[fake: reasoning tools=2 text]] go",
                                 tools=TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    reasoning = [item for item in final.output if item.type == "reasoning"]
    assert "".join(part.text for part in reasoning[0].summary) == REASONING_TEXT
    assert final.output_text == answer_text()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        (tool_name(0), tool_arguments(0)), (tool_name(1), tool_arguments(1))]
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens


@pytest.mark.parametrize("model", MODELS)
def test_a_whole_response_and_a_cut_off_one(client, fake, model):
    done = client.responses.create(model=model, input="hi", max_output_tokens=200)
    assert done.status == "completed" and done.output_text == answer_text()
    cut = client.responses.create(model=model, input="[[fake: length]] hi")
    assert cut.status == "incomplete"
    assert cut.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("model", MODELS)
def test_a_broken_upstream_never_ends_completed(client, fake, model):
    with client.responses.stream(model=model, input="[[fake: stream_error]] hi") as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_cut_midway_fails_the_response_the_client_has_open(client, fake, model):
    with client.responses.stream(model=model, input="[[fake: deltas=3 cut]] hi") as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.failed"
    assert len({event.response.id for event in events if hasattr(event, "response")}) == 1
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))
    assert "broke off" in events[-1].response.error.message


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_round_trip(client, fake, model):
    first = client.responses.create(model=model, input="[[fake: tools=1]] weather?", tools=TOOLS)
    [call] = [item for item in first.output if item.type == "function_call"]
    history = [{"role": "user", "content": "[[fake: tools=1]] weather?"},
               *[item.model_dump(exclude_none=True) for item in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = client.responses.create(model=model, input=history, tools=TOOLS)
    assert second.output_text == answer_text()
    assert "sunny" in json.dumps(fake.requests()[-1]["body"])


def test_previous_response_id_is_a_400_that_says_what_to_do(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="opencode-go/glm-5.1", input="hi",
                                previous_response_id="resp_123")
    assert "whole conversation" in caught.value.message


def test_chat_and_anthropic_clients_on_the_responses_wire(gateway, fake):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as client:
        answer = client.chat.completions.create(
            model="opencode-go/gpt-5.6-luna", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == answer_text()
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(
                               model="opencode-go/gpt-5.6-luna", stream=True,
                               messages=[{"role": "user", "content": "hi"}]) if chunk.choices)
        assert streamed == answer_text()
    with anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0) as client:
        message = client.messages.create(model="opencode-go/gpt-5.6-luna", max_tokens=100,
                                         messages=[{"role": "user", "content": "[[fake: tools=1]] x"}])
        assert message.stop_reason == "tool_use"
        assert message.content[-1].name == tool_name(0)
    assert {request["path"] for request in fake.requests()} == {"/v1/responses"}
    assert all(request["body"]["store"] is False for request in fake.requests())


def post(gateway, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(gateway.url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


CHAT = {"model": "opencode-go/glm-5.1", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "max_tokens": 100}
RESPONSES = {"model": "opencode-go/glm-5.1", "input": "hi"}


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {**CHAT, "max_tokens": "lots"}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {**CHAT, "stop": 5}, "stop"),
    ("/v1/chat/completions", {**CHAT, "tools": {}}, "tools"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": 7}]},
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
    ("/v1/messages", {**MESSAGES, "max_tokens": "lots"}, "max_tokens"),
    ("/v1/messages", {**MESSAGES, "temperature": "hot"}, "temperature"),
    ("/v1/messages", {**MESSAGES, "stop_sequences": 5}, "stop_sequences"),
    ("/v1/messages", {**MESSAGES, "tools": {}}, "tools"),
    ("/v1/messages", {**MESSAGES, "messages": [{"role": "user", "content": 7}]},
     "messages[0].content"),
    ("/v1/responses", {**RESPONSES, "input": 5}, "input"),
    ("/v1/responses", {**RESPONSES, "max_output_tokens": "lots"}, "max_output_tokens"),
    ("/v1/responses", {**RESPONSES, "temperature": "hot"}, "temperature"),
    ("/v1/responses", {**RESPONSES, "tools": {}}, "tools"),
    ("/v1/responses", {**RESPONSES, "reasoning": {"effort": 3}}, "reasoning.effort"),
])
@pytest.mark.parametrize("model", ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7"])
def test_a_known_field_with_the_wrong_type_is_a_400_naming_it_whatever_the_route(
        gateway, fake, path, body, field, model):
    status, error = post(gateway, path, {**body, "model": model})
    assert status == 400
    detail = error["error"]
    assert f"`{field}`" in detail["message"]
    if path != "/v1/messages":
        assert detail["param"] == field
    assert fake.requests() == []  # nothing went upstream


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_a_body_without_a_model_is_a_400_that_names_model(gateway, fake, path):
    status, error = post(gateway, path, {"messages": [{"role": "user", "content": "hi"}],
                                         "input": "hi", "max_tokens": 10})
    assert status == 400
    assert error["error"]["message"] == "`model` is required"
    if path != "/v1/messages":
        assert error["error"]["param"] == "model"
    assert fake.requests() == []
