"""Anthropic Messages SSE stream -> OpenAI chat.completion.chunk SSE stream.

Used when an OpenAI client streams from a model the upstream serves with the Anthropic protocol.
A small state machine over typed events: the forwarder feeds it the upstream's bytes as they
arrive (split anywhere) and sends on whatever it returns.

What the client sees:
- first a chunk with `delta: {"role": "assistant", "content": ""}`; `choices[0].index` is 0
  in every chunk; `id` is `"chatcmpl-" + <Anthropic message id>`, as in the non-streaming answer;
- `text_delta` -> `delta.content`, `thinking_delta` -> `delta.reasoning_content`; signatures,
  pings and events of types this module does not know are dropped;
- tool calls numbered from 0 in the order they start (Anthropic's block index also counts the
  text and thinking blocks, so it is never used); a call's first chunk carries `id`, `type`,
  `name` and `arguments: ""`, later ones the `partial_json` fragments untouched; a call that got
  no fragment ends with `arguments: "{}"`;
- at `message_stop`: an empty-delta chunk with `finish_reason`, then (with
  `stream_options.include_usage`) a `choices: []` chunk with the usage, then `data: [DONE]`.
  These go out as soon as `message_stop` is read, so `end()` has nothing left to say then;
- an upstream `error` event, a `fail()`, or a stream that ends before `message_stop`: one
  OpenAI-shaped error event and no `[DONE]`, so a broken answer never looks complete.

The constant part of every chunk (id, object, created, model) is encoded once per stream; per
event only the delta is encoded.
"""
from __future__ import annotations

import time
import uuid

import msgspec

from gateway.errors import openai_stream_error, upstream_error_message
from gateway.translate.sse import SSEParser
from gateway.translate.to_openai_response import (
    STATUS_BY_ERROR_TYPE,
    AnthropicUsage,
    OpenAIUsage,
    finish_reason,
    openai_usage,
)

# ---- Anthropic events (decoded) ----


class _Event(msgspec.Struct, tag_field="type"):
    pass


class _StartedMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    usage: AnthropicUsage | None = None


class _MessageStart(_Event, tag="message_start"):
    message: _StartedMessage


class _StartedBlock(msgspec.Struct):
    # One struct for every block type, so a new one (server tools, ...) is skipped, not fatal.
    type: str
    id: str = ""
    name: str = ""
    text: str = ""
    thinking: str = ""
    input: msgspec.Raw = msgspec.Raw()


class _ContentBlockStart(_Event, tag="content_block_start"):
    index: int
    content_block: _StartedBlock


class _Delta(msgspec.Struct, tag_field="type"):
    pass


class _TextDelta(_Delta, tag="text_delta"):
    text: str


class _ThinkingDelta(_Delta, tag="thinking_delta"):
    thinking: str


class _InputJsonDelta(_Delta, tag="input_json_delta"):
    partial_json: str


class _SignatureDelta(_Delta, tag="signature_delta"):
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
    usage: AnthropicUsage | None = None


class _MessageStop(_Event, tag="message_stop"):
    pass


class _Ping(_Event, tag="ping"):
    pass


class _ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class _Error(_Event, tag="error"):
    error: _ErrorDetail | str | None = None


_decode_event = msgspec.json.Decoder(
    _MessageStart | _ContentBlockStart | _ContentBlockDelta | _ContentBlockStop
    | _MessageDelta | _MessageStop | _Ping | _Error
).decode

# ---- OpenAI chunks (encoded) ----


class _FunctionDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: _FunctionDelta | None = None


class _ChoiceDelta(msgspec.Struct, omit_defaults=True):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _UsageChunk(msgspec.Struct):
    id: str
    object: str
    created: int
    model: str
    choices: list
    usage: OpenAIUsage


_encode = msgspec.json.Encoder().encode

_ROLE_DELTA = b'{"role":"assistant","content":""}'
_EMPTY_DELTA = b"{}"
_OPEN_CHOICE_END = b',"finish_reason":null}]}\n\n'
_DONE = b"data: [DONE]\n\n"


class _ToolCallState:
    __slots__ = ("index", "sent_arguments", "started_input")

    def __init__(self, index: int, started_input: msgspec.Raw):
        self.index = index
        self.sent_arguments = False
        # Anthropic starts a call with `input: {}` and streams the JSON; an upstream that puts
        # the whole input here instead still gets its arguments through.
        self.started_input = started_input


class AnthropicToOpenAIStream:
    """Feed upstream bytes in, get OpenAI SSE bytes out; see the module docstring."""

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: tuple[int, int] | None = None
        self._parser = SSEParser()
        self._finished = False
        self._chunk_head: bytes | None = None  # `data: {...,"choices":[{"index":0,"delta":`
        self._id = ""
        self._model = ""
        self._created = 0
        self._tool_calls: dict[int, _ToolCallState] = {}  # by Anthropic block index
        self._tool_call_count = 0
        self._stop_reason: str | None = None
        self._input_tokens = 0
        self._cache_read_tokens = 0
        self._cache_creation_tokens = 0
        self._output_tokens = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._finished:
            return b""
        out: list[bytes] = []
        for name, data in self._parser.feed(chunk):
            try:
                event = _decode_event(data)
            except msgspec.ValidationError:
                if name == "error":  # an error in a shape of its own: still an error
                    out.append(self._error(500, upstream_error_message(data, 500)))
                    break
                continue  # an event type (or delta type) newer than this module: skip it
            except msgspec.DecodeError as exc:
                out.append(self._error(502, f"the upstream sent an unreadable stream event: {exc}"))
                break
            kind = type(event)
            if kind is _ContentBlockDelta:
                self._on_delta(event, out)
            elif kind is _Ping:
                continue
            elif kind is _MessageStart:
                self._on_message_start(event.message, out)
            elif kind is _ContentBlockStart:
                self._on_block_start(event, out)
            elif kind is _ContentBlockStop:
                self._on_block_stop(event.index, out)
            elif kind is _MessageDelta:
                self._on_message_delta(event)
            elif kind is _MessageStop:
                self._on_message_stop(out)
                break
            elif kind is _Error:
                out.append(self._upstream_error(event.error))
                break
        return b"".join(out)

    def end(self) -> bytes:
        """The upstream closed cleanly. Before `message_stop`, that is a cut: an error event."""
        if self._finished:
            return b""
        return self._error(502, "the upstream closed the stream before the answer was complete; "
                                "the answer above is cut short")

    def fail(self, status: int, message: str) -> bytes:
        """The upstream failed mid-stream (timeout, connection error)."""
        if self._finished:
            return b""
        return self._error(status, message)

    # ---- event handlers ----

    def _on_message_start(self, message: _StartedMessage, out: list[bytes]) -> None:
        if self._chunk_head is not None:
            return
        self._start(message.id, message.model)
        if message.usage is not None:
            self._count(message.usage)
        out.append(self._chunk_head + _ROLE_DELTA + _OPEN_CHOICE_END)

    def _start(self, message_id: str, model: str) -> None:
        self._id = "chatcmpl-" + (message_id or uuid.uuid4().hex)
        self._model = model
        self._created = int(time.time())
        self._chunk_head = (b'data: {"id":' + _encode(self._id)
                            + b',"object":"chat.completion.chunk","created":'
                            + str(self._created).encode()
                            + b',"model":' + _encode(model) + b',"choices":[{"index":0,"delta":')

    def _ensure_started(self, out: list[bytes]) -> bytes:
        """The chunk head; an upstream that skipped `message_start` still gets a role chunk."""
        if self._chunk_head is None:
            self._on_message_start(_StartedMessage(), out)
        return self._chunk_head

    def _on_delta(self, event: _ContentBlockDelta, out: list[bytes]) -> None:
        head = self._ensure_started(out)
        delta = event.delta
        kind = type(delta)
        if kind is _TextDelta:
            if delta.text:  # the hottest path: the delta object spelled out, no struct built
                out.append(head + b'{"content":' + _encode(delta.text) + b"}" + _OPEN_CHOICE_END)
        elif kind is _InputJsonDelta:
            call = self._tool_calls.get(event.index)
            if call is not None and delta.partial_json:
                call.sent_arguments = True
                out.append(self._tool_chunk(head, call.index, delta.partial_json))
        elif kind is _ThinkingDelta:
            if delta.thinking:
                out.append(head + b'{"reasoning_content":' + _encode(delta.thinking) + b"}"
                           + _OPEN_CHOICE_END)

    def _on_block_start(self, event: _ContentBlockStart, out: list[bytes]) -> None:
        head = self._ensure_started(out)
        block = event.content_block
        if block.type == "tool_use":
            call = _ToolCallState(self._tool_call_count, block.input)
            self._tool_call_count += 1
            self._tool_calls[event.index] = call
            first = _ToolCallDelta(call.index, block.id, "function", _FunctionDelta(block.name, ""))
            out.append(head + _encode(_ChoiceDelta(tool_calls=[first])) + _OPEN_CHOICE_END)
        elif block.type == "text" and block.text:
            out.append(head + _encode(_ChoiceDelta(content=block.text)) + _OPEN_CHOICE_END)
        elif block.type == "thinking" and block.thinking:
            out.append(head + _encode(_ChoiceDelta(reasoning_content=block.thinking))
                       + _OPEN_CHOICE_END)

    def _on_block_stop(self, index: int, out: list[bytes]) -> None:
        call = self._tool_calls.pop(index, None)
        if call is not None and not call.sent_arguments:
            arguments = bytes(call.started_input).decode() or "{}"
            out.append(self._tool_chunk(self._ensure_started(out), call.index, arguments))

    def _on_message_delta(self, event: _MessageDelta) -> None:
        if event.delta.stop_reason is not None:
            self._stop_reason = event.delta.stop_reason
        if event.usage is not None:
            self._count(event.usage)

    def _on_message_stop(self, out: list[bytes]) -> None:
        head = self._ensure_started(out)
        out.append(head + _EMPTY_DELTA + b',"finish_reason":'
                   + _encode(finish_reason(self._stop_reason)) + b"}]}\n\n")
        if self.include_usage and self.usage is not None:
            usage = openai_usage(self.usage[0], self.usage[1], self._cache_read_tokens)
            chunk = _UsageChunk(self._id, "chat.completion.chunk", self._created, self._model,
                                [], usage)
            out.append(b"data: " + _encode(chunk) + b"\n\n")
        out.append(_DONE)
        self._finished = True

    def _count(self, usage: AnthropicUsage) -> None:
        # Anthropic's counts are cumulative (message_delta repeats the total so far), so a value
        # that is present replaces the previous one.
        if usage.input_tokens is not None:
            self._input_tokens = usage.input_tokens
        if usage.cache_read_input_tokens is not None:
            self._cache_read_tokens = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self._cache_creation_tokens = usage.cache_creation_input_tokens
        if usage.output_tokens is not None:
            self._output_tokens = usage.output_tokens
        self.usage = (self._input_tokens + self._cache_read_tokens + self._cache_creation_tokens,
                      self._output_tokens)

    # ---- output helpers ----

    def _tool_chunk(self, head: bytes, call_index: int, arguments: str) -> bytes:
        fragment = _ToolCallDelta(call_index, function=_FunctionDelta(arguments=arguments))
        return head + _encode(_ChoiceDelta(tool_calls=[fragment])) + _OPEN_CHOICE_END

    def _upstream_error(self, error: _ErrorDetail | str | None) -> bytes:
        if isinstance(error, _ErrorDetail):
            return self._error(STATUS_BY_ERROR_TYPE.get(error.type, 500),
                               error.message or f"the upstream stream failed ({error.type})")
        return self._error(500, error or "the upstream stream failed")

    def _error(self, status: int, message: str) -> bytes:
        self._finished = True
        return openai_stream_error(status, message)
