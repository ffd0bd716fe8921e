"""OpenAI Responses answers ⇄ the hub: whole answers and streams, both directions.

Reading (a Responses-wire upstream's answer → hub):
- `read_answer`: a `response` object → `Answer`: `message` items' `output_text` parts joined,
  `reasoning` items' summary (or reasoning) text joined, `function_call` items as tool calls;
  `status: incomplete` with `max_output_tokens` is finish `length`; a `failed` response or an
  error body is the upstream's error.
- `ResponsesStreamReader`: the event stream → writer calls, by output item: a `function_call`
  item starts a tool call, its `function_call_arguments.delta` events carry the arguments;
  `output_text.delta` is text; `reasoning_summary_text.delta` and `reasoning_text.delta` are
  reasoning. `response.completed` / `response.incomplete` end the answer (with its usage),
  `response.failed` and `error` end it broken.

Writing (hub → a Responses client such as Codex CLI or the openai SDK):
- `write_answer`: `Answer` → `response` with output items `reasoning` (its text as one
  `summary_text`), `message` (one `output_text`), `function_call`s, `usage` with
  `input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`, and
  `status`/`incomplete_details` for a cut-off answer.
- `ResponsesStreamWriter`: the documented sequence: `response.created`, `response.in_progress`,
  then per output item `output_item.added` → its part/summary `added` → deltas → `done` events →
  `output_item.done`, and last `response.completed` (or `response.incomplete` for a cut-off
  answer, `response.failed` for a broken one — never a completed event after a broken
  upstream). Every event carries a `sequence_number` from 0. One item is open at a time,
  except tool calls, which may receive arguments in any order.
- Tools the client declared as freeform (`type: custom`, such as Codex's `apply_patch` for
  OpenAI model names) travel to other protocols as a function taking one string `input`; their
  calls come back here as `custom_tool_call` items with that string as `input`, the form the
  client expects.
"""
from __future__ import annotations

import time
from typing import Any

import msgspec

from gateway.errors import DECODE_ERRORS, GatewayError
from gateway.translate.hub import (CONTENT_FILTER, LENGTH, STOP, TOOL_CALLS, Answer, StreamReader,
                                   StreamWriter, ToolCall, Usage, new_id, parse_cost)
from gateway.translate.sse import DEFAULT_MAX_EVENT_BYTES, SSEParser

CUSTOM_TOOL_INPUT = "input"  # the one string parameter a freeform tool becomes elsewhere
_NAMESPACE_SEPARATOR = "__"


def namespaced_name(namespace: str, name: str) -> str:
    """The one function name a namespaced tool (Codex's `multi_agent_v1`) has elsewhere."""
    return namespace + _NAMESPACE_SEPARATOR + name

# ---- the wire, as read ----------------------------------------------------------------------


class _InputDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class WireUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


def hub_usage(usage: WireUsage) -> Usage:
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else None
    reasoning = (usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details
                 else None)
    return Usage(input_tokens=usage.input_tokens or 0, output_tokens=usage.output_tokens or 0,
                 cached_tokens=cached or 0, reasoning_tokens=reasoning)


class _Text(msgspec.Struct):
    type: str = ""
    text: str = ""
    refusal: str = ""  # a `refusal` part's text: the model's answer all the same


class _Item(msgspec.Struct):
    type: str
    id: str | None = None
    content: list[_Text] | None = None
    summary: list[_Text] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    input: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    code: str | int | None = None
    type: str | None = None


class _IncompleteDetails(msgspec.Struct):
    reason: str | None = None


class _Response(msgspec.Struct):
    id: str = ""
    model: str = ""
    status: str | None = None
    output: list[_Item] = []
    usage: WireUsage | None = None
    error: _ErrorDetail | None = None
    incomplete_details: _IncompleteDetails | None = None
    cost: str | float | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_SUMMARY_SEPARATOR = "\n\n"  # between the parts of reasoning summaries

# Responses error codes -> HTTP status, for a failure reported inside a 200 answer or stream.
_STATUS_BY_CODE = {"rate_limit_exceeded": 429, "invalid_prompt": 400, "server_error": 500,
                   "vector_store_timeout": 504}


def _failure(error: _ErrorDetail | None) -> tuple[int, str]:
    if error is None:
        return 500, "the upstream reported that the response failed"
    code = error.code
    status = code if isinstance(code, int) and 400 <= code <= 599 else \
        _STATUS_BY_CODE.get(code if isinstance(code, str) else "", 500)
    return status, error.message or f"the upstream reported that the response failed ({code})"


def _finish_of(response: _Response, has_calls: bool) -> str:
    if response.status == "incomplete":
        reason = response.incomplete_details.reason if response.incomplete_details else None
        return CONTENT_FILTER if reason == "content_filter" else LENGTH
    return TOOL_CALLS if has_calls else STOP


def _arguments_of(item: _Item) -> str:
    if item.type == "custom_tool_call":
        return msgspec.json.encode({CUSTOM_TOOL_INPUT: item.input or ""}).decode()
    return item.arguments or ""


def read_answer(raw: bytes) -> Answer:
    """The hub answer in a Responses `response`; the upstream's error for a failed one."""
    try:
        response = _decode_response(raw)
    except DECODE_ERRORS as exc:
        raise GatewayError(502, f"the upstream answered with a body that is not a Responses "
                                f"response: {exc}") from None
    if response.status == "failed" or (response.error is not None and not response.output):
        raise GatewayError(*_failure(response.error))
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for item in response.output:
        if item.type == "message":
            texts.extend(part.text or part.refusal for part in item.content or ()
                         if part.type in ("output_text", "refusal"))
        elif item.type == "reasoning":
            parts = item.summary or item.content or ()
            thoughts.extend(part.text for part in parts)
        elif item.type in ("function_call", "custom_tool_call"):
            calls.append(ToolCall(item.call_id or "", item.name or "",
                                  _arguments_of(item)))
    return Answer(id=response.id, model=response.model,
                  reasoning=_SUMMARY_SEPARATOR.join(thoughts),
                  text="".join(texts), tool_calls=calls,
                  finish=_finish_of(response, bool(calls)),
                  usage=hub_usage(response.usage) if response.usage is not None else None,
                  cost=parse_cost(response.cost))


class _StreamEvent(msgspec.Struct):
    type: str = ""
    output_index: int = 0
    item: _Item | None = None
    delta: str = ""
    summary_index: int = 0
    arguments: str | None = None
    response: _Response | None = None
    message: str | None = None  # an `error` event
    code: str | int | None = None
    cost: str | float | None = None


_decode_stream_event = msgspec.json.Decoder(_StreamEvent).decode


class ResponsesStreamReader(StreamReader):
    __slots__ = ("_parser", "_calls", "_count")

    def __init__(self, writer: StreamWriter,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(writer)
        self._parser = SSEParser(max_event_bytes)
        self._calls: dict[int, list] = {}  # output index -> [hub index, arguments sent?]
        self._count = 0

    def feed(self, chunk: bytes) -> None:
        writer = self.writer
        for _name, data in self._parser.feed(chunk):
            try:
                event = _decode_stream_event(data)
            except DECODE_ERRORS as exc:
                if not self.complete:
                    self._stop(502, f"the upstream sent an unreadable stream event: {exc}")
                continue
            if event.cost is not None:
                self.cost = parse_cost(event.cost)
            if self.complete:
                continue
            kind = event.type
            if kind == "response.output_text.delta" or kind == "response.refusal.delta":
                self._ensure_started()
                writer.text(event.delta)
            elif kind == "response.function_call_arguments.delta" or \
                    kind == "response.custom_tool_call_input.delta":
                call = self._calls.get(event.output_index)
                if call is not None and event.delta:
                    call[1] = True
                    if kind == "response.custom_tool_call_input.delta":
                        continue  # sent whole at the item's end, wrapped as arguments
                    writer.tool_arguments(call[0], event.delta)
            elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
                self._ensure_started()
                writer.reasoning(event.delta)
            elif kind == "response.reasoning_summary_part.added" and event.summary_index > 0:
                writer.reasoning(_SUMMARY_SEPARATOR)  # as a whole answer joins them
            elif kind == "response.output_item.added":
                self._on_item_added(event)
            elif kind == "response.output_item.done":
                self._on_item_done(event)
            elif kind == "response.created":
                if event.response is not None:
                    self._start(event.response.id, event.response.model)
            elif kind in ("response.completed", "response.incomplete"):
                self._on_completed(event.response)
            elif kind == "response.failed":
                response = event.response
                self._stop(*_failure(response.error if response is not None else None))
            elif kind == "error":
                status, message = _failure(_ErrorDetail(event.message, event.code))
                self._stop(status, message)
            if writer.done:
                self.complete = True

    def _on_item_added(self, event: _StreamEvent) -> None:
        item = event.item
        if item is None or item.type not in ("function_call", "custom_tool_call"):
            return
        self._ensure_started()
        self._calls[event.output_index] = [self._count, False]
        self.writer.tool_call(self._count, item.call_id or "", item.name or "")
        self._count += 1

    def _on_item_done(self, event: _StreamEvent) -> None:
        call = self._calls.get(event.output_index)
        item = event.item
        if call is None or item is None:
            return
        # A custom call's input, or a call whose arguments came only whole, goes out now.
        if item.type == "custom_tool_call" or not call[1]:
            self.writer.tool_arguments(call[0], _arguments_of(item) or "{}")
        call[1] = True

    def _on_completed(self, response: _Response | None) -> None:
        self.complete = True
        self._ensure_started()
        writer = self.writer
        if response is not None:
            writer.finish(_finish_of(response, bool(self._calls)))
            if response.usage is not None:
                self.usage = hub_usage(response.usage)
                writer.usage(self.usage)
            if response.cost is not None:
                self.cost = parse_cost(response.cost)
        writer.end()


# ---- the wire, as written -------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


def wire_usage(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {"input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": usage.cache_creation_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
            "total_tokens": usage.input_tokens + usage.output_tokens}


def _status_of(finish: str) -> tuple[str, dict | None]:
    if finish == LENGTH:
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _request_tools(request: dict) -> list:
    tools = list(request.get("tools") or ()) if isinstance(request.get("tools"), list) else []
    items = request.get("input")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("type") == "additional_tools" \
                    and isinstance(item.get("tools"), list):
                tools += item["tools"]
    return tools


def tool_kinds(request: dict) -> tuple[frozenset[str], dict[str, tuple[str, str]]]:
    """The client's freeform tools (their calls go back as `custom_tool_call` items) and its
    namespaced functions (flat name -> (namespace, name): their calls go back split)."""
    custom: set[str] = set()
    namespaced: dict[str, tuple[str, str]] = {}

    def visit(tools: list, namespace: str | None) -> None:
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            name = tool["name"]
            kind = tool.get("type")
            if kind == "namespace" and isinstance(tool.get("tools"), list):
                visit(tool["tools"], name)
                continue
            flat = namespaced_name(namespace, name) if namespace else name
            if namespace:
                namespaced[flat] = (namespace, name)
            if kind == "custom":
                custom.add(flat)

    visit(_request_tools(request), None)
    return frozenset(custom), namespaced


def _custom_input(arguments: str) -> str:
    try:
        parsed = msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_TOOL_INPUT), str):
        return parsed[CUSTOM_TOOL_INPUT]
    return arguments


def _call_item(call_id: str, name: str, arguments: str, item_id: str, echo: "ResponseEcho",
               status: str = "completed") -> dict[str, Any]:
    item: dict[str, Any]
    if name in echo.custom_tools:
        item = {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name,
                "input": _custom_input(arguments), "status": status}
    else:
        item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                "arguments": arguments, "status": status}
    split = echo.namespaced.get(name)
    if split is not None:
        item["namespace"], item["name"] = split
    return item


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": []}]}


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id,
            "summary": [{"type": "summary_text", "text": text}] if text else []}


class ResponseEcho:
    """The request fields a `response` object repeats, read once from the client's request."""
    __slots__ = ("fields", "custom_tools", "namespaced")

    def __init__(self, request: dict) -> None:
        tools = request.get("tools")
        reasoning = request.get("reasoning")
        self.fields: dict[str, Any] = {
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
            "previous_response_id": None,
            "reasoning": reasoning if isinstance(reasoning, dict) else None,
            "store": request.get("store") is True,
            "temperature": request.get("temperature"),
            "text": request.get("text") if isinstance(request.get("text"), dict)
            else {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": tools if isinstance(tools, list) else [],
            "top_p": request.get("top_p"),
            "truncation": "disabled",
            "metadata": request.get("metadata") if isinstance(request.get("metadata"), dict)
            else {},
        }
        self.custom_tools, self.namespaced = tool_kinds(request)


def _response(response_id: str, model: str, created: int, echo: ResponseEcho, status: str,
              output: list, usage: Usage | None, incomplete: dict | None = None,
              error: dict | None = None, with_usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": response_id, "object": "response", "created_at": created,
                            "status": status, "error": error, "incomplete_details": incomplete,
                            "model": model, "output": output, **echo.fields}
    if with_usage:
        body["usage"] = wire_usage(usage)
    return body


def _response_id(upstream_id: str) -> str:
    if upstream_id.startswith("resp_"):
        return upstream_id
    return "resp_" + upstream_id if upstream_id else new_id("resp_")


def write_answer(answer: Answer, model: str, echo: ResponseEcho) -> bytes:
    """The `response` object for a hub answer (`model` when the upstream named none)."""
    output: list[dict[str, Any]] = []
    if answer.reasoning:
        output.append(_reasoning_item(new_id("rs_"), answer.reasoning))
    if answer.text:
        output.append(_message_item(new_id("msg_"), answer.text))
    for call in answer.tool_calls:
        output.append(_call_item(call.id or new_id("call_"), call.name, call.arguments or "{}",
                                 new_id("ctc_" if call.name in echo.custom_tools else "fc_"),
                                 echo))
    status, incomplete = _status_of(answer.finish)
    return _encode(_response(_response_id(answer.id), answer.model or model, int(time.time()),
                             echo, status, output, answer.usage, incomplete))


class _OpenItem:
    """An output item while it streams: what its `done` events and the final response repeat."""
    __slots__ = ("kind", "id", "output_index", "parts", "call_id", "name", "custom")

    def __init__(self, kind: str, item_id: str, output_index: int, call_id: str = "",
                 name: str = "", custom: bool = False):
        self.kind = kind
        self.id = item_id
        self.output_index = output_index
        self.parts: list[str] = []
        self.call_id = call_id
        self.name = name
        self.custom = custom


class ResponsesStreamWriter(StreamWriter):
    __slots__ = ("_model", "_echo", "_id", "_created", "_sequence", "_started", "_items",
                 "_open", "_calls", "_finish", "_usage", "_text_head")

    def __init__(self, *, model: str, echo: ResponseEcho) -> None:
        super().__init__()
        self._model = model
        self._echo = echo
        self._id = ""
        self._created = 0
        self._sequence = 0
        self._started = False
        self._items: list[_OpenItem] = []          # every item, in output order
        self._open: _OpenItem | None = None        # the open message or reasoning item
        self._calls: dict[int, _OpenItem] = {}     # hub call index -> its item
        self._finish = STOP
        self._usage: Usage | None = None
        self._text_head = b""                      # the constant head of a text delta event

    # -- events --

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        payload["type"] = kind
        payload["sequence_number"] = self._sequence
        self._sequence += 1
        self.out.append(b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n")

    def _lifecycle(self, kind: str, status: str, output: list, **extra: Any) -> None:
        self._event(kind, {"response": _response(self._id, self._model, self._created,
                                                 self._echo, status, output, self._usage,
                                                 with_usage=status != "in_progress", **extra)})

    def start(self, id: str, model: str) -> None:
        if self._started:
            return
        self._started = True
        self._id = _response_id(id)
        self._model = model or self._model
        self._created = int(time.time())
        self._lifecycle("response.created", "in_progress", [])
        self._lifecycle("response.in_progress", "in_progress", [])

    def resume(self, id: str, sequence: int) -> None:
        """Go on with a response whose opening (and `sequence` events) someone else sent."""
        self._started = True
        self._id = id
        self._created = int(time.time())
        self._sequence = sequence

    def _add_item(self, item: _OpenItem, body: dict[str, Any]) -> None:
        self._items.append(item)
        self._event("response.output_item.added", {"output_index": item.output_index,
                                                   "item": body})

    # -- content --

    def reasoning(self, text: str) -> None:
        if not text:
            return
        item = self._open
        if item is None or item.kind != "reasoning":
            self.start("", "")
            self._close_open()
            item = self._open = _OpenItem("reasoning", new_id("rs_"), len(self._items))
            self._add_item(item, {"type": "reasoning", "id": item.id, "summary": []})
            self._event("response.reasoning_summary_part.added", {
                "item_id": item.id, "output_index": item.output_index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}})
        item.parts.append(text)
        self._event("response.reasoning_summary_text.delta", {
            "item_id": item.id, "output_index": item.output_index, "summary_index": 0,
            "delta": text})

    def text(self, text: str) -> None:
        if not text:
            return
        item = self._open
        if item is None or item.kind != "message":
            self.start("", "")
            self._close_open()
            item = self._open = _OpenItem("message", new_id("msg_"), len(self._items))
            self._add_item(item, {"type": "message", "id": item.id, "status": "in_progress",
                                  "role": "assistant", "content": []})
            self._event("response.content_part.added", {
                "item_id": item.id, "output_index": item.output_index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
            self._text_head = (b'event: response.output_text.delta\ndata: {"type":'
                               b'"response.output_text.delta","item_id":' + _encode(item.id)
                               + b',"output_index":' + str(item.output_index).encode()
                               + b',"content_index":0,"logprobs":[],"delta":')
        item.parts.append(text)
        # The hottest event, spelled out rather than built as a dict.
        self.out.append(self._text_head + _encode(text) + b',"sequence_number":'
                        + str(self._sequence).encode() + b"}\n\n")
        self._sequence += 1

    def tool_call(self, index: int, id: str, name: str) -> None:
        self.start("", "")
        self._close_open()
        id = id or new_id("call_")
        custom = name in self._echo.custom_tools
        item = _OpenItem("call", new_id("ctc_" if custom else "fc_"), len(self._items), id, name,
                         custom)
        self._calls[index] = item
        body = _call_item(id, name, "", item.id, self._echo, "in_progress")
        self._add_item(item, body)

    def tool_arguments(self, index: int, fragment: str) -> None:
        item = self._calls.get(index)
        if item is None or not fragment:
            return
        item.parts.append(fragment)
        if not item.custom:  # a freeform call's input is known only once its JSON is whole
            self._event("response.function_call_arguments.delta", {
                "item_id": item.id, "output_index": item.output_index, "delta": fragment})

    def finish(self, reason: str) -> None:
        self._finish = reason

    def usage(self, usage: Usage) -> None:
        self._usage = usage

    # -- the end --

    def _close_open(self) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        text = "".join(item.parts)
        where = {"item_id": item.id, "output_index": item.output_index}
        if item.kind == "message":
            self._event("response.output_text.done", {**where, "content_index": 0, "text": text,
                                                      "logprobs": []})
            self._event("response.content_part.done", {**where, "content_index": 0, "part": {
                "type": "output_text", "text": text, "annotations": [], "logprobs": []}})
        else:
            self._event("response.reasoning_summary_text.done",
                        {**where, "summary_index": 0, "text": text})
            self._event("response.reasoning_summary_part.done", {
                **where, "summary_index": 0, "part": {"type": "summary_text", "text": text}})
        self._event("response.output_item.done", {"output_index": item.output_index,
                                                  "item": self._final_item(item)})

    def _final_item(self, item: _OpenItem) -> dict[str, Any]:
        text = "".join(item.parts)
        if item.kind == "message":
            return _message_item(item.id, text)
        if item.kind == "reasoning":
            return _reasoning_item(item.id, text)
        return _call_item(item.call_id, item.name, text or "{}", item.id, self._echo)

    def _close_calls(self) -> None:
        for item in self._calls.values():
            arguments = "".join(item.parts) or "{}"
            where = {"item_id": item.id, "output_index": item.output_index}
            if item.custom:
                value = _custom_input(arguments)
                self._event("response.custom_tool_call_input.delta", {**where, "delta": value})
                self._event("response.custom_tool_call_input.done", {**where, "input": value})
            else:
                self._event("response.function_call_arguments.done",
                            {**where, "arguments": arguments})
            self._event("response.output_item.done", {"output_index": item.output_index,
                                                      "item": self._final_item(item)})

    def end(self) -> None:
        self.start("", "")
        self._close_open()
        self._close_calls()
        status, incomplete = _status_of(self._finish)
        output = [self._final_item(item) for item in self._items]
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._lifecycle(kind, status, output, incomplete=incomplete)
        self.done = True

    def error(self, status: int, message: str) -> None:
        self.start("", "")
        code = "rate_limit_exceeded" if status == 429 else \
            "invalid_prompt" if 400 <= status < 500 else "server_error"
        output = [self._final_item(item) for item in self._items]
        self._lifecycle("response.failed", "failed", output,
                        error={"code": code, "message": message})
        self.done = True
        self.failure = (status, message)


def stream_failure(status: int, message: str, response_id: str | None = None,
                   sequence: int = 0) -> bytes:
    """`response.failed` for a pass-through Responses stream that broke: the event clients read.
    When the client already has the stream's opening (`response_id`), the failure continues
    that response at the next `sequence` number instead of opening another one."""
    writer = ResponsesStreamWriter(model="", echo=ResponseEcho({}))
    if response_id is not None:
        writer.resume(response_id, sequence)
    writer.error(status, message)
    return writer.take()
