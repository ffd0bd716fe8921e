"""A scripted stand-in for OpenCode Go, served over real sockets.

The tests point the gateway at it, and the benchmarks use it as the upstream. It speaks both
OpenCode Go flavours under one base URL (`http://HOST:PORT/v1`):

- `POST /v1/chat/completions`: OpenAI Chat Completions, `Authorization: Bearer <key>`;
- `POST /v1/messages`: Anthropic Messages, `x-api-key` + `anthropic-version`; it rejects with a
  400 what OpenCode Go's Anthropic-compatible endpoint is known (or must be assumed) to reject.

What it answers is scripted by a directive in the text of the final user turn (the user
messages after the last assistant message): `[[fake: key=value key ...]]`.

    deltas=N         text answer in N deltas (default 5)
    reasoning        a reasoning part first (reasoning_content / a signed thinking block)
    tools=N          N parallel tool calls (get_weather, get_time, ...); finish tool_calls / tool_use
    text             with tools=N: a text answer before the tool calls
    length           finish_reason length / stop_reason max_tokens instead of stop / end_turn
    error=STATUS     answer that HTTP status in the flavour's error shape
    retry_after=S    with error=: a Retry-After header
    stream_error     200, the first 3 text deltas, then an in-stream error, then the stream ends
    cut              200, the first 3 text deltas (half the body when not streaming), then the
                     TCP connection is aborted
    slow=SECONDS     sleep between stream events
    ttfb=SECONDS     sleep before the response headers

An unknown key is a 400, so a typo in a test fails loudly. Everything is deterministic: the
answer text is `answer_text(deltas)`, prompt tokens are 10 per message, completion tokens count
the content deltas (`completion_tokens`). Answers are rendered once per shape and then served as
pre-encoded bytes, so the default path costs little more than aiohttp itself.

Test control:
    POST /_fake/keys      {"KEY": {"status": 429, "retry_after": "2"}}: every request with that
                          key (Bearer or x-api-key) fails so; {"KEY": null} restores the key
    POST /_fake/reset     forget failing keys, recorded requests and finished-stream counts
    GET  /_fake/requests  the last 200 requests: path, headers (lower-case names), body, key
    GET  /_fake/stats     active_streams; completed_streams (ended by the fake: normally, after
                          stream_error, or cut); aborted_streams (the client hung up first, seen
                          at the next write or during a slow/ttfb pause)

Run: python -m tests.fake_upstream --host 127.0.0.1 --port 9100 [--no-record]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
from typing import Any, NamedTuple

import msgspec
from aiohttp import web

# ---------------------------------------------------------------------------------------------
# The scripted answer's content: public so tests can state what they expect.

PROMPT_TOKENS_PER_MESSAGE = 10
CACHE_READ_TOKENS = 6          # Anthropic flavour: cache_read_input_tokens
CACHE_CREATION_TOKENS = 2      # Anthropic flavour: cache_creation_input_tokens
FAILING_STREAM_DELTAS = 3      # text deltas sent before stream_error / cut
REASONING_DELTAS = ("Thinking about ", "the answer: ", "ça va.")
REASONING_TEXT = "".join(REASONING_DELTAS)
THINKING_SIGNATURE = "c2lnbmF0dXJlLWZha2U="
TOOL_ARGUMENT_FRAGMENTS = 3    # argument deltas per tool call
_WORDS = ("héllo", "wörld", "🎉")
_TOOL_NAMES = ("get_weather", "get_time")
CREATED = 1700000000


def answer_deltas(deltas: int = 5) -> list[str]:
    """The text deltas of an answer: "héllo ", "wörld ", "🎉 ", "héllo ", ... (no trailing space)."""
    words = [_WORDS[i % len(_WORDS)] for i in range(deltas)]
    return [w + " " for w in words[:-1]] + words[-1:]


def answer_text(deltas: int = 5) -> str:
    return "".join(answer_deltas(deltas))


def tool_name(k: int) -> str:
    return _TOOL_NAMES[k % len(_TOOL_NAMES)]


def tool_arguments(k: int) -> dict[str, Any]:
    """The parsed arguments of tool call `k` (0-based)."""
    if tool_name(k) == "get_weather":
        return {"city": "Zürich", "n": k}
    return {"timezone": "Europe/Zürich", "n": k}


def openai_tool_id(k: int) -> str:
    return f"call_fake_{k}"


def anthropic_tool_id(k: int) -> str:
    return f"toolu_fake_{k}"


def completion_tokens(deltas: int = 5, reasoning: bool = False, tools: int = 0,
                      text: bool = False) -> int:
    """Completion (output) tokens of an answer: one per content delta."""
    count = len(REASONING_DELTAS) if reasoning else 0
    if tools:
        count += tools * TOOL_ARGUMENT_FRAGMENTS + (deltas if text else 0)
    else:
        count += deltas
    return count


def _fragments(s: str, parts: int) -> list[str]:
    step = -(-len(s) // parts)
    return [s[i:i + step] for i in range(0, len(s), step)]


def _tool_argument_json(k: int) -> str:
    return msgspec.json.encode(tool_arguments(k)).decode()


# ---------------------------------------------------------------------------------------------
# Directive

class Script(NamedTuple):
    """What one request asked the fake to do; hashable, so rendered answers can be cached."""
    deltas: int = 5
    reasoning: bool = False
    tools: int = 0
    text: bool = False
    length: bool = False
    error: int = 0
    retry_after: str | None = None
    stream_error: bool = False
    cut: bool = False
    slow: float = 0.0
    ttfb: float = 0.0


DEFAULT_SCRIPT = Script()
_DIRECTIVE = "[[fake:"
_INT_KEYS = {"deltas", "tools", "error"}
_FLOAT_KEYS = {"slow", "ttfb"}
_FLAG_KEYS = {"reasoning", "text", "length", "stream_error", "cut"}


class _BadDirective(ValueError):
    """A directive the fake cannot read; answered with a 400 so the test's typo shows."""


def parse_script(text: str) -> Script:
    """The directive in `text`, or the default script when there is none."""
    start = text.find(_DIRECTIVE)
    if start < 0:
        return DEFAULT_SCRIPT
    end = text.find("]]", start)
    if end < 0:
        raise _BadDirective("fake upstream: directive '[[fake: ...' is missing its closing ']]'")
    fields: dict[str, Any] = {}
    for item in text[start + len(_DIRECTIVE):end].split():
        key, eq, value = item.partition("=")
        try:
            if key in _FLAG_KEYS and not eq:
                fields[key] = True
            elif key in _INT_KEYS and eq:
                fields[key] = int(value)
            elif key in _FLOAT_KEYS and eq:
                fields[key] = float(value)
            elif key == "retry_after" and eq:
                fields[key] = value
            else:
                raise ValueError
        except ValueError:
            raise _BadDirective(f"fake upstream: bad directive item {item!r}; keys: deltas=N "
                                "reasoning tools=N text length error=STATUS retry_after=S "
                                "stream_error cut slow=SECONDS ttfb=SECONDS") from None
    if fields.get("deltas", 1) < 1:
        raise _BadDirective("fake upstream: deltas must be at least 1")
    return Script(**fields)


# ---------------------------------------------------------------------------------------------
# Request shapes: only the fields the fake looks at; msgspec ignores the rest.

class _Part(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _ToolCallRef(msgspec.Struct):
    id: str = ""


class _ChatMessage(msgspec.Struct):
    role: str
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCallRef] | None = None
    tool_call_id: str | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _ChatRequest(msgspec.Struct):
    model: str
    messages: list[_ChatMessage]
    stream: bool = False
    stream_options: _StreamOptions | None = None


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    tool_use_id: str | None = None


class _AnthropicMessage(msgspec.Struct):
    role: str
    content: str | list[_Block]


class _MessagesRequest(msgspec.Struct):
    model: str
    messages: list[_AnthropicMessage]
    max_tokens: int | None = None
    stream: bool = False
    system: str | list[_Block] | None = None
    # Presence is what matters for these: OpenCode Go rejects them whatever their value.
    thinking: Any = msgspec.UNSET
    context_management: Any = msgspec.UNSET
    output_config: Any = msgspec.UNSET


_decode_chat = msgspec.json.Decoder(_ChatRequest).decode
_decode_messages = msgspec.json.Decoder(_MessagesRequest).decode
_encode = msgspec.json.encode


# ---------------------------------------------------------------------------------------------
# Error shapes, written independently of the gateway's own (the fake must not share its bugs).

_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def _error_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def _openai_error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    body = _encode({"error": {"message": message, "type": _error_type(status), "param": None,
                              "code": None}})
    return _json_response(body, status, retry_after)


def _anthropic_error(status: int, message: str, retry_after: str | None = None) -> web.Response:
    body = _encode({"type": "error", "error": {"type": _error_type(status), "message": message}})
    return _json_response(body, status, retry_after)


def _json_response(body: bytes, status: int = 200, retry_after: str | None = None) -> web.Response:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return web.Response(body=body, status=status, headers=headers)


class _Rejected(Exception):
    """A request the upstream answers with 400; the message names the problem."""


# ---------------------------------------------------------------------------------------------
# Rendering: each function builds the wire bytes of one answer shape; results are cached.

class _Shape(NamedTuple):
    flavour: str
    stream: bool
    model: str
    n_messages: int
    include_usage: bool
    deltas: int
    reasoning: bool
    tools: int
    text: bool
    length: bool
    failing: bool        # stream_error or cut: the short failing stream


def _shape(flavour: str, stream: bool, model: str, n_messages: int, include_usage: bool,
           s: Script) -> _Shape:
    return _Shape(flavour, stream, model, n_messages, include_usage, s.deltas, s.reasoning,
                  s.tools, s.text, s.length, s.stream_error or s.cut)


def _text_deltas(sh: _Shape) -> list[str]:
    if sh.failing:
        return answer_deltas(min(sh.deltas, FAILING_STREAM_DELTAS))
    if sh.tools and not sh.text:
        return []
    return answer_deltas(sh.deltas)


def _output_tokens(sh: _Shape) -> int:
    return completion_tokens(sh.deltas, sh.reasoning, sh.tools, sh.text)


def _openai_usage(sh: _Shape) -> dict[str, int]:
    prompt = PROMPT_TOKENS_PER_MESSAGE * sh.n_messages
    completion = _output_tokens(sh)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _openai_finish(sh: _Shape) -> str:
    if sh.length:
        return "length"
    return "tool_calls" if sh.tools else "stop"


def _openai_body(sh: _Shape) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(_text_deltas(sh)) or None}
    if sh.reasoning:
        message["reasoning_content"] = REASONING_TEXT
    if sh.tools:
        message["tool_calls"] = [
            {"id": openai_tool_id(k), "type": "function",
             "function": {"name": tool_name(k), "arguments": _tool_argument_json(k)}}
            for k in range(sh.tools)]
    return _encode({"id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED,
                    "model": sh.model,
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": _openai_finish(sh)}],
                    "usage": _openai_usage(sh)})


def _openai_events(sh: _Shape) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return b"data: " + _encode({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
            "model": sh.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if sh.reasoning and not sh.failing:
        events += [chunk({"reasoning_content": d}) for d in REASONING_DELTAS]
    events += [chunk({"content": d}) for d in _text_deltas(sh)]
    if sh.failing:
        return events
    for k in range(sh.tools):
        events.append(chunk({"tool_calls": [{"index": k, "id": openai_tool_id(k), "type": "function",
                                             "function": {"name": tool_name(k), "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": k, "function": {"arguments": frag}}]})
                   for frag in _fragments(_tool_argument_json(k), TOOL_ARGUMENT_FRAGMENTS)]
    events.append(chunk({}, _openai_finish(sh)))
    if sh.include_usage:
        events.append(b"data: " + _encode({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED,
            "model": sh.model, "choices": [], "usage": _openai_usage(sh)}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _anthropic_stop(sh: _Shape) -> str:
    if sh.length:
        return "max_tokens"
    return "tool_use" if sh.tools else "end_turn"


def _anthropic_input_usage(sh: _Shape) -> dict[str, int]:
    return {"input_tokens": PROMPT_TOKENS_PER_MESSAGE * sh.n_messages,
            "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
            "cache_read_input_tokens": CACHE_READ_TOKENS}


def _anthropic_body(sh: _Shape) -> bytes:
    content: list[dict[str, Any]] = []
    if sh.reasoning:
        content.append({"type": "thinking", "thinking": REASONING_TEXT,
                        "signature": THINKING_SIGNATURE})
    text = "".join(_text_deltas(sh))
    if text:
        content.append({"type": "text", "text": text})
    content += [{"type": "tool_use", "id": anthropic_tool_id(k), "name": tool_name(k),
                 "input": tool_arguments(k)} for k in range(sh.tools)]
    return _encode({"id": "msg_fake", "type": "message", "role": "assistant", "model": sh.model,
                    "content": content, "stop_reason": _anthropic_stop(sh), "stop_sequence": None,
                    "usage": {**_anthropic_input_usage(sh), "output_tokens": _output_tokens(sh)}})


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encode(data) + b"\n\n"


def _anthropic_events(sh: _Shape) -> list[bytes]:
    events = [
        _sse("message_start", {"type": "message_start", "message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": sh.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**_anthropic_input_usage(sh), "output_tokens": 1}}}),
        _sse("ping", {"type": "ping"}),
    ]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(_sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": start}))
        events.extend(_sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": d}) for d in deltas)
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if sh.reasoning and not sh.failing:
        block({"type": "thinking", "thinking": "", "signature": ""},
              [{"type": "thinking_delta", "thinking": d} for d in REASONING_DELTAS]
              + [{"type": "signature_delta", "signature": THINKING_SIGNATURE}])
    text = _text_deltas(sh)
    if text:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": d} for d in text])
    if sh.failing:
        return events[:-1]  # the text block never closes: the stream fails inside it
    for k in range(sh.tools):
        block({"type": "tool_use", "id": anthropic_tool_id(k), "name": tool_name(k), "input": {}},
              [{"type": "input_json_delta", "partial_json": frag}
               for frag in _fragments(_tool_argument_json(k), TOOL_ARGUMENT_FRAGMENTS)])
    events.append(_sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": _anthropic_stop(sh),
                                                   "stop_sequence": None},
                                         "usage": {"output_tokens": _output_tokens(sh)}}))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


_OPENAI_STREAM_ERROR = b"data: " + _encode({"error": {
    "message": "fake upstream stream error", "type": "server_error", "param": None,
    "code": None}}) + b"\n\n"
_ANTHROPIC_STREAM_ERROR = _sse("error", {"type": "error", "error": {
    "type": "overloaded_error", "message": "fake upstream stream error: Overloaded"}})
_RENDER = {("openai", False): _openai_body, ("openai", True): _openai_events,
           ("anthropic", False): _anthropic_body, ("anthropic", True): _anthropic_events}
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_CACHE_LIMIT = 4096


# ---------------------------------------------------------------------------------------------
# Request checks

def _is_prefixed(model: str) -> bool:
    return "/" in model or ":" in model


def _prefixed_model_message(model: str) -> str:
    return (f"model {model!r} is not supported: OpenCode Go takes the bare model id "
            f"(such as {model.replace(':', '/').rsplit('/', 1)[-1]!r}), without a provider prefix")


def _chat_final_turn_text(req: _ChatRequest) -> str:
    texts = []
    for m in reversed(req.messages):
        if m.role == "assistant":
            break
        if m.role != "user":
            continue
        if isinstance(m.content, str):
            texts.append(m.content)
        elif m.content:
            texts.extend(p.text for p in m.content if p.text)
    return " ".join(texts)


def _check_chat(req: _ChatRequest) -> None:
    if _is_prefixed(req.model):
        raise _Rejected(_prefixed_model_message(req.model))
    if not req.messages:
        raise _Rejected("messages: must contain at least one message")
    unanswered: list[str] = []
    for i, m in enumerate(req.messages):
        if m.role == "tool":
            if m.tool_call_id not in unanswered:
                raise _Rejected(f"messages[{i}]: messages with role 'tool' must be a response to a "
                                f"preceding message with 'tool_calls' (tool_call_id "
                                f"{m.tool_call_id!r} does not match one)")
            unanswered.remove(m.tool_call_id)
            continue
        if unanswered:
            raise _Rejected(f"messages[{i}]: an assistant message with 'tool_calls' must be "
                            f"followed by tool messages responding to each 'tool_call_id'; "
                            f"missing: {', '.join(unanswered)}")
        if m.role == "assistant" and m.tool_calls:
            unanswered = [c.id for c in m.tool_calls]
    # Unanswered tool calls at the very end are left to the model, as OpenAI does.


def _anthropic_final_turn_text(req: _MessagesRequest) -> str:
    texts = []
    for m in reversed(req.messages):
        if m.role == "assistant":
            break
        if isinstance(m.content, str):
            texts.append(m.content)
        else:
            texts.extend(b.text for b in m.content if b.type == "text" and b.text)
    return " ".join(texts)


def _check_messages(req: _MessagesRequest, beta: str | None) -> None:
    if beta is not None:
        raise _Rejected(f"anthropic-beta: beta features are not supported by this endpoint "
                        f"(got {beta!r})")
    if req.thinking is not msgspec.UNSET:
        raise _Rejected("thinking: extended thinking is not supported by this endpoint")
    if req.context_management is not msgspec.UNSET:
        raise _Rejected("context_management: Extra inputs are not permitted")
    if req.output_config is not msgspec.UNSET:
        raise _Rejected("output_config: Extra inputs are not permitted")
    if req.max_tokens is None:
        raise _Rejected("max_tokens: Field required")
    if _is_prefixed(req.model):
        raise _Rejected(_prefixed_model_message(req.model))
    if isinstance(req.system, str) and not req.system:
        raise _Rejected("system: text content blocks must be non-empty")
    if isinstance(req.system, list) and any(b.type == "text" and not b.text for b in req.system):
        raise _Rejected("system: text content blocks must be non-empty")
    if not req.messages:
        raise _Rejected("messages: at least one message is required")
    last = len(req.messages) - 1
    tool_use_ids: set[str] = set()  # of the previous assistant turn
    for i, m in enumerate(req.messages):
        if m.role not in ("user", "assistant"):
            raise _Rejected(f"messages.{i}.role: Input should be 'user' or 'assistant' "
                            f"(got {m.role!r}; system prompts go in the top-level system field)")
        if i and req.messages[i - 1].role == m.role:
            raise _Rejected(f"messages.{i}: roles must alternate between 'user' and 'assistant', "
                            f"but found two consecutive {m.role!r} messages")
        blocks = [_Block("text", m.content)] if isinstance(m.content, str) else m.content
        # An empty final assistant message is a prefill, which Anthropic accepts.
        if not blocks and not (i == last and m.role == "assistant"):
            raise _Rejected(f"messages.{i}: all messages must have non-empty content")
        answered: set[str] = set()
        seen_other = False
        for j, b in enumerate(blocks):
            if b.type == "text" and not b.text and not (i == last and m.role == "assistant"):
                raise _Rejected(f"messages.{i}.content.{j}: text content blocks must be non-empty")
            if b.type == "tool_result":
                if m.role != "user" or b.tool_use_id not in tool_use_ids:
                    raise _Rejected(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                                    f"`tool_result` blocks: {b.tool_use_id}. Each `tool_result` "
                                    f"block must have a corresponding `tool_use` block in the "
                                    f"previous message.")
                if seen_other:
                    raise _Rejected(f"messages.{i}.content.{j}: `tool_result` blocks must come "
                                    f"first in the message content, before any other block")
                answered.add(b.tool_use_id)
            else:
                seen_other = True
        if m.role == "user" and tool_use_ids - answered:
            raise _Rejected(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                            f"immediately after: {', '.join(sorted(tool_use_ids - answered))}. "
                            f"Each `tool_use` block must have a corresponding `tool_result` block "
                            f"in the next message.")
        tool_use_ids = ({b.id for b in blocks if b.type == "tool_use" and b.id}
                        if m.role == "assistant" else set())


# ---------------------------------------------------------------------------------------------
# The server

class _FakeState:
    __slots__ = ("records", "keys", "active", "completed", "aborted", "rendered")

    def __init__(self, record: bool):
        self.records: collections.deque | None = collections.deque(maxlen=200) if record else None
        self.keys: dict[str, tuple[int, str | None]] = {}
        self.active = 0
        self.completed = 0
        self.aborted = 0
        self.rendered: dict[_Shape, Any] = {}


_STATE = web.AppKey("fake_state", _FakeState)


def _render(state: _FakeState, sh: _Shape) -> Any:
    out = state.rendered.get(sh)
    if out is None:
        if len(state.rendered) >= _CACHE_LIMIT:
            state.rendered.clear()
        out = state.rendered[sh] = _RENDER[sh.flavour, sh.stream](sh)
    return out


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _abort(request: web.Request) -> None:
    """Drop the TCP connection without a clean end of the body, as a crashed upstream does."""
    if request.transport is not None:
        request.transport.abort()


async def _pause(request: web.Request, seconds: float) -> bool:
    """Sleep, watching the connection; False as soon as the client has gone away."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while not _client_gone(request):
        left = until - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(left, 0.05))
    return False


async def _answer(request: web.Request, state: _FakeState, sh: _Shape, script: Script,
                  stream_error: bytes) -> web.StreamResponse:
    if not sh.stream:
        if script.ttfb and not await _pause(request, script.ttfb):
            return web.Response(status=499)  # nobody is listening any more
        body = _render(state, sh)
        if not script.cut:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:len(body) // 2])
        _abort(request)
        return resp
    events = _render(state, sh)
    state.active += 1
    finished = False
    try:
        if script.ttfb and not await _pause(request, script.ttfb):
            return web.Response(status=499)
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        for n, event in enumerate(events):
            if script.slow and n and not await _pause(request, script.slow):
                return resp
            await resp.write(event)
        if script.cut:
            _abort(request)
        else:
            if script.stream_error:
                await resp.write(stream_error)
            await resp.write_eof()
        finished = True
        return resp
    except ConnectionError:  # the client went away mid-write
        return resp
    finally:
        state.active -= 1
        if finished:
            state.completed += 1
        else:
            state.aborted += 1


def _record(state: _FakeState, request: web.Request, body: bytes, key: str | None) -> None:
    if state.records is not None:
        state.records.append((request.path, request.raw_headers, body, key))


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await request.read()
    auth = request.headers.get("Authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    _record(state, request, body, key)
    if not key:
        return _openai_error(401, "missing or malformed Authorization header: expected "
                                  "'Authorization: Bearer <api key>'")
    failing = state.keys.get(key)
    if failing:
        return _openai_error(failing[0], f"fake upstream error {failing[0]}", failing[1])
    try:
        req = _decode_chat(body)
        _check_chat(req)
        script = parse_script(_chat_final_turn_text(req))
    except (msgspec.DecodeError, msgspec.ValidationError, _Rejected, _BadDirective) as exc:
        return _openai_error(400, str(exc))
    if script.error:
        return _openai_error(script.error, f"fake upstream error {script.error}", script.retry_after)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    sh = _shape("openai", req.stream, req.model, len(req.messages), include_usage, script)
    return await _answer(request, state, sh, script, _OPENAI_STREAM_ERROR)


async def _messages(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    body = await request.read()
    headers = request.headers
    key = headers.get("x-api-key") or None
    _record(state, request, body, key)
    if not key:
        return _anthropic_error(401, "x-api-key header is required (this endpoint does not take "
                                     "Authorization: Bearer)")
    failing = state.keys.get(key)
    if failing:
        return _anthropic_error(failing[0], f"fake upstream error {failing[0]}", failing[1])
    if not headers.get("anthropic-version"):
        return _anthropic_error(400, "anthropic-version: header is required")
    try:
        req = _decode_messages(body)
        _check_messages(req, headers.get("anthropic-beta"))
        script = parse_script(_anthropic_final_turn_text(req))
    except (msgspec.DecodeError, msgspec.ValidationError, _Rejected, _BadDirective) as exc:
        return _anthropic_error(400, str(exc))
    if script.error:
        return _anthropic_error(script.error, f"fake upstream error {script.error}",
                                script.retry_after)
    sh = _shape("anthropic", req.stream, req.model, len(req.messages), False, script)
    return await _answer(request, state, sh, script, _ANTHROPIC_STREAM_ERROR)


# --- test control: /_fake/...

async def _set_keys(request: web.Request) -> web.Response:
    """{"KEY": {"status": 429, "retry_after": "2"}, "OTHER": null}: null clears a key."""
    state = request.app[_STATE]
    for key, how in (await request.json()).items():
        if how is None:
            state.keys.pop(key, None)
        else:
            retry_after = how.get("retry_after")
            state.keys[key] = (int(how["status"]), None if retry_after is None else str(retry_after))
    return web.json_response({"keys": sorted(state.keys)})


async def _reset(request: web.Request) -> web.Response:
    """Clears keys, recorded requests and the finished-stream counters (active is live)."""
    state = request.app[_STATE]
    state.keys.clear()
    if state.records is not None:
        state.records.clear()
    state.completed = state.aborted = 0
    return web.json_response({"reset": True})


def _recorded_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _requests(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    out = []
    for path, raw_headers, body, key in state.records or ():
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            name_s, value_s = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[name_s] = f"{headers[name_s]}, {value_s}" if name_s in headers else value_s
        out.append({"path": path, "headers": headers, "body": _recorded_body(body), "key": key})
    return web.json_response(out)


async def _stats(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return web.json_response({"active_streams": state.active,
                              "completed_streams": state.completed,
                              "aborted_streams": state.aborted})


def make_app(record: bool = True) -> web.Application:
    """The fake upstream; `record=False` skips request recording (benchmarks)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_STATE] = _FakeState(record)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/_fake/keys", _set_keys)
    app.router.add_post("/_fake/reset", _reset)
    app.router.add_get("/_fake/requests", _requests)
    app.router.add_get("/_fake/stats", _stats)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_upstream",
                                     description="Scripted fake OpenCode Go upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--no-record", action="store_true",
                        help="do not record requests (for benchmarks)")
    args = parser.parse_args(argv)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    print(f"fake upstream on http://{args.host}:{args.port}/v1", flush=True)
    # A large backlog so a load test's connection burst is not refused; a short shutdown so
    # a test session that stops the fake mid-stream does not wait for its slow streams.
    web.run_app(make_app(record=not args.no_record), host=args.host, port=args.port,
                access_log=None, print=None, backlog=2048, shutdown_timeout=1.0, loop=loop)


if __name__ == "__main__":
    main()
