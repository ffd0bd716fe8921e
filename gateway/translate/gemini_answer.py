"""Google Gemini answers ⇄ the hub: whole answers and streams, both directions, and Google's
error shape.

Reading (a Google-wire upstream's answer → hub):
- `read_answer`: a `GenerateContentResponse` → `Answer`: `candidates[0].content.parts`' text
  (`thought: true` parts are reasoning), `functionCall` parts as tool calls (their `args`
  object as the arguments' JSON); `finishReason` STOP / MAX_TOKENS / SAFETY-like → `stop` /
  `length` / `content_filter` (`tool_calls` when the turn holds calls); a prompt blocked by
  `promptFeedback.blockReason` is `content_filter`. `usageMetadata`: prompt (cached included)
  → input, candidates + thoughts → output (the hub counts reasoning inside the output, as Chat
  does), thoughts → reasoning, cachedContent → cached.
- `GeminiStreamReader`: the `?alt=sse` stream, one `GenerateContentResponse` per `data:` event.
  Google's stream has no end marker: the answer is complete when the body ends after a
  `finishReason`; before one it is a cut. An `{"error": …}` event ends it broken.

Writing (hub → a Gemini client such as Gemini CLI or the google-genai SDK):
- `write_answer`: `Answer` → `GenerateContentResponse` with one candidate (thought parts first
  when the client asked for thoughts), `finishReason`, `usageMetadata`, `modelVersion`,
  `responseId`.
- `GeminiStreamWriter`: one chunk per text or thought delta; each function call is sent whole
  (Google never splits one), in a chunk of its own once its arguments are complete; the last
  chunk carries `finishReason` and `usageMetadata`. Framed as Server-Sent Events (`?alt=sse`) or
  as Google's default JSON array (`[{…}\\r\\n,{…}]`), whichever the client asked for. An error
  ends the stream with `{"error": {code, message, status}}` in the same framing.
- `error_body`: Google's `{"error": {"code", "message", "status"}}` with the canonical status
  name, a `BadRequest` field violation naming the field and a `RetryInfo` delay when known.
"""
from __future__ import annotations

import msgspec

from gateway.errors import DECODE_ERRORS, GatewayError
from gateway.translate.hub import (CONTENT_FILTER, LENGTH, STOP, TOOL_CALLS, Answer, StreamReader,
                                   StreamWriter, ToolCall, Usage, new_id)
from gateway.translate.gemini_request import field
from gateway.translate.sse import DEFAULT_MAX_EVENT_BYTES, SSEParser

# ---- errors ---------------------------------------------------------------------------------

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED",
                413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE"}
_encode = msgspec.json.Encoder().encode


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")


def error_body(status: int, message: str, field: str | None = None,
               retry_after: str | None = None) -> bytes:
    """Google's error object; `field` and `retry_after` (seconds) become its `details`."""
    error: dict = {"code": status, "message": message, "status": status_name(status)}
    details = []
    if field:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": message}]})
    if retry_after and retry_after.strip().isdigit():
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{int(retry_after)}s"})
    if details:
        error["details"] = details
    return _encode({"error": error})


# ---- the wire, as read ----------------------------------------------------------------------

class _FunctionCall(msgspec.Struct):
    name: str = ""
    args: msgspec.Raw = msgspec.Raw(b"{}")  # kept as the JSON text it came as
    id: str | None = None


class _Part(msgspec.Struct):
    text: str | None = None
    thought: bool = False
    functionCall: _FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finishReason: str | None = None


class WireUsage(msgspec.Struct):
    promptTokenCount: int = 0
    candidatesTokenCount: int = 0
    thoughtsTokenCount: int | None = None
    cachedContentTokenCount: int = 0


class _PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class _ErrorDetail(msgspec.Struct):
    code: int | None = None
    message: str | None = None
    status: str | None = None


class _Response(msgspec.Struct):
    candidates: list[_Candidate] = []
    usageMetadata: WireUsage | None = None
    modelVersion: str = ""
    responseId: str = ""
    promptFeedback: _PromptFeedback | None = None
    error: _ErrorDetail | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_FINISH = {"STOP": STOP, "MAX_TOKENS": LENGTH, "SAFETY": CONTENT_FILTER,
           "RECITATION": CONTENT_FILTER, "BLOCKLIST": CONTENT_FILTER,
           "PROHIBITED_CONTENT": CONTENT_FILTER, "SPII": CONTENT_FILTER,
           "IMAGE_SAFETY": CONTENT_FILTER, "LANGUAGE": CONTENT_FILTER}


def hub_usage(usage: WireUsage) -> Usage:
    thoughts = usage.thoughtsTokenCount
    return Usage(input_tokens=usage.promptTokenCount,
                 output_tokens=usage.candidatesTokenCount + (thoughts or 0),
                 cached_tokens=usage.cachedContentTokenCount, reasoning_tokens=thoughts)


def _hub_finish(reason: str | None, has_calls: bool) -> str:
    finish = _FINISH.get(reason or "", STOP)
    return TOOL_CALLS if has_calls and finish == STOP else finish


def _failure(error: _ErrorDetail) -> tuple[int, str]:
    code = error.code if error.code and 400 <= error.code <= 599 else 502
    return code, error.message or f"the upstream reported an error ({error.status})"


def _arguments(call: _FunctionCall) -> str:
    text = bytes(call.args).decode()
    return "{}" if text == "null" else text


def read_answer(raw: bytes) -> Answer:
    """The hub answer in a `GenerateContentResponse`; the upstream's error for an error body."""
    try:
        response = _decode_response(raw)
    except DECODE_ERRORS as exc:
        raise GatewayError(502, f"the upstream answered with a body that is not a Gemini "
                                f"response: {exc}") from None
    if response.error is not None:
        raise GatewayError(*_failure(response.error))
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    candidate = response.candidates[0] if response.candidates else _Candidate()
    for part in candidate.content.parts if candidate.content else ():
        if part.functionCall is not None:
            calls.append(ToolCall(part.functionCall.id or "", part.functionCall.name,
                                  _arguments(part.functionCall)))
        elif part.text:
            (thoughts if part.thought else texts).append(part.text)
    blocked = response.promptFeedback is not None and response.promptFeedback.blockReason
    return Answer(id=response.responseId, model=response.modelVersion,
                  reasoning="".join(thoughts), text="".join(texts), tool_calls=calls,
                  finish=CONTENT_FILTER if blocked else
                  _hub_finish(candidate.finishReason, bool(calls)),
                  usage=hub_usage(response.usageMetadata) if response.usageMetadata else None)


class GeminiStreamReader(StreamReader):
    __slots__ = ("_parser", "_count", "_finish")

    def __init__(self, writer: StreamWriter,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(writer)
        self._parser = SSEParser(max_event_bytes)
        self._count = 0
        self._finish: str | None = None

    def feed(self, chunk: bytes) -> None:
        for _event, data in self._parser.feed(chunk):
            if self.complete:
                continue
            try:
                response = _decode_response(data)
            except DECODE_ERRORS as exc:
                self._stop(502, f"the upstream sent an unreadable stream event: {exc}")
                continue
            if response.error is not None:
                self._stop(*_failure(response.error))
                continue
            self._on_response(response)

    def _on_response(self, response: _Response) -> None:
        writer = self.writer
        self._start(response.responseId, response.modelVersion)
        candidate = response.candidates[0] if response.candidates else None
        if candidate is not None and candidate.content is not None:
            for part in candidate.content.parts:
                call = part.functionCall
                if call is not None:
                    writer.tool_call(self._count, call.id or "", call.name)
                    writer.tool_arguments(self._count, _arguments(call))
                    self._count += 1
                elif part.text:
                    if part.thought:
                        writer.reasoning(part.text)
                    else:
                        writer.text(part.text)
                if writer.done:
                    self.complete = True
                    return
        if candidate is not None and candidate.finishReason:
            self._finish = _hub_finish(candidate.finishReason, self._count > 0)
            writer.finish(self._finish)
        elif response.promptFeedback is not None and response.promptFeedback.blockReason:
            self._finish = CONTENT_FILTER
            writer.finish(CONTENT_FILTER)
        if response.usageMetadata is not None:
            self.usage = hub_usage(response.usageMetadata)

    def end(self) -> None:
        if self.complete:
            return
        if self._finish is None:
            super().end()
            return
        self.complete = True
        if self.usage is not None:
            self.writer.usage(self.usage)
        self.writer.end()


# ---- the wire, as written -------------------------------------------------------------------

_REASONS = {STOP: "STOP", TOOL_CALLS: "STOP", LENGTH: "MAX_TOKENS",
            CONTENT_FILTER: "SAFETY"}


def wire_usage(usage: Usage | None) -> dict:
    usage = usage or Usage()
    thoughts = usage.reasoning_tokens or 0
    out = {"promptTokenCount": usage.input_tokens,
           "candidatesTokenCount": max(usage.output_tokens - thoughts, 0),
           "totalTokenCount": usage.input_tokens + usage.output_tokens}
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    return out


def _call_part(call_id: str, name: str, arguments: str) -> dict:
    try:
        args = msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        args = {}
    return {"functionCall": {"id": call_id or new_id("call_"), "name": name,
                             "args": args if isinstance(args, dict) else {}}}


def _candidate(parts: list[dict], reason: str | None = None) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if reason is not None:
        candidate["finishReason"] = reason
    return candidate


def includes_thoughts(request: dict) -> bool:
    """Whether the client asked for thought parts (Google sends none otherwise)."""
    config = field(request, "generationConfig")
    thinking = field(config, "thinkingConfig") if isinstance(config, dict) else None
    return isinstance(thinking, dict) and field(thinking, "includeThoughts") is True


def _response_id(upstream_id: str) -> str:
    return upstream_id or new_id("")


def write_answer(answer: Answer, model: str, thoughts: bool = True) -> bytes:
    """The `GenerateContentResponse` for a hub answer (`model` when the upstream named none)."""
    parts: list[dict] = []
    if answer.reasoning and thoughts:
        parts.append({"text": answer.reasoning, "thought": True})
    if answer.text:
        parts.append({"text": answer.text})
    parts += [_call_part(call.id, call.name, call.arguments) for call in answer.tool_calls]
    if not parts:
        parts.append({"text": ""})
    return _encode({"candidates": [_candidate(parts, _REASONS.get(answer.finish, "STOP"))],
                    "usageMetadata": wire_usage(answer.usage),
                    "modelVersion": answer.model or model,
                    "responseId": _response_id(answer.id)})


class GeminiStreamWriter(StreamWriter):
    """Chunks of `GenerateContentResponse`, as SSE events (`sse`) or one JSON array."""
    __slots__ = ("_model", "_id", "_sse", "_thoughts", "_chunks", "_calls", "_finish", "_usage",
                 "_tail")

    def __init__(self, *, model: str, sse: bool, thoughts: bool = True) -> None:
        super().__init__()
        self._model = model
        self._id = ""
        self._sse = sse
        self._thoughts = thoughts
        self._chunks = 0
        self._calls: dict[int, list[str]] = {}  # hub index -> [id, name, argument fragments…]
        self._finish = STOP
        self._usage: Usage | None = None
        self._tail = b""  # the constant end of a content chunk

    def start(self, id: str, model: str) -> None:
        if self._tail:
            return
        self._id = _response_id(id)
        self._model = model or self._model
        self._tail = (b'],"role":"model"},"index":0}],"modelVersion":' + _encode(self._model)
                      + b',"responseId":' + _encode(self._id) + b"}")

    def _frame(self, body: bytes) -> None:
        if self._sse:
            self.out.append(b"data: " + body + b"\r\n\r\n")
        else:
            self.out.append((b"[" if self._chunks == 0 else b"\r\n,") + body)
        self._chunks += 1

    def _parts(self, parts: bytes) -> None:
        self.start("", "")
        self._flush_calls()
        self._frame(b'{"candidates":[{"content":{"parts":[' + parts + self._tail)

    def text(self, text: str) -> None:
        if text:
            self._parts(b'{"text":' + _encode(text) + b"}")

    def reasoning(self, text: str) -> None:
        if text and self._thoughts:
            self._parts(b'{"text":' + _encode(text) + b',"thought":true}')

    def tool_call(self, index: int, id: str, name: str) -> None:
        self._calls[index] = [id, name]

    def tool_arguments(self, index: int, fragment: str) -> None:
        call = self._calls.get(index)
        if call is not None and fragment:
            call.append(fragment)

    def _call_parts(self) -> list[dict]:
        parts = [_call_part(call[0], call[1], "".join(call[2:])) for call in self._calls.values()]
        self._calls.clear()
        return parts

    def _flush_calls(self) -> None:
        """Calls whose arguments are complete (other content follows them) go out whole."""
        if self._calls:
            self._chunk(self._call_parts())

    def _chunk(self, parts: list[dict], reason: str | None = None,
               usage: dict | None = None) -> None:
        body: dict = {"candidates": [_candidate(parts, reason)]}
        if usage is not None:
            body["usageMetadata"] = usage
        body["modelVersion"] = self._model
        body["responseId"] = self._id
        self._frame(_encode(body))

    def finish(self, reason: str) -> None:
        self._finish = reason

    def usage(self, usage: Usage) -> None:
        self._usage = usage

    def end(self) -> None:
        self.start("", "")
        if self._calls:
            self._chunk(self._call_parts())
        # The last chunk: the finish reason and the usage, as Google ends its streams.
        self._chunk([{"text": ""}], _REASONS.get(self._finish, "STOP"), wire_usage(self._usage))
        if not self._sse:
            self.out.append(b"]")
        self.done = True

    def error(self, status: int, message: str) -> None:
        body = error_body(status, message)
        if self._sse:
            self.out.append(b"data: " + body + b"\r\n\r\n")
        else:
            self.out.append((b"[" if self._chunks == 0 else b"\r\n,") + body + b"]")
        self.done = True
        self.failure = (status, message)
