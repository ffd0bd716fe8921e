"""Chat Completions answers ⇄ the hub: whole answers and streams, both directions.

Reading (an OpenAI-wire upstream's answer → hub):
- `read_answer`: a `chat.completion` → `Answer`. Reasoning comes from `reasoning_content` (or
  `reasoning`, as some servers name it); a `refusal` stands in for missing text; usage from
  `usage` (`prompt_tokens_details.cached_tokens`, or the top-level `cached_tokens` Moonshot
  uses); `cost` is OpenCode Go's top-level dollar figure.
- `ChatStreamReader`: `chat.completion.chunk` events → writer calls. Tool calls are numbered by
  the order they start: a new `index`, or a new `id` at a known index (some servers send every
  call at index 0). The answer is complete at the usage chunk that follows the finish chunk
  (`choices: []`), at `[DONE]` (even without a finish reason: the upstream said so), or when the
  body ends after a finish reason; a body that ends before any is a cut. A `refusal` delta is
  the answer's text, as a whole answer's `refusal` is. OpenCode Go sends one
  more chunk after `[DONE]` with the `cost`: it is read, never passed on.

Writing (hub → an OpenAI client):
- `write_answer`: `Answer` → `chat.completion` (`reasoning_content` for the reasoning, `content:
  null` when there are only tool calls, usage with `prompt_tokens_details.cached_tokens`).
- `ChatStreamWriter`: first a chunk with `delta: {role: assistant, content: ""}`; `index: 0` in
  every chunk; a tool call's first chunk carries `id`, `type`, `name` and `arguments: ""`, later
  ones only the fragment; at the end an empty-delta chunk with the finish reason, the usage chunk
  (`choices: []`, only with `stream_options.include_usage`), then `data: [DONE]`. An error ends
  the stream with an OpenAI error object and no `[DONE]`, so a broken answer never looks whole.
  The constant head of every chunk is encoded once per stream; per event only the delta is.
"""
from __future__ import annotations

import time
import uuid

import msgspec

from gateway.errors import DECODE_ERRORS, GatewayError, openai_stream_error
from gateway.translate.hub import (CUT_MESSAGE, Answer, StreamReader, StreamWriter, ToolCall,
                                   Usage, new_id, parse_cost)
from gateway.translate.sse import DEFAULT_MAX_EVENT_BYTES, SSEParser

# ---- the wire, as read ----------------------------------------------------------------------


class _PromptDetails(msgspec.Struct):
    cached_tokens: int | None = None


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    cached_tokens: int | None = None  # Moonshot reports it here


def hub_usage(usage: WireUsage) -> Usage:
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens if details else None) or usage.cached_tokens or 0
    completion_details = usage.completion_tokens_details
    return Usage(input_tokens=usage.prompt_tokens or 0, output_tokens=usage.completion_tokens or 0,
                 cached_tokens=cached,
                 reasoning_tokens=completion_details.reasoning_tokens if completion_details else None)


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class _Part(msgspec.Struct):
    text: str | None = None


class _Message(msgspec.Struct):
    content: str | list[_Part] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    code: int | str | None = None


class _Completion(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: WireUsage | None = None
    error: _ErrorDetail | str | None = None
    cost: str | float | None = None


class _FunctionDelta(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None  # the model's answer all the same: passed on as text
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_ChunkChoice] | None = None
    usage: WireUsage | None = None
    error: _ErrorDetail | str | None = None
    cost: str | float | None = None


class _CostOnly(msgspec.Struct):
    cost: str | float | None = None


_decode_completion = msgspec.json.Decoder(_Completion).decode
_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_decode_cost = msgspec.json.Decoder(_CostOnly).decode


def _error_status(code: object, default: int) -> int:
    return code if isinstance(code, int) and 400 <= code <= 599 else default


def _error_message(error: _ErrorDetail | str | None) -> str | None:
    if isinstance(error, _ErrorDetail):
        return error.message
    return error or None


def read_answer(raw: bytes) -> Answer:
    """The hub answer in a `chat.completion`; a 502 for a body that is not one."""
    try:
        completion = _decode_completion(raw)
    except DECODE_ERRORS as exc:
        raise GatewayError(502, f"the upstream answered with an invalid chat completion: {exc}")
    if not completion.choices:
        message = _error_message(completion.error)
        if message:  # an error in a 200 answer: the upstream failed, whatever code it names
            raise GatewayError(502, message)
        raise GatewayError(502, "the upstream answered with a chat completion without choices")
    choice = completion.choices[0]
    message = choice.message or _Message()
    content = message.content
    if isinstance(content, list):
        content = "".join(part.text for part in content if part.text)
    calls = [ToolCall(call.id or "", (call.function or _Function()).name or "",
                      (call.function or _Function()).arguments or "")
             for call in message.tool_calls or ()]
    return Answer(
        id=completion.id or "", model=completion.model or "",
        reasoning=message.reasoning_content or message.reasoning or "",
        text=content or message.refusal or "", tool_calls=calls,
        finish=choice.finish_reason or "stop",
        usage=hub_usage(completion.usage) if completion.usage is not None else None,
        cost=parse_cost(completion.cost))


class ChatStreamReader(StreamReader):
    __slots__ = ("_parser", "_calls", "_last_key", "_count", "_finish",
                 "reasoning_parts", "call_ids")

    def __init__(self, writer: StreamWriter,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(writer)
        self._parser = SSEParser(max_event_bytes)
        self._calls: dict[int, tuple[int, str]] = {}  # upstream index -> (hub index, call id)
        self._last_key = 0
        self._count = 0
        self._finish: str | None = None
        # Kept only when asked (`record`): the answer's reasoning and its tool calls' ids, for
        # models that need the reasoning back on the next turn (state/reasoning.py).
        self.reasoning_parts: list[str] | None = None
        self.call_ids: list[str] | None = None

    def record(self) -> "ChatStreamReader":
        self.reasoning_parts = []
        self.call_ids = []
        return self

    def feed(self, chunk: bytes) -> None:
        for _event, data in self._parser.feed(chunk):
            if self.complete:
                self._read_cost(data)
            elif data == b"[DONE]":
                self._complete_answer()
            else:
                self._on_chunk(data)

    def end(self) -> None:
        if self.complete:
            return
        if self._finish is not None:
            self._complete_answer()
        else:
            self._stop(502, CUT_MESSAGE)

    def _read_cost(self, data: bytes) -> None:
        if b'"cost"' in data:
            try:
                cost = parse_cost(_decode_cost(data).cost)
            except DECODE_ERRORS:
                return
            if cost is not None:
                self.cost = cost

    def _complete_answer(self) -> None:
        self.complete = True
        writer = self.writer
        self._ensure_started()
        if self.usage is not None:
            writer.usage(self.usage)
        writer.end()

    def _on_chunk(self, data: bytes) -> None:
        try:
            chunk = _decode_chunk(data)
        except DECODE_ERRORS as exc:
            self._stop(502, f"the upstream sent an invalid stream chunk: {exc}")
            return
        if chunk.error is not None:
            code = chunk.error.code if isinstance(chunk.error, _ErrorDetail) else None
            self._stop(_error_status(code, 500), _error_message(chunk.error)
                       or "the upstream reported an error mid-stream")
            return
        if chunk.cost is not None:
            self.cost = parse_cost(chunk.cost)
        writer = self.writer
        if not self._started:
            self._start(chunk.id or "", chunk.model or "")
        if chunk.choices:
            for choice in chunk.choices:
                if choice.index == 0:
                    self._on_choice(choice)
                    if writer.done:
                        self.complete = True
                        return
        if chunk.usage is not None:
            self.usage = hub_usage(chunk.usage)
            # OpenAI's usage chunk follows the finish chunk with `choices: []`: the answer is
            # complete. Usage riding along with content is not final yet.
            if self._finish is not None and not chunk.choices:
                self._complete_answer()

    def _on_choice(self, choice: _ChunkChoice) -> None:
        delta = choice.delta
        writer = self.writer
        if delta is not None:
            reasoning = delta.reasoning_content or delta.reasoning
            if reasoning:
                writer.reasoning(reasoning)
                if self.reasoning_parts is not None:
                    self.reasoning_parts.append(reasoning)
            if delta.content:
                writer.text(delta.content)
            if delta.refusal:
                writer.text(delta.refusal)
            if delta.tool_calls:
                for call in delta.tool_calls:
                    self._on_tool_call(call)
                    if writer.done:
                        return
        if choice.finish_reason:
            self._finish = choice.finish_reason
            writer.finish(choice.finish_reason)

    def _on_tool_call(self, call: _ToolCallDelta) -> None:
        key = call.index if call.index is not None else self._last_key
        known = self._calls.get(key)
        function = call.function
        if known is None or (call.id and call.id != known[1]):
            call_id = call.id or ""
            known = self._calls[key] = (self._count, call_id)
            self._count += 1
            self._last_key = key
            if self.call_ids is not None:
                self.call_ids.append(call_id)
            self.writer.tool_call(known[0], call_id,
                                  (function.name if function is not None else None) or "")
        arguments = function.arguments if function is not None else None
        if arguments:
            self.writer.tool_arguments(known[0], arguments)


# ---- the wire, as written -------------------------------------------------------------------

class _PromptTokensDetails(msgspec.Struct):
    cached_tokens: int


class _CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int


class OpenAIUsage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _PromptTokensDetails
    completion_tokens_details: _CompletionTokensDetails | None = None


def wire_usage(usage: Usage) -> OpenAIUsage:
    return OpenAIUsage(
        usage.input_tokens, usage.output_tokens, usage.input_tokens + usage.output_tokens,
        _PromptTokensDetails(usage.cached_tokens),
        None if usage.reasoning_tokens is None
        else _CompletionTokensDetails(usage.reasoning_tokens))


class _OutFunction(msgspec.Struct):
    name: str
    arguments: str


class _OutToolCall(msgspec.Struct):
    id: str
    type: str
    function: _OutFunction


class _AssistantMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None  # no default: an answer with only tool calls carries `content: null`
    reasoning_content: str | None = None
    tool_calls: list[_OutToolCall] | None = None


class _OutChoice(msgspec.Struct):
    index: int
    message: _AssistantMessage
    finish_reason: str


class _ChatCompletion(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[_OutChoice]
    usage: OpenAIUsage | None = None


_encode = msgspec.json.Encoder().encode


def _chat_id(upstream_id: str) -> str:
    return "chatcmpl-" + (upstream_id or uuid.uuid4().hex)


def write_answer(answer: Answer, model: str) -> bytes:
    """The `chat.completion` for a hub answer (`model` when the upstream named none)."""
    calls = [_OutToolCall(call.id or new_id("call_"), "function",
                          _OutFunction(call.name, call.arguments or "{}"))
             for call in answer.tool_calls]
    message = _AssistantMessage(
        role="assistant", content=answer.text if answer.text or not calls else None,
        reasoning_content=answer.reasoning or None, tool_calls=calls or None)
    completion = _ChatCompletion(
        id=_chat_id(answer.id), object="chat.completion", created=int(time.time()),
        model=answer.model or model, choices=[_OutChoice(0, message, answer.finish)],
        usage=wire_usage(answer.usage) if answer.usage is not None else None)
    return _encode(completion)


class _FunctionOut(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class _ToolCallOut(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: _FunctionOut | None = None


class _ToolCallsDelta(msgspec.Struct):
    tool_calls: list[_ToolCallOut]


class _UsageChunk(msgspec.Struct):
    id: str
    object: str
    created: int
    model: str
    choices: list
    usage: OpenAIUsage


_ROLE_DELTA = b'{"role":"assistant","content":""}'
_EMPTY_DELTA = b"{}"
_OPEN_CHOICE_END = b',"finish_reason":null}]}\n\n'
_DONE = b"data: [DONE]\n\n"


class ChatStreamWriter(StreamWriter):
    __slots__ = ("_include_usage", "_model", "_head", "_id", "_created", "_finish", "_usage")

    def __init__(self, *, model: str, include_usage: bool) -> None:
        super().__init__()
        self._include_usage = include_usage
        self._model = model  # the route's model id, when the upstream names none
        self._head: bytes | None = None  # `data: {...,"choices":[{"index":0,"delta":`
        self._id = ""
        self._created = 0
        self._finish = "stop"
        self._usage: Usage | None = None

    def start(self, id: str, model: str) -> None:
        if self._head is not None:
            return
        self._id = _chat_id(id)
        self._model = model or self._model
        self._created = int(time.time())
        self._head = (b'data: {"id":' + _encode(self._id)
                      + b',"object":"chat.completion.chunk","created":'
                      + str(self._created).encode()
                      + b',"model":' + _encode(self._model) + b',"choices":[{"index":0,"delta":')
        self.out.append(self._head + _ROLE_DELTA + _OPEN_CHOICE_END)

    def _started(self) -> bytes:
        if self._head is None:
            self.start("", "")
        return self._head

    def text(self, text: str) -> None:
        if text:  # the hottest path: the delta object spelled out, no struct built
            self.out.append(self._started() + b'{"content":' + _encode(text) + b"}"
                            + _OPEN_CHOICE_END)

    def reasoning(self, text: str) -> None:
        if text:
            self.out.append(self._started() + b'{"reasoning_content":' + _encode(text) + b"}"
                            + _OPEN_CHOICE_END)

    def tool_call(self, index: int, id: str, name: str) -> None:
        first = _ToolCallOut(index, id or new_id("call_"), "function", _FunctionOut(name, ""))
        self.out.append(self._started() + _encode(_ToolCallsDelta([first])) + _OPEN_CHOICE_END)

    def tool_arguments(self, index: int, fragment: str) -> None:
        if fragment:
            part = _ToolCallOut(index, function=_FunctionOut(arguments=fragment))
            self.out.append(self._started() + _encode(_ToolCallsDelta([part]))
                            + _OPEN_CHOICE_END)

    def finish(self, reason: str) -> None:
        self._finish = reason

    def usage(self, usage: Usage) -> None:
        self._usage = usage

    def end(self) -> None:
        head = self._started()
        out = self.out
        out.append(head + _EMPTY_DELTA + b',"finish_reason":' + _encode(self._finish) + b"}]}\n\n")
        if self._include_usage and self._usage is not None:
            chunk = _UsageChunk(self._id, "chat.completion.chunk", self._created, self._model,
                                [], wire_usage(self._usage))
            out.append(b"data: " + _encode(chunk) + b"\n\n")
        out.append(_DONE)
        self.done = True

    def error(self, status: int, message: str) -> None:
        self.out.append(openai_stream_error(status, message))
        self.done = True
        self.failure = (status, message)
