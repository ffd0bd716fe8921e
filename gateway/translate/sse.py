"""Incremental Server-Sent Events parser over raw bytes.

The upstream's bytes arrive split wherever the network split them: inside a line, inside a
UTF-8 character, between the `\\r` and `\\n` of a line ending. The parser keeps the unfinished
tail and only ever hands out whole events, so translators never see a partial one. Data stays
bytes: a translator decodes it once with its own typed msgspec decoder.

What it holds is bounded: an event (or a line without an end) longer than `max_event_bytes`
raises `SSELimitError`, which the relay turns into the client's error event, instead of letting
an upstream that never ends its line grow the gateway's memory.
"""
from __future__ import annotations

import re

# (event name or None, data) — a plain tuple: this is on the per-event path.
SSEEvent = tuple["str | None", bytes]
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
# The shape nearly every upstream event has: `event: <name>` (optional), then one `data: <json>`.
_PLAIN_EVENT = re.compile(rb"(event: [^\n]*\n)?data: ([^\n]*)\n\n")
_NAMES: dict[bytes, str] = {}  # `event: <name>\n` lines seen, decoded once
_MAX_NAMES = 256


class SSELimitError(Exception):
    """An upstream event (or line) grew past the parser's bound."""


class SSEParser:
    __slots__ = ("_tail", "_limit")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._tail = b""  # the bytes of the event not yet ended by a blank line
        self._limit = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this chunk, in order.

        The plain shape (`data: …` alone, or after `event: …`) is read for a whole chunk at once
        (`_plain_events`); a chunk with any other shape in it is cut at blank lines (`\\n\\n`),
        one piece per event. This is on the path of every event of every translated stream."""
        buf = self._tail + chunk if self._tail else chunk
        held = b""
        if b"\r" in buf:
            # A trailing `\r` may be the first half of `\r\n`: decide once the next byte is here.
            if buf.endswith(b"\r"):
                buf = buf[:-1]
                held = b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # The bytes up to the last blank line hold whole events; the rest waits for more.
        whole = buf.rfind(b"\n\n") + 2
        if whole == 1:
            whole = 0
        self._tail = buf[whole:] + held if whole < len(buf) else held
        if len(self._tail) > self._limit:
            raise SSELimitError(f"an upstream event is over {self._limit} bytes "
                                "(upstream.max_event_bytes)")
        if not whole:
            return []
        if whole <= self._limit:  # (no event in it can be over the limit)
            events = _plain_events(buf, whole)
            if events is not None:
                return events
        return self._events(buf[:whole - 2].split(b"\n\n"))

    def _events(self, blocks: list[bytes]) -> list[SSEEvent]:
        """The events of `blocks` (each one event's lines, blank line removed), any shape."""
        events: list[SSEEvent] = []
        limit = self._limit
        for block in blocks:
            event, data = _read_lines(block)
            if data is None:
                continue  # comments only (keep-alives), or no data line
            if len(data) > limit:
                raise SSELimitError(f"an upstream event is over {limit} bytes "
                                    "(upstream.max_event_bytes)")
            events.append((event, data))
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (the stream was cut mid-event)."""
        return bool(self._tail.strip())


def _plain_events(buf: bytes, whole: int) -> list[SSEEvent] | None:
    """The events of `buf[:whole]` when every one has the plain shape, else None.

    One C call finds them all. The matches tile the bytes exactly (their lengths add up to
    `whole`) only when no block had another shape (a comment, two data lines, `data:` without
    its space, an `id:`), since the search skips what it cannot match: then the general walk
    reads the chunk instead."""
    found = _PLAIN_EVENT.findall(buf, 0, whole)
    covered = 8 * len(found)  # "data: " and the blank line's two "\n"
    for name, data in found:
        covered += len(name) + len(data)
    if covered != whole:
        return None
    names = _NAMES
    events: list[SSEEvent] = []
    for line, data in found:
        if line:
            name = names.get(line)
            if name is None:
                name = line[7:-1].decode("utf-8", "replace")
                if len(names) < _MAX_NAMES:
                    names[line] = name
            events.append((name, data))
        else:
            events.append((None, data))
    return events


def _read_lines(block: bytes) -> tuple[str | None, bytes | None]:
    """One event's lines, each `field: value` (a line starting with `:` is a comment): its
    `event` name and its `data` lines joined by `\\n`, None when it has none."""
    event = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 58:  # ":" starts a comment (keep-alives)
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
    return event, (b"\n".join(data) if data else None)
