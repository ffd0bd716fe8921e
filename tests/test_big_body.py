"""gateway/big_body.py: a big body decoded and encoded in pieces gives exactly what one msgspec
call gives (its value, or its error), while other tasks run between the pieces."""
from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from gateway.big_body import BodyPieces, decode_in_pieces, encode_in_pieces

_encode = msgspec.json.Encoder().encode

# Text that tries the places a piece may be cut: escapes, a surrogate pair, multi-byte UTF-8.
TEXT = ('line "one"\n\ttab \\ back é 中 😀 \x01 end ' * 40_000)


def one_call(raw: bytes):
    try:
        return "value", msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return "error", str(exc)


def in_pieces(raw: bytes):
    try:
        return "value", asyncio.run(decode_in_pieces(bytearray(raw)))
    except msgspec.DecodeError as exc:
        return "error", str(exc)


def body(text: str, ascii_only: bool = True) -> bytes:
    return json.dumps({"model": "m", "messages": [
        {"role": "system", "content": text[:100_000]},
        {"role": "user", "content": [{"type": "text", "text": text}]}]},
        ensure_ascii=ascii_only).encode()


GOOD = {
    "escaped": body(TEXT),
    "utf-8": body(TEXT, ascii_only=False),
    "a long key": json.dumps({TEXT: 1, "model": "m"}).encode(),
    "a bare string": json.dumps(TEXT).encode(),
    "a duplicated key": b'{"a": "' + b"x" * 200_000 + b'", "a": 3}',
    "escapes only": b'{"a": "' + b"\\u00e9\\ud83d\\ude00\\n" * 150_000 + b'"}',
    "backslashes only": b'{"a": "' + b"\\\\" * 600_000 + b'"}',
    "wider characters late":
        ('{"a": "' + "x" * 2_000_000 + "中" + "y" * 100 + "😀" + '"}').encode(),
}
_utf8 = body(TEXT, ascii_only=False)
_middle = len(_utf8) // 2
BAD = {
    "cut short": _utf8[:-10],
    "invalid UTF-8": _utf8[:_middle] + b"\xff" + _utf8[_middle:],
    "a raw control character": _utf8[:_middle] + b"\x01" + _utf8[_middle:],
    "a lone surrogate": b'{"a": "' + b"x" * 200_000 + b'\\ud83d"}',
    "trailing bytes": GOOD["escaped"] + b" x",
}


@pytest.mark.parametrize("raw", list(GOOD.values()) + list(BAD.values()),
                         ids=list(GOOD) + list(BAD))
def test_pieces_decode_to_what_one_call_gives_or_fail_as_it_fails(raw):
    assert in_pieces(raw) == one_call(raw)


@pytest.mark.parametrize("raw", GOOD.values(), ids=GOOD.keys())
def test_pieces_encode_to_the_bytes_one_call_gives_and_leave_the_body_as_it_was(raw):
    decoded = msgspec.json.decode(raw)
    expected = _encode(decoded)
    encoded = asyncio.run(encode_in_pieces(decoded))
    assert bytes(encoded) == expected
    assert _encode(decoded) == expected  # the placeholders are gone again


def test_other_tasks_run_between_the_pieces_of_a_big_body():
    raw = bytearray(body("\n" * 15_000_000))

    async def relay_while_counting_turns():
        turns = 0
        done = False

        async def count():
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        counter = asyncio.create_task(count())
        decoded = await decode_in_pieces(raw)
        turns_decoding = turns
        encoded = await encode_in_pieces(decoded)
        turns_encoding = turns - turns_decoding
        done = True
        await counter
        return decoded, encoded, turns_decoding, turns_encoding

    decoded, encoded, turns_decoding, turns_encoding = asyncio.run(relay_while_counting_turns())
    assert decoded["messages"][1]["content"][0]["text"] == "\n" * 15_000_000
    assert isinstance(encoded, BodyPieces) and bytes(encoded) == bytes(raw).replace(b" ", b"")
    # 30 MB in pieces of 512 KiB: dozens of turns each way (one call: none).
    assert turns_decoding > 20 and turns_encoding > 20
