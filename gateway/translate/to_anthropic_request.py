"""OpenAI Chat Completions request body -> Anthropic Messages request body.

Used when an OpenAI client calls a model the upstream serves with the Anthropic protocol (the
MiniMax models). The output is built from the fields this module knows, never copied from the
input: an OpenAI-only field (`frequency_penalty`, `response_format`, `logprobs`, ...) is dropped
rather than forwarded to an upstream that would refuse it.

Runs once per request, so it works on plain dicts (rules may have edited the body). Every shape
error is a `GatewayError(400)` whose `param` names the offending field, e.g.
`messages[3].tool_calls[0].function.arguments`.

Choices the README documents:
- `max_tokens`: `max_completion_tokens`, else `max_tokens`, else `default_max_tokens`. With
  thinking on, Anthropic counts the thinking budget inside `max_tokens`, so a `max_tokens` not
  above the budget becomes `budget + max_tokens`: the answer keeps the room the client asked for.
- `reasoning_effort` -> `thinking.budget_tokens` by `THINKING_BUDGET_BY_EFFORT`; `none` sends no
  `thinking`.
- Every `system`/`developer` message, wherever it sits, joins the top-level `system` in order.
- `n` other than 1 is refused (400): Anthropic returns one answer per request, and fanning out
  would multiply the user's cost behind their back.
- `user` (or, without it, `safety_identifier`) -> `metadata.user_id`.
"""
from __future__ import annotations

import msgspec

from gateway.errors import GatewayError

# Anthropic's minimum budget is 1024; each step roughly doubles the room to think.
THINKING_BUDGET_BY_EFFORT: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}

_ROLES = ("system", "developer", "user", "assistant", "tool")
_TOOL_CHOICE_BY_MODE = {"auto": "auto", "required": "any", "none": "none"}

_decode_json = msgspec.json.decode


def to_anthropic_request(body: dict, *, default_max_tokens: int) -> dict:
    """The Anthropic Messages body that asks what the OpenAI `body` asks."""
    n = body.get("n")
    if n is not None and n != 1:
        raise GatewayError(400, f"n={n!r} is not supported for this model: it returns one choice "
                                "per request; send n=1 (or omit n) and repeat the request for more",
                           param="n")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "model must be a non-empty string", param="model")

    system, messages = _messages(body.get("messages"))
    out: dict = {"model": model, "messages": messages}
    if system:
        out["system"] = system

    max_tokens = _max_tokens(body, default_max_tokens)
    thinking_budget = _thinking_budget(body.get("reasoning_effort"))
    if thinking_budget is not None:
        if max_tokens <= thinking_budget:
            max_tokens += thinking_budget
        out["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget}
    out["max_tokens"] = max_tokens

    stop_sequences = _stop_sequences(body.get("stop"))
    if stop_sequences:
        out["stop_sequences"] = stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GatewayError(400, f"{name} must be a number, got {value!r}", param=name)
            out[name] = value

    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if tool_choice is not None:
            out["tool_choice"] = tool_choice

    user_id = body.get("user") or body.get("safety_identifier")
    if isinstance(user_id, str) and user_id:
        out["metadata"] = {"user_id": user_id}
    stream = body.get("stream")
    if stream is not None:
        out["stream"] = bool(stream)
    return out


def _max_tokens(body: dict, default_max_tokens: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GatewayError(400, f"{name} must be a positive integer, got {value!r}", param=name)
        return value
    return default_max_tokens


def _thinking_budget(effort: object) -> int | None:
    if effort is None or effort == "none":
        return None
    budget = THINKING_BUDGET_BY_EFFORT.get(effort) if isinstance(effort, str) else None
    if budget is None:
        allowed = ", ".join(["none", *THINKING_BUDGET_BY_EFFORT])
        raise GatewayError(400, f"reasoning_effort {effort!r} is not one of: {allowed}",
                           param="reasoning_effort")
    return budget


def _stop_sequences(stop: object) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise GatewayError(400, "stop must be a string or a list of strings", param="stop")
    # Anthropic refuses empty stop sequences; an empty one never matches anything anyway.
    return [s for s in stop if s]


def _tools(tools: object) -> list[dict]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise GatewayError(400, "tools must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise GatewayError(400, f"tools[{i}] must be a function tool "
                                    '({"type": "function", "function": {...}})',
                               param=f"tools[{i}]")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise GatewayError(400, f"tools[{i}].function must be an object with a string name",
                               param=f"tools[{i}].function")
        converted = {"name": function["name"]}
        if function.get("description"):
            converted["description"] = function["description"]
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise GatewayError(400, f"tools[{i}].function.parameters must be a JSON schema object",
                               param=f"tools[{i}].function.parameters")
        converted["input_schema"] = parameters or {"type": "object", "properties": {}}
        if "cache_control" in tool:
            converted["cache_control"] = tool["cache_control"]
        out.append(converted)
    return out


def _tool_choice(choice: object, parallel_tool_calls: object) -> dict | None:
    if choice is None:
        if parallel_tool_calls is False:
            return {"type": "auto", "disable_parallel_tool_use": True}
        return None
    if isinstance(choice, str):
        kind = _TOOL_CHOICE_BY_MODE.get(choice)
        if kind is None:
            raise GatewayError(400, f"tool_choice {choice!r} is not one of: auto, required, none, "
                                    'or {"type": "function", "function": {"name": ...}}',
                               param="tool_choice")
        out = {"type": kind}
    else:
        function = choice.get("function") if isinstance(choice, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise GatewayError(400, 'tool_choice must be auto, required, none, or '
                                    '{"type": "function", "function": {"name": ...}}',
                               param="tool_choice")
        out = {"type": "tool", "name": function["name"]}
    # Anthropic's `none` takes no options.
    if parallel_tool_calls is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _messages(messages: object) -> tuple[str | list[dict], list[dict]]:
    """(top-level system, Anthropic messages) from the OpenAI message list."""
    if not isinstance(messages, list):
        raise GatewayError(400, "messages must be a list of message objects", param="messages")
    system_blocks: list[dict] = []
    turns: list[tuple[str, list[dict]]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise GatewayError(400, f"{where} must be an object", param=where)
        role = message.get("role")
        if role not in _ROLES:
            raise GatewayError(400, f"{where}.role {role!r} is not one of: {', '.join(_ROLES)}",
                               param=f"{where}.role")
        if role in ("system", "developer"):
            blocks = _content_blocks(message.get("content"), where)
            if any(block["type"] != "text" for block in blocks):
                raise GatewayError(400, f"{where} is a {role} message: it may only hold text",
                                   param=f"{where}.content")
            system_blocks.extend(blocks)
        elif role == "user":
            turns.append(("user", _content_blocks(message.get("content"), where)))
        elif role == "assistant":
            turns.append(("assistant", _assistant_blocks(message, where)))
        else:
            turns.append(("user", [_tool_result(message, where)]))
    merged = _merge_turns(turns)
    if not merged:
        raise GatewayError(400, "messages must hold at least one non-empty user, assistant or "
                                "tool message besides system messages", param="messages")
    return _system(system_blocks), merged


def _system(blocks: list[dict]) -> str | list[dict]:
    # Text blocks only when a block carries cache_control: the plain string is what every
    # Anthropic-compatible upstream understands.
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join(block["text"] for block in blocks)


def _merge_turns(turns: list[tuple[str, list[dict]]]) -> list[dict]:
    """Anthropic wants alternating roles: same-role neighbours become one message."""
    merged: list[dict] = []
    for role, blocks in turns:
        if not blocks:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": role, "content": blocks})
    for message in merged:
        content = message["content"]
        # Tool results must open the user turn that answers the calls; tool calls close the
        # assistant turn that makes them. A stable sort keeps everything else in order.
        if message["role"] == "user":
            content.sort(key=lambda block: block["type"] != "tool_result")
        else:
            content.sort(key=lambda block: block["type"] == "tool_use")
    return merged


def _content_blocks(content: object, where: str) -> list[dict]:
    """Anthropic content blocks for an OpenAI `content` (string, null or list of parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content must be a string or a list of content parts",
                           param=f"{where}.content")
    blocks = []
    for j, part in enumerate(content):
        block = _content_part(part, f"{where}.content[{j}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _content_part(part: object, where: str) -> dict | None:
    if not isinstance(part, dict):
        raise GatewayError(400, f"{where} must be a content part object", param=where)
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise GatewayError(400, f"{where}.{kind} must be a string", param=f"{where}.{kind}")
        if not text:
            return None
        block = {"type": "text", "text": text}
    elif kind == "image_url":
        block = {"type": "image", "source": _image_source(part.get("image_url"), where)}
    else:
        raise GatewayError(400, f"{where}.type {kind!r} is not supported for this model "
                                "(supported: text, image_url)", param=f"{where}.type")
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _image_source(image_url: object, where: str) -> dict:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    param = f"{where}.image_url.url"
    if not isinstance(url, str):
        raise GatewayError(400, f"{param} must be a string", param=param)
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not media_type:
            raise GatewayError(400, f"{param} must be a base64 data URL "
                                    "(data:image/png;base64,...)", param=param)
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise GatewayError(400, f"{param} must be an http(s) URL or a base64 data URL", param=param)


def _assistant_blocks(message: dict, where: str) -> list[dict]:
    blocks = _content_blocks(message.get("content"), where)
    tool_calls = message.get("tool_calls")
    if tool_calls is None:
        return blocks
    if not isinstance(tool_calls, list):
        raise GatewayError(400, f"{where}.tool_calls must be a list", param=f"{where}.tool_calls")
    for j, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(function, dict) or not isinstance(call.get("id"), str)
                or not isinstance(function.get("name"), str)):
            raise GatewayError(400, f"{call_where} must have a string id and a function with a "
                                    "string name", param=call_where)
        blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                       "input": _tool_input(function.get("arguments"), f"{call_where}.function")})
    return blocks


def _tool_input(arguments: object, where: str) -> dict:
    param = f"{where}.arguments"
    # Some clients send "" (or nothing) for a call that takes no arguments.
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise GatewayError(400, f"{param} must be a JSON string", param=param)
    try:
        parsed = _decode_json(arguments)
    except msgspec.DecodeError as exc:
        raise GatewayError(400, f"{param} is not valid JSON ({exc}); the model needs the "
                                "arguments of an earlier tool call as a JSON object",
                           param=param) from None
    if not isinstance(parsed, dict):
        raise GatewayError(400, f"{param} must encode a JSON object, got {arguments[:100]!r}",
                           param=param)
    return parsed


def _tool_result(message: dict, where: str) -> dict:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise GatewayError(400, f"{where}.tool_call_id must name the tool call this answers",
                           param=f"{where}.tool_call_id")
    result: dict = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    else:
        blocks = _content_blocks(content, where)
        if blocks:
            result["content"] = blocks
    return result
