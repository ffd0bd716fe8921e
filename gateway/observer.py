"""What the gateway tells about each request: the access log line and the metrics.

The forwarder and the frontends call the hooks (first_byte, stream_started, stream_finished,
failover, cooldown, finished, rejected); the observer turns them into one JSON access-log line
per request, built once when the request ends, and into the Prometheus series of
`gateway.metrics`.

The access line holds request id, frontend, model, instance, flavour, status, time to first
byte, duration and tokens. No bodies and no keys, ever.

Tokens: a translated answer's come from its translator; a pass-through answer's are read here
from what the upstream reported (the usage object of a whole answer, or the usage events at a
stream's two ends), so they cost one small decode per request and nothing per chunk beyond
keeping a reference to it. An OpenAI-flavour stream carries usage only when the client asked
for it (`stream_options.include_usage`); without it the tokens stay unknown.
"""
from __future__ import annotations

import asyncio
import sys
import time
from typing import Callable

import msgspec

from gateway.metrics import Metrics
from gateway.routing.context import RouteContext
from gateway.translate.to_anthropic_response import OpenAIUsage, token_pair
from gateway.translate.to_openai_response import AnthropicUsage, prompt_tokens
from gateway.upstream.instances import Instance

FLUSH_SECONDS = 0.2


class AccessLog:
    """Access lines, written to the stream in batches at most FLUSH_SECONDS after they were made.

    A write and a flush per request through `logging` cost about 7% of a pass-through request;
    batching keeps one line per request while the system call is shared.
    """
    __slots__ = ("_stream", "_pending", "_scheduled")

    def __init__(self, stream):
        self._stream = stream
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, line: bytes) -> None:
        self._pending.append(line)
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside the server (a script, a test): no batching
                self.flush()
                return
            self._scheduled = True
            loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            self._pending.append(b"")
            self._stream.write(b"\n".join(self._pending))
            self._stream.flush()
            self._pending.clear()


class AccessRecord(msgspec.Struct, omit_defaults=True):
    request_id: str
    frontend: str
    status: int
    duration_ms: float
    model: str | None = None
    instance: str | None = None
    flavour: str | None = None
    stream: bool = False
    ttfb_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode


# ---- usage the upstream reported, read from bytes that pass through untouched ----

class _OpenAIUsageHolder(msgspec.Struct):
    """A chat.completion answer or chunk, reduced to its usage (every other field is skipped)."""
    usage: OpenAIUsage | None = None


class _AnthropicMessage(msgspec.Struct):
    usage: AnthropicUsage | None = None


class _AnthropicEvent(msgspec.Struct):
    """message_start carries the input counts in `message.usage`; message_delta the running
    output count (and, from newer upstreams, the input counts again) in `usage`."""
    message: _AnthropicMessage | None = None
    usage: AnthropicUsage | None = None


_decode_openai = msgspec.json.Decoder(_OpenAIUsageHolder).decode
_decode_anthropic_answer = msgspec.json.Decoder(_AnthropicMessage).decode
_decode_anthropic_event = msgspec.json.Decoder(_AnthropicEvent).decode


def _anthropic_pair(usage: AnthropicUsage | None) -> tuple[int, int] | None:
    if usage is None:
        return None
    return prompt_tokens(usage), usage.output_tokens or 0


def answer_usage(protocol: str, body: bytes) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of a whole answer in the upstream's flavour, or None."""
    try:
        if protocol == "openai":
            return token_pair(_decode_openai(body).usage)
        return _anthropic_pair(_decode_anthropic_answer(body).usage)
    except msgspec.DecodeError:
        return None


def _usage_event(data: bytes, last: bool) -> bytes | None:
    """The data line of the first (or last) event in `data` that mentions usage.

    Found by byte search rather than by parsing the chunks: both flavours put an event's JSON on
    one `data:` line, and this runs once per stream over chunks that may hold the whole answer.
    """
    at = data.rfind(b'"usage"') if last else data.find(b'"usage"')
    if at < 0:
        return None
    start = data.rfind(b"data:", 0, at)
    if start < 0:
        return None
    end = data.find(b"\n", at)
    return data[start + 5:end if end >= 0 else len(data)]


class StreamUsage:
    """Keeps the first and the last two chunks of a pass-through stream, which is where both
    flavours report usage; reads them only once the stream has ended."""
    __slots__ = ("_protocol", "_head", "_previous", "_last")

    def __init__(self, protocol: str):
        self._protocol = protocol
        self._head: bytes | None = None
        self._previous = b""
        self._last = b""

    def __call__(self, chunk: bytes) -> None:
        if self._head is None:
            self._head = chunk
        self._previous = self._last
        self._last = chunk

    def usage(self) -> tuple[int, int] | None:
        if self._head is None:
            return None
        tail = self._previous + self._last
        try:
            if self._protocol == "openai":
                found = _usage_event(tail, last=True)
                return token_pair(_decode_openai(found).usage) if found else None
            # Anthropic: message_start (first) has the input counts, message_delta (last) the
            # cumulative output count; a later value replaces an earlier one.
            counts = AnthropicUsage()
            for payload in (_usage_event(self._head, last=False), _usage_event(tail, last=True)):
                if payload is None:
                    continue
                event = _decode_anthropic_event(payload)
                reported = event.usage or (event.message.usage if event.message else None)
                if reported is None:
                    continue
                for name in AnthropicUsage.__struct_fields__:
                    value = getattr(reported, name)
                    if value is not None:
                        setattr(counts, name, value)
            if counts.input_tokens is None and counts.output_tokens is None:
                return None
            return _anthropic_pair(counts)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None


# ---- the observer ----

class Observer:
    def __init__(self, access_log: bool = True, metrics: Metrics | None = None):
        self.access_log = access_log
        self.metrics = metrics if metrics is not None else Metrics()
        self._access = AccessLog(sys.stdout.buffer) if access_log else None

    def first_byte(self, ctx: RouteContext, seconds: float) -> None:
        ctx.first_byte_seconds = seconds
        self.metrics.first_byte(ctx.model_id, ctx.instance.name, seconds)

    def stream_started(self, ctx: RouteContext) -> Callable[[bytes], None]:
        """A stream's relay begins. Returns what the relay hands each pass-through chunk to."""
        self.metrics.stream_started(ctx.instance.name)
        return StreamUsage(ctx.protocol)

    def stream_finished(self, ctx: RouteContext, status: int,
                        usage: tuple[int, int] | None) -> None:
        """A relayed stream ended (completed, broke off, or the client left)."""
        self.metrics.stream_ended(ctx.instance.name)
        self.finished(ctx, status, usage)

    def failover(self, instance: Instance, status: int) -> None:
        self.metrics.failover(instance.name, status)

    def cooldown(self, instance: Instance) -> None:
        self.metrics.cooldown(instance.name)

    def finished(self, ctx: RouteContext, status: int, usage: tuple[int, int] | None,
                 error: str | None = None) -> None:
        """A routed request ended: answered, refused by the upstream, or a stream that ended."""
        duration = time.monotonic() - ctx.started
        instance = ctx.instance.name if ctx.instance is not None else ""
        metrics = self.metrics
        metrics.request(ctx.frontend, ctx.model_id, status)
        metrics.routed(ctx.model_id, instance, duration, usage)
        if not self.access_log:
            return
        ttfb = ctx.first_byte_seconds
        record = AccessRecord(
            request_id=ctx.request_id, frontend=ctx.frontend, status=status,
            duration_ms=round(duration * 1000, 2), model=ctx.model_id,
            instance=instance or None, flavour=ctx.protocol, stream=ctx.stream,
            ttfb_ms=round(ttfb * 1000, 2) if ttfb is not None else None,
            prompt_tokens=usage[0] if usage else None,
            completion_tokens=usage[1] if usage else None, error=error)
        self._access.write(_encode(record))

    def rejected(self, request_id: str, frontend: str, started: float, status: int,
                 model: str | None, error: str) -> None:
        """A request refused before it had a route (bad body, unknown model, no client key)."""
        # The model label stays empty: before routing it is whatever the client typed.
        self.metrics.request(frontend, None, status)
        if not self.access_log:
            return
        record = AccessRecord(request_id=request_id, frontend=frontend, status=status,
                              duration_ms=round((time.monotonic() - started) * 1000, 2),
                              model=model, error=error)
        self._access.write(_encode(record))

    def close(self) -> None:
        """Write out what is still buffered (the worker is stopping)."""
        if self._access is not None:
            self._access.flush()
