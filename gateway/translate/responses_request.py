"""OpenAI Responses requests ⇄ the hub (a Chat Completions body).

`to_hub` reads a Responses client's request (Codex CLI, the openai SDK's `responses.create`) for
a model on another wire; `from_hub` writes the request a Responses-wire upstream
(gpt-5.6-luna) receives from a client of another protocol. Both run once per request on plain
dicts and never change their input; a shape the hub cannot carry is a 400 naming the field.

Responses → hub:
- `instructions` → the first system message; `input` as a string → one user message; as items:
  messages (`system`/`developer`/`user`/`assistant`, with `input_text`, `output_text`,
  `input_image` and `refusal` parts), `function_call` → the assistant turn's `tool_calls`,
  `function_call_output` → a `tool` message (its images, which a tool message cannot hold, in
  a user message right after the results), `reasoning` items → the next assistant turn's
  `reasoning_content` (their summary or reasoning text; `encrypted_content` cannot be read by
  another model and is dropped), `custom_tool_call(_output)` as their function counterparts.
- `tools`: function tools as they are; a freeform `custom` tool (Codex's `apply_patch` for
  OpenAI model names) becomes a function taking one string `input`, its grammar quoted in the
  description so the model still knows the format; its calls come back as `custom_tool_call`
  items (`responses_answer`). A `namespace` tool's functions join the list as
  `<namespace>__<name>` (Codex's `multi_agent_v1`), and their calls come back with the
  `namespace` and the plain name, which is how Codex routes them. Tools sent as an
  `additional_tools` input item join the list the same way. Hosted tools (`web_search`, `file_search`, `code_interpreter`, …) run only on OpenAI's
  side: they are dropped and the drop is reported (`dropped_tools`), never sent on to break the
  call.
- `tool_choice`, `parallel_tool_calls`, `max_output_tokens` → `max_tokens`, `reasoning.effort` →
  `reasoning_effort`, `text.format` → `response_format`, `temperature`, `top_p`, `user` /
  `safety_identifier`, `stream` (usage always asked for: Responses always reports it).
- Dropped: `store`, `include`, `prompt_cache_key` (it names the session instead), `metadata`,
  `client_metadata`, `truncation`, `service_tier`, `background`.
- `previous_response_id` is a 400: the gateway keeps no conversations, so the client has to send
  the whole conversation again (with `store: false`, as Codex does).

Hub → Responses: system messages stay in place as `system` message items, user and assistant
turns become message items, `tool_calls` → `function_call` items, `tool` messages →
`function_call_output` items, function tools and `tool_choice` their Responses forms,
`max_tokens` → `max_output_tokens`, `reasoning_effort` → `reasoning.effort`,
`response_format` → `text.format`; `store: false` (nothing is kept upstream). Earlier
reasoning is not sent: a Responses model only reads its own encrypted reasoning back. `stop` has
no Responses counterpart and is dropped; `n` other than 1 is a 400.
"""
from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.translate.hub import (content_parts, function_tool, hub_function, hub_messages,
                                   hub_parts, hub_text, hub_tool_call_id, tool_list, tool_name,
                                   user_content)
from gateway.translate.responses_answer import CUSTOM_TOOL_INPUT, namespaced_name

_encode_json = msgspec.json.Encoder().encode
_SEPARATOR = "\n\n"
_MESSAGE_ROLES = ("system", "developer", "user", "assistant")
_SAFETY_ID_LIMIT = 64
_TOOL_CHOICE_MODES = ("auto", "required", "none")


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param)


# ---- Responses client -> hub ----------------------------------------------------------------

def to_hub(body: dict) -> dict:
    """The hub (Chat Completions) body for a Responses request (`model` kept as given)."""
    if body.get("previous_response_id"):
        raise _bad("previous_response_id is not supported: this gateway keeps no conversations "
                   "(its upstreams are not all Responses APIs). Send the whole conversation in "
                   "`input` instead, with `store: false`", "previous_response_id")
    messages: list[dict] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    extra_tools: list = []
    _input_messages(body.get("input"), messages, extra_tools)
    if not messages:
        raise _bad("`input` is empty: send a string or a list of input items", "input")

    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools, dropped = _tools(body.get("tools"))
    for i, tool in enumerate(extra_tools):
        _tool(tool, f"input.additional_tools[{i}]", tools, dropped)
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
        if body.get("parallel_tool_calls") is False:
            out["parallel_tool_calls"] = False
    if dropped:
        out["dropped_tools"] = dropped  # read by the route for its log line, not sent upstream
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


class _Turns:
    """Builds hub messages from items: consecutive assistant pieces (text, calls, reasoning)
    join one assistant message, as Chat Completions expects them."""

    def __init__(self, out: list[dict]):
        self.out = out
        self.reasoning: list[str] = []   # reasoning items waiting for their assistant turn
        self.images: list[dict] = []     # images of tool outputs, for the user turn after them

    def assistant(self) -> dict:
        last = self.out[-1] if self.out else None
        if last is None or last["role"] != "assistant":
            # Images of the tool outputs just before were seen before this turn was written.
            self.flush_images()
            last = {"role": "assistant", "content": None}
            self.out.append(last)
        if self.reasoning:
            previous = last.get("reasoning_content")
            text = _SEPARATOR.join(self.reasoning)
            last["reasoning_content"] = previous + _SEPARATOR + text if previous else text
            self.reasoning = []
        return last

    def add(self, message: dict) -> None:
        self.flush_reasoning()
        if message["role"] != "tool":
            self.flush_images()
        self.out.append(message)

    def flush_images(self) -> None:
        if self.images:
            self.out.append({"role": "user", "content": self.images})
            self.images = []

    def flush_reasoning(self) -> None:
        if self.reasoning:  # reasoning with no assistant turn after it: keep it on its own
            message = self.assistant()
            if message["content"] is None and not message.get("tool_calls"):
                message["content"] = ""  # Chat wants content or tool calls on every turn


def _input_messages(items: Any, out: list[dict], extra_tools: list) -> None:
    if items is None:
        return
    if isinstance(items, str):
        if items:
            out.append({"role": "user", "content": items})
        return
    if not isinstance(items, list):
        raise _bad("`input` must be a string or a list of input items", "input")
    turns = _Turns(out)
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"`{where}` must be an input item object", where)
        kind = item.get("type", "message")
        if kind == "message":
            _message_item(item, where, turns)
        elif kind in ("function_call", "custom_tool_call"):
            _call_item(item, where, turns)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"`{where}.call_id` must name the call this output answers",
                           f"{where}.call_id")
            turns.add({"role": "tool", "tool_call_id": call_id,
                       "content": _output_text(item.get("output"), f"{where}.output",
                                               turns.images)})
        elif kind == "reasoning":
            text = _reasoning_text(item)
            if text:
                turns.reasoning.append(text)
        elif kind == "additional_tools":
            if isinstance(item.get("tools"), list):
                extra_tools.extend(item["tools"])
        elif kind == "item_reference":
            raise _bad(f"`{where}` refers to a stored item; this gateway keeps none: send the "
                       "item itself", where)
        # Hosted tools' own traffic (web_search_call, …) carries nothing another model can use.
    turns.flush_reasoning()
    turns.flush_images()


def _message_item(item: dict, where: str, turns: _Turns) -> None:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise _bad(f"`{where}.role` must be one of {', '.join(_MESSAGE_ROLES)}, got {role!r}",
                   f"{where}.role")
    content = item.get("content")
    if role == "assistant":
        text = _plain_text(content, f"{where}.content")
        if text:
            message = turns.assistant()
            message["content"] = (message["content"] + _SEPARATOR + text) if message["content"] \
                else text
        return
    if role in ("system", "developer"):
        text = _plain_text(content, f"{where}.content")
        if text:
            turns.add({"role": "system", "content": text})
        return
    parts = _user_parts(content, f"{where}.content")
    if parts:
        turns.add({"role": "user", "content": parts})


def _call_item(item: dict, where: str, turns: _Turns) -> None:
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise _bad(f"`{where}` needs string `call_id` and `name`", where)
    if isinstance(item.get("namespace"), str) and item["namespace"]:
        name = namespaced_name(item["namespace"], name)
    if item.get("type") == "custom_tool_call":
        arguments = _encode_json({CUSTOM_TOOL_INPUT: item.get("input") or ""}).decode()
    else:
        arguments = item.get("arguments")
        if arguments is None:
            arguments = "{}"
        if not isinstance(arguments, str):
            raise _bad(f"`{where}.arguments` must be a JSON string", f"{where}.arguments")
    message = turns.assistant()
    message.setdefault("tool_calls", []).append(
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})


def _reasoning_text(item: dict) -> str:
    texts = []
    for field in ("summary", "content"):
        parts = item.get(field)
        if isinstance(parts, list):
            texts += [part["text"] for part in parts
                      if isinstance(part, dict) and isinstance(part.get("text"), str)]
        if texts:
            break
    return _SEPARATOR.join(text for text in texts if text)


def _plain_text(content: Any, where: str) -> str:
    content = content_parts(content, where)
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"`{where}[{j}]` must be a content part object", f"{where}[{j}]")
        text = part.get("text", part.get("refusal"))
        if isinstance(text, str) and text:
            texts.append(text)
    return _SEPARATOR.join(texts)


def _user_parts(content: Any, where: str) -> str | list[dict]:
    content = content_parts(content, where)
    if isinstance(content, str):
        return content
    parts: list[dict] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"`{at}` must be a content part object", at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"`{at}.text` must be a string", f"{at}.text")
            if text:
                parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"`{at}.image_url` must be an image URL or a data URL (file_id is "
                           "not supported: the gateway has no file store)", f"{at}.image_url")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _bad(f"`{at}.type` {kind!r} is not supported for this model (supported: "
                       "input_text, input_image)", f"{at}.type")
    return user_content(parts)


def _output_text(output: Any, where: str, images: list[dict]) -> str:
    output = content_parts(output, where)
    if isinstance(output, str):
        return output
    texts = []
    for j, part in enumerate(output):
        if isinstance(part, dict) and part.get("type") == "input_image":
            url = part.get("image_url")
            if isinstance(url, str) and url:
                images.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise _bad(f"`{where}[{j}]` must be a text or image part", f"{where}[{j}]")
    return _SEPARATOR.join(text for text in texts if text)


def _tools(tools: Any) -> tuple[list[dict], list[str]]:
    out: list[dict] = []
    dropped: list[str] = []
    for i, tool in enumerate(tool_list(tools)):
        _tool(tool, f"tools[{i}]", out, dropped)
    return out, dropped


def _tool(tool: Any, where: str, out: list[dict], dropped: list[str]) -> None:
    if not isinstance(tool, dict):
        raise _bad(f"`{where}` must be a tool object", where)
    kind = tool.get("type")
    if kind == "function":
        parameters = tool.get("parameters")
        out.append(function_tool(tool_name(tool, where), tool.get("description"),
                                 parameters if isinstance(parameters, dict) else None))
    elif kind == "custom":
        out.append(function_tool(tool_name(tool, where), _custom_description(tool), {
            "type": "object", "required": [CUSTOM_TOOL_INPUT],
            "properties": {CUSTOM_TOOL_INPUT: {
                "type": "string",
                "description": "the whole input, in the format described above"}}}))
    elif kind == "namespace":
        inner = tool.get("tools")
        namespace = tool.get("name")
        if not isinstance(inner, list) or not isinstance(namespace, str):
            raise _bad(f"`{where}` must have a string `name` and a list of `tools`", where)
        for j, nested in enumerate(inner):
            start = len(out)
            _tool(nested, f"{where}.tools[{j}]", out, dropped)
            for function in out[start:]:
                function["function"]["name"] = namespaced_name(namespace,
                                                               function["function"]["name"])
    else:
        dropped.append(str(kind))


def _custom_description(tool: dict) -> str:
    description = tool.get("description") if isinstance(tool.get("description"), str) else ""
    form = tool.get("format")
    if isinstance(form, dict) and form.get("type") == "grammar":
        definition = form.get("definition")
        syntax = form.get("syntax", "grammar")
        if isinstance(definition, str) and definition:
            description += (f"\n\nPass the whole input as the string `{CUSTOM_TOOL_INPUT}`; it "
                            f"must follow this {syntax} grammar:\n{definition}")
    return description


def _tool_choice(choice: Any) -> Any:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_MODES:
            raise _bad(f"tool_choice {choice!r} is not one of: auto, required, none, or "
                       '{"type": "function", "name": ...}', "tool_choice")
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") \
            and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto") if choice.get("mode") in _TOOL_CHOICE_MODES else "auto"
    raise _bad('tool_choice must be auto, required, none, or {"type": "function", "name": ...}',
               "tool_choice")


def _response_format(text: Any) -> dict | None:
    if not isinstance(text, dict):
        return None
    form = text.get("format")
    if not isinstance(form, dict):
        return None
    kind = form.get("type")
    if kind == "json_schema":
        schema = {key: form[key] for key in ("name", "schema", "strict", "description")
                  if key in form}
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


# ---- hub -> Responses upstream --------------------------------------------------------------

def from_hub(body: dict) -> dict:
    """The Responses body that asks what the hub `body` asks."""
    messages = hub_messages(body)
    items: list[dict] = []
    for i, message in enumerate(messages):
        _hub_message(message, f"messages[{i}]", items)
    out: dict[str, Any] = {"model": body.get("model"), "input": items, "store": False}
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [_responses_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        choice = body.get("tool_choice")
        if isinstance(choice, str):
            out["tool_choice"] = choice
        elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            out["tool_choice"] = {"type": "function", "name": choice["function"].get("name")}
        if body.get("parallel_tool_calls") is False:
            out["parallel_tool_calls"] = False
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        out["max_output_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    effort = body.get("reasoning_effort")
    if isinstance(effort, str):
        out["reasoning"] = {"effort": effort}
    form = body.get("response_format")
    if isinstance(form, dict):
        if form.get("type") == "json_schema" and isinstance(form.get("json_schema"), dict):
            out["text"] = {"format": {"type": "json_schema", **form["json_schema"]}}
        elif form.get("type") == "json_object":
            out["text"] = {"format": {"type": "json_object"}}
    user = body.get("user")
    if isinstance(user, str) and user:
        # The Responses API takes at most 64 characters; Claude Code's `metadata.user_id` is
        # about 160. A longer id is sent as its hash: still one stable id per user.
        out["safety_identifier"] = user if len(user) <= _SAFETY_ID_LIMIT else \
            hashlib.blake2b(user.encode(), digest_size=_SAFETY_ID_LIMIT // 2).hexdigest()
    if body.get("stream"):
        out["stream"] = True
    return out


def _hub_message(message: Any, where: str, items: list[dict]) -> None:
    if not isinstance(message, dict):
        raise _bad(f"`{where}` must be a message object", where)
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        text = _hub_text(content, where)
        if text:
            items.append({"type": "message", "role": role, "content": text})
    elif role == "user":
        parts = _hub_user_parts(content, where)
        if parts:
            items.append({"type": "message", "role": "user", "content": parts})
    elif role == "assistant":
        text = _hub_text(content, where)
        if text:
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": text}]})
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                raise _bad(f"`{where}.tool_calls[{j}]` needs an id and a function",
                           f"{where}.tool_calls[{j}]")
            items.append({"type": "function_call", "call_id": call["id"],
                          "name": function.get("name") or "",
                          "arguments": function.get("arguments") or "{}"})
    elif role == "tool":
        items.append({"type": "function_call_output", "call_id": hub_tool_call_id(message, where),
                      "output": _hub_text(content, where)})
    else:
        raise _bad(f"`{where}.role` {role!r} is not one of: system, developer, user, assistant, "
                   "tool", f"{where}.role")


def _hub_text(content: Any, where: str) -> str:
    return hub_text(content_parts(content, f"{where}.content"))


def _hub_user_parts(content: Any, where: str) -> str | list[dict]:
    if content is None or isinstance(content, str):
        return content or ""
    return [{"type": "input_text", "text": value} if kind == "text" else
            {"type": "input_image", "image_url": value}
            for kind, value in hub_parts(content, where)]


def _responses_tool(tool: Any, where: str) -> dict:
    function = hub_function(tool, where)
    out: dict[str, Any] = {"type": "function", "name": function["name"],
                           "parameters": function.get("parameters")
                           or {"type": "object", "properties": {}}}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    if "strict" in function:
        out["strict"] = function["strict"]
    return out
