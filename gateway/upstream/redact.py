"""Upstream keys never reach a client or a log, whatever upstream byte would carry them.

An upstream may quote the key it refused, in an error status, an error event inside a 200
stream, a 200 answer whose body is an error, or (a model echoing its prompt) plain answer text.
Every byte the gateway relays or translates passes here first. A key is replaced only where it
stands as a whole word (no letter or digit right before or after it; a JSON escape such as `\\n`
right before it counts as a break, since it decodes to one), by its masked form (`****` and its
last four characters): a short key must not eat into ordinary words.

Inside JSON a key may arrive escaped: `/` as `\\/`, `"` and `\\` backslashed, non-ASCII or HTML
characters (`<`, `>`, `&`) as `\\uXXXX` in either case of hex. Every form a JSON encoder produces
is searched for, and replaced by the mask escaped the same way. (A key travels in an HTTP header,
so in practice it is printable ASCII; the other escapes cost nothing when no key needs them.)

Streams are split anywhere by the network, so a key can arrive in pieces. A stream's redactor
holds back exactly what could still become a key: the longest tail of the bytes not yet sent that
begins some form of some key (a whole key too: the byte after it decides whether it is a whole
word). Everything before that tail is final and goes out at once; a chunk whose end cannot begin
a key and that holds no key goes out as it came, uncopied. The last few bytes sent are kept as
context for the whole-word check of what follows.

On a translated route the client reads text, not bytes: an answer's text arrives in deltas the
client joins, so a key split across two deltas (or two upstream events) is only whole in the
joined text. `Redactor.guard` puts the same holding-back on each text channel of the client's
writer (answer text, reasoning, a tool call's arguments), released when the channel changes or
the stream ends. A pass-through stream's bytes go out as they came, so `SplitKeyGuard` does
the same there on the wire: it holds a stream from a text value that ends with the start of a
key until the next text values say whether they finish it (see its doc).
"""
from __future__ import annotations

import itertools
import re
from typing import AnyStr, Generic

from gateway.translate.hub import StreamTranslation, StreamWriter, Usage
from gateway.upstream.instances import mask_key

# Enough bytes before a key to tell whether it starts a word: `\\u00e9` is the longest break.
CONTEXT = 6
_WORD_BEFORE = r"(?:(?<![A-Za-z0-9])|(?<=\\[bfnrt])|(?<=\\u[0-9A-Fa-f]{4}))"
_WORD_AFTER = r"(?![A-Za-z0-9])"
# `_WORD_BEFORE` checked one byte further on (right after a key's first byte).
_WORD_BEFORE_ONE_BACK = (rb"(?:(?<![A-Za-z0-9].)|(?<=\\[bfnrt].)|(?<=\\u[0-9A-Fa-f]{4}.))")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t"}


def json_escaped(text: str, slash: bool, ascii_only: bool, html: bool, upper: bool) -> str:
    """`text` as a JSON encoder writes it inside a string, with that encoder's choices:
    `/` as `\\/`, non-ASCII as `\\uXXXX`, `<>&` as `\\uXXXX` (Go), upper-case hex."""
    out = []
    hex_format = "\\u{:04X}" if upper else "\\u{:04x}"
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char == "/" and slash:
            out.append("\\/")
        elif code < 0x20 or (html and char in "<>&"):
            out.append(hex_format.format(code))
        elif code > 0x7F and ascii_only:
            if code > 0xFFFF:  # a surrogate pair
                code -= 0x10000
                out.append(hex_format.format(0xD800 + (code >> 10)))
                out.append(hex_format.format(0xDC00 + (code & 0x3FF)))
            else:
                out.append(hex_format.format(code))
        else:
            out.append(char)
    return "".join(out)


def key_forms(key: str) -> dict[str, str]:
    """Every form of `key` a client or log might see (itself and its JSON escapes), each with
    the masked form that replaces it, escaped the same way."""
    mask = mask_key(key)
    forms = {key: mask}
    for choices in itertools.product((False, True), repeat=4):
        forms.setdefault(json_escaped(key, *choices), json_escaped(mask, *choices))
    return forms


def _as_text(form: str | bytes) -> str:
    return form.decode("utf-8", "surrogatepass") if isinstance(form, bytes) else form


class _Matcher(Generic[AnyStr]):
    """The keys' forms in one string type (bytes for the wire, str for a writer's text)."""
    __slots__ = ("forms", "masks", "pattern", "_ends", "_split_patterns")

    def __init__(self, masks: dict[AnyStr, AnyStr]):
        self.forms = sorted(masks, key=len, reverse=True)
        self.masks = masks
        words = "|".join(re.escape(form) for form in map(_as_text, self.forms))
        source = _WORD_BEFORE + "(" + words + ")" + _WORD_AFTER
        self.pattern = re.compile(source.encode("utf-8", "surrogatepass")
                                  if isinstance(self.forms[0], bytes) else source)
        # Every beginning of every form, by its last item (a byte or a character), longest
        # first: the tail of a chunk that could still become a key is found from its last item.
        ends: dict = {}
        for form in self.forms:
            for length in range(1, len(form) + 1):
                ends.setdefault(form[length - 1], set()).add(form[:length])
        self._ends = {last: sorted(prefixes, key=len, reverse=True)
                      for last, prefixes in ends.items()}
        self._split_patterns: dict[str, tuple] = {}

    def split_patterns(self, protocol: str) -> tuple:
        """SplitKeyGuard's regexes for `protocol`'s events: built once, not per stream."""
        patterns = self._split_patterns.get(protocol)
        if patterns is None:
            fields = TEXT_FIELDS.get(protocol) or {name for names in TEXT_FIELDS.values()
                                                   for name in names}
            names = b"|".join(re.escape(name) for name in sorted(fields))
            patterns = self._split_patterns[protocol] = (
                re.compile(_prefix_pattern(self.forms) + b'"'),
                re.compile(_WORD_BEFORE.encode()),
                re.compile(b'"(?:' + names + rb')"\s*:\s*"'))
        return patterns

    def unfinished(self, data: AnyStr, start: int) -> int:
        """The length of the longest tail of `data[start:]` that begins some form of a key."""
        prefixes = self._ends.get(data[-1]) if data else None
        if not prefixes:
            return 0
        room = len(data) - start
        for prefix in prefixes:
            if len(prefix) <= room and data.endswith(prefix):
                return len(prefix)
        return 0

    def sub(self, data: AnyStr) -> AnyStr:
        return self.pattern.sub(lambda match: self.masks[match.group(1)], data)


class Redactor:
    __slots__ = ("_bytes", "_text")

    def __init__(self, keys: list[str]):
        unique = {key for key in keys if key}
        text_masks: dict[str, str] = {}
        for key in unique:
            for form, mask in key_forms(key).items():
                text_masks.setdefault(form, mask)
        self._text = _Matcher(text_masks) if unique else None
        self._bytes = _Matcher({form.encode("utf-8", "surrogatepass"): mask.encode()
                                for form, mask in text_masks.items()},
                               ) if unique else None

    def bytes(self, data: bytes) -> bytes:
        matcher = self._bytes
        if matcher is None:
            return data
        for form in matcher.forms:
            if form in data:
                return matcher.sub(data)
        return data

    def text(self, text: str) -> str:
        if self._text is None or not text:
            return text
        return self.bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8", "replace")

    def stream(self) -> "StreamRedactor":
        return StreamRedactor(self._bytes, b"")

    def passthrough(self, protocol: str) -> "PassThroughRedactor":
        """A same-protocol stream's redaction: keys cut by the network or split across the
        `protocol`'s events."""
        return PassThroughRedactor(self.stream(), SplitKeyGuard(self._bytes, protocol))

    def text_stream(self) -> "StreamRedactor":
        """A redactor for text a client joins from pieces (an answer's deltas)."""
        return StreamRedactor(self._text, "")

    def guard(self, translation: StreamTranslation) -> StreamTranslation:
        """`translation` with its text channels held back while they could end in a key."""
        if self._text is not None:
            reader = translation.reader
            reader.writer = RedactingWriter(reader.writer, self)
        return translation


class StreamRedactor(Generic[AnyStr]):
    """One stream's redaction, holding back what could still become a key (see the module doc).
    `feed` and `flush` take and give bytes, or str for a text stream."""
    __slots__ = ("_matcher", "_held", "_before")

    def __init__(self, matcher: _Matcher | None, empty: AnyStr):
        self._matcher = matcher
        self._held = empty  # what could still become a key, not yet sent
        self._before = empty  # what was sent last (its end is the next piece's context)

    def feed(self, chunk: AnyStr) -> AnyStr:
        matcher = self._matcher
        if matcher is None or not chunk:
            return chunk
        held = self._held
        if not held:
            # The common chunk (no form of a key in it, and its end cannot begin one) goes out
            # as it came. Checked here, not in a method of the matcher: this runs for every
            # delta of every translated stream.
            for form in matcher.forms:
                if form in chunk:
                    break
            else:
                if not matcher.unfinished(chunk, 0):
                    self._before = chunk if len(chunk) >= CONTEXT \
                        else (self._before + chunk)[-CONTEXT:]
                    return chunk
        return self._release(chunk, held, final=False)

    def flush(self) -> AnyStr:
        held = self._held
        if not held:
            return held
        return self._release(held[:0], held, final=True)

    def _release(self, chunk: AnyStr, held: AnyStr, final: bool) -> AnyStr:
        matcher = self._matcher
        before = self._before[-CONTEXT:]
        data = before + held + chunk
        start = len(before)
        end = len(data) if final else len(data) - matcher.unfinished(data, start)
        pieces = []
        at = start
        for match in matcher.pattern.finditer(data, start):
            if match.start() >= end:
                break
            pieces.append(data[at:match.start()])
            pieces.append(matcher.masks[match.group(1)])
            at = match.end()
        cut = max(end, at)
        pieces.append(data[at:cut])
        self._held = data[cut:]
        self._before = data[max(0, cut - CONTEXT):cut]
        return data[:0].join(pieces)


class RedactingWriter(StreamWriter):
    """A client writer's text channels held back while they could end in a key: answer text,
    reasoning, and the arguments of one tool call at a time. A channel's held text goes out
    before anything else the writer is told, so the order of events is kept."""
    __slots__ = ("_writer", "_text", "_reasoning", "_arguments", "_call")

    def __init__(self, writer: StreamWriter, redactor: Redactor):
        # No StreamWriter.__init__: `out`, `done` and `failure` are the wrapped writer's.
        self._writer = writer
        self._text = redactor.text_stream()
        self._reasoning = redactor.text_stream()
        self._arguments = redactor.text_stream()
        self._call = -1  # the tool call whose arguments are held

    @property
    def done(self) -> bool:  # type: ignore[override]
        return self._writer.done

    @property
    def failure(self) -> tuple[int, str] | None:  # type: ignore[override]
        return self._writer.failure

    def take(self) -> bytes:
        return self._writer.take()

    def _release(self, keep: StreamRedactor | None = None) -> None:
        writer = self._writer
        if keep is not self._text:
            held = self._text.flush()
            if held:
                writer.text(held)
        if keep is not self._reasoning:
            held = self._reasoning.flush()
            if held:
                writer.reasoning(held)
        if keep is not self._arguments:
            held = self._arguments.flush()
            if held:
                writer.tool_arguments(self._call, held)

    def start(self, id: str, model: str) -> None:
        self._writer.start(id, model)

    def text(self, text: str) -> None:
        if self._reasoning._held or self._arguments._held:  # (each delta: skip two calls)
            self._release(self._text)
        out = self._text.feed(text)
        if out:
            self._writer.text(out)

    def reasoning(self, text: str) -> None:
        if self._text._held or self._arguments._held:
            self._release(self._reasoning)
        out = self._reasoning.feed(text)
        if out:
            self._writer.reasoning(out)

    def tool_call(self, index: int, id: str, name: str) -> None:
        self._release()
        self._writer.tool_call(index, id, name)

    def tool_arguments(self, index: int, fragment: str) -> None:
        self._release(self._arguments if index == self._call else None)
        self._call = index
        out = self._arguments.feed(fragment)
        if out:
            self._writer.tool_arguments(index, out)

    def finish(self, reason: str) -> None:
        self._release()
        self._writer.finish(reason)

    def usage(self, usage: Usage) -> None:
        self._release()
        self._writer.usage(usage)

    def end(self) -> None:
        self._release()
        self._writer.end()

    def error(self, status: int, message: str) -> None:
        self._release()
        self._writer.error(status, message)


# The JSON string fields whose values a client joins into one text, per wire: answer text,
# reasoning, a tool call's arguments.
TEXT_FIELDS: dict[str, tuple[bytes, ...]] = {
    "openai": (b"content", b"reasoning_content", b"reasoning", b"arguments"),
    "anthropic": (b"text", b"thinking", b"partial_json"),
    "responses": (b"delta",),
}
# What a guard holds at most while it waits for the rest of a key: past that it lets go.
SPLIT_HOLD_LIMIT = 64 * 1024


class SplitKeyGuard:
    """A pass-through stream's keys split across two or more SSE events' text values.

    The byte redactor sees a key only while its bytes are contiguous; a model streaming the key
    token by token puts it in several events (`"content":"xx sk-ab"` then `"content":"cdef
    yy"`) that the client joins. One regex per chunk looks for a JSON string ending, right
    before its closing quote, with a start of some form of a key at a word break; only then is
    that stream held, from that start on, until the next text values say whether they go on
    with the key. If they do, the start becomes the mask and the rest is cut from the following
    values (edits inside JSON strings that keep them valid); if not, or the stream ends, the
    held bytes go out as they came. Only what follows the start of a key is held, so the
    events before it and their order are untouched.
    """
    __slots__ = ("_matcher", "_suspect", "_word", "_field", "_held", "_scan", "_matched",
                 "_candidates", "_cuts", "_before")

    def __init__(self, matcher: _Matcher | None, protocol: str):
        self._matcher = matcher
        self._held = b""
        self._before = b""  # the last bytes sent: an escape there is the next key's word break
        if matcher is None:
            return
        self._suspect, self._word, self._field = matcher.split_patterns(protocol)
        self._reset()

    def _reset(self) -> None:
        self._held = b""
        self._scan = 0  # where the search for the next text value goes on in `_held`
        self._matched = b""  # the start of the key found so far, joined over the values
        self._candidates: list[bytes] = []  # the forms that start with `_matched`
        self._cuts: list[tuple[int, int]] = []  # the key's pieces in `_held`, the first first

    def feed(self, data: bytes) -> bytes:
        if not data or self._matcher is None:
            return data
        sent = 0  # how many bytes at the start of `pending` went out before
        if not self._held:
            # (An escape in the last bytes sent, `\n`, is a word break the chunk cannot show.)
            if b"\\" not in self._before and self._suspect.search(data) is None:
                return self._sent(data, 0)  # the common chunk
            # A closer look, with the last bytes sent before the chunk: whether a key's start at
            # the chunk's first byte is at a word break is told by the byte before it.
            sent = len(self._before)
            data = self._before + data
            if self._suspect.search(data) is None:
                return self._sent(data, sent)
            pending = data
        else:
            self._held += data
            pending = b""
        out = []
        floor = sent
        while True:
            if not self._held:
                start = self._key_start(pending, floor)
                floor = 0
                if start < 0:
                    out.append(pending)
                    break
                out.append(pending[:start])
                self._hold(pending, start)
            decided = self._decide()
            if decided is None:  # waiting for the next text value
                if len(self._held) > SPLIT_HOLD_LIMIT:
                    out.append(self._held)
                    self._reset()
                break
            done, pending = decided
            out.append(done)
            self._reset()
        return self._sent(b"".join(out), sent)

    def _sent(self, out: bytes, sent: int) -> bytes:
        """`out` without the bytes that went out before, its end noted as the next context."""
        if sent:
            out = out[sent:]
        before = out if len(out) >= CONTEXT else self._before + out
        self._before = before[-CONTEXT:]
        return out

    def flush(self) -> bytes:
        """What is held, as it came: the stream ended before the key was whole."""
        held = self._held
        if held:
            self._reset()
        return held

    def _key_start(self, data: bytes, sent: int) -> int:
        """Where in `data` (past its first `sent` bytes) the first string that ends with a start
        of a key has it, or -1."""
        ends = self._matcher._ends
        for match in self._suspect.finditer(data):
            quote = match.end() - 1
            if not _closes(data, quote):  # `\"`: a quote inside the text, not its end
                continue
            for prefix in ends.get(data[quote - 1], ()):
                start = quote - len(prefix)
                if (start >= sent and data.startswith(prefix, start)
                        and self._word.match(data, start) is not None
                        and any(len(form) > len(prefix) and form.startswith(prefix)
                                for form in self._matcher.forms)):
                    return start
        return -1

    def _hold(self, data: bytes, start: int) -> None:
        quote = data.index(b'"', start)
        while not _closes(data, quote):  # the start of the key holds an escaped quote
            quote = data.index(b'"', quote + 1)
        prefix = data[start:quote]
        self._held = data[start:]
        self._matched = prefix
        self._candidates = [form for form in self._matcher.forms
                            if len(form) > len(prefix) and form.startswith(prefix)]
        self._cuts = [(0, len(prefix))]
        self._scan = len(prefix) + 1

    def _decide(self) -> tuple[bytes, bytes] | None:
        """(what goes out, what is to be looked at again) once the key is whole or is not
        the key after all; None while the next text value has not come whole."""
        held = self._held
        while True:
            field = self._field.search(held, self._scan)
            if field is None:
                return None
            begin = field.end()
            close = _string_end(held, begin)
            if close < 0:
                return None
            piece = held[begin:close]
            matched = len(self._matched)
            for form in self._candidates:  # longest first
                rest = form[matched:]
                if piece.startswith(rest) and (len(piece) == len(rest)
                                               or not piece[len(rest):len(rest) + 1].isalnum()):
                    self._cuts.append((begin, begin + len(rest)))
                    return self._masked(self._matcher.masks[form]), held[begin + len(rest):]
            going_on = [form for form in self._candidates if form[matched:].startswith(piece)]
            if not going_on:  # not the key: out as it came, after the first value
                first_end = self._cuts[0][1] + 1
                return held[:first_end], held[first_end:]
            self._candidates = going_on
            self._matched += piece
            self._cuts.append((begin, close))
            self._scan = close + 1

    def _masked(self, mask: bytes) -> bytes:
        held = self._held
        pieces = [mask]
        for (_, end), (start, _) in zip(self._cuts, self._cuts[1:]):
            pieces.append(held[end:start])
        return b"".join(pieces)


class PassThroughRedactor:
    """The bytes of a relayed stream: keys whole in the bytes (`StreamRedactor`), then keys
    split across events (`SplitKeyGuard`)."""
    __slots__ = ("_bytes", "_events")

    def __init__(self, bytes_redactor: StreamRedactor, events: SplitKeyGuard):
        self._bytes = bytes_redactor
        self._events = events

    def feed(self, chunk: bytes) -> bytes:
        return self._events.feed(self._bytes.feed(chunk))

    def flush(self) -> bytes:
        """Everything held: the stream has ended."""
        return self._events.feed(self._bytes.flush()) + self._events.flush()

    def whole_events(self) -> bytes:
        """The events held for a key that did not come whole, before the stream's error (the
        bytes of a key cut by the network stay out: the error ends the stream there)."""
        return self._events.flush()


# How many bytes of a key's start the fast regex matches exactly (a deeper nest of groups is
# slower to compile, and the recursion of Python's regex compiler is bounded); past them it
# takes any run of the keys' bytes, `_key_start` checks.
_PREFIX_DEPTH = 16


def _prefix_pattern(forms: list[bytes]) -> bytes:
    """A regex for a start of any of `forms` at a word break, as a tree of optional groups: the
    engine skips to a first byte, the word break is checked behind it, and a run that leaves
    the forms' starts (`"object"`, `"choices"`) fails at its first wrong byte."""
    tree: dict = {}
    for form in forms:
        depth = _PREFIX_DEPTH
        while depth < len(form) and _escape_open(form[:depth]):
            depth += 1  # the tree ends between escapes: the run takes whole escapes
        node = tree
        for byte in form[:depth]:
            node = node.setdefault(byte, {})
        if depth < len(form):
            node[None] = {}  # the rest of the form: any run of the keys' bytes
    inner = {byte for form in forms for byte in form if byte not in b'\\"'}
    run = b"(?:[" + b"".join(re.escape(bytes([b])) for b in sorted(inner)) + rb"]|\\.)*+"

    def branch(byte: int | None, node: dict, depth: int) -> bytes:
        if byte is None:
            return run
        pattern = re.escape(bytes([byte]))
        if depth == 1:
            pattern += _WORD_BEFORE_ONE_BACK
        if node:
            pattern += (b"(?:" + b"|".join(branch(b, child, depth + 1)
                                           for b, child in node.items()) + b")?")
        return pattern

    return b"(?:" + b"|".join(branch(b, child, 1) for b, child in tree.items()) + b")"


def _escape_open(data: bytes) -> bool:
    """Whether `data` ends inside a JSON escape's backslash (an odd run of backslashes)."""
    return (len(data) - len(data.rstrip(b"\\"))) % 2 == 1


def _closes(data: bytes, quote: int) -> bool:
    """Whether the `"` at `quote` ends a JSON string (is not escaped)."""
    slashes = 0
    while quote - slashes - 1 >= 0 and data[quote - slashes - 1] == 0x5C:
        slashes += 1
    return slashes % 2 == 0


def _string_end(data: bytes, begin: int) -> int:
    """The closing quote of the JSON string whose value starts at `begin`, or -1."""
    quote = data.find(b'"', begin)
    while quote >= 0 and not _closes(data, quote):
        quote = data.find(b'"', quote + 1)
    return quote
