"""What the relay reads from answers whose bytes pass through untouched.

Same-protocol routes never parse an answer event by event. The relay still has to know four
things, found by byte search so the per-chunk cost stays a few `bytes.find` calls:

- where the answer ends (`data: [DONE]`, `event: message_stop`, `event: response.completed` …):
  the client gets nothing after it, because OpenCode Go sends one more frame there (the cost),
  which breaks strict clients;
- the `cost` in that trailing frame (or in a whole answer's top-level `cost`);
- the usage, from the events at the stream's two ends (`StreamTap` keeps the first chunk and
  the last two and reads them once the stream has ended);
- whether the upstream reported an error inside the 200 stream, for the access log.
"""
from __future__ import annotations

import msgspec

from gateway.errors import DECODE_ERRORS, upstream_error
from gateway.translate import anthropic_answer, chat_answer, responses_answer
from gateway.translate.hub import Usage, parse_cost

# What the line that ends an answer holds, per wire (found by one `bytes.find` per chunk, then
# checked to be that line: `data: [DONE]`, `event: message_stop`, `event: response.completed`…).
END_MARKERS: dict[str, tuple[bytes, ...]] = {
    "openai": (b"[DONE]",),
    "anthropic": (b"message_stop",),
    "responses": (b"response.completed", b"response.incomplete", b"response.failed"),
}
_END_LINE_STARTS = (b"data:", b"data: ", b"event:", b"event: ")
# What an error inside a 200 stream looks like, per wire.
ERROR_MARKERS: dict[str, bytes] = {
    "openai": b'"error":',
    "anthropic": b"event: error",
    "responses": b"event: error",
}
TRAILER_LIMIT = 64 * 1024


class EndFinder:
    """Finds where the answer's last event ends, across chunk boundaries.

    The common chunk ends with a line end and holds no marker: one `find` per marker. Only a
    chunk that ends mid-line keeps its tail, in case a marker was split there.
    """
    __slots__ = ("_markers", "_tail", "_seen", "_longest")

    def __init__(self, markers: tuple[bytes, ...]):
        self._markers = markers
        self._longest = max(len(marker) for marker in markers) + len(b"event: ")
        self._tail = b""      # the unfinished last line of the previous chunk (bounded)
        self._seen = False    # the marker is out; waiting for the blank line that ends its event

    def find(self, chunk: bytes) -> int:
        """The offset in `chunk` just past the answer's end, or -1 while it goes on."""
        start = 0
        if not self._seen:
            at = self._marker_line(chunk)
            if at < 0 and self._tail:
                seam = self._tail + chunk[:self._longest]
                found = self._marker_line(seam)
                if found >= 0:
                    at = max(0, found - len(self._tail))
            if at < 0:
                self._tail = b"" if chunk[-1:] == b"\n" else chunk[-self._longest:]
                return -1
            self._seen = True
            start = at
        for blank in (b"\n\n", b"\r\n\r\n"):
            end = chunk.find(blank, start)
            if end >= 0:
                return end + len(blank)
        if start == 0 and chunk[:1] == b"\n":  # the blank line's second half opens this chunk
            return 1
        return -1

    def _marker_line(self, data: bytes) -> int:
        """Where a line that is one of the markers' lines begins in `data`, or -1."""
        for marker in self._markers:
            at = data.find(marker)
            while at >= 0:
                line = data.rfind(b"\n", 0, at) + 1
                if data[line:at] in _END_LINE_STARTS and \
                        data[at + len(marker):at + len(marker) + 1] in (b"\n", b"\r", b""):
                    return line
                at = data.find(marker, at + 1)
        return -1


class _CostOnly(msgspec.Struct):
    cost: str | float | None = None


_decode_cost = msgspec.json.Decoder(_CostOnly).decode


def trailer_cost(trailer: bytes) -> float | None:
    """The `cost` OpenCode Go sends after the answer's end (a chunk, or a final ping)."""
    at = trailer.rfind(b'"cost"')
    if at < 0:
        return None
    line = _data_line(trailer, at)
    if line is None:
        return None
    try:
        return parse_cost(_decode_cost(line).cost)
    except DECODE_ERRORS:
        return None


def _data_line(data: bytes, at: int) -> bytes | None:
    """The payload of the `data:` line that holds offset `at`."""
    start = data.rfind(b"data:", 0, at)
    if start < 0:
        return None
    end = data.find(b"\n", at)
    return data[start + 5:end if end >= 0 else len(data)].strip()


# ---- usage ----

class _ChatHolder(msgspec.Struct):
    usage: chat_answer.WireUsage | None = None
    cost: str | float | None = None


class _AnthropicMessage(msgspec.Struct):
    usage: anthropic_answer.WireUsage | None = None


class _AnthropicHolder(msgspec.Struct):
    """A whole message (`usage` at the top), message_start (`message.usage`) or message_delta."""
    usage: anthropic_answer.WireUsage | None = None
    message: _AnthropicMessage | None = None
    cost: str | float | None = None


class _ResponsesResponse(msgspec.Struct):
    usage: responses_answer.WireUsage | None = None
    cost: str | float | None = None


class _ResponsesHolder(msgspec.Struct):
    """A whole response (`usage` at the top) or a lifecycle event (`response.usage`)."""
    usage: responses_answer.WireUsage | None = None
    response: _ResponsesResponse | None = None
    cost: str | float | None = None


_decode_chat = msgspec.json.Decoder(_ChatHolder).decode
_decode_anthropic = msgspec.json.Decoder(_AnthropicHolder).decode
_decode_responses = msgspec.json.Decoder(_ResponsesHolder).decode


def answer_usage(protocol: str, body: bytes) -> tuple[Usage | None, float | None]:
    """(usage, cost) of a whole answer in the upstream's own protocol."""
    try:
        if protocol == "openai":
            held = _decode_chat(body)
            usage = chat_answer.hub_usage(held.usage) if held.usage else None
            return usage, parse_cost(held.cost)
        if protocol == "anthropic":
            held = _decode_anthropic(body)
            return _anthropic_usage([held.usage]), parse_cost(held.cost)
        held = _decode_responses(body)
        usage = _responses_usage(held)
        return usage, parse_cost(held.cost)
    except DECODE_ERRORS:
        return None, None


def _anthropic_usage(reports: list) -> Usage | None:
    counts = anthropic_answer.WireUsage()
    seen = False
    for reported in reports:
        if reported is None:
            continue
        seen = True
        for name in anthropic_answer.WireUsage.__struct_fields__:
            value = getattr(reported, name)
            if value is not None:  # cumulative counts: a later value replaces an earlier one
                setattr(counts, name, value)
    if not seen:
        return None
    return anthropic_answer.hub_usage(counts)


def _responses_usage(held: _ResponsesHolder) -> Usage | None:
    usage = held.usage or (held.response.usage if held.response else None)
    return responses_answer.hub_usage(usage) if usage is not None else None


def _usage_line(data: bytes, last: bool) -> bytes | None:
    at = data.rfind(b'"usage"') if last else data.find(b'"usage"')
    if at < 0:
        return None
    return _data_line(data, at)


class StreamTap:
    """Keeps the first chunk and the last two of a pass-through stream, which is where every
    wire reports usage, and reads them once the stream has ended."""
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

    def usage(self) -> Usage | None:
        if self._head is None:
            return None
        tail = self._previous + self._last
        try:
            if self._protocol == "openai":
                line = _usage_line(tail, last=True)
                held = _decode_chat(line) if line else None
                return chat_answer.hub_usage(held.usage) if held and held.usage else None
            if self._protocol == "anthropic":
                # message_start (first) has the input counts, message_delta (last) the output.
                reports = []
                for line in (_usage_line(self._head, last=False), _usage_line(tail, last=True)):
                    if line is not None:
                        held = _decode_anthropic(line)
                        reports.append(held.usage or (held.message.usage if held.message else None))
                return _anthropic_usage(reports)
            line = _usage_line(tail, last=True)
            return _responses_usage(_decode_responses(line)) if line else None
        except DECODE_ERRORS:
            return None

    def responses_position(self) -> tuple[str | None, int]:
        """(the response id, the next sequence number) of the Responses stream relayed so far:
        where an error event that ends it goes on from. (None, 0) before its opening."""
        if self._head is None:
            return None, 0
        at = self._head.find(b'"response"')
        line = _data_line(self._head, at) if at >= 0 else None
        try:
            opening = _decode_opening(line) if line else None
        except DECODE_ERRORS:
            opening = None
        if opening is None or opening.response is None or not opening.response.id:
            return None, 0
        tail = self._previous + self._last
        at = tail.rfind(b'"sequence_number":')
        number = tail[at + 18:at + 40].lstrip()
        digits = number[:len(number) - len(number.lstrip(b"0123456789"))] if at >= 0 else b""
        return opening.response.id, int(digits) + 1 if digits else 0


class _ResponsesResponseId(msgspec.Struct):
    id: str = ""


class _Opening(msgspec.Struct):
    """`response.created`: the response the client has open."""
    response: _ResponsesResponseId | None = None


_decode_opening = msgspec.json.Decoder(_Opening).decode


def stream_error(protocol: str, chunk: bytes) -> tuple[int, str] | None:
    """(status, message) of the upstream error event `chunk` holds (the relay calls this only
    when the wire's ERROR_MARKERS is in it); None when it is not one after all."""
    marker = ERROR_MARKERS[protocol]
    at = chunk.find(marker)
    if at < 0:
        return None
    if protocol == "openai":
        if chunk.rfind(b"data:", 0, at) < 0:
            return None
        line = _data_line(chunk, at)
    else:
        line = _data_line(chunk, chunk.find(b"data:", at))
    return upstream_error(line or b"", 502)


def failed_end(protocol: str, last: bytes) -> tuple[int, str] | None:
    """A Responses stream that ended with `response.failed`: its error."""
    if protocol != "responses":
        return None
    at = last.rfind(b"response.failed")
    if at < 0:
        return None
    return upstream_error(_data_line(last, last.find(b"data:", at)) or b"", 502)
