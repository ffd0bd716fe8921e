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

# (event name or None, data) — a plain tuple: this is on the per-event path.
SSEEvent = tuple["str | None", bytes]
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSELimitError(Exception):
    """An upstream event (or line) grew past the parser's bound."""


class SSEParser:
    __slots__ = ("_tail", "_event", "_data", "_size", "_limit")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._tail = b""
        self._event: str | None = None
        self._data: list[bytes] = []
        self._size = 0  # bytes of data lines held for the event being read
        self._limit = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this chunk, in order."""
        buf = self._tail + chunk if self._tail else chunk
        held = b""
        if b"\r" in buf:
            # A trailing `\r` may be the first half of `\r\n`: decide once the next byte is here.
            if buf.endswith(b"\r"):
                buf = buf[:-1]
                held = b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._tail = lines.pop() + held
        if len(self._tail) + self._size > self._limit:
            raise SSELimitError(f"an upstream event is over {self._limit} bytes "
                                "(upstream.max_event_bytes)")
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._event, b"\n".join(self._data)))
                    self._data = []
                    self._size = 0
                self._event = None
            elif line[0] == 58:  # ":" starts a comment (keep-alives)
                continue
            else:
                field, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if field == b"data":
                    self._data.append(value)
                    self._size += len(value)
                    if self._size > self._limit:
                        raise SSELimitError(f"an upstream event is over {self._limit} bytes "
                                            "(upstream.max_event_bytes)")
                elif field == b"event":
                    self._event = value.decode("utf-8", "replace")
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (the stream was cut mid-event)."""
        return bool(self._tail.strip() or self._data)
