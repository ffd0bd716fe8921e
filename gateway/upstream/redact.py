"""Upstream keys never reach a client or a log, whatever upstream byte would carry them.

An upstream may quote the key it refused, in an error status, an error event inside a 200
stream, a 200 answer whose body is an error, or (a model echoing its prompt) plain answer text.
Every byte the gateway relays or translates passes here first. A key is replaced only where it
stands as a whole word (no letter or digit right before or after it), by its masked form
(`****` and its last four characters): a short key must not eat into ordinary words.

Streams are split anywhere by the network, so a key could arrive in two chunks. Keys hold no
line breaks, and SSE events end with one, so a chunk that ends with `\\n` cannot hold the first
half of a key; only the unfinished last line of a chunk that does not is held back until the
next chunk — it could not have been read by the client before its line is complete anyway.
"""
from __future__ import annotations

import re

from gateway.upstream.instances import mask_key


class Redactor:
    __slots__ = ("_keys", "_pattern", "_masks", "_hold")

    def __init__(self, keys: list[str]):
        unique = sorted({key for key in keys if key}, key=len, reverse=True)
        self._keys = [key.encode() for key in unique]
        self._masks = {key.encode(): mask_key(key).encode() for key in unique}
        self._pattern = re.compile(
            rb"(?<![A-Za-z0-9])(" + b"|".join(re.escape(key) for key in self._keys)
            + rb")(?![A-Za-z0-9])") if unique else None
        self._hold = max((len(key) for key in self._keys), default=0)

    def bytes(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        for key in self._keys:
            if key in data:
                return self._pattern.sub(lambda match: self._masks[match.group(1)], data)
        return data

    def text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self.bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8", "replace")

    def stream(self) -> "StreamRedactor":
        return StreamRedactor(self)


class StreamRedactor:
    """One stream's redaction, holding back an unfinished line's tail (see the module doc)."""
    __slots__ = ("_redactor", "_held")

    def __init__(self, redactor: Redactor):
        self._redactor = redactor
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        redactor = self._redactor
        if redactor._pattern is None:
            return chunk
        if self._held:
            chunk = self._held + chunk
            self._held = b""
        elif chunk[-1:] == b"\n":  # the common chunk: whole lines
            for key in redactor._keys:
                if key in chunk:
                    return redactor.bytes(chunk)
            return chunk
        if chunk[-1:] != b"\n":
            cut = chunk.rfind(b"\n") + 1
            keep = max(cut, len(chunk) - redactor._hold + 1)
            self._held = chunk[keep:]
            chunk = chunk[:keep]
        return redactor.bytes(chunk)

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return self._redactor.bytes(held)
