"""Anthropic Messages requests ⇄ the hub (a Chat Completions body).

`to_hub` reads an Anthropic client's request (Claude Code, the Anthropic SDKs) for a model on
another wire; `from_hub` writes the request an Anthropic-wire upstream (MiniMax, Qwen) receives
from a client of another protocol. Both run once per request on plain dicts (rules may have
edited the body) and never change their input; every shape error is a `GatewayError(400)`
whose `param` names the field, e.g. `messages[3].tool_calls[0].function.arguments`.

Anthropic → hub, what does not survive the trip, and why:
- `top_k`: Chat Completions has no such field.
- `thinking`: `{type: enabled, budget_tokens: N}` becomes the `reasoning_effort` whose budget
  (`THINKING_BUDGET_BY_EFFORT`) is the largest not above N, `{type: disabled}` becomes `none`;
  the wire preparation then fits it to what the model accepts (model_limits.py). `adaptive`
  (what Claude Code sends) and `output_config.effort` are dropped: the model thinks by its own
  default. Its reasoning still comes back as thinking blocks.
- `context_management`, `output_config`, `cache_control`, `container`, `service_tier` and any
  other field or block field this module does not name: no Chat Completions meaning.
- Server tools (a `tools[]` entry whose `type` is not `custom`, such as `web_search_20250305`):
  they run on Anthropic's side, which this upstream is not.
- A tool result's `is_error` flag: Chat tool messages have no such flag; the result's text
  (which says what went wrong) is carried unchanged.
- Thinking blocks of earlier assistant turns become that message's `reasoning_content` (the
  field GLM/Kimi/DeepSeek read back; DeepSeek requires it on tool-call turns); their signature
  is dropped. `redacted_thinking` and other assistant-only bookkeeping blocks are dropped.

Hub → Anthropic, built from the fields this module knows, never copied (an OpenAI-only field
such as `frequency_penalty`, `response_format` or `logprobs` is dropped rather than sent to an
upstream that would refuse it):
- `max_tokens`: `max_completion_tokens`, else `max_tokens`, else `default_max_tokens`. With
  thinking on, Anthropic counts the thinking budget inside `max_tokens`, so a `max_tokens` not
  above the budget becomes `budget + max_tokens`: the answer keeps the room the client asked for.
- `reasoning_effort` -> `thinking.budget_tokens` by `THINKING_BUDGET_BY_EFFORT`; `none` sends no
  `thinking`. An upstream that refuses `thinking` (OpenCode Go's /messages: `thinking=False`)
  gets neither it nor the raised `max_tokens`: the effort is checked, and the answer keeps the
  bound the client set.
- Every `system`/`developer` message, wherever it sits, joins the top-level `system` in order.
- `n` other than 1 is refused (400): Anthropic returns one answer per request, and fanning out
  would multiply the user's cost behind their back.
- `user` (or, without it, `safety_identifier`) -> `metadata.user_id`.
- An assistant turn's `reasoning_content` is not sent: a `thinking` block must carry the
  signature only Anthropic issues, and the models on OpenCode Go's /messages do not ask for
  their reasoning back (the models that do are on the Chat wire).
"""
from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import GatewayError
from gateway.translate.hub import (append_turn, function_tool, hub_messages, tool_name,
                                   user_content)


# ---- Anthropic client -> hub --------------------------------------------------------------

_encode_json = msgspec.json.Encoder().encode

# Tool choice: Anthropic `type` → OpenAI `tool_choice` (the named case is built on the fly).
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}

# Blocks an earlier assistant turn may carry that have no OpenAI counterpart and no bearing on
# the next answer: the model's own server-tool traffic and encrypted reasoning.
_DROPPED_ASSISTANT_BLOCKS = frozenset({
    "redacted_thinking", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "container_upload",
    "mcp_tool_use", "mcp_tool_result",
})

_TEXT_SEPARATOR = "\n\n"


def to_hub(body: dict) -> dict:
    """The hub (Chat Completions) body for an Anthropic Messages body (`model` kept as given)."""
    out: dict[str, Any] = {"model": body.get("model")}
    messages: list[dict] = []
    system = body.get("system")
    if system is not None:
        text = _system_text(system, "system")
        if text:
            messages.append({"role": "system", "content": text})
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise GatewayError(400, "`messages` must be a list of {role, content} objects",
                           param="messages")
    for i, message in enumerate(raw_messages):
        _translate_message(message, f"messages[{i}]", messages)
    out["messages"] = messages

    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    effort = _effort_of_thinking(body.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise GatewayError(400, "`stop_sequences` must be a list of strings",
                               param="stop_sequences")
        out["stop"] = stop

    tools = body.get("tools")
    if tools:
        translated, dropped = _translate_tools(tools)
        if translated:
            out["tools"] = translated
        if dropped:
            out["dropped_tools"] = dropped  # read by the route for its log line, not sent upstream
    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        _translate_tool_choice(tool_choice, out)

    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]

    if body.get("stream"):
        out["stream"] = True
        # Chat Completions only reports usage on a stream when asked; Anthropic clients always
        # get it, so always ask.
        out["stream_options"] = {"include_usage": True}
    elif "stream" in body:
        out["stream"] = False
    return out


def _effort_of_thinking(thinking: Any) -> str | None:
    """The `reasoning_effort` an Anthropic `thinking` asks for; None: the model's default."""
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "disabled":
        return "none"
    budget = thinking.get("budget_tokens")
    if kind != "enabled" or isinstance(budget, bool) or not isinstance(budget, int):
        return None
    fitting = [effort for effort, room in THINKING_BUDGET_BY_EFFORT.items() if room <= budget]
    return fitting[-1] if fitting else "minimal"


def _translate_message(message: Any, where: str, out: list[dict]) -> None:
    if not isinstance(message, dict):
        raise GatewayError(400, f"`{where}` must be an object with `role` and `content`",
                           param=where)
    role = message.get("role")
    content = message.get("content")
    if role == "system":
        # Claude Code puts system messages mid-conversation; OpenAI takes them at that place.
        text = _system_text(content, f"{where}.content")
        if text:
            out.append({"role": "system", "content": text})
    elif role == "user":
        _translate_user(content, f"{where}.content", out)
    elif role == "assistant":
        _translate_assistant(content, f"{where}.content", out)
    else:
        raise GatewayError(400, f"`{where}.role` must be `user`, `assistant` or `system`, "
                                f"got {role!r}", param=f"{where}.role")


def _system_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise GatewayError(400, f"`{where}` must be a string or a list of text blocks",
                           param=where)
    parts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise GatewayError(400, f"`{where}[{j}]` must be a text block", param=f"{where}[{j}]")
        text = _block_text(block, f"{where}[{j}]")
        if text:
            parts.append(text)
    return _TEXT_SEPARATOR.join(parts)


def _block_text(block: dict, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise GatewayError(400, f"`{where}.text` must be a string", param=f"{where}.text")
    return text


def _block_type(block: Any, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise GatewayError(400, f"`{where}` must be a content block object with a `type`",
                           param=where)
    return block["type"]


def _turn_blocks(content: Any, where: str, role: str, out: list[dict]) -> list:
    """A user or assistant turn's content blocks; a plain-string turn goes to `out` as it is."""
    if isinstance(content, str):
        if content:
            out.append({"role": role, "content": content})
        return []
    if not isinstance(content, list):
        raise GatewayError(400, f"`{where}` must be a string or a list of content blocks",
                           param=where)
    return content


def _translate_user(content: Any, where: str, out: list[dict]) -> None:
    # Tool results become `role: tool` messages right after the assistant turn that called the
    # tools; whatever else the user turn holds follows them as one user message.
    parts: list[dict] = []
    for j, block in enumerate(_turn_blocks(content, where, "user", out)):
        at = f"{where}[{j}]"
        kind = _block_type(block, at)
        if kind == "text":
            text = _block_text(block, at)
            if text:
                parts.append({"type": "text", "text": text})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            out.append(_tool_message(block, at, parts))
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block, at)})
        # Anything else (thinking echoed in a user turn, new block types) has no OpenAI form.
    if parts:
        out.append({"role": "user", "content": user_content(parts)})


def _image_part(block: dict, where: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise GatewayError(400, f"`{where}.source` must be an object", param=f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise GatewayError(400, f"`{where}.source` needs string `media_type` and `data`",
                               param=f"{where}.source")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str):
            raise GatewayError(400, f"`{where}.source.url` must be a string",
                               param=f"{where}.source.url")
    else:
        raise GatewayError(400, f"`{where}.source.type` {kind!r} is not supported for this "
                                f"model; send the image as `base64` or `url`",
                           param=f"{where}.source.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_text(block: dict, where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text" \
            and isinstance(source.get("data"), str):
        return source["data"]
    raise GatewayError(400, f"`{where}`: only plain-text documents can be sent to this model; "
                            f"send a PDF's text as a text block", param=where)


def _tool_message(block: dict, where: str, user_parts: list[dict]) -> dict:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str):
        raise GatewayError(400, f"`{where}.tool_use_id` must be a string",
                           param=f"{where}.tool_use_id")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    elif isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            at = f"{where}.content[{k}]"
            kind = _block_type(part, at)
            if kind == "text":
                texts.append(_block_text(part, at))
            elif kind == "image":
                # OpenAI tool messages hold text only: the image goes to the user message that
                # follows the tool results, where the model still sees it.
                user_parts.append(_image_part(part, at))
            elif kind == "document":
                texts.append(_document_text(part, at))
            # tool_reference and newer result parts carry nothing the model can read here.
        text = _TEXT_SEPARATOR.join(t for t in texts if t)
    else:
        raise GatewayError(400, f"`{where}.content` must be a string or a list of blocks",
                           param=f"{where}.content")
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}


def _translate_assistant(content: Any, where: str, out: list[dict]) -> None:
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict] = []
    for j, block in enumerate(_turn_blocks(content, where, "assistant", out)):
        at = f"{where}[{j}]"
        kind = _block_type(block, at)
        if kind == "text":
            text = _block_text(block, at)
            if text:
                texts.append(text)
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block, at))
        elif kind == "thinking":
            thinking = block.get("thinking")
            if isinstance(thinking, str) and thinking:
                reasoning.append(thinking)
        elif kind in _DROPPED_ASSISTANT_BLOCKS:
            continue
        else:
            raise GatewayError(400, f"`{at}`: an assistant turn cannot hold a {kind!r} block",
                               param=at)
    if not (texts or tool_calls or reasoning):
        return
    message: dict[str, Any] = {"role": "assistant",
                               "content": _TEXT_SEPARATOR.join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = _TEXT_SEPARATOR.join(reasoning)
    if tool_calls:
        message["tool_calls"] = tool_calls
    out.append(message)


def _tool_call(block: dict, where: str) -> dict:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise GatewayError(400, f"`{where}` needs string `id` and `name`", param=where)
    arguments = _encode_json(block.get("input", {})).decode()
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _translate_tools(tools: Any) -> tuple[list[dict], list[str]]:
    """(the function tools, the names of the server tools dropped)."""
    if not isinstance(tools, list):
        raise GatewayError(400, "`tools` must be a list", param="tools")
    out = []
    dropped = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise GatewayError(400, f"`{at}` must be an object", param=at)
        if tool.get("type") not in (None, "custom"):
            # An Anthropic server tool (web search, code execution): only Anthropic runs it.
            dropped.append(str(tool.get("name") or tool.get("type")))
            continue
        name = tool_name(tool, at)
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise GatewayError(400, f"`{at}.input_schema` must be a JSON schema object",
                               param=f"{at}.input_schema")
        out.append(function_tool(name, tool.get("description"), schema))
    return out, dropped


def _translate_tool_choice(choice: Any, out: dict) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in _TOOL_CHOICE:
        translated: Any = _TOOL_CHOICE[kind]
    elif kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise GatewayError(400, "`tool_choice.name` must be a string",
                               param="tool_choice.name")
        translated = {"type": "function", "function": {"name": name}}
    else:
        raise GatewayError(400, "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
                           param="tool_choice")
    # OpenAI refuses `tool_choice` and `parallel_tool_calls` in a request without tools.
    if not out.get("tools"):
        return
    out["tool_choice"] = translated
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


# ---- hub -> Anthropic upstream -----------------------------------------------------------

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


def from_hub(body: dict, *, default_max_tokens: int, thinking: bool = True) -> dict:
    """The Anthropic Messages body that asks what the hub `body` asks (`thinking`: whether the
    upstream takes a `thinking` field)."""
    messages = hub_messages(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "model must be a non-empty string", param="model")

    system, messages = _messages(messages)
    out: dict = {"model": model, "messages": messages}
    if system:
        out["system"] = system

    max_tokens = _max_tokens(body, default_max_tokens)
    thinking_budget = _thinking_budget(body.get("reasoning_effort"))
    if thinking_budget is not None and thinking:
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
        append_turn(merged, role, blocks)
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
