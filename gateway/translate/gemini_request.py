"""Google Gemini `generateContent` requests ⇄ the hub (a Chat Completions body).

`to_hub` reads a Gemini client's request (Gemini CLI, the google-genai SDKs) for a model on
another wire; `from_hub` writes the request a model put on Google's wire by a config override
receives. Both run once per request on plain dicts and never change their input; a shape the hub
cannot carry is a 400 naming the field (`contents[2].parts[0]`).

The model and whether the answer streams are not in a Gemini body but in the URL
(`models/<id>:streamGenerateContent`): the frontend writes them into the body as `model` and
`stream` (and `alt`, the stream's framing) before anything reads it; `from_hub` never emits them.

Gemini → hub:
- `systemInstruction` (a Content or a string) → the first system message.
- `contents`: role `user` (or none) → user messages, `model` → assistant messages. Parts:
  `text` (with `thought: true` → the assistant turn's `reasoning_content`), `inlineData` → a
  data-URL image, `fileData` → an image URL, `functionCall` {id, name, args} → the turn's
  `tool_calls`, `functionResponse` {id, name, response} → a `tool` message (its `response`
  object as JSON text). A call without an `id` gets one, and a response without one answers the
  oldest open call of its name. `thoughtSignature` (including Gemini CLI's
  "skip_thought_signature_validator") is Google's own bookkeeping and is dropped; a part holding
  only a signature is skipped. Any other part kind is a 400.
- `tools[].functionDeclarations` → function tools, `parameters` (OpenAPI subset, upper-case types
  such as `OBJECT`) normalised to JSON Schema, or `parametersJsonSchema` as it is. Google's own
  tools (`googleSearch`, `codeExecution`, …) run only at Google: dropped and reported.
- `toolConfig.functionCallingConfig`: mode AUTO → `auto`, ANY → `required` (one allowed name →
  that function), NONE → `none`; `allowedFunctionNames` keeps only those tools.
- `generationConfig`: temperature, topP, maxOutputTokens → `max_tokens`, stopSequences →
  `stop`, presencePenalty, frequencyPenalty, seed; `responseMimeType: application/json` with
  `responseSchema` / `responseJsonSchema` → `response_format`; `thinkingConfig.thinkingLevel` or
  `thinkingBudget` → `reasoning_effort`. `topK` has no Chat field and is dropped;
  `candidateCount` above 1 is a 400 (one answer per request). `safetySettings` and
  `cachedContent` have no meaning here and are ignored.

Hub → Gemini: system messages → `systemInstruction`, user and assistant turns → `contents`
(consecutive turns of one role merged), `tool_calls` → `functionCall` parts (the first of a turn
with `thoughtSignature: "skip_thought_signature_validator"`, Google's documented way to replay
calls it did not sign), `tool` messages → `functionResponse` parts named after their call,
function tools → `functionDeclarations` with `parametersJsonSchema`, `tool_choice` →
`toolConfig`, and the sampling fields into `generationConfig` with `thinkingConfig.includeThoughts`
so the reasoning comes back. Earlier reasoning is not sent (Google reads only its own signed
thoughts); `n` other than 1 is a 400.
"""
from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.translate.hub import (append_turn, function_tool, hub_function, hub_messages,
                                   hub_parts, hub_text, hub_tool_call_id, tool_list, tool_name,
                                   user_content)

_encode_json = msgspec.json.Encoder().encode
_SEPARATOR = "\n\n"
SKIP_SIGNATURE = "skip_thought_signature_validator"
# Part fields that carry no content of their own.
_PART_BOOKKEEPING = frozenset({"thought", "thoughtSignature", "partMetadata", "videoMetadata",
                               "mediaResolution", "thought_signature", "part_metadata",
                               "video_metadata", "media_resolution"})
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
_EFFORT_BY_LEVEL = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
_LEVEL_BY_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
                    "xhigh": "high"}


def field(value: dict, name: str) -> Any:
    """`value[name]`, or its snake_case spelling: Google's JSON parser takes both (proto field
    names), and the google-genai SDK sends `thinkingConfig.include_thoughts`."""
    found = value.get(name)
    if found is None:
        found = value.get("".join("_" + c.lower() if c.isupper() else c for c in name))
    return found


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param)


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _bad(f"`{where}` must be an object", where)
    return value


# ---- Gemini client -> hub -------------------------------------------------------------------

def to_hub(body: dict) -> dict:
    """The hub (Chat Completions) body for a Gemini request (`model`, `stream` as the frontend
    wrote them from the URL)."""
    messages: list[dict] = []
    system = field(body, "systemInstruction")
    if system is not None:
        text = _system_text(system, "systemInstruction")
        if text:
            messages.append({"role": "system", "content": text})
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("`contents` is required: a list of {role, parts} objects with at least one "
                   "entry", "contents")
    _Turns(messages).read(contents)

    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools, dropped = _tools(body.get("tools"))
    if tools:
        choice, out["tools"] = _tool_config(field(body, "toolConfig"), tools)
        if choice is not None:
            out["tool_choice"] = choice
    if dropped:
        out["dropped_tools"] = dropped  # read by the route for its log line, not sent upstream
    _generation_config(field(body, "generationConfig"), out)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _system_text(system: Any, where: str) -> str:
    if isinstance(system, str):
        return system
    parts = _object(system, where).get("parts")
    if not isinstance(parts, list):
        raise _bad(f"`{where}.parts` must be a list of text parts", f"{where}.parts")
    texts = []
    for j, part in enumerate(parts):
        text = _object(part, f"{where}.parts[{j}]").get("text")
        if not isinstance(text, str):
            raise _bad(f"`{where}.parts[{j}].text` must be a string: a system instruction holds "
                       "text only", f"{where}.parts[{j}].text")
        texts.append(text)
    return _SEPARATOR.join(text for text in texts if text)


class _Turns:
    """Reads `contents` into hub messages, keeping call ids paired with their responses."""

    def __init__(self, out: list[dict]):
        self.out = out
        self.open_calls: dict[str, list[str]] = {}  # function name -> ids not yet answered
        self.count = 0

    def read(self, contents: list) -> None:
        for i, content in enumerate(contents):
            where = f"contents[{i}]"
            content = _object(content, where)
            role = content.get("role") or "user"
            if role not in ("user", "model", "function"):
                raise _bad(f"`{where}.role` must be \"user\" or \"model\", got {role!r}",
                           f"{where}.role")
            parts = content.get("parts")
            if not isinstance(parts, list):
                raise _bad(f"`{where}.parts` must be a list of parts", f"{where}.parts")
            if role == "model":
                self.model_turn(parts, where)
            else:
                self.user_turn(parts, where)

    def model_turn(self, parts: list, where: str) -> None:
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict] = []
        for j, part in enumerate(parts):
            at = f"{where}.parts[{j}]"
            kind = _kind(part, at)
            if kind == "text":
                (thoughts if part.get("thought") is True else texts).append(_text(part, at))
            elif kind == "functionCall":
                calls.append(self.call(field(part, "functionCall"), f"{at}.functionCall"))
            elif kind is not None:
                raise _bad(f"`{at}` is a {kind} part, which a model turn cannot hold here "
                           "(supported: text, thought text, functionCall)", at)
        text = "".join(texts)
        if not (text or calls or thoughts):
            return
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        if calls:
            message["tool_calls"] = calls
        elif not text:
            message["content"] = ""
        self.out.append(message)

    def call(self, call: Any, where: str) -> dict:
        call = _object(call, where)
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"`{where}.name` must be the function's name", f"{where}.name")
        args = call.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise _bad(f"`{where}.args` must be an object", f"{where}.args")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            self.count += 1
            call_id = f"call_{self.count}_{name}"
        self.open_calls.setdefault(name, []).append(call_id)
        return {"id": call_id, "type": "function",
                "function": {"name": name, "arguments": _encode_json(args).decode()}}

    def user_turn(self, parts: list, where: str) -> None:
        content: list[dict] = []
        for j, part in enumerate(parts):
            at = f"{where}.parts[{j}]"
            kind = _kind(part, at)
            if kind == "text":
                text = _text(part, at)
                if text and part.get("thought") is not True:
                    content.append({"type": "text", "text": text})
            elif kind == "inlineData":
                data = _object(field(part, "inlineData"), f"{at}.inlineData")
                mime, payload = field(data, "mimeType"), data.get("data")
                if not isinstance(mime, str) or not isinstance(payload, str):
                    raise _bad(f"`{at}.inlineData` needs string `mimeType` and base64 `data`",
                               f"{at}.inlineData")
                content.append(_media(f"data:{mime};base64,{payload}", mime, at))
            elif kind == "fileData":
                data = _object(field(part, "fileData"), f"{at}.fileData")
                uri, mime = field(data, "fileUri"), field(data, "mimeType") or "image/*"
                if not isinstance(uri, str) or not uri:
                    raise _bad(f"`{at}.fileData.fileUri` must be a URL", f"{at}.fileData.fileUri")
                content.append(_media(uri, mime, at))
            elif kind == "functionResponse":
                self.flush_user(content)
                content = []
                self.out.append(self.response(field(part, "functionResponse"),
                                              f"{at}.functionResponse"))
            elif kind is not None:
                raise _bad(f"`{at}` is a {kind} part, which a user turn cannot hold here "
                           "(supported: text, inlineData, fileData, functionResponse)", at)
        self.flush_user(content)

    def flush_user(self, content: list[dict]) -> None:
        if content:
            self.out.append({"role": "user", "content": user_content(content)})

    def response(self, response: Any, where: str) -> dict:
        response = _object(response, where)
        name = response.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"`{where}.name` must name the function this answers", f"{where}.name")
        open_ids = self.open_calls.get(name) or []
        call_id = response.get("id")
        if isinstance(call_id, str) and call_id:
            if call_id in open_ids:
                open_ids.remove(call_id)
        elif open_ids:
            call_id = open_ids.pop(0)
        else:
            raise _bad(f"`{where}` answers no earlier functionCall named {name!r}: send the "
                       "model turn that called it, or the call's `id`", where)
        result = response.get("response", {})
        if not isinstance(result, dict):
            raise _bad(f"`{where}.response` must be an object", f"{where}.response")
        return {"role": "tool", "tool_call_id": call_id,
                "content": _encode_json(result).decode()}


_KINDS = {"text": "text", "inlineData": "inlineData", "fileData": "fileData",
          "functionCall": "functionCall", "functionResponse": "functionResponse",
          "executableCode": "executableCode", "codeExecutionResult": "codeExecutionResult",
          "inline_data": "inlineData", "file_data": "fileData", "function_call": "functionCall",
          "function_response": "functionResponse"}


def _kind(part: Any, where: str) -> str | None:
    """The part's kind (its one data field); None for a part that carries only bookkeeping."""
    part = _object(part, where)
    for key in part:
        kind = _KINDS.get(key)
        if kind is not None:
            return kind
    unknown = [key for key in part if key not in _PART_BOOKKEEPING]
    if unknown:
        raise _bad(f"`{where}` has no part kind this gateway knows ({unknown[0]!r}; supported: "
                   "text, inlineData, fileData, functionCall, functionResponse)", where)
    return None


def _text(part: dict, where: str) -> str:
    text = part["text"]
    if not isinstance(text, str):
        raise _bad(f"`{where}.text` must be a string", f"{where}.text")
    return text


def _media(url: str, mime: str, where: str) -> dict:
    if not mime.startswith("image/"):
        raise _bad(f"`{where}` is {mime} data; the models behind this gateway read text and "
                   "images only", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _tools(tools: Any) -> tuple[list[dict], list[str]]:
    out: list[dict] = []
    dropped: list[str] = []
    for i, tool in enumerate(tool_list(tools)):
        where = f"tools[{i}]"
        tool = _object(tool, where)
        declarations = field(tool, "functionDeclarations")
        if declarations is not None:
            if not isinstance(declarations, list):
                raise _bad(f"`{where}.functionDeclarations` must be a list",
                           f"{where}.functionDeclarations")
            for j, declaration in enumerate(declarations):
                out.append(_function(declaration, f"{where}.functionDeclarations[{j}]"))
        dropped += [name for name in tool
                    if name not in ("functionDeclarations", "function_declarations")]
    return out, dropped


def _function(declaration: Any, where: str) -> dict:
    declaration = _object(declaration, where)
    name = tool_name(declaration, where)
    schema = field(declaration, "parametersJsonSchema")
    if schema is None and declaration.get("parameters") is not None:
        schema = json_schema(_object(declaration["parameters"], f"{where}.parameters"))
    elif schema is not None:
        _object(schema, f"{where}.parametersJsonSchema")
    return function_tool(name, declaration.get("description"), schema or None)


# Google's Schema fields with no JSON Schema meaning.
_SCHEMA_DROPPED = frozenset({"propertyOrdering", "nullable", "example"})
_SCHEMA_NESTED = ("items", "not", "additionalProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def json_schema(schema: dict) -> dict:
    """Google's OpenAPI-subset Schema (`type: "OBJECT"`, `nullable`) as JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_DROPPED:
            continue
        if key == "type" and isinstance(value, str):
            value = value.lower()
        elif key == "properties" and isinstance(value, dict):
            value = {name: json_schema(sub) if isinstance(sub, dict) else sub
                     for name, sub in value.items()}
        elif key in _SCHEMA_NESTED and isinstance(value, dict):
            value = json_schema(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            value = [json_schema(sub) if isinstance(sub, dict) else sub for sub in value]
        out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _tool_config(config: Any, tools: list[dict]) -> tuple[Any, list[dict]]:
    """(hub tool_choice, the tools the model may call)."""
    if config is None:
        return None, tools
    calling = field(_object(config, "toolConfig"), "functionCallingConfig")
    if calling is None:
        return None, tools
    where = "toolConfig.functionCallingConfig"
    calling = _object(calling, where)
    mode = calling.get("mode", "AUTO")
    if not isinstance(mode, str) or mode.upper() not in _MODES:
        raise _bad(f"`{where}.mode` {mode!r} is not one of: AUTO, ANY, NONE, VALIDATED",
                   f"{where}.mode")
    choice = _MODES[mode.upper()]
    allowed = field(calling, "allowedFunctionNames")
    if allowed is None:
        return choice, tools
    if not isinstance(allowed, list) or not all(isinstance(name, str) for name in allowed):
        raise _bad(f"`{where}.allowedFunctionNames` must be a list of function names",
                   f"{where}.allowedFunctionNames")
    kept = [tool for tool in tools if tool["function"]["name"] in allowed]
    if not kept:
        raise _bad(f"`{where}.allowedFunctionNames` names none of the declared functions",
                   f"{where}.allowedFunctionNames")
    if choice == "required" and len(kept) == 1:
        return {"type": "function", "function": {"name": kept[0]["function"]["name"]}}, kept
    return choice, kept


def _effort(thinking: dict) -> str | None:
    level = field(thinking, "thinkingLevel")
    if isinstance(level, str):
        effort = _EFFORT_BY_LEVEL.get(level.upper())
        if effort is None:
            raise _bad(f"`generationConfig.thinkingConfig.thinkingLevel` {level!r} is not one "
                       "of: MINIMAL, LOW, MEDIUM, HIGH",
                       "generationConfig.thinkingConfig.thinkingLevel")
        return effort
    budget = field(thinking, "thinkingBudget")
    if isinstance(budget, int) and not isinstance(budget, bool) and budget >= 0:
        # 0 turns thinking off; -1 (dynamic) leaves the model's own default.
        return "none" if budget == 0 else "low" if budget <= 2048 else \
            "medium" if budget <= 12288 else "high"
    return None


def _generation_config(config: Any, out: dict) -> None:
    if config is None:
        return
    config = _object(config, "generationConfig")
    count = field(config, "candidateCount")
    if count is not None and count != 1:
        raise _bad(f"`generationConfig.candidateCount` {count!r} is not supported: this gateway "
                   "returns one candidate per request; send 1 (or omit it) and repeat the "
                   "request for more", "generationConfig.candidateCount")
    for name, hub in (("temperature", "temperature"), ("topP", "top_p"),
                      ("maxOutputTokens", "max_tokens"), ("presencePenalty", "presence_penalty"),
                      ("frequencyPenalty", "frequency_penalty"), ("seed", "seed")):
        if field(config, name) is not None:
            out[hub] = field(config, name)
    stop = field(config, "stopSequences")
    if stop:
        out["stop"] = stop
    thinking = field(config, "thinkingConfig")
    if isinstance(thinking, dict):
        effort = _effort(thinking)
        if effort is not None:
            out["reasoning_effort"] = effort
    mime = field(config, "responseMimeType")
    if mime == "application/json":
        schema = field(config, "responseJsonSchema")
        if schema is None and isinstance(field(config, "responseSchema"), dict):
            schema = json_schema(field(config, "responseSchema"))
        out["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "response", "schema": schema}} if isinstance(schema, dict) else \
            {"type": "json_object"}


# ---- hub -> Gemini upstream -----------------------------------------------------------------

def from_hub(body: dict) -> dict:
    """The Gemini `generateContent` body that asks what the hub `body` asks."""
    messages = hub_messages(body)
    system: list[str] = []
    contents: list[dict] = []
    names: dict[str, str] = {}  # call id -> function name, for the responses
    for i, message in enumerate(messages):
        _hub_message(_object(message, f"messages[{i}]"), f"messages[{i}]", system, contents,
                     names)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": _SEPARATOR.join(system)}]}
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [{"functionDeclarations": [_declaration(tool, f"tools[{i}]")
                                                  for i, tool in enumerate(tools)]}]
        config = _hub_tool_choice(body.get("tool_choice"))
        if config is not None:
            out["toolConfig"] = {"functionCallingConfig": config}
    out["generationConfig"] = _hub_generation(body)
    return out


def _hub_message(message: dict, where: str, system: list[str], contents: list[dict],
                 names: dict[str, str]) -> None:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        text = hub_text(content)
        if text:
            system.append(text)
    elif role == "user":
        append_turn(contents, "user", _hub_user_parts(content, where), "parts")
    elif role == "assistant":
        parts: list[dict] = []
        text = hub_text(content)
        if text:
            parts.append({"text": text})
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _bad(f"`{where}.tool_calls[{j}]` needs a function with a name",
                           f"{where}.tool_calls[{j}]")
            try:
                args = msgspec.json.decode(function.get("arguments") or "{}")
            except msgspec.DecodeError:
                raise _bad(f"`{where}.tool_calls[{j}].function.arguments` is not JSON",
                           f"{where}.tool_calls[{j}].function.arguments") from None
            part: dict[str, Any] = {"functionCall": {"name": function["name"],
                                                     "args": args if isinstance(args, dict)
                                                     else {"value": args}}}
            if isinstance(call.get("id"), str):
                field(part, "functionCall")["id"] = call["id"]
                names[call["id"]] = function["name"]
            if j == 0:
                part["thoughtSignature"] = SKIP_SIGNATURE
            parts.append(part)
        append_turn(contents, "model", parts, "parts")
    elif role == "tool":
        call_id = hub_tool_call_id(message, where)
        text = hub_text(content)
        try:
            result = msgspec.json.decode(text) if text else {}
        except msgspec.DecodeError:
            result = None
        append_turn(contents, "user", [{"functionResponse": {
            "id": call_id, "name": names.get(call_id, call_id),
            "response": result if isinstance(result, dict) else {"output": text}}}], "parts")
    else:
        raise _bad(f"`{where}.role` {role!r} is not one of: system, developer, user, assistant, "
                   "tool", f"{where}.role")


def _hub_user_parts(content: Any, where: str) -> list[dict]:
    return [{"text": value} if kind == "text" else _hub_image(value)
            for kind, value in hub_parts(content, where)]


def _hub_image(url: str) -> dict:
    head, comma, data = url.partition(",")
    if url.startswith("data:") and comma and head.endswith(";base64"):
        return {"inlineData": {"mimeType": head[5:-7], "data": data}}
    return {"fileData": {"fileUri": url, "mimeType": "image/*"}}


def _declaration(tool: Any, where: str) -> dict:
    function = hub_function(tool, where)
    out: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    if isinstance(function.get("parameters"), dict):
        out["parametersJsonSchema"] = function["parameters"]
    return out


def _hub_tool_choice(choice: Any) -> dict | None:
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice)
        return {"mode": mode} if mode else None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    return None


def _hub_generation(body: dict) -> dict:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for hub, name in (("temperature", "temperature"), ("top_p", "topP"),
                      ("presence_penalty", "presencePenalty"),
                      ("frequency_penalty", "frequencyPenalty"), ("seed", "seed")):
        if body.get(hub) is not None:
            config[name] = body[hub]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    form = body.get("response_format")
    if isinstance(form, dict) and form.get("type") in ("json_schema", "json_object"):
        config["responseMimeType"] = "application/json"
        schema = form.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
            config["responseJsonSchema"] = schema["schema"]
    thinking: dict[str, Any] = {"includeThoughts": True}
    effort = body.get("reasoning_effort")
    if effort == "none":
        thinking = {"thinkingBudget": 0}
    elif effort in _LEVEL_BY_EFFORT:
        thinking["thinkingLevel"] = _LEVEL_BY_EFFORT[effort]
    config["thinkingConfig"] = thinking
    return config
