"""Gemini's codec pair against the hub, composed as routes compose it: a Gemini client's request
on every wire, every wire's answer (whole and streamed) to a Gemini client, the Google wire's
answer to every client, and a streamed refusal reaching every client whatever wire it came on."""
from __future__ import annotations

import json

import pytest

from gateway.errors import GatewayError
from gateway.translate import gemini_request
from gateway.translate.gemini_request import SKIP_SIGNATURE
from gateway.translate.sse import SSEParser
from tests import translations

MODEL = "glm-5.1"
# An id the model catalogue does not know: its effort passes through unfitted (model_limits.py).
THINKER = "thinker-1"
REFUSAL = "I can't help with that."


def gemini_body(contents=None, **fields) -> dict:
    return {"model": fields.pop("model", MODEL),
            "contents": contents or [{"role": "user", "parts": [{"text": "hi"}]}], **fields}


def to_chat(body: dict) -> dict:
    return translations.request("gemini", "openai", body)


def refused(body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        to_chat(body)
    assert caught.value.status == 400
    return caught.value


# ---- requests: Gemini client -> hub ---------------------------------------------------------

def test_a_tool_loop_with_thoughts_and_signatures_becomes_a_chat_conversation():
    body = gemini_body([
        {"role": "user", "parts": [{"text": "list files"}]},
        {"role": "model", "parts": [
            {"text": "I should run ls", "thought": True},
            {"functionCall": {"id": "c-1", "name": "run_shell_command",
                              "args": {"command": "ls"}},
             "thoughtSignature": SKIP_SIGNATURE}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "c-1", "name": "run_shell_command",
                                  "response": {"output": "a.txt"}}},
            {"text": "and now?"}]},
        {"role": "model", "parts": [{"thoughtSignature": SKIP_SIGNATURE}, {"text": "done"}]},
    ], systemInstruction={"parts": [{"text": "be brief"}]})

    messages = to_chat(body)["messages"]

    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": None, "reasoning_content": "I should run ls",
         "tool_calls": [{"id": "c-1", "type": "function", "function": {
             "name": "run_shell_command", "arguments": '{"command":"ls"}'}}]},
        {"role": "tool", "tool_call_id": "c-1", "content": '{"output":"a.txt"}'},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "done"},
    ]


def test_calls_without_ids_are_paired_with_their_responses_by_name_in_order():
    body = gemini_body([
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"n": 1}}},
                                    {"functionCall": {"name": "f", "args": {"n": 2}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": 1}}},
                                   {"functionResponse": {"name": "f", "response": {"r": 2}}}]},
    ])
    messages = to_chat(body)["messages"]
    ids = [call["id"] for call in messages[1]["tool_calls"]]
    assert len(set(ids)) == 2
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] == [
        (ids[0], '{"r":1}'), (ids[1], '{"r":2}')]


def test_inline_images_become_data_urls():
    body = gemini_body([{"role": "user", "parts": [
        {"text": "what is this"}, {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]}])
    assert to_chat(body)["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]


def test_declarations_with_openapi_types_become_json_schema_tools():
    body = gemini_body(tools=[
        {"functionDeclarations": [
            {"name": "read_file", "description": "read",
             "parameters": {"type": "OBJECT", "properties": {
                 "path": {"type": "STRING", "nullable": True},
                 "lines": {"type": "ARRAY", "items": {"type": "INTEGER"}}},
                 "required": ["path"], "propertyOrdering": ["path", "lines"]}},
            {"name": "glob", "parametersJsonSchema": {"type": "object", "properties": {
                "pattern": {"type": "string"}}}}]},
        {"googleSearch": {}}])
    out = to_chat(body)
    assert out["tools"] == [
        {"type": "function", "function": {"name": "read_file", "description": "read",
                                          "parameters": {"type": "object", "properties": {
                                              "path": {"type": ["string", "null"]},
                                              "lines": {"type": "array",
                                                        "items": {"type": "integer"}}},
                                              "required": ["path"]}}},
        {"type": "function", "function": {"name": "glob", "parameters": {
            "type": "object", "properties": {"pattern": {"type": "string"}}}}}]
    assert "googleSearch" not in json.dumps(out)
    assert gemini_request.to_hub(body)["dropped_tools"] == ["googleSearch"]  # for the log


@pytest.mark.parametrize("config, choice, names", [
    ({"mode": "AUTO"}, "auto", ["a", "b"]),
    ({"mode": "NONE"}, "none", ["a", "b"]),
    ({"mode": "ANY"}, "required", ["a", "b"]),
    ({"mode": "ANY", "allowedFunctionNames": ["b"]},
     {"type": "function", "function": {"name": "b"}}, ["b"]),
    ({"mode": "AUTO", "allowedFunctionNames": ["a"]}, "auto", ["a"]),
])
def test_function_calling_modes_and_allowed_names(config, choice, names):
    body = gemini_body(tools=[{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}],
                       toolConfig={"functionCallingConfig": config})
    out = to_chat(body)
    assert out["tool_choice"] == choice
    assert [tool["function"]["name"] for tool in out["tools"]] == names


def test_generation_config_maps_to_chat_sampling_fields():
    out = to_chat(gemini_body(model=THINKER, generationConfig={
        "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 300,
        "stopSequences": ["END"], "candidateCount": 1, "seed": 7,
        "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "HIGH"},
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "NUMBER"}}}},
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]))
    assert {key: out[key] for key in ("temperature", "top_p", "max_tokens", "stop", "seed",
                                      "reasoning_effort", "response_format")} == {
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 300, "stop": ["END"], "seed": 7,
        "reasoning_effort": "high",
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"a": {"type": "number"}}}}}}
    assert "top_k" not in out and "safetySettings" not in out


@pytest.mark.parametrize("budget, effort", [(0, "none"), (1024, "low"), (8192, "medium"),
                                            (24576, "high")])
def test_a_thinking_budget_becomes_an_effort(budget, effort):
    # The google-genai SDK spells this one in snake_case: Google's parser takes both.
    out = to_chat(gemini_body(model=THINKER,
                              generationConfig={"thinkingConfig": {"thinking_budget": budget}}))
    assert out["reasoning_effort"] == effort


@pytest.mark.parametrize("body, field", [
    (gemini_body(generationConfig={"candidateCount": 2}), "generationConfig.candidateCount"),
    (gemini_body([{"role": "user", "parts": [{"executableCode": {"code": "1"}}]}]),
     "contents[0].parts[0]"),
    (gemini_body([{"role": "user", "parts": [{"video": "x"}]}]), "contents[0].parts[0]"),
    (gemini_body([{"role": "robot", "parts": [{"text": "x"}]}]), "contents[0].role"),
    (gemini_body([{"role": "user", "parts": [{"functionResponse": {"name": "f",
                                                                    "response": {}}}]}]),
     "contents[0].parts[0].functionResponse"),
    (gemini_body([{"role": "user", "parts": [{"inlineData": {"mimeType": "audio/wav",
                                                             "data": "AA"}}]}]),
     "contents[0].parts[0]"),
    ({"model": MODEL}, "contents"),
    (gemini_body(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}},
                 tools=[{"functionDeclarations": [{"name": "a"}]}]),
     "toolConfig.functionCallingConfig.mode"),
])
def test_what_the_hub_cannot_carry_is_a_400_naming_the_field(body, field):
    assert refused(body).param == field


# ---- requests: hub -> Google wire -----------------------------------------------------------

def test_a_chat_conversation_on_the_google_wire():
    body = {"model": MODEL, "stream": True, "max_tokens": 100, "temperature": 0.1,
            "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {}}}}],
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "reasoning_content": "hmm",
                 "tool_calls": [{"id": "c1", "type": "function",
                                 "function": {"name": "f", "arguments": '{"x":1}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "plain text result"},
                {"role": "user", "content": [{"type": "text", "text": "and?"}, {
                    "type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]}]}

    out = translations.request("openai", "gemini", body)

    assert "model" not in out and "stream" not in out  # the URL carries them
    assert out["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": 1}, "id": "c1"},
                                     "thoughtSignature": SKIP_SIGNATURE}]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "c1", "name": "f",
                                  "response": {"output": "plain text result"}}},
            {"text": "and?"}, {"inlineData": {"mimeType": "image/png", "data": "AAA"}}]}]
    assert out["tools"] == [{"functionDeclarations": [
        {"name": "f", "parametersJsonSchema": {"type": "object", "properties": {}}}]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert out["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.1,
                                       "thinkingConfig": {"includeThoughts": True}}


# ---- answers: every wire -> a Gemini client -------------------------------------------------

CHAT_ANSWER = {"id": "x", "model": MODEL, "choices": [{"message": {
    "content": "hello", "reasoning_content": "thinking", "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": '{"a":1}'}}]},
    "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 7,
              "prompt_tokens_details": {"cached_tokens": 4},
              "completion_tokens_details": {"reasoning_tokens": 3}}}


@pytest.mark.parametrize("thoughts", [True, False])
def test_a_whole_chat_answer_for_a_gemini_client(thoughts):
    body = gemini_body(generationConfig={"thinkingConfig": {"includeThoughts": thoughts}})
    raw, _ = translations.answer("openai", "gemini", json.dumps(CHAT_ANSWER).encode(), body,
                                 MODEL)
    answer = json.loads(raw)
    expected_parts = [{"text": "hello"}, {"functionCall": {"id": "c1", "name": "f",
                                                           "args": {"a": 1}}}]
    if thoughts:
        expected_parts.insert(0, {"text": "thinking", "thought": True})
    assert answer["candidates"] == [{"content": {"role": "model", "parts": expected_parts},
                                     "index": 0, "finishReason": "STOP"}]
    assert answer["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 4,
                                       "thoughtsTokenCount": 3, "cachedContentTokenCount": 4,
                                       "totalTokenCount": 17}
    assert answer["modelVersion"] == MODEL and answer["responseId"] == "x"


@pytest.mark.parametrize("finish, reason", [("stop", "STOP"), ("length", "MAX_TOKENS"),
                                            ("content_filter", "SAFETY")])
def test_finish_reasons_for_a_gemini_client(finish, reason):
    raw = json.dumps({"choices": [{"message": {"content": "x"}, "finish_reason": finish}]})
    answer, _ = translations.answer("openai", "gemini", raw.encode(), gemini_body(), MODEL)
    assert json.loads(answer)["candidates"][0]["finishReason"] == reason


def chat_chunk(delta=None, finish=None, **fields) -> bytes:
    body = {"id": "x", "model": MODEL,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **fields}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def tool_stream() -> list[bytes]:
    return [
        chat_chunk({"reasoning_content": "hm"}),
        chat_chunk({"content": "Hel"}), chat_chunk({"content": "lo"}),
        chat_chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {
            "name": "f", "arguments": '{"a"'}}]}),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chat_chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {
            "name": "g", "arguments": "{}"}}]}, "tool_calls"),
        b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}\n\n',
        b"data: [DONE]\n\n"]


def sse_chunks(out: bytes) -> list[dict]:
    return [json.loads(data) for _, data in SSEParser().feed(out)]


def test_a_stream_sends_each_call_whole_and_usage_last():
    body = gemini_body(stream=True, alt="sse",
                       generationConfig={"thinkingConfig": {"includeThoughts": True}})
    stream = translations.stream("openai", "gemini", body, MODEL)
    out = b"".join(stream.feed(piece) for piece in tool_stream()) + stream.end()

    chunks = sse_chunks(out)
    parts = [part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]]
    assert parts == [{"text": "hm", "thought": True}, {"text": "Hel"}, {"text": "lo"},
                     {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}},
                     {"functionCall": {"id": "c2", "name": "g", "args": {}}}, {"text": ""}]
    assert [("usageMetadata" in c, c["candidates"][0].get("finishReason")) for c in chunks] \
        == [(False, None)] * 4 + [(True, "STOP")]
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 9,
                                           "totalTokenCount": 14}


def test_without_alt_sse_the_stream_is_one_json_array():
    stream = translations.stream("openai", "gemini", gemini_body(stream=True), MODEL)
    out = b"".join(stream.feed(piece) for piece in tool_stream()) + stream.end()
    chunks = json.loads(out)
    assert [c["candidates"][0].get("finishReason") for c in chunks][-1] == "STOP"
    assert "".join(part.get("text", "") for c in chunks
                   for part in c["candidates"][0]["content"]["parts"]) == "Hello"


@pytest.mark.parametrize("alt", ["sse", None])
def test_a_broken_stream_ends_with_googles_error_object(alt):
    stream = translations.stream("openai", "gemini", gemini_body(stream=True, alt=alt), MODEL)
    out = stream.feed(chat_chunk({"content": "Hel"})) + stream.end()
    chunks = sse_chunks(out) if alt else json.loads(out)
    assert chunks[-1]["error"]["status"] == "UNAVAILABLE"
    assert chunks[-1]["error"]["code"] == 502
    assert stream.failure[0] == 502


# ---- answers: the Google wire -> every client -----------------------------------------------

GOOGLE_ANSWER = {"candidates": [{"content": {"role": "model", "parts": [
    {"text": "plan", "thought": True}, {"text": "hello"},
    {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4,
                      "thoughtsTokenCount": 3, "totalTokenCount": 17},
    "modelVersion": "gem-1", "responseId": "r1"}


def test_a_whole_google_answer_reaches_a_chat_client():
    raw, answer = translations.answer("gemini", "openai", json.dumps(GOOGLE_ANSWER).encode())
    message = json.loads(raw)["choices"][0]
    assert message["message"]["content"] == "hello"
    assert message["message"]["reasoning_content"] == "plan"
    function = message["message"]["tool_calls"][0]["function"]
    assert (function["name"], json.loads(function["arguments"])) == ("f", {"a": 1})
    assert message["finish_reason"] == "tool_calls"
    assert (answer.usage.input_tokens, answer.usage.output_tokens,
            answer.usage.reasoning_tokens) == (10, 7, 3)


def google_event(body: dict) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\r\n\r\n"


def google_stream(*parts, finish="STOP") -> list[bytes]:
    events = [google_event({"candidates": [{"content": {"role": "model", "parts": [part]}}],
                            "responseId": "r1", "modelVersion": "gem-1"}) for part in parts]
    events.append(google_event({"candidates": [{"content": {"parts": [{"text": ""}]},
                                                "finishReason": finish}],
                                "usageMetadata": {"promptTokenCount": 3,
                                                  "candidatesTokenCount": 2}}))
    return events


def test_a_google_stream_reaches_an_anthropic_client():
    stream = translations.stream("gemini", "anthropic", {}, "gem-1")
    out = b"".join(stream.feed(e) for e in google_stream(
        {"text": "hel"}, {"text": "lo"},
        {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}})) + stream.end()
    events = [json.loads(data) for _, data in SSEParser().feed(out)]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "hello"
    assert any(e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use"
               for e in events)
    assert [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"] == [
        "tool_use"]
    assert stream.usage == (3, 2)


def test_a_google_stream_that_ends_without_a_finish_reason_was_cut():
    stream = translations.stream("gemini", "openai", {}, "gem-1")
    out = stream.feed(google_stream({"text": "hel"})[0]) + stream.end()
    assert b'"error"' in out and stream.failure[0] == 502


# ---- refusals: every wire's, to every client ------------------------------------------------

def anthropic_event(kind: str, **fields) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


def responses_event(kind: str, **fields) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


REFUSAL_STREAMS = {
    # OpenAI's `refusal` delta, where the content would be.
    "openai": [chat_chunk({"role": "assistant", "content": ""}),
               chat_chunk({"refusal": "I can't "}),
               chat_chunk({"refusal": "help with that."}, "stop"), b"data: [DONE]\n\n"],
    # Anthropic's refusal is its text, then stop_reason `refusal`.
    "anthropic": [
        anthropic_event("message_start", message={"id": "m", "model": "mm",
                                                  "usage": {"input_tokens": 1}}),
        anthropic_event("content_block_start", index=0, content_block={"type": "text",
                                                                       "text": ""}),
        anthropic_event("content_block_delta", index=0, delta={"type": "text_delta",
                                                               "text": REFUSAL}),
        anthropic_event("content_block_stop", index=0),
        anthropic_event("message_delta", delta={"stop_reason": "refusal"},
                        usage={"output_tokens": 5}),
        anthropic_event("message_stop")],
    "responses": [
        responses_event("response.created", response={"id": "r", "model": "gpt-5.6-luna"}),
        responses_event("response.refusal.delta", output_index=0, item_id="m", content_index=0,
                        delta=REFUSAL),
        responses_event("response.completed", response={"id": "r", "status": "completed",
                                                        "output": []})],
    "gemini": google_stream({"text": REFUSAL}, finish="SAFETY"),
}
CLIENT_BODIES = {"openai": {}, "anthropic": {}, "responses": {},
                 "gemini": gemini_body(stream=True, alt="sse")}


def client_text(client: str, out: bytes) -> str:
    """The answer text a client of `client`'s protocol reads from its stream."""
    events = [json.loads(data) for _, data in SSEParser().feed(out) if data != b"[DONE]"]
    if client == "openai":
        return "".join(e["choices"][0]["delta"].get("content") or ""
                       for e in events if e.get("choices"))
    if client == "anthropic":
        return "".join(e["delta"].get("text", "") for e in events
                       if e["type"] == "content_block_delta")
    if client == "responses":
        return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    return "".join(part.get("text", "") for e in events
                   for part in e["candidates"][0]["content"]["parts"] if not part.get("thought"))


# Every (wire, client) pair that translates (a same-protocol route relays the bytes untouched).
TRANSLATED_PAIRS = [(wire, client) for wire in REFUSAL_STREAMS for client in CLIENT_BODIES
                    if wire != client or wire == "gemini"]


@pytest.mark.parametrize("wire, client", TRANSLATED_PAIRS)
def test_a_streamed_refusal_reaches_every_client(wire, client):
    stream = translations.stream(wire, client, CLIENT_BODIES[client], MODEL)
    out = b"".join(stream.feed(piece) for piece in REFUSAL_STREAMS[wire]) + stream.end()
    assert client_text(client, out) == REFUSAL
    assert stream.failure is None
