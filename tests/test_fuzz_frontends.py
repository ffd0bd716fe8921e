"""The four frontends under fuzz: malformed bodies and odd headers get 4xx answers in the frontend's
own error shape, never a 5xx, and the gateway keeps serving.

One gateway process serves the whole module (in front of the session's fake upstream); every
example is one real HTTP request to it. Bodies range from random bytes and random JSON values to
requests that are almost right (a real model, messages with fields of the wrong type) so that
validation, routing and every request translator are all reached.
"""
import copy
import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway_process import GatewayProcess

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages",
         "responses": "/v1/responses",
         "gemini": "/v1beta/models/opencode-go/glm-5.1:streamGenerateContent?alt=sse"}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_gateway(fake_upstream, tmp_path_factory):
    fake_upstream.reset()  # no failing key an earlier test module left behind
    gateway = GatewayProcess(fake_upstream.url, tmp_dir=tmp_path_factory.mktemp("fuzz")).start()
    yield gateway
    assert gateway.alive(), gateway.log()[-3000:]
    gateway.stop()


class Client:
    """One keep-alive connection to the gateway, opened again whenever the server closed it."""

    def __init__(self, port: int):
        self.port = port
        self.connection = None

    def send(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                answer = self.connection.getresponse()
                data = answer.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if answer.will_close:
                self.connection.close()
                self.connection = None
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data


@pytest.fixture(scope="module")
def client(fuzz_gateway):
    return Client(fuzz_gateway.port)


def assert_answer_in_shape(frontend: str, status: int, headers: dict, data: bytes) -> None:
    assert status < 500, (status, data[:2000])
    if status == 200:
        return
    assert 400 <= status < 500, (status, data[:500])
    assert headers.get("content-type", "").startswith("application/json"), (status, headers)
    answer = json.loads(data)
    if frontend in ("openai", "responses"):
        assert set(answer) == {"error"}, answer
        assert set(answer["error"]) == {"message", "type", "param", "code"}, answer
    elif frontend == "gemini":
        assert set(answer) == {"error"}, answer
        assert {"code", "message", "status"} <= set(answer["error"]), answer
        assert answer["error"]["code"] == status, answer
    else:
        assert answer["type"] == "error" and set(answer["error"]) == {"type", "message"}, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]


# --- strategies ------------------------------------------------------------------------------

json_leaf = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda children: st.lists(children, max_size=4)
                          | st.dictionaries(st.text(max_size=10), children, max_size=4),
                          max_leaves=12)


models = st.sampled_from(["opencode-go/glm-5.1", "opencode-go/minimax-m2.7", "glm-5",
                          "minimax-m2.5", "opencode-go.1:kimi-k2.5", "opencode-go/glm-5.1",
                          "opencode-go/minimax-m2.7", "opencode-go.9:glm-5",
                          "opencode-go/brand-new-model", "no-such-backend:x",
                          "opencode-go/gpt-5.6-luna"])
words = st.text(max_size=30)
part = st.fixed_dictionaries({"type": st.sampled_from([
    "text", "text", "text", "image_url", "image", "input_audio", "file", "tool_use",
    "tool_result", "thinking", "redacted_thinking", "document", "refusal"])}, optional={
    "text": words,
    "image_url": st.fixed_dictionaries({"url": st.sampled_from([
        "https://x.test/a.png", "data:image/png;base64,iVBORw0KGgo=", "data:",
        "data:image/png,xx", ""])}),
    "source": st.fixed_dictionaries({"type": st.sampled_from(["base64", "url", "text"])},
                                    optional={"media_type": words, "data": words, "url": words}),
    "id": words, "name": words, "input": st.dictionaries(words, words, max_size=2),
    "content": words | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": words}),
                                max_size=2),
    "tool_use_id": words, "thinking": words, "signature": words,
    "cache_control": st.just({"type": "ephemeral"}),
})
tool_call = st.fixed_dictionaries({"id": words, "type": st.just("function"),
                                   "function": st.fixed_dictionaries({
                                       "name": words,
                                       "arguments": st.sampled_from(['{"a": 1}', "{}", "", "[1]",
                                                                     "{bad", "null"])})})
message = st.fixed_dictionaries({"role": st.sampled_from(
    ["user", "user", "assistant", "assistant", "system", "developer", "tool", "function"]),
    "content": words | st.none() | st.lists(part, max_size=3)},
    optional={"tool_calls": st.lists(tool_call, max_size=2), "tool_call_id": words,
              "name": words, "reasoning_content": words})
tool = st.fixed_dictionaries({}, optional={
    "type": st.just("function"), "name": words, "description": words,
    "input_schema": st.just({"type": "object", "properties": {}}),
    "function": st.fixed_dictionaries({"name": words}, optional={
        "description": words, "parameters": st.just({"type": "object"}),
        "strict": st.booleans()})})
# Responses input items, right and wrong.
responses_part = st.fixed_dictionaries({"type": st.sampled_from([
    "input_text", "output_text", "input_image", "input_file", "refusal", "summary_text"])},
    optional={"text": words, "image_url": words, "refusal": words})
responses_item = st.fixed_dictionaries({"type": st.sampled_from([
    "message", "message", "function_call", "function_call_output", "reasoning",
    "custom_tool_call", "custom_tool_call_output", "item_reference", "web_search_call",
    "additional_tools"])}, optional={
    "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
    "content": words | st.lists(responses_part, max_size=2),
    "call_id": words, "name": words, "id": words, "input": words,
    "arguments": st.sampled_from(['{"a": 1}', "{}", "", "{bad"]),
    "output": words | st.lists(responses_part, max_size=2),
    "summary": st.lists(st.fixed_dictionaries({"type": st.just("summary_text"), "text": words}),
                        max_size=2),
    "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "name": words}),
                      max_size=2),
})
# Gemini contents and parts, right and wrong.
gemini_part = st.fixed_dictionaries({}, optional={
    "text": words, "thought": st.booleans(), "thoughtSignature": words,
    "inlineData": st.fixed_dictionaries({}, optional={
        "mimeType": st.sampled_from(["image/png", "audio/wav", ""]), "data": words}),
    "fileData": st.fixed_dictionaries({}, optional={"fileUri": words, "mimeType": words}),
    "functionCall": st.fixed_dictionaries({}, optional={
        "name": words, "id": words, "args": st.dictionaries(words, words, max_size=2)}),
    "functionResponse": st.fixed_dictionaries({}, optional={
        "name": words, "id": words, "response": st.dictionaries(words, words, max_size=2)}),
    "executableCode": st.just({"code": "print(1)"}), "videoClip": words,
})
gemini_content = st.fixed_dictionaries({"parts": st.lists(gemini_part, max_size=3)}, optional={
    "role": st.sampled_from(["user", "user", "model", "model", "function", "system"])})
gemini_declaration = st.fixed_dictionaries({"name": words}, optional={
    "description": words,
    "parameters": st.just({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}),
    "parametersJsonSchema": st.just({"type": "object"})})
plausible_body = st.fixed_dictionaries({"model": models,
                                        "messages": st.lists(message, min_size=1, max_size=4)},
                                       optional={
    "stream": st.booleans(),
    "max_tokens": st.integers(-5, 100_000),
    "max_completion_tokens": st.integers(-5, 100_000),
    "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "top_k": st.integers(0, 100),
    "n": st.integers(0, 3),
    "stop": words | st.lists(words, max_size=5),
    "stop_sequences": st.lists(words, max_size=3),
    "tools": st.lists(tool, max_size=3),
    "tool_choice": st.sampled_from(["auto", "none", "required", "any"])
    | st.fixed_dictionaries({"type": st.sampled_from(["function", "tool", "auto", "any"])},
                            optional={"name": words,
                                      "function": st.fixed_dictionaries({"name": words})}),
    "parallel_tool_calls": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "system": words | st.lists(part, max_size=2),
    "reasoning_effort": st.sampled_from(["low", "medium", "high", "none", "max", "bogus"]),
    "thinking": st.fixed_dictionaries({"type": st.sampled_from(["enabled", "disabled"])},
                                      optional={"budget_tokens": st.integers(0, 5000)}),
    "metadata": st.fixed_dictionaries({}, optional={"user_id": words}),
    "user": words, "response_format": st.just({"type": "json_object"}),
    "context_management": st.just({"edits": []}), "output_config": st.just({"effort": "low"}),
    "input": words | st.lists(responses_item, max_size=4), "instructions": words,
    "max_output_tokens": st.integers(-5, 100_000),
    "reasoning": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(
        ["low", "high", "none", "bogus"]), "summary": st.sampled_from(["auto", "detailed"])}),
    "text": st.just({"format": {"type": "json_object"}}),
    "previous_response_id": words, "store": st.booleans(),
    "contents": st.lists(gemini_content, min_size=1, max_size=4),
    "systemInstruction": words | st.fixed_dictionaries({"parts": st.lists(gemini_part,
                                                                          max_size=2)}),
    "generationConfig": st.fixed_dictionaries({}, optional={
        "temperature": st.floats(0, 2), "maxOutputTokens": st.integers(-5, 100_000),
        "candidateCount": st.integers(0, 3), "stopSequences": st.lists(words, max_size=2),
        "responseMimeType": st.sampled_from(["application/json", "text/plain"]),
        "responseSchema": st.just({"type": "OBJECT"}),
        "thinkingConfig": st.fixed_dictionaries({}, optional={
            "includeThoughts": st.booleans(), "thinkingBudget": st.integers(-1, 30_000),
            "thinkingLevel": st.sampled_from(["LOW", "HIGH", "bogus"])})}),
    "toolConfig": st.fixed_dictionaries({"functionCallingConfig": st.fixed_dictionaries(
        {}, optional={"mode": st.sampled_from(["AUTO", "ANY", "NONE", "bogus"]),
                      "allowedFunctionNames": st.lists(words, max_size=2)})}),
    "safetySettings": st.just([{"category": "HARM_CATEGORY_HARASSMENT",
                                "threshold": "BLOCK_NONE"}]),
})
gemini_tools = st.lists(st.fixed_dictionaries({}, optional={
    "functionDeclarations": st.lists(gemini_declaration, max_size=2),
    "googleSearch": st.just({})}), max_size=2)


def _slots(node):
    """(container, key) for every value inside a JSON tree, the tree's own fields included."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield node, key
        if isinstance(value, (dict, list)):
            yield from _slots(value)


@st.composite
def almost_right(draw):
    """A plausible request, in most examples with one value somewhere replaced by any JSON value:
    each check and translator meets both the right types and a wrong one."""
    body = copy.deepcopy(draw(plausible_body))  # st.just values are shared between examples
    if "contents" in body and draw(st.booleans()):
        body["tools"] = copy.deepcopy(draw(gemini_tools))
    if draw(st.integers(0, 3)):
        container, key = draw(st.sampled_from(list(_slots(body))))
        container[key] = draw(json_value)
    return body


def nested(depth: int, opener: str) -> bytes:
    close = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + close * depth).encode()


# Header names and values a client might send oddly; values are kept to what HTTP can carry.
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)
odd_headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "application/json; "
                                     "charset=latin-1", "multipart/form-data", ""]) | header_value,
    "Authorization": header_value, "x-api-key": header_value,
    "anthropic-version": header_value, "anthropic-beta": header_value,
    "x-request-id": header_value, "Accept": header_value, "Content-Encoding": header_value,
    "Expect": st.just("100-continue"),
})


# --- the fuzz --------------------------------------------------------------------------------

@pytest.mark.parametrize("frontend", ["openai", "anthropic", "responses", "gemini"])
class TestFrontendFuzz:
    @FUZZ
    @given(body=st.binary(max_size=3000))
    def test_random_bytes(self, client, frontend, body):
        assert_answer_in_shape(frontend, *client.send("POST", PATHS[frontend], body))

    @FUZZ
    @given(value=json_value)
    def test_random_json_values(self, client, frontend, value):
        body = json.dumps(value).encode()
        assert_answer_in_shape(frontend, *client.send("POST", PATHS[frontend], body))

    @FUZZ
    @given(body=almost_right())
    def test_almost_right_requests(self, client, frontend, body):
        data = json.dumps(body).encode()
        status, headers, answer = client.send("POST", PATHS[frontend], data,
                                              {"content-type": "application/json"})
        assert_answer_in_shape(frontend, status, headers, answer)

    @FUZZ
    @given(body=almost_right(), headers=odd_headers)
    def test_odd_headers(self, client, frontend, body, headers):
        data = json.dumps(body).encode()
        assert_answer_in_shape(frontend, *client.send("POST", PATHS[frontend], data, headers))

    @pytest.mark.parametrize("depth", [64, 1_000, 100_000])
    @pytest.mark.parametrize("opener", ["[", '{"a":'])
    def test_deeply_nested_json(self, client, frontend, depth, opener):
        assert_answer_in_shape(frontend, *client.send("POST", PATHS[frontend],
                                                      nested(depth, opener)))

    def test_deeply_nested_field_values(self, client, frontend):
        deep = json.loads(nested(500, "["))
        body = {"model": "opencode-go/minimax-m2.7" if frontend == "openai"
                else "opencode-go/glm-5.1", "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": deep}]}],
                "contents": [{"role": "user", "parts": [{"text": deep, "functionCall": deep}]}],
                "tools": [{"type": "function", "name": "f", "input_schema": deep,
                           "function": {"name": "f", "parameters": deep}}]}
        assert_answer_in_shape(frontend, *client.send("POST", PATHS[frontend],
                                                      json.dumps(body).encode()))

    def test_healthz_answers_afterwards(self, client, frontend, fuzz_gateway):
        assert client.send("GET", "/healthz")[0] == 200
        assert fuzz_gateway.alive()
