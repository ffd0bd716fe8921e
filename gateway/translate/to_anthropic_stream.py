"""OpenAI chat.completion.chunk stream → Anthropic Messages SSE stream.

A small state machine fed the upstream's raw bytes as they arrive; it answers the Anthropic
events those bytes complete. Anthropic clients are strict about the event grammar, so the
translator keeps these invariants: `message_start` first; one content block open at a time;
block indexes contiguous from 0; `content_block_stop` before the next `content_block_start`;
no delta for a block that is not open; `message_delta` (stop reason and usage, once) then
`message_stop` last — or, when the answer is broken, an `error` event and nothing after it.

Choices a client can notice:
- Reasoning deltas (`reasoning_content`, or `reasoning`) open a thinking block; it is closed with
  a `signature_delta` carrying `THINKING_SIGNATURE`, because Claude Code drops thinking blocks
  that arrive without a signature.
- A text block opens on the first non-empty text only: an empty leading text block poisons the
  next Claude Code request.
- A tool call opens a tool_use block when its index (or a new id at a known index, which some
  servers send for every call at index 0) first appears; argument fragments pass through
  untouched as `input_json_delta`. OpenAI sends each call's fragments in order; a non-empty
  fragment for a call whose block is already closed cannot be delivered without corrupting
  that call's input, so the stream ends with an error event instead of running a tool with
  half its arguments.
- The closing `message_delta` waits for the usage chunk OpenAI sends after the finish chunk
  (`choices: []`), or for `[DONE]`, or for the end of the body. `[DONE]` without any
  `finish_reason` still counts as a finished answer (the upstream said so); a body that ends
  without a `finish_reason` is a cut connection and ends in an `error` event.
"""
from __future__ import annotations

from typing import Union

import msgspec

from gateway.errors import anthropic_stream_error
from gateway.translate.sse import SSEParser
from gateway.translate.to_anthropic_response import (
    THINKING_SIGNATURE, AnthropicUsage, ContentBlock, OpenAIUsage, TextBlock, ThinkingBlock,
    ToolUseBlock, anthropic_usage, new_id, stop_reason, token_pair,
)

# --- OpenAI chunk (input) --------------------------------------------------------------------


class _FunctionDelta(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    code: int | str | None = None


class _Chunk(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_ChunkChoice] | None = None
    usage: OpenAIUsage | None = None
    error: _ErrorDetail | str | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode

# --- Anthropic events (output) ---------------------------------------------------------------


class _MessageStartBody(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    role: str
    model: str
    content: list
    stop_reason: None
    stop_sequence: None
    usage: AnthropicUsage


class _MessageStart(msgspec.Struct, tag_field="type", tag="message_start"):
    message: _MessageStartBody


class _BlockStart(msgspec.Struct, tag_field="type", tag="content_block_start"):
    index: int
    content_block: ContentBlock


class _TextDelta(msgspec.Struct, tag_field="type", tag="text_delta"):
    text: str


class _ThinkingDelta(msgspec.Struct, tag_field="type", tag="thinking_delta"):
    thinking: str


class _SignatureDelta(msgspec.Struct, tag_field="type", tag="signature_delta"):
    signature: str


class _InputJsonDelta(msgspec.Struct, tag_field="type", tag="input_json_delta"):
    partial_json: str


class _BlockDelta(msgspec.Struct, tag_field="type", tag="content_block_delta"):
    index: int
    delta: Union[_TextDelta, _ThinkingDelta, _SignatureDelta, _InputJsonDelta]


class _BlockStop(msgspec.Struct, tag_field="type", tag="content_block_stop"):
    index: int


class _Stop(msgspec.Struct):
    stop_reason: str
    stop_sequence: None


class _MessageDelta(msgspec.Struct, tag_field="type", tag="message_delta"):
    delta: _Stop
    usage: AnthropicUsage


_encode = msgspec.json.Encoder().encode

_MESSAGE_START = b"event: message_start\ndata: "
_BLOCK_START = b"event: content_block_start\ndata: "
_BLOCK_DELTA = b"event: content_block_delta\ndata: "
_BLOCK_STOP = b"event: content_block_stop\ndata: "
_MESSAGE_DELTA = b"event: message_delta\ndata: "
_END = b"\n\n"
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

# Which kind of block is open.
_NONE, _THINKING, _TEXT, _TOOL = 0, 1, 2, 3

_CUT = "the upstream closed the stream before the answer was complete; retry the request"
_INTERLEAVED = ("the upstream interleaved the arguments of parallel tool calls, which cannot be "
                "passed on without corrupting them; retry the request")


class OpenAIToAnthropicStream:
    """Translates one upstream OpenAI stream into the Anthropic stream the client reads."""

    __slots__ = ("usage", "_parser", "_model", "_started", "_done", "_open", "_index",
                 "_tool_ids", "_tool_key", "_saw_tool", "_finish", "_openai_usage")

    def __init__(self, *, model: str):
        self.usage: tuple[int, int] | None = None
        self._parser = SSEParser()
        self._model = model
        self._started = False
        self._done = False          # message_stop or an error event went out
        self._open = _NONE
        self._index = -1            # index of the last block started
        self._tool_ids: dict[int, str] = {}   # upstream tool-call index -> id of its call
        self._tool_key = -1         # upstream index of the open tool_use block
        self._saw_tool = False
        self._finish: str | None = None
        self._openai_usage: OpenAIUsage | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Anthropic SSE bytes for the upstream bytes received (possibly none)."""
        if self._done:
            return b""
        out: list[bytes] = []
        for _event, data in self._parser.feed(chunk):
            if data == b"[DONE]":
                self._finish_message(out)
            else:
                self._on_chunk(data, out)
            if self._done:
                break
        return b"".join(out)

    def end(self) -> bytes:
        """The upstream body ended: close the message, or report the cut."""
        if self._done:
            return b""
        out: list[bytes] = []
        if self._finish is not None:
            self._finish_message(out)
        else:
            self._fail(502, _CUT, out)
        return b"".join(out)

    def fail(self, status: int, message: str) -> bytes:
        """An `error` event (a failure the caller saw); the stream says nothing after it."""
        if self._done:
            return b""
        out: list[bytes] = []
        self._fail(status, message, out)
        return b"".join(out)

    # --- per chunk ---------------------------------------------------------------------------

    def _on_chunk(self, data: bytes, out: list[bytes]) -> None:
        try:
            chunk = _decode_chunk(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._fail(502, f"the upstream sent an invalid stream chunk: {exc}", out)
            return
        if chunk.error is not None:
            self._on_upstream_error(chunk.error, out)
            return
        if not self._started:
            self._start(chunk, out)
        if chunk.choices:
            for choice in chunk.choices:
                if choice.index == 0:
                    self._on_choice(choice, out)
                    if self._done:
                        return
        if chunk.usage is not None:
            self._openai_usage = chunk.usage
            self.usage = token_pair(chunk.usage)
            # OpenAI's usage chunk follows the finish chunk with `choices: []`: the answer is
            # complete. Usage riding along with content is not final yet.
            if self._finish is not None and not chunk.choices:
                self._finish_message(out)

    def _start(self, chunk: _Chunk, out: list[bytes]) -> None:
        self._started = True
        body = _MessageStartBody(
            id="msg_" + chunk.id if chunk.id else new_id("msg_"), role="assistant",
            model=chunk.model or self._model, content=[], stop_reason=None, stop_sequence=None,
            usage=AnthropicUsage(0, 0))
        out.append(_MESSAGE_START + _encode(_MessageStart(body)) + _END)

    def _on_choice(self, choice: _ChunkChoice, out: list[bytes]) -> None:
        delta = choice.delta
        if delta is not None:
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning:
                if self._open != _THINKING:
                    self._open_block(_THINKING, ThinkingBlock("", ""), out)
                out.append(_BLOCK_DELTA + _encode(_BlockDelta(self._index,
                                                              _ThinkingDelta(reasoning))) + _END)
            if delta.content:
                if self._open != _TEXT:
                    self._open_block(_TEXT, TextBlock(""), out)
                out.append(_BLOCK_DELTA + _encode(_BlockDelta(self._index,
                                                              _TextDelta(delta.content))) + _END)
            if delta.tool_calls:
                for call in delta.tool_calls:
                    self._on_tool_call(call, out)
                    if self._done:
                        return
        if choice.finish_reason:
            self._finish = choice.finish_reason
            # Nothing more will be said: let the client finish the last block now.
            self._close_block(out)

    def _on_tool_call(self, call: _ToolCallDelta, out: list[bytes]) -> None:
        key = call.index if call.index is not None else max(self._tool_key, 0)
        known = self._tool_ids.get(key)
        function = call.function
        arguments = function.arguments if function is not None else None
        if known is None or (call.id and call.id != known):
            call_id = call.id or new_id("toolu_")
            name = (function.name if function is not None else None) or ""
            self._tool_ids[key] = call_id
            self._saw_tool = True
            self._open_block(_TOOL, ToolUseBlock(call_id, name, {}), out)
            self._tool_key = key
        elif self._open != _TOOL or self._tool_key != key:
            if arguments:
                self._fail(502, _INTERLEAVED, out)
            return  # an empty repeat of a finished call says nothing
        if arguments:
            out.append(_BLOCK_DELTA + _encode(_BlockDelta(self._index,
                                                          _InputJsonDelta(arguments))) + _END)

    def _on_upstream_error(self, error: _ErrorDetail | str, out: list[bytes]) -> None:
        if isinstance(error, str):
            message, code = error, None
        else:
            message, code = error.message, error.code
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        self._fail(status, message or "the upstream reported an error mid-stream", out)

    # --- blocks and the end ------------------------------------------------------------------

    def _open_block(self, kind: int, block: ContentBlock, out: list[bytes]) -> None:
        self._close_block(out)
        self._index += 1
        self._open = kind
        out.append(_BLOCK_START + _encode(_BlockStart(self._index, block)) + _END)

    def _close_block(self, out: list[bytes]) -> None:
        if self._open == _NONE:
            return
        if self._open == _THINKING:
            out.append(_BLOCK_DELTA + _encode(_BlockDelta(
                self._index, _SignatureDelta(THINKING_SIGNATURE))) + _END)
        out.append(_BLOCK_STOP + _encode(_BlockStop(self._index)) + _END)
        self._open = _NONE
        self._tool_key = -1

    def _finish_message(self, out: list[bytes]) -> None:
        if not self._started:
            self._start(_Chunk(), out)
        self._close_block(out)
        reason = stop_reason(self._finish, self._saw_tool)
        out.append(_MESSAGE_DELTA + _encode(_MessageDelta(
            _Stop(reason, None), anthropic_usage(self._openai_usage))) + _END)
        out.append(_MESSAGE_STOP)
        self._done = True

    def _fail(self, status: int, message: str, out: list[bytes]) -> None:
        out.append(anthropic_stream_error(status, message))
        self._done = True
