"""Anthropic Messages request → what OpenCode Go's Anthropic-compatible `/messages` accepts.

Applied to every request for OpenCode Go's /messages (MiniMax, Qwen), from an Anthropic client
or translated from another protocol. The upstream speaks the classic Messages API only: it
answers 400 to `thinking`, and newer fields and shapes that current Claude Code sends must be
assumed unknown to it. The request keeps its meaning where the classic API can express it and
loses only what it cannot:

- Top-level fields outside `CLASSIC_FIELDS` are dropped (`thinking`, `context_management`,
  `output_config`, `container`, `service_tier`, top-level `cache_control`, ...). `metadata`
  keeps only `user_id`.
- Tools keep `name`, `description`, `input_schema` and `cache_control`; newer per-tool fields
  (`strict`, `defer_loading`, `input_examples`, ...) are dropped, and so are server tools (a
  `type` other than `custom`), which only Anthropic runs.
- A `role: system` message inside `messages` becomes a text block, wrapped in
  `<system-reminder>` tags, of a user turn at the same place (merged into the neighbouring user
  turn). Folding it into the top-level `system` would move it out of its place in the
  conversation and change the prompt prefix every time one appears, which throws away the
  upstream's prompt cache for the whole conversation; in place, the earlier turns stay
  byte-identical from one request to the next. A `cache_control` on the system message moves
  to the folded text block.
- Empty (or whitespace-only) text blocks are dropped, in `system` too; a message left with no
  content is dropped.
- Consecutive messages of the same role are merged so roles alternate; in a merged user turn
  the `tool_result` blocks come first, as the API requires.
- `cache_control` on blocks, system blocks and tools is kept.

The input dict is not changed; the result shares unchanged blocks with it.
"""
from __future__ import annotations

from typing import Any

CLASSIC_FIELDS = ("model", "messages", "system", "max_tokens", "metadata", "stop_sequences",
                  "stream", "temperature", "top_p", "top_k", "tools", "tool_choice")

_TOOL_FIELDS = ("name", "description", "input_schema", "cache_control")


def normalize_for_opencode(body: dict) -> dict:
    """A copy of `body` the classic Messages API accepts (see the module docstring)."""
    out = {name: body[name] for name in CLASSIC_FIELDS if name in body}
    if "system" in out:
        system = _normalize_system(out["system"])
        if system:
            out["system"] = system
        else:
            del out["system"]
    if isinstance(out.get("metadata"), dict):
        user_id = out["metadata"].get("user_id")
        if user_id is None:
            del out["metadata"]
        else:
            out["metadata"] = {"user_id": user_id}
    if isinstance(out.get("tools"), list):
        out["tools"] = [_classic_tool(tool) for tool in out["tools"]
                        if not isinstance(tool, dict) or tool.get("type") in (None, "custom")]
        if not out["tools"]:
            del out["tools"]
            out.pop("tool_choice", None)
    if isinstance(out.get("messages"), list):
        out["messages"] = _normalize_messages(out["messages"])
    return out


def server_tool_names(tools: Any) -> list[str]:
    """The server tools among `tools` (what `normalize_for_opencode` drops), by name."""
    if not isinstance(tools, list):
        return []
    return [str(tool.get("name") or tool.get("type")) for tool in tools
            if isinstance(tool, dict) and tool.get("type") not in (None, "custom")]


def _classic_tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool  # a wrong shape: the upstream's 400 names it better than a guess would
    return {name: tool[name] for name in _TOOL_FIELDS if name in tool}


def _normalize_system(system: Any) -> Any:
    if isinstance(system, list):
        return [block for block in system if not _is_empty_text(block)]
    if isinstance(system, str) and not system.strip():
        return None
    return system


def _is_empty_text(block: Any) -> bool:
    return (isinstance(block, dict) and block.get("type") == "text"
            and isinstance(block.get("text"), str) and not block["text"].strip())


def _normalize_messages(messages: list) -> list:
    out: list[dict] = []
    for message in messages:
        if not isinstance(message, dict):
            out.append(message)  # left for the upstream to reject with its own message
            continue
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            role, content = "user", _system_reminder(content)
        content = _drop_empty_text(content)
        if content is None:
            continue
        previous = out[-1] if out and isinstance(out[-1], dict) else None
        if previous is not None and previous.get("role") == role:
            out[-1] = _merge(previous, role, content)
        elif content is message.get("content") and role == message.get("role"):
            out.append(message)
        else:
            out.append({**message, "role": role, "content": content})
    return out


def _system_reminder(content: Any) -> list[dict] | None:
    cache_control = None
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        blocks = [block for block in content if isinstance(block, dict)]
        text = "\n\n".join(block["text"] for block in blocks if isinstance(block.get("text"), str))
        # Claude Code puts its conversation cache breakpoint on this message: keep it on the
        # folded text, or the upstream caches nothing past the system prompt.
        marks = [block["cache_control"] for block in blocks if block.get("cache_control")]
        cache_control = marks[-1] if marks else None
    else:
        return None
    if not text.strip():
        return None
    folded = {"type": "text", "text": f"<system-reminder>\n{text}\n</system-reminder>"}
    if cache_control is not None:
        folded["cache_control"] = cache_control
    return [folded]


def _drop_empty_text(content: Any) -> Any:
    """Content without empty text blocks; None when nothing is left."""
    if isinstance(content, str):
        return content if content.strip() else None
    if isinstance(content, list):
        kept = [block for block in content if not _is_empty_text(block)]
        if not kept:
            return None
        return content if len(kept) == len(content) else kept
    return content


def _as_blocks(content: Any) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else [content]


def _merge(previous: dict, role: str, content: Any) -> dict:
    blocks = _as_blocks(previous["content"]) + _as_blocks(content)
    if role == "user":
        # Tool results must open the user turn that follows the tool calls.
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            blocks = results + [b for b in blocks
                                if not (isinstance(b, dict) and b.get("type") == "tool_result")]
    return {**previous, "content": blocks}
