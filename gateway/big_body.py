"""A big request body decoded, encoded and sent in pieces, so the event loop runs between them.

msgspec decodes and encodes a body in one C call that keeps the GIL: for a 30 MB body of text
each pass held every other request of the worker (`/healthz` included) for 20-70 ms, several
times that on a loaded machine, and a thread does not help. The bulk of such a body is in a few
long strings (a pasted file, a log), and a string can be handled in pieces. So, for a body over
BIG bytes only (smaller ones take the one-call path):

- Decoding: a piece of the body per turn, its escaped backslashes and quotes blanked out, so
  that every quote left delimits a string, gives the string values of at least _LONG bytes.
  Each is decoded apart, _PIECE bytes at a time with a turn of the loop after each piece (cut
  where no escape sequence or UTF-8 character is split), its text grown in place. The rest of
  the body, with a placeholder in place of each, is decoded in one call, and the texts then
  replace the placeholders. When anything does not decode that way, or a placeholder is not
  found as a value of its own (a malformed body, an unusual one), the whole body is decoded in
  one call instead, so what is accepted and every error message are exactly those of the
  one-call path.
- Encoding: the rest of the body is encoded with a placeholder in place of each string of at
  least _LONG characters, and each string's encoding, _PIECE characters at a time, is spliced
  in; the bytes are those of the one-call path.
- Sending: the forwarder writes the payload to the upstream _PIECE bytes at a time
  (`PiecewisePayload`), rather than copying it whole into the connection's buffer.

What stays one call: a body whose bulk is many short strings or numbers (bounded by the body's
size and, for objects and arrays, by server.max_body_containers), a huge object key, and the
copy of a long text when a piece brings wider characters than the text had so far.
"""
from __future__ import annotations

import asyncio
import os

import msgspec
from aiohttp.payload import Payload

BIG = 1024 * 1024      # bytes of body from which it is handled in pieces
_LONG = 64 * 1024      # a string this long (bytes of JSON, or characters) is handled apart
_PIECE = 512 * 1024    # bytes or characters handled per turn of the loop
_MAX_QUOTES = 100_000  # a body with more strings than half this is mostly short ones: one call
_NODES_PER_TURN = 4096
_QUOTES_PER_TURN = 4096
_MAX_BACKSLASHES = 64  # a longer run of backslashes: one call
_ESCAPE = 12           # bytes of the longest escape sequence, a surrogate pair `\ud83d\ude00`
_WHITESPACE = b" \t\r\n"

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


class _Unusual(Exception):
    """The body is not one the pieces handle: it is decoded in one call."""


async def assemble(chunks: list[bytes]) -> bytearray:
    """The chunks of a body as one buffer, a piece per turn of the loop (one join of 30 MB
    held it for up to 25 ms; the buffer grows in place, with no copy of what it holds)."""
    raw = bytearray()
    copied = 0
    for chunk in chunks:
        raw += chunk
        copied += len(chunk)
        if copied >= _PIECE:
            copied = 0
            await asyncio.sleep(0)
    return raw


async def decode_in_pieces(raw: bytes | bytearray):
    """`msgspec.json.decode(raw)`, with the event loop running between pieces of its long
    strings; raises what that call raises."""
    try:
        return await _decode_in_pieces(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, _Unusual):
        return _decode(raw)  # the reference: its value, or its error


async def _decode_in_pieces(raw: bytes | bytearray):
    literals = await _long_values(raw)
    if not literals:
        raise _Unusual
    token = os.urandom(8).hex()
    texts: dict[str, str] = {}
    skeleton = []
    previous = 0
    for number, (start, end) in enumerate(literals):
        mark = f"{token}-{number}"
        texts[mark] = await _decode_text(raw, start, end)
        skeleton += (raw[previous:start], mark.encode())
        previous = end
    skeleton.append(raw[previous:])
    body = [_decode(b"".join(skeleton))]  # in a list: a bare string decodes the same way
    await asyncio.sleep(0)
    found = await _string_slots(body, texts.__contains__, len(texts))
    if len(found) < len(texts):
        # A placeholder that is not a value of its own (a key, or not a string of the body
        # at all): the pieces were not the body's strings.
        raise _Unusual
    for node, key, mark in found:
        node[key] = texts[mark]
    return body[0]


async def _long_values(raw: bytes | bytearray) -> list[tuple[int, int]]:
    """(first byte, closing quote) of each string value (not key) at least _LONG bytes long.

    A piece of the body per turn, with its escaped backslashes and escaped quotes blanked out
    (`replace` pairs each run of backslashes from its start, as JSON does; a piece ends outside
    such a run): every quote left opens or closes a string. Should the body not be JSON, the
    skeleton built from these does not decode, or its placeholders are not all found."""
    found = []
    quotes = seen = 0
    opening = -1  # where the string now open began, if one is
    start = 0
    size = len(raw)
    while start < size:
        end = min(start + _PIECE, size)
        run = 0
        while end < size and raw[end - 1] == 0x5C:
            end += 1
            run += 1
            if run > _MAX_BACKSLASHES:
                raise _Unusual
        part = raw[start:end].replace(b"\\\\", b"__").replace(b'\\"', b"__")
        quotes += part.count(b'"')
        if quotes > _MAX_QUOTES:
            raise _Unusual
        quote = part.find(b'"')
        while quote != -1:
            if opening == -1:
                opening = start + quote
            else:
                closing = start + quote
                if closing - opening > _LONG and _is_value(raw, closing):
                    found.append((opening + 1, closing))
                opening = -1
            quote = part.find(b'"', quote + 1)
            seen += 1
            if seen % _QUOTES_PER_TURN == 0:
                await asyncio.sleep(0)
        start = end
        await asyncio.sleep(0)
    return found


def _is_value(raw: bytes | bytearray, closing: int) -> bool:
    """Whether the string closed at `closing` is a value: no `:` follows it (an object key)."""
    after = raw[closing + 1:closing + 65].lstrip(_WHITESPACE)
    if not after:
        raise _Unusual  # a long run of whitespace: undecided
    return after[:1] != b":"


async def _decode_text(raw: bytes | bytearray, start: int, end: int) -> str:
    """The text of the string literal whose content is raw[start:end], a piece per turn.

    The pieces are appended one by one, not joined at the end: CPython grows a string that
    nothing else refers to in place (realloc, whose big blocks move without a copy), so each
    turn writes one piece into fresh memory. A join writes the whole text into fresh memory in
    one call, and on a loaded machine its page faults alone held the loop 100-230 ms for 30 MB.
    (A piece with wider characters than the text so far makes one copy of the text.)"""
    text = ""
    while start < end:
        cut = _cut(raw, start + _PIECE, end)
        text += _decode(b'"' + raw[start:cut] + b'"')
        start = cut
        await asyncio.sleep(0)
    return text


def _cut(raw: bytes | bytearray, at: int, end: int) -> int:
    """A place at or after `at`, up to `end`, inside no escape sequence nor UTF-8 character:
    one with no backslash in the _ESCAPE bytes before it and no continuation byte after it, or
    else the backslash of the next escape that is not `\\u` (so no surrogate pair is split).
    `end` when the text is too dense with escapes to find one soon."""
    for _ in range(64):
        if at >= end:
            return end
        if raw.rfind(b"\\", at - _ESCAPE, at) == -1:
            while at < end and raw[at] & 0xC0 == 0x80:
                at += 1
            return at
        backslash = raw.find(b"\\", at, end)
        if backslash == -1:
            return end
        run = len(raw[max(backslash - _MAX_BACKSLASHES, 0):backslash].rstrip(b"\\"))
        escapes = (backslash - max(backslash - _MAX_BACKSLASHES, 0) - run) % 2 == 0
        if escapes and raw[backslash + 1:backslash + 2] != b"u":
            return backslash
        at = backslash + 2
    return end


async def _string_slots(body, wanted, enough: int | None = None) -> list[tuple]:
    """(container, key, string) of each string value in `body` that `wanted(string)` accepts,
    in a walk of the containers that ends once `enough` are found."""
    found: list[tuple] = []
    stack = [body]
    visited = 0
    while stack and len(found) != enough:
        node = stack.pop()
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            if type(value) is str:
                if wanted(value):
                    found.append((node, key, value))
            elif isinstance(value, (dict, list)):
                stack.append(value)
        visited += 1
        if visited % _NODES_PER_TURN == 0:
            await asyncio.sleep(0)
    return found


def _long(text: str) -> bool:
    return len(text) >= _LONG


async def encode_in_pieces(body) -> bytes | BodyPieces:
    """`msgspec.json.Encoder().encode(body)`, with the event loop running between pieces of its
    long strings: the rest of the body is encoded with a placeholder in place of each, and the
    texts' encodings, a piece per turn, are spliced in. `body` is unchanged."""
    long_strings = await _string_slots(body, _long)
    if not long_strings:
        return _encode(body)
    token = os.urandom(8).hex()
    marks = []
    try:
        for number, (node, key, _) in enumerate(long_strings):
            marks.append(f'"{token}-{number}"'.encode())
            node[key] = marks[-1][1:-1].decode()
        skeleton = _encode(body)
    finally:
        for node, key, text in long_strings:
            node[key] = text
    places = sorted((skeleton.find(mark), mark, text)
                    for mark, (_, _, text) in zip(marks, long_strings))
    if any(place == -1 or skeleton.count(mark) != 1 for place, mark, _ in places):
        return _encode(body)  # a placeholder that is not where it was put: one call
    parts: list = []
    previous = 0
    for place, mark, text in places:
        parts += (memoryview(skeleton)[previous:place], b'"')
        for start in range(0, len(text), _PIECE):
            # escaping is per character: the pieces' encodings make the whole one's
            parts.append(memoryview(_encode(text[start:start + _PIECE]))[1:-1])
            await asyncio.sleep(0)
        parts.append(b'"')
        previous = place + len(mark)
    parts.append(memoryview(skeleton)[previous:])
    pieces = BodyPieces(parts)
    return pieces if pieces.size > BIG else bytes(pieces)  # the forwarder sends it whole


class BodyPieces:
    """An encoded body as the pieces it was encoded in (joining them would be one more copy of
    the whole body, in one call); `len()` is its size in bytes."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: list):
        self.parts = parts
        self.size = sum(len(part) for part in parts)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


class PiecewisePayload(Payload):
    """An upstream request body written _PIECE bytes at a time, with a turn of the loop after
    each (aiohttp copies a bytes body and its headers into one buffer, in one call)."""

    def __init__(self, body: bytes | BodyPieces):
        super().__init__(body.parts if isinstance(body, BodyPieces) else (body,))
        self._size = len(body)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._value).decode(encoding, errors)

    async def write(self, writer) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer, content_length: int | None) -> None:
        left = self._size if content_length is None else min(content_length, self._size)
        for part in self._value:
            view = memoryview(part)
            for start in range(0, len(view), _PIECE):
                if left <= 0:
                    return
                piece = view[start:start + min(_PIECE, left)]
                left -= len(piece)
                await writer.write(piece)
                await asyncio.sleep(0)
