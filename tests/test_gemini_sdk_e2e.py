"""The google-genai Python SDK against the real gateway process, in front of the fake upstream,
on both of its API versions (`/v1beta`, which Gemini CLI uses, and `/v1`, the SDK's default with a
custom base URL): one model on each of OpenCode Go's wires a Gemini client can reach: the Chat
wire (glm-5.1), the Messages wire (minimax-m2.7) and Google's own wire (a model put there by a
config override, served by the fake's `/google/v1beta` endpoint)."""
from __future__ import annotations

import json
import urllib.request

import pytest
from google import genai
from google.genai import errors, types

from tests.fake_upstream import (REASONING_TEXT, answer_deltas, answer_text, completion_tokens,
                                 openai_tool_id, anthropic_tool_id, tool_arguments, tool_name)
from tests.http_requests import post_json

GOOGLE_MODEL = "gem-1"
MODELS = ["opencode-go/glm-5.1", "opencode-go/minimax-m2.7", f"opencode-go/{GOOGLE_MODEL}"]
VERSIONS = ["v1beta", "v1"]
OVERRIDE = ("backends:\n  opencode-go:\n    extra:\n      model_protocol_overrides:\n"
            f"        {GOOGLE_MODEL}: gemini\n")
UPSTREAM_PATHS = {"glm-5.1": "/v1/chat/completions", "minimax-m2.7": "/v1/messages",
                  GOOGLE_MODEL: f"/google/v1beta/models/{GOOGLE_MODEL}"}


@pytest.fixture
def gateway(start_gateway, fake):
    fake.models(add={GOOGLE_MODEL: "google"})
    return start_gateway(config_text=OVERRIDE)


def sdk(url: str, version: str, key: str = "anything") -> genai.Client:
    """A client (keep it in a variable: a collected client closes its connections)."""
    return genai.Client(api_key=key, http_options={"base_url": url, "api_version": version})


def upstream_path(fake) -> str:
    return fake.last_request()["path"]


def call_id(model: str, k: int) -> str:
    return anthropic_tool_id(k) if "minimax" in model else openai_tool_id(k)


THOUGHTS = types.GenerateContentConfig(
    thinking_config=types.ThinkingConfig(include_thoughts=True))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("model", MODELS)
def test_generate(gateway, fake, model, version):
    client = sdk(gateway.url, version)
    answer = client.models.generate_content(model=model, contents="[[fake: reasoning]] hi",
                                            config=THOUGHTS)

    parts = answer.candidates[0].content.parts
    assert [(part.thought, part.text) for part in parts] == [
        (True, REASONING_TEXT), (None, answer_text())]
    assert answer.text == answer_text()
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    usage = answer.usage_metadata
    assert usage.prompt_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + completion_tokens(
        reasoning=True)
    assert answer.model_version
    assert upstream_path(fake).startswith(UPSTREAM_PATHS[model.partition("/")[2]])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("model", MODELS)
def test_stream(gateway, fake, model, version):
    client = sdk(gateway.url, version)
    chunks = list(client.models.generate_content_stream(model=model,
                                                        contents="[[fake: deltas=4]] hi"))

    assert [chunk.text for chunk in chunks if chunk.text] == answer_deltas(4)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == completion_tokens(deltas=4)
    assert all(chunk.usage_metadata is None for chunk in chunks[:-1])  # usage comes last
    assert upstream_path(fake).startswith(UPSTREAM_PATHS[model.partition("/")[2]])


WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name=tool_name(0), description="the weather",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}))])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_function_call_round_trip(gateway, fake, model, stream):
    client = sdk(gateway.url, "v1beta")
    config = types.GenerateContentConfig(
        tools=[WEATHER], automatic_function_calling=types.AutomaticFunctionCallingConfig(
            disable=True))
    asked = [types.Content(role="user", parts=[types.Part(text="[[fake: tools=1]] weather?")])]
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=asked,
                                                            config=config))
        calls = [call for chunk in chunks for call in chunk.function_calls or ()]
        turn = types.Content(role="model", parts=[types.Part(function_call=call)
                                                  for call in calls])
    else:
        answer = client.models.generate_content(model=model, contents=asked, config=config)
        calls = answer.function_calls
        turn = answer.candidates[0].content

    # Each call arrives whole, with its id and its arguments as an object.
    assert [(call.id, call.name, call.args) for call in calls] == [
        (call_id(model, 0), tool_name(0), tool_arguments(0))]

    result = types.Part(function_response=types.FunctionResponse(
        id=calls[0].id, name=calls[0].name, response={"forecast": "sunny-marker"}))
    again = client.models.generate_content(
        model=model, contents=[*asked, turn, types.Content(role="user", parts=[result])],
        config=config)

    assert again.text == answer_text()
    sent = fake.last_request()["body"]
    assert "sunny-marker" in json.dumps(sent)  # the tool's result reached the model
    if "glm" in model:
        assert [(m["role"], m.get("tool_call_id")) for m in sent["messages"][-2:]] == [
            ("assistant", None), ("tool", call_id(model, 0))]


@pytest.mark.parametrize("version", VERSIONS)
def test_count_tokens(gateway, version):
    client = sdk(gateway.url, version)
    short = client.models.count_tokens(model=MODELS[0], contents="hi")
    longer = client.models.count_tokens(model=MODELS[0], contents="hi " * 400)
    assert 0 < short.total_tokens < longer.total_tokens


@pytest.mark.parametrize("version", VERSIONS)
def test_models_list_and_get(gateway, version):
    client = sdk(gateway.url, version)
    listed = [model.name for model in client.models.list()]
    assert "models/opencode-go/glm-5.1" in listed
    assert f"models/opencode-go/{GOOGLE_MODEL}" in listed

    model = client.models.get(model="opencode-go/glm-5.1")
    assert model.name == "models/opencode-go/glm-5.1"
    assert "generateContent" in model.supported_actions
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model="opencode-go/no-such-model")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def get_json(url: str, headers: dict | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as answer:
        return json.loads(answer.read())


def test_v1_models_answers_in_the_shape_the_client_speaks(gateway):
    # The same path serves OpenAI clients and google-genai's /v1 `models.list`.
    assert get_json(gateway.url + "/v1/models")["object"] == "list"
    google = get_json(gateway.url + "/v1/models", {"x-goog-api-client": "google-genai-sdk/3"})
    assert "models/opencode-go/glm-5.1" in [model["name"] for model in google["models"]]


def test_without_alt_sse_the_stream_is_googles_json_array(gateway):
    status, headers, body = post_json(
        gateway.url + "/v1beta/models/opencode-go/glm-5.1:streamGenerateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]})
    assert status == 200 and headers["content-type"].startswith("application/json")
    chunks = json.loads(body)
    assert "".join(chunk["candidates"][0]["content"]["parts"][0].get("text", "")
                   for chunk in chunks) == answer_text()


GENERATE = "/v1beta/models/opencode-go/glm-5.1:generateContent"


@pytest.mark.parametrize("body, field", [
    ({}, "contents"),
    ({"contents": "hi"}, "contents"),
    ({"contents": [{"role": "user", "parts": "hi"}]}, "contents[0].parts"),
    ({"contents": [{"role": "user", "parts": [{"audioClip": "x"}]}]}, "contents[0].parts[0]"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"temperature": "hot"}},
     "generationConfig.temperature"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"candidateCount": 3}},
     "generationConfig.candidateCount"),
])
def test_bad_requests_are_400s_naming_the_field(gateway, fake, body, field):
    status, _, raw = post_json(gateway.url + GENERATE, body)
    error = json.loads(raw)["error"]
    assert (status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert f"`{field}`" in error["message"]
    assert error["details"][0]["fieldViolations"][0]["field"] == field
    assert fake.requests() == []


def test_upstream_rate_limit_is_resource_exhausted_with_retry_info(gateway):
    status, _, raw = post_json(gateway.url + GENERATE, {
        "contents": [{"parts": [{"text": "[[fake: error=429 retry_after=7]] hi"}]}]})
    error = json.loads(raw)["error"]
    assert (status, error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"} \
        in error["details"]


def test_unknown_paths_and_methods_answer_in_googles_shape(gateway):
    for path in ("/v1beta/models/opencode-go/glm-5.1:embedContent", "/v1beta/files"):
        status, _, raw = post_json(gateway.url + path, {"contents": []})
        assert (status, json.loads(raw)["error"]["status"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("how", ["header", "query", "bearer"])
def test_a_locked_gateway_takes_the_key_however_google_clients_send_it(start_gateway, fake, how):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "client-secret-key"})
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    url = gateway.url + GENERATE
    for key, expected in (("wrong-key", 401), ("client-secret-key", 200)):
        if how == "query":
            status, _, raw = post_json(f"{url}?key={key}", body)
        elif how == "header":
            status, _, raw = post_json(url, body, {"x-goog-api-key": key})
        else:
            status, _, raw = post_json(url, body, {"authorization": f"Bearer {key}"})
        assert status == expected, raw
    assert json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"] == answer_text()
    assert fake.last_request()["key"] == "test-key"  # the client's key never goes upstream
    gateway.access_lines(at_least=2)
    assert "client-secret-key" not in gateway.log()


def test_the_sdk_on_a_locked_gateway(start_gateway):
    gateway = start_gateway(env={"GATEWAY_API_KEYS": "client-secret-key"})
    client = sdk(gateway.url, "v1beta", key="client-secret-key")
    assert client.models.generate_content(model=MODELS[0], contents="hi").text == answer_text()
    wrong = sdk(gateway.url, "v1beta", key="wrong")
    with pytest.raises(errors.ClientError) as caught:
        wrong.models.generate_content(model=MODELS[0], contents="hi")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")


def test_the_side_task_rule_in_the_docs_sends_gemini_ids_to_an_opencode_model(start_gateway,
                                                                              fake):
    # docs/gemini.md: Gemini CLI compresses long conversations on `gemini-3-pro-preview`.
    gateway = start_gateway(rules_dir="docs/rules/gemini_cli")
    client = sdk(gateway.url, "v1beta")
    assert client.models.generate_content(model="gemini-3-pro-preview",
                                          contents="summarise").text == answer_text()
    assert fake.last_request()["body"]["model"] == "glm-5.1"
    # Other protocols' clients still get the 404 that lists the served models.
    status, _, _ = post_json(gateway.url + "/v1/chat/completions", {
        "model": "gemini-3-pro-preview", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404
