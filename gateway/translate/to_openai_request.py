"""Anthropic Messages request → OpenAI Chat Completions request.

Used when an Anthropic client (Claude Code, the Anthropic SDKs) calls `POST /v1/messages` for a
model OpenCode Go serves with the OpenAI protocol. Runs once per request on the plain dict the
rules chain handed over; the input is never changed.

What does not survive the trip, and why:
- `top_k`: Chat Completions has no such field.
- `thinking` (enabled/adaptive/disabled) and `output_config.effort`: dropped. OpenCode Go's
  OpenAI-flavour models think by their own default and take reasoning controls per model (GLM-5
  and 5.1 accept no `reasoning_effort`), so a mapped value would break some calls. Their
  reasoning still comes back as thinking blocks.
- `context_management`, `output_config`, `cache_control`, `container`, `service_tier` and any
  other field or block field this module does not name: no Chat Completions meaning.
- Server tools (a `tools[]` entry whose `type` is not `custom`, such as `web_search_20250305`):
  they run on Anthropic's side, which this upstream is not.
- A tool result's `is_error` flag: OpenAI tool messages have no such flag; the result's text
  (which says what went wrong) is carried unchanged.
- Thinking blocks of earlier assistant turns become that message's `reasoning_content` (the
  field GLM/Kimi read back, Kimi requires it on tool-call turns); their signature is dropped.
  `redacted_thinking` and other assistant-only bookkeeping blocks are dropped.
"""
from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import GatewayError

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


def to_openai_request(body: dict) -> dict:
    """The Chat Completions body for an Anthropic Messages body (`model` kept as given)."""
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
        translated = _translate_tools(tools)
        if translated:
            out["tools"] = translated
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


def _translate_user(content: Any, where: str, out: list[dict]) -> None:
    if isinstance(content, str):
        if content:
            out.append({"role": "user", "content": content})
        return
    if not isinstance(content, list):
        raise GatewayError(400, f"`{where}` must be a string or a list of content blocks",
                           param=where)
    # Tool results become `role: tool` messages right after the assistant turn that called the
    # tools; whatever else the user turn holds follows them as one user message.
    parts: list[dict] = []
    for j, block in enumerate(content):
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
        out.append({"role": "user", "content": _user_content(parts)})


def _user_content(parts: list[dict]) -> str | list[dict]:
    # Text-only content as a plain string: every OpenAI-compatible server takes that form.
    if all(p["type"] == "text" for p in parts):
        return _TEXT_SEPARATOR.join(p["text"] for p in parts)
    return parts


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
    if isinstance(content, str):
        if content:
            out.append({"role": "assistant", "content": content})
        return
    if not isinstance(content, list):
        raise GatewayError(400, f"`{where}` must be a string or a list of content blocks",
                           param=where)
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict] = []
    for j, block in enumerate(content):
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


def _translate_tools(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise GatewayError(400, "`tools` must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise GatewayError(400, f"`{at}` must be an object", param=at)
        if tool.get("type") not in (None, "custom"):
            continue  # an Anthropic server tool: nothing on this upstream can run it
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise GatewayError(400, f"`{at}.name` must be a non-empty string",
                               param=f"{at}.name")
        schema = tool.get("input_schema")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise GatewayError(400, f"`{at}.input_schema` must be a JSON schema object",
                               param=f"{at}.input_schema")
        function: dict[str, Any] = {"name": name}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = schema
        out.append({"type": "function", "function": function})
    return out


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
