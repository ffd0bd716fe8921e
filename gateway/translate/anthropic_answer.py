"""Anthropic Messages answers ⇄ the hub: whole answers and streams, both directions.

Reading (an Anthropic-wire upstream's answer → hub):
- `read_answer`: a `message` → `Answer`: text blocks joined, thinking blocks → reasoning (their
  signatures dropped: no other protocol can carry them), `tool_use` input kept as sent as the
  call's arguments; an `error` body is the upstream's error with the status of its type. Block
  types this module does not know (server tool results, citations) decode and are skipped.
- `AnthropicStreamReader`: the event stream → writer calls. Tool calls are numbered by the
  order they start (Anthropic's block index also counts text and thinking blocks, so it is never
  used); a `tool_use` block without `input_json_delta` gives its start `input` (or `{}`) as the
  arguments. The answer is complete at `message_stop`; an `error` event is the upstream's error;
  pings are dropped, except that OpenCode Go's last ping carries the `cost`.

Writing (hub → an Anthropic client):
- `write_answer`: `Answer` → `message`: thinking (from reasoning), then text (only when
  non-empty), then one `tool_use` per call (arguments that are empty, not JSON or not an object
  become `{}`: Anthropic requires an object).
- Message ids are fresh for every answer (see `_message_id`).
- `AnthropicStreamWriter`: `message_start` first; one content block open at a time with
  contiguous indexes; `content_block_stop` before the next `content_block_start`; a thinking
  block is closed with a `signature_delta` carrying `THINKING_SIGNATURE` (Claude Code drops
  thinking blocks without a signature); a text block opens on the first non-empty text only (an
  empty leading text block poisons the next Claude Code request); `message_delta` (stop reason,
  usage) then `message_stop` last. OpenAI sends each call's argument fragments in order; a
  fragment for a call whose block is already closed cannot be delivered without corrupting that
  call's input, so the stream ends with an error event instead of running a tool with half its
  arguments. An error ends the stream with an `error` event and no `message_stop`.

Finish reasons: `end_turn`/`stop_sequence`/`pause_turn` ⇄ `stop`, `max_tokens` ⇄ `length`,
`tool_use` ⇄ `tool_calls`, `refusal` ⇄ `content_filter`; a turn that holds tool calls always
ends with `tool_use` (some servers say `stop` there; Claude Code would not run the calls).
Usage: Anthropic's `input_tokens` leaves out cache reads and writes; the hub's input counts
every prompt token, so the two cached parts are added on reading and taken out on writing.
"""
from __future__ import annotations

from typing import Any, Union

import msgspec

from gateway.errors import (DECODE_ERRORS, GatewayError, anthropic_stream_error,
                            upstream_error_message)
from gateway.translate.hub import (Answer, StreamReader, StreamWriter, ToolCall, Usage, new_id,
                                   parse_cost)
from gateway.translate.sse import DEFAULT_MAX_EVENT_BYTES, SSEParser

# Claude Code discards thinking blocks without a signature. This is not a cryptographic one; it
# only marks the block as whole. Requests translated to other protocols drop signatures again.
THINKING_SIGNATURE = "opencode-go-gateway-unsigned"

FINISH_BY_STOP_REASON: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

STOP_REASON_BY_FINISH: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic error types -> HTTP status, for an error that arrives inside a 200 body or stream.
STATUS_BY_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def hub_finish(stop_reason: str | None) -> str:
    return FINISH_BY_STOP_REASON.get(stop_reason, "stop") if stop_reason else "stop"


def stop_reason(finish: str | None, has_tool_calls: bool) -> str:
    reason = STOP_REASON_BY_FINISH.get(finish, "end_turn") if finish else "end_turn"
    if has_tool_calls and reason == "end_turn":
        return "tool_use"
    return reason


# ---- the wire, as read ----------------------------------------------------------------------

class WireUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


def hub_usage(usage: WireUsage) -> Usage:
    cached = usage.cache_read_input_tokens or 0
    created = usage.cache_creation_input_tokens or 0
    return Usage(input_tokens=(usage.input_tokens or 0) + cached + created,
                 output_tokens=usage.output_tokens or 0, cached_tokens=cached,
                 cache_creation_tokens=created)


class _Block(msgspec.Struct):
    # One struct for every block type: a type this gateway does not know yet decodes fine and
    # is skipped instead of failing the answer.
    type: str
    text: str = ""
    thinking: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw()  # kept as sent: it becomes the arguments text as is


class _ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class _Message(msgspec.Struct):
    type: str = "message"
    id: str = ""
    model: str = ""
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: WireUsage | None = None
    error: _ErrorDetail | None = None
    cost: str | float | None = None


_decode_message = msgspec.json.Decoder(_Message).decode


def _error_status(error: _ErrorDetail) -> int:
    return STATUS_BY_ERROR_TYPE.get(error.type, 502)


def read_answer(raw: bytes) -> Answer:
    """The hub answer in a Messages `message`; the upstream's error for an error body."""
    try:
        message = _decode_message(raw)
    except DECODE_ERRORS as exc:
        raise GatewayError(502, f"the upstream answered with a body that is not an Anthropic "
                                f"Messages response: {exc}") from None
    if message.type == "error" and message.error is not None:
        raise GatewayError(_error_status(message.error),
                           message.error.message or "the upstream answered with an error")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "thinking":
            thoughts.append(block.thinking)
        elif block.type == "tool_use":
            arguments = bytes(block.input).decode() if len(block.input) else "{}"
            calls.append(ToolCall(block.id, block.name, arguments))
    return Answer(id=message.id, model=message.model, reasoning="".join(thoughts),
                  text="".join(texts), tool_calls=calls, finish=hub_finish(message.stop_reason),
                  usage=hub_usage(message.usage) if message.usage is not None else None,
                  cost=parse_cost(message.cost))


class _Event(msgspec.Struct, tag_field="type"):
    pass


class _StartedMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    usage: WireUsage | None = None


class _MessageStart(_Event, tag="message_start"):
    message: _StartedMessage


class _ContentBlockStart(_Event, tag="content_block_start"):
    index: int
    content_block: _Block


class _DeltaBase(msgspec.Struct, tag_field="type"):
    pass


class _TextDelta(_DeltaBase, tag="text_delta"):
    text: str


class _ThinkingDelta(_DeltaBase, tag="thinking_delta"):
    thinking: str


class _InputJsonDelta(_DeltaBase, tag="input_json_delta"):
    partial_json: str


class _SignatureDelta(_DeltaBase, tag="signature_delta"):
    pass


class _ContentBlockDelta(_Event, tag="content_block_delta"):
    index: int
    delta: _TextDelta | _ThinkingDelta | _InputJsonDelta | _SignatureDelta


class _ContentBlockStop(_Event, tag="content_block_stop"):
    index: int


class _StopInfo(msgspec.Struct):
    stop_reason: str | None = None


class _MessageDelta(_Event, tag="message_delta"):
    delta: _StopInfo = msgspec.field(default_factory=_StopInfo)
    usage: WireUsage | None = None


class _MessageStop(_Event, tag="message_stop"):
    pass


class _Ping(_Event, tag="ping"):
    cost: str | float | None = None


class _Error(_Event, tag="error"):
    error: _ErrorDetail | str | None = None


_decode_event = msgspec.json.Decoder(
    _MessageStart | _ContentBlockStart | _ContentBlockDelta | _ContentBlockStop
    | _MessageDelta | _MessageStop | _Ping | _Error
).decode


class _Call:
    __slots__ = ("index", "sent_arguments", "started_input")

    def __init__(self, index: int, started_input: msgspec.Raw):
        self.index = index
        self.sent_arguments = False
        # Anthropic starts a call with `input: {}` and streams the JSON; an upstream that puts
        # the whole input here instead still gets its arguments through.
        self.started_input = started_input


class AnthropicStreamReader(StreamReader):
    __slots__ = ("_parser", "_calls", "_count", "_stop_reason",
                 "_counts")

    def __init__(self, writer: StreamWriter,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(writer)
        self._parser = SSEParser(max_event_bytes)
        self._calls: dict[int, _Call] = {}  # by Anthropic block index
        self._count = 0
        self._stop_reason: str | None = None
        self._counts = WireUsage()

    def feed(self, chunk: bytes) -> None:
        writer = self.writer
        for name, data in self._parser.feed(chunk):
            try:
                event = _decode_event(data)
            except msgspec.ValidationError:
                if name == "error" and not self.complete:  # an error in a shape of its own
                    self._stop(500, upstream_error_message(data, 500))
                continue  # an event type (or delta type) newer than this module: skip it
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                if not self.complete:
                    self._stop(502, f"the upstream sent an unreadable stream event: {exc}")
                continue
            kind = type(event)
            if kind is _Ping:
                if event.cost is not None:
                    self.cost = parse_cost(event.cost)
                continue
            if self.complete:
                continue
            if kind is _ContentBlockDelta:
                delta = event.delta
                delta_kind = type(delta)
                if delta_kind is _TextDelta:
                    if not self._started:
                        self._ensure_started()
                    writer.text(delta.text)
                elif delta_kind is _InputJsonDelta:
                    call = self._calls.get(event.index)
                    if call is not None and delta.partial_json:
                        call.sent_arguments = True
                        writer.tool_arguments(call.index, delta.partial_json)
                elif delta_kind is _ThinkingDelta:
                    self._ensure_started()
                    writer.reasoning(delta.thinking)
            elif kind is _MessageStart:
                self._start(event.message.id, event.message.model)
                if event.message.usage is not None:
                    self._count_usage(event.message.usage)
            elif kind is _ContentBlockStart:
                self._on_block_start(event)
            elif kind is _ContentBlockStop:
                call = self._calls.pop(event.index, None)
                if call is not None and not call.sent_arguments:
                    writer.tool_arguments(call.index, bytes(call.started_input).decode() or "{}")
            elif kind is _MessageDelta:
                if event.delta.stop_reason is not None:
                    self._stop_reason = event.delta.stop_reason
                if event.usage is not None:
                    self._count_usage(event.usage)
            elif kind is _MessageStop:
                self.complete = True
                self._ensure_started()
                writer.finish(hub_finish(self._stop_reason))
                if self.usage is not None:
                    writer.usage(self.usage)
                writer.end()
            elif kind is _Error:
                self._on_error(event.error)
            if writer.done:
                self.complete = True

    def _on_block_start(self, event: _ContentBlockStart) -> None:
        self._ensure_started()
        block = event.content_block
        if block.type == "tool_use":
            call = _Call(self._count, block.input)
            self._count += 1
            self._calls[event.index] = call
            self.writer.tool_call(call.index, block.id, block.name)
        elif block.type == "text" and block.text:
            self.writer.text(block.text)
        elif block.type == "thinking" and block.thinking:
            self.writer.reasoning(block.thinking)

    def _on_error(self, error: _ErrorDetail | str | None) -> None:
        if isinstance(error, _ErrorDetail):
            self._stop(STATUS_BY_ERROR_TYPE.get(error.type, 500),
                       error.message or f"the upstream stream failed ({error.type})")
        else:
            self._stop(500, error or "the upstream stream failed")

    def _count_usage(self, usage: WireUsage) -> None:
        # Anthropic's counts are cumulative (message_delta repeats the total so far), so a value
        # that is present replaces the previous one.
        counts = self._counts
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                     "cache_creation_input_tokens"):
            value = getattr(usage, name)
            if value is not None:
                setattr(counts, name, value)
        self.usage = hub_usage(counts)


# ---- the wire, as written -------------------------------------------------------------------

class AnthropicUsage(msgspec.Struct, omit_defaults=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


def wire_usage(usage: Usage | None) -> AnthropicUsage:
    if usage is None:
        return AnthropicUsage(0, 0)
    cached, created = usage.cached_tokens, usage.cache_creation_tokens
    return AnthropicUsage(max(usage.input_tokens - cached - created, 0), usage.output_tokens,
                          cached or None, created or None)


class ThinkingBlock(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class TextBlock(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ToolUseBlock(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: Any


ContentBlock = Union[ThinkingBlock, TextBlock, ToolUseBlock]


class _OutMessage(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    role: str
    model: str
    content: list[ContentBlock]
    stop_reason: str | None  # None in `message_start`
    stop_sequence: None
    usage: AnthropicUsage


_encode = msgspec.json.Encoder().encode
_decode_arguments = msgspec.json.Decoder().decode


def tool_input(arguments: str | None) -> Any:
    """Tool `input` object for `arguments` text; `{}` when it is not a JSON object."""
    if not arguments:
        return {}
    try:
        parsed = _decode_arguments(arguments)
    except msgspec.DecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _message_id() -> str:
    # Always a fresh id, never the upstream's: Claude Code files every content block of a turn
    # under its message id, drops a thinking block it cannot match to that turn's other blocks
    # by id, and merges turns that share one (some upstreams repeat the same id every time).
    return new_id("msg_")


def write_answer(answer: Answer, model: str) -> bytes:
    """The Messages `message` for a hub answer (`model` when the upstream named none)."""
    content: list[ContentBlock] = []
    if answer.reasoning:
        content.append(ThinkingBlock(answer.reasoning, THINKING_SIGNATURE))
    if answer.text:
        content.append(TextBlock(answer.text))
    for call in answer.tool_calls:
        content.append(ToolUseBlock(call.id or new_id("toolu_"), call.name,
                                    tool_input(call.arguments)))
    message = _OutMessage(
        id=_message_id(), role="assistant", model=answer.model or model,
        content=content, stop_reason=stop_reason(answer.finish, bool(answer.tool_calls)),
        stop_sequence=None, usage=wire_usage(answer.usage))
    return _encode(message)


class _OutMessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: _OutMessage


class _BlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: ContentBlock


class _OutTextDelta(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class _OutThinkingDelta(msgspec.Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class _OutSignatureDelta(msgspec.Struct, tag_field="type", tag="signature_delta"):
    signature: str


class _OutInputJsonDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class _BlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: Union[_OutTextDelta, _OutThinkingDelta, _OutSignatureDelta, _OutInputJsonDelta]


class _BlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class _Stop(msgspec.Struct):
    stop_reason: str
    stop_sequence: None


class _OutMessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: _Stop
    usage: AnthropicUsage


_MESSAGE_START = b"event: message_start\ndata: "
_BLOCK_START = b"event: content_block_start\ndata: "
_BLOCK_DELTA = b"event: content_block_delta\ndata: "
_BLOCK_STOP = b"event: content_block_stop\ndata: "
_MESSAGE_DELTA = b"event: message_delta\ndata: "
_END = b"\n\n"
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

# Which kind of block is open.
_NONE, _THINKING, _TEXT, _TOOL = 0, 1, 2, 3

INTERLEAVED = ("the upstream interleaved the arguments of parallel tool calls, which cannot be "
               "passed on without corrupting them; retry the request")


class AnthropicStreamWriter(StreamWriter):
    __slots__ = ("_model", "_started", "_open", "_index", "_tool", "_saw_tool", "_finish",
                 "_usage")

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self._model = model
        self._started = False
        self._open = _NONE
        self._index = -1   # index of the last block started
        self._tool = -1    # hub index of the call whose tool_use block is open
        self._saw_tool = False
        self._finish: str | None = None
        self._usage: Usage | None = None

    def start(self, id: str, model: str) -> None:
        if self._started:
            return
        self._started = True
        body = _OutMessage(
            id=_message_id(), role="assistant", model=model or self._model, content=[],
            stop_reason=None, stop_sequence=None, usage=AnthropicUsage(0, 0))
        self.out.append(_MESSAGE_START + _encode(_OutMessageStart(body)) + _END)

    def reasoning(self, text: str) -> None:
        if not text:
            return
        if self._open != _THINKING:
            self._open_block(_THINKING, ThinkingBlock("", ""))
        self.out.append(_BLOCK_DELTA + _encode(_BlockDelta(self._index, _OutThinkingDelta(text)))
                        + _END)

    def text(self, text: str) -> None:
        if not text:
            return
        if self._open != _TEXT:
            self._open_block(_TEXT, TextBlock(""))
        self.out.append(_BLOCK_DELTA + _encode(_BlockDelta(self._index, _OutTextDelta(text)))
                        + _END)

    def tool_call(self, index: int, id: str, name: str) -> None:
        self._saw_tool = True
        self._open_block(_TOOL, ToolUseBlock(id or new_id("toolu_"), name, {}))
        self._tool = index

    def tool_arguments(self, index: int, fragment: str) -> None:
        if not fragment:
            return
        if self._open != _TOOL or self._tool != index:
            self.error(502, INTERLEAVED)
            return
        self.out.append(_BLOCK_DELTA + _encode(_BlockDelta(self._index,
                                                           _OutInputJsonDelta(fragment))) + _END)

    def finish(self, reason: str) -> None:
        self._finish = reason
        self._close_block()  # nothing more will be said: let the client finish the last block

    def usage(self, usage: Usage) -> None:
        self._usage = usage

    def end(self) -> None:
        self.start("", "")
        self._close_block()
        reason = stop_reason(self._finish, self._saw_tool)
        self.out.append(_MESSAGE_DELTA + _encode(_OutMessageDelta(
            _Stop(reason, None), wire_usage(self._usage))) + _END)
        self.out.append(_MESSAGE_STOP)
        self.done = True

    def error(self, status: int, message: str) -> None:
        self.out.append(anthropic_stream_error(status, message))
        self.done = True
        self.failure = (status, message)

    def _open_block(self, kind: int, block: ContentBlock) -> None:
        self.start("", "")
        self._close_block()
        self._index += 1
        self._open = kind
        self.out.append(_BLOCK_START + _encode(_BlockStart(self._index, block)) + _END)

    def _close_block(self) -> None:
        if self._open == _NONE:
            return
        if self._open == _THINKING:
            self.out.append(_BLOCK_DELTA + _encode(_BlockDelta(
                self._index, _OutSignatureDelta(THINKING_SIGNATURE))) + _END)
        self.out.append(_BLOCK_STOP + _encode(_BlockStop(self._index)) + _END)
        self._open = _NONE
        self._tool = -1
