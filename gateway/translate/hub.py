"""The middle form every protocol is translated to and from.

Four protocols (Chat Completions, Anthropic Messages, Responses, Gemini) never meet pairwise:
each has a request codec and an answer codec around this small form, and a route that crosses
protocols composes the client's codec with the upstream's (`compose.py`). Adding a protocol is one
codec pair, not a translator per pair. Same-protocol routes do not come here at all: their bytes
pass (Gemini's excepted, see `compose.py`).

The form speaks Chat Completions' vocabulary, because it is the widest-understood of them:

- A **request** is a Chat Completions body (a dict): `messages` with `system`/`user`/`assistant`/
  `tool` roles, `reasoning_content` on assistant turns, `tool_calls`, function `tools`,
  `tool_choice`, `max_tokens`, `stop`, `reasoning_effort`, `response_format`, `stream`, …
  A request codec turns its protocol's body into one (`to_hub`) and one into its protocol's body
  (`from_hub`).
- A whole **answer** is an `Answer`; finish reasons are Chat's (`stop`, `length`, `tool_calls`,
  `content_filter`).
- A **stream** is a sequence of calls on a `StreamWriter`: a reader decodes the upstream's
  events and calls the client protocol's writer, which encodes bytes. No event objects are built
  between the two: one method call per upstream event.

What the request codecs check or build the same way (a hub message's parts, a client's function
tool, …) is here too, written once with its refusal; the caller passes the field's path.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import msgspec

from gateway.errors import GatewayError

# Chat Completions' finish reasons: the hub's vocabulary.
STOP, LENGTH, TOOL_CALLS, CONTENT_FILTER = "stop", "length", "tool_calls", "content_filter"

CUT_MESSAGE = ("the upstream closed the stream before the answer was complete; the answer is cut "
               "short, retry the request")


class Usage(msgspec.Struct):
    """Every count the protocols report, in one place.

    `input_tokens` counts every prompt token the model read, cached ones included (Chat's
    `prompt_tokens`); `cached_tokens` are the cache reads among them and
    `cache_creation_tokens` the cache writes (Anthropic reports both outside its input count).
    """
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int | None = None

    def pair(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens): what the access log and the metrics count."""
        return self.input_tokens, self.output_tokens


class ToolCall(msgspec.Struct):
    id: str
    name: str
    arguments: str  # the JSON text as the model wrote it


class Answer(msgspec.Struct):
    """A whole (non-streamed) answer."""
    id: str
    model: str
    reasoning: str = ""
    text: str = ""
    tool_calls: list[ToolCall] = []
    finish: str = STOP
    usage: Usage | None = None
    cost: float | None = None  # dollars the upstream says it charged


class StreamWriter:
    """What a stream reader calls, and what a client protocol's writer implements.

    Calls come in answer order: `start` once, then any mix of `reasoning`, `text`, `tool_call`
    and `tool_arguments` (a call's fragments follow its `tool_call`; `index` counts calls from
    0), then `finish` and `usage` (either order; the last `finish` counts when an upstream
    repeats it), then `end`. `error` may come at any point and ends the stream instead of
    `end`. The writer appends the bytes for the client to `out`; the translation hands them on
    after each upstream chunk.
    """
    __slots__ = ("out", "done", "failure")

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.done = False  # the client's stream has ended (its protocol's end, or an error)
        # (status, message) when it ended in an error event: the access log records it.
        self.failure: tuple[int, str] | None = None

    def start(self, id: str, model: str) -> None: ...
    def reasoning(self, text: str) -> None: ...
    def text(self, text: str) -> None: ...
    def tool_call(self, index: int, id: str, name: str) -> None: ...
    def tool_arguments(self, index: int, fragment: str) -> None: ...
    def finish(self, reason: str) -> None: ...
    def usage(self, usage: Usage) -> None: ...
    def end(self) -> None: ...
    def error(self, status: int, message: str) -> None: ...

    def take(self) -> bytes:
        out = self.out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data


class StreamReader:
    """Decodes one upstream protocol's stream and drives a `StreamWriter`.

    `feed(chunk)` takes the upstream's bytes split anywhere; `end()` says the upstream body
    ended cleanly (a reader that has not seen its protocol's end reports the cut); `usage` and
    `cost` are what the upstream reported, for the access log and the ledger. A reader keeps
    reading after the answer's end, for the cost frame OpenCode Go sends there, but the writer
    hears nothing more.
    """
    __slots__ = ("writer", "usage", "cost", "complete", "_started")

    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.complete = False  # the answer ended (or broke): the writer hears nothing more
        self._started = False  # the writer has been told `start`

    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """The upstream body ended: without its protocol's end, the answer was cut."""
        if not self.complete:
            self._stop(502, CUT_MESSAGE)

    def _start(self, id: str, model: str) -> None:
        if not self._started:
            self._started = True
            self.writer.start(id, model)

    def _ensure_started(self) -> None:
        """An upstream that skipped its opening event still gets the client's opening."""
        self._start("", "")

    def _stop(self, status: int, message: str) -> None:
        self.complete = True
        self.writer.error(status, message)


class StreamTranslation:
    """An upstream reader wired to a client writer: what the forwarder's relay drives."""
    __slots__ = ("reader", "writer")

    def __init__(self, reader: StreamReader, writer: StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def feed(self, chunk: bytes) -> bytes:
        self.reader.feed(chunk)
        return self.writer.take()

    def end(self) -> bytes:
        self.reader.end()
        return self.writer.take()

    def fail(self, status: int, message: str) -> bytes:
        """The upstream failed mid-stream (timeout, connection lost): the client's error event."""
        self.reader.complete = True
        if not self.writer.done:
            self.writer.error(status, message)
        return self.writer.take()

    @property
    def usage(self) -> tuple[int, int] | None:
        usage = self.reader.usage
        return usage.pair() if usage is not None else None

    @property
    def full_usage(self) -> Usage | None:
        return self.reader.usage

    @property
    def cost(self) -> float | None:
        return self.reader.cost

    @property
    def failure(self) -> tuple[int, str] | None:
        """(status, message) when the client's stream ended in an error event."""
        return self.writer.failure


# ---- checks and forms every request codec shares --------------------------------------------

def hub_messages(body: dict) -> list:
    """The hub body's messages, for a codec writing it for one upstream wire: every wire gives
    one answer per request, so `n` other than 1 is refused here, once for all of them."""
    n = body.get("n")
    if n is not None and n != 1:
        raise GatewayError(400, f"n={n!r} is not supported for this model: it returns one answer "
                                "per request; send n=1 (or omit n) and repeat the request for more",
                           param="n")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise GatewayError(400, "`messages` must be a list of message objects", param="messages")
    return messages


def append_turn(turns: list[dict], role: str, items: list, key: str = "content") -> None:
    """`items` as a turn of `role` under `key`, joined to the last turn when it has that role:
    for the wires that want roles to alternate (Anthropic's, Google's)."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def user_content(parts: list[dict]) -> str | list[dict]:
    """A hub user message's content from its parts: text-only content as one string, the form
    every Chat Completions server takes."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def tool_list(tools: Any) -> list:
    """A client's `tools` (none: an empty list)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise GatewayError(400, "`tools` must be a list of tool objects", param="tools")
    return tools


def content_parts(content: Any, where: str) -> str | list:
    """A `content` field as sent (`where` names it): its text ("" for none) or its parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise GatewayError(400, f"`{where}` must be a string or a list of content parts",
                           param=where)
    return content


def hub_text(content: Any) -> str:
    """The text of a hub message's content (its text parts joined); "" for any other shape."""
    if isinstance(content, list):
        return "\n\n".join(part["text"] for part in content
                             if isinstance(part, dict) and isinstance(part.get("text"), str))
    return content if isinstance(content, str) else ""


def hub_parts(content: Any, where: str) -> Iterator[tuple[str, str]]:
    """A hub message's content, checked, as ("text", text) and ("image_url", url) pairs, for a
    codec writing them in its own wire's part forms."""
    content = content_parts(content, f"{where}.content")
    if isinstance(content, str):
        if content:
            yield "text", content
        return
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            yield kind, part["text"]
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise GatewayError(400, f"`{where}.content[{j}].image_url.url` must be a string",
                                   param=f"{where}.content[{j}].image_url.url")
            yield kind, url
        else:
            raise GatewayError(400, f"`{where}.content[{j}].type` {kind!r} is not supported for "
                                    "this model (supported: text, image_url)",
                               param=f"{where}.content[{j}].type")


def hub_tool_call_id(message: dict, where: str) -> str:
    """The call a hub `tool` message answers."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise GatewayError(400, f"`{where}.tool_call_id` must name the tool call this answers",
                           param=f"{where}.tool_call_id")
    return call_id


def hub_function(tool: Any, where: str) -> dict:
    """The `function` of a hub `tools[i]` entry: an object with a string `name`."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise GatewayError(400, f"`{where}` must be a function tool with a name", param=where)
    return function


def tool_name(tool: dict, where: str) -> str:
    """The `name` of a client's tool declaration (every protocol calls it that)."""
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise GatewayError(400, f"`{where}.name` must be a non-empty string", param=f"{where}.name")
    return name


def function_tool(name: str, description: Any, parameters: dict | None) -> dict:
    """The hub's function tool; without `parameters` it takes no arguments."""
    function: dict[str, Any] = {"name": name}
    if isinstance(description, str):
        function["description"] = description
    function["parameters"] = {"type": "object", "properties": {}} if parameters is None \
        else parameters
    return {"type": "function", "function": function}


def parse_cost(value: object) -> float | None:
    """OpenCode Go's `cost` (a decimal string such as "0.000123", or a number) in dollars."""
    if value is None or isinstance(value, bool):
        return None
    try:
        cost = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return cost if cost >= 0 else None


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()
