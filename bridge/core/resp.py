"""RESP wire primitives shared by the bridge and the devserver: values, encoders, frame splitter.

Owns the byte-level format only: the RESP3 typed values (`Map`, `Set`, `Double`, ...) and
`encode_value`, the one encoder every reply goes through (RESP2 or RESP3; `resp3` shapes
values for it, the admin console encodes its replies with it). hiredis parses values fast
but folds status replies into bulk strings; the frame splitter here keeps each reply's exact
bytes so that a reply can be passed through untouched (and `+OK` told apart from `$2 OK`).
No I/O happens here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis

CRLF = b"\r\n"

# RESP2 and RESP3 type bytes whose payload is one line.
_LINE_TYPES = frozenset(b"+-:_,#(")
# Types followed by a length and that many bytes plus CRLF.
_BLOB_TYPES = frozenset(b"$!=")
# Aggregate types: count of child frames (maps/attributes count pairs).
_AGGREGATE_TYPES = frozenset(b"*~>")
_PAIR_TYPES = frozenset(b"%|")

#: Deepest nesting accepted when splitting frames (Redis replies nest a few levels at most).
MAX_FRAME_DEPTH = 64


class RespProtocolError(ValueError):
    """The bytes are not valid RESP."""


class Status(bytes):
    """A simple-string (`+...`) reply, kept apart from bulk strings."""

    __slots__ = ()


class ErrorReply(bytes):
    """An error (`-...`) reply's text, without the leading dash."""

    __slots__ = ()

    @property
    def text(self) -> str:
        return self.decode("utf-8", "replace")


def _int_bytes(n: int) -> bytes:
    return str(n).encode()


def encode_command(args: Sequence[bytes | str | int | float]) -> bytes:
    """Encode one command as a RESP multibulk request."""
    out = [b"*", _int_bytes(len(args)), CRLF]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            data = bytes(arg)
        else:
            data = str(arg).encode()
        out += (b"$", _int_bytes(len(data)), CRLF, data, CRLF)
    return b"".join(out)


def encode_bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_status(text: bytes | str) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return b"+" + _one_line(raw) + CRLF


def encode_error(text: bytes | str) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return b"-" + _one_line(raw) + CRLF


def encode_int(n: int) -> bytes:
    return b":%d\r\n" % n


NULL_BULK = b"$-1\r\n"
NULL_ARRAY = b"*-1\r\n"
OK = b"+OK\r\n"


def _one_line(raw: bytes) -> bytes:
    """Status and error lines cannot hold CR/LF: replace them so the frame stays valid."""
    if b"\r" in raw or b"\n" in raw:
        return raw.replace(b"\r", b" ").replace(b"\n", b" ")
    return raw


# --- RESP3 typed values ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Map:
    """A RESP3 map (`%`): ordered key/value pairs (keys may repeat or be unhashable)."""

    items: tuple[tuple[object, object], ...]

    @classmethod
    def of(cls, pairs: Mapping[Any, object] | Iterable[tuple[object, object]]) -> Map:
        if isinstance(pairs, Mapping):
            return cls(tuple(pairs.items()))
        return cls(tuple(pairs))


@dataclass(frozen=True, slots=True)
class Set:
    """A RESP3 set (`~`)."""

    items: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Push:
    """A RESP3 push frame (`>`): pub/sub messages, MONITOR lines."""

    items: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Double:
    """A RESP3 double (`,`). `text` keeps the upstream's digits exactly when it came as text."""

    value: float
    text: bytes = b""

    @classmethod
    def parse(cls, raw: bytes) -> Double | None:
        """The double in a RESP2 bulk string, or None if it is not a number."""
        text = raw.strip().lower()
        if _DOUBLE_TEXT.fullmatch(text):
            return cls(float(text), text)
        special = _SPECIAL_DOUBLES.get(text)
        if special is not None:
            return cls(special, format_double(special))
        return None

    def encoded_text(self) -> bytes:
        return self.text or format_double(self.value)


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A RESP3 verbatim string (`=`): INFO, CLIENT LIST, LATENCY DOCTOR and the like."""

    data: bytes
    format: bytes = b"txt"


@dataclass(frozen=True, slots=True)
class BigNumber:
    """A RESP3 big number (`(`), as decimal digits."""

    digits: bytes


_DOUBLE_TEXT = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?")
_SPECIAL_DOUBLES = {
    b"inf": math.inf,
    b"+inf": math.inf,
    b"infinity": math.inf,
    b"+infinity": math.inf,
    b"-inf": -math.inf,
    b"-infinity": -math.inf,
    b"nan": math.nan,
    b"-nan": math.nan,
}


def format_double(value: float) -> bytes:
    """Redis 7.0's double text: `%.17g`, and inf/-inf/nan spelled as RESP3 wants them."""
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


# --- the encoder ------------------------------------------------------------------------------

#: RESP integers are signed 64-bit; a bigger Python int is a big number (RESP3) or its digits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _repr_text(value: float) -> bytes:
    return repr(value).encode()


def encode_value(
    value: object,
    proto: int = 2,
    *,
    default: Callable[[object], object] | None = None,
    float_text: Callable[[float], bytes] | None = None,
) -> bytes:
    """Encode a Python value as one RESP reply: the only value encoder of the package.

    None -> null; Status -> `+`; ErrorReply -> `-`; bytes/str -> bulk; bool; int (beyond 64
    bits: a big number, or its digits in RESP2); float/Double; list/tuple -> array; dict/Map ->
    map (RESP2: a flat array); set/Set -> set; Push; Verbatim; BigNumber. In RESP2 the RESP3
    types are sent as what the same reply is there. `default` turns any other value into one
    of these (as `json.dumps` does; without it, TypeError); `float_text` spells Python floats
    (default: `repr` in RESP2, Redis' `%.17g` in RESP3).
    """
    if float_text is None:
        float_text = format_double if proto == 3 else _repr_text
    out: list[bytes] = []
    _encode_into(value, out, proto == 3, default, float_text)
    return b"".join(out)


def encode_resp2(value: object) -> bytes:
    """Encode a Python value as a RESP2 reply (Status/ErrorReply keep their types)."""
    return encode_value(value, 2)


def _encode_into(
    value: object,
    out: list[bytes],
    resp3: bool,
    default: Callable[[object], object] | None,
    float_text: Callable[[float], bytes],
) -> None:
    if type(value) is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif value is None:
        out.append(b"_\r\n" if resp3 else NULL_BULK)
    elif isinstance(value, Status):
        out.append(encode_status(bytes(value)))
    elif isinstance(value, ErrorReply):
        out.append(encode_error(bytes(value)))
    elif isinstance(value, bool):
        out.append((b"#t\r\n" if value else b"#f\r\n") if resp3 else b":%d\r\n" % value)
    elif isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            out.append(b":%d\r\n" % value)
        elif resp3:
            out.append(b"(%d\r\n" % value)
        else:
            digits = b"%d" % value
            out.append(b"$%d\r\n%s\r\n" % (len(digits), digits))
    elif isinstance(value, (list, tuple)):
        _encode_items(b"*", value, out, resp3, default, float_text)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, (dict, Map)):
        pairs = value.items if isinstance(value, Map) else tuple(value.items())
        out.append(b"%%%d\r\n" % len(pairs) if resp3 else b"*%d\r\n" % (2 * len(pairs)))
        for key, item in pairs:
            _encode_into(key, out, resp3, default, float_text)
            _encode_into(item, out, resp3, default, float_text)
    elif isinstance(value, float):
        text = float_text(value)
        out.append(b",%s\r\n" % text if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif isinstance(value, Double):
        text = value.encoded_text()
        out.append(b",%s\r\n" % text if resp3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif isinstance(value, (Set, set, frozenset)):
        items = value.items if isinstance(value, Set) else tuple(value)
        _encode_items(b"~" if resp3 else b"*", items, out, resp3, default, float_text)
    elif isinstance(value, Push):
        _encode_items(b">" if resp3 else b"*", value.items, out, resp3, default, float_text)
    elif isinstance(value, Verbatim):
        if resp3:
            out.append(b"=%d\r\n%s:%s\r\n" % (len(value.data) + 4, value.format, value.data))
        else:
            out.append(encode_bulk(value.data))
    elif isinstance(value, BigNumber):
        out.append(b"(%s\r\n" % value.digits if resp3 else encode_bulk(value.digits))
    elif default is not None:
        _encode_into(default(value), out, resp3, None, float_text)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")


def _encode_items(
    kind: bytes,
    items: Sequence[object],
    out: list[bytes],
    resp3: bool,
    default: Callable[[object], object] | None,
    float_text: Callable[[float], bytes],
) -> None:
    out.append(b"%s%d\r\n" % (kind, len(items)))
    for item in items:
        _encode_into(item, out, resp3, default, float_text)


def frame_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Return the index just past the complete frame starting at `start`, or -1 if incomplete.

    Raises RespProtocolError on bytes that cannot be RESP.
    """
    pos, owed = _scan(buf, start, 1, [])
    return -1 if owed else pos


def _scan(
    buf: bytes | bytearray,
    pos: int,
    owed: int,
    stack: list[int],
    ends: list[int] | None = None,
) -> tuple[int, int]:
    """Walk frames from `pos` while `owed` remain; return where it stopped and what is owed.

    Iterative (an explicit count of frames still owed, `stack` remembering the count owed
    outside each open aggregate) so that deep nesting cannot exhaust the Python stack, and
    resumable: FrameReader keeps (pos, owed, stack) across reads. `pos` only ever stops at a
    frame boundary, so a resumed scan never re-reads a header. With `ends`, one frame is owed
    at a time, as many as there are: the end of each is appended (`split_frames`' one pass).
    """
    n = len(buf)
    while owed:
        if pos >= n:
            break
        kind = buf[pos]
        eol = buf.find(b"\r\n", pos + 1)
        if eol < 0:
            break
        if kind == 0x24 or kind in _BLOB_TYPES:  # '$' first: the usual reply
            length = _parse_len(buf, pos + 1, eol)
            if length >= 0:
                end = eol + 2 + length
                if end + 2 > n:
                    break
                if buf[end : end + 2] != b"\r\n":
                    raise RespProtocolError("bulk string not terminated by CRLF")
                pos = end + 2
            else:
                pos = eol + 2
            owed -= 1
        elif kind in _LINE_TYPES:
            pos = eol + 2
            owed -= 1
        elif kind in _AGGREGATE_TYPES or kind in _PAIR_TYPES:
            count = _parse_len(buf, pos + 1, eol)
            pos = eol + 2
            owed -= 1
            if count > 0:
                if kind in _PAIR_TYPES:
                    count *= 2
                if kind == 0x7C:  # attribute: its pairs precede the real reply
                    count += 1
                stack.append(owed)
                if len(stack) > MAX_FRAME_DEPTH:
                    raise RespProtocolError("reply nested too deeply")
                owed += count
        else:
            raise RespProtocolError(f"unexpected RESP type byte {bytes([kind])!r}")
        while stack and owed == stack[-1]:
            stack.pop()
        if not owed and ends is not None:
            ends.append(pos)
            owed = 1
    return pos, owed


def _parse_len(buf: bytes | bytearray, start: int, end: int) -> int:
    try:
        value = int(buf[start:end])
    except ValueError:
        raise RespProtocolError("invalid length in RESP frame") from None
    if value < -1:
        raise RespProtocolError("negative length in RESP frame")
    return value


def split_frames(data: bytes) -> list[bytes]:
    """Split a complete concatenation of replies into one bytes object per reply."""
    ends = _frame_ends(data)
    if len(ends) == 1:
        return [data]
    return [data[start:end] for start, end in zip([0, *ends], ends, strict=False)]


#: A `*` followed by 7 digits or more anywhere (a payload byte may match: then the exact scan
#: runs): such a header is never given to hiredis, which would allocate the array at once
#: (the request parser's quick path uses it too).
BIG_ARRAY = re.compile(rb"\*-?\d{7}")


#: hiredis is fed this much at a time: after each reply it moves the unread rest of its
#: buffer to the front, so a whole body fed at once cost time quadratic in its size (100
#: bulks of 1 MB: 940 ms to split; 200,000 bulks of 1 byte: 312 ms).
_FEED_BYTES = 16 * 1024


def _frame_ends(data: bytes) -> list[int]:
    """Where each reply in `data` ends. A leading run of plain bulks (a batch of GETs) is
    walked by `_bulk_run`. From there replies are taken from hiredis' parse (C) while each
    checks out byte for byte against its value in canonical encoding (what Redis and Upstash
    send): a bulk's or an array's header, every element and every CRLF; a line reply (`+`,
    `-`, `:`) is its line. Such a reply starts where the previous one ended and is exactly
    what the exact scan would read there: 13 arrays of 100 bulks take 210 us instead of 850.
    From the first reply that does not (RESP3 types, an array holding more than bulks, a
    non-canonical length, a malformed reply) `_scan` walks the rest, with its errors.
    Bodies of line replies only (`+OK`, `:1`) go to `_scan` at once: it walks those faster.
    hiredis is given `_FEED_BYTES` at a time; a reply running past its piece (a big bulk) is
    walked by `_scan`, which skips a payload unread: linear in the body's size."""
    ends: list[int] = []
    n = len(data)
    pos = _bulk_run(data, ends)
    if pos == n:
        return ends
    if data[:1] == b"$" or data.find(b"*", pos) >= 0:
        reader = hiredis.Reader()
        view = memoryview(data)
        fed = pos
        try:
            while pos < n:
                value = reader.gets()
                if value is False:
                    if pos < fed:
                        # This reply goes on past what hiredis was given (a big bulk, most
                        # often): the exact scan walks it (over a bulk's payload, unread),
                        # and hiredis starts afresh after it.
                        end, owed = _scan(data, pos, 1, [])
                        if owed:
                            break
                        ends.append(end)
                        pos = fed = end
                        reader = hiredis.Reader()
                        continue
                    # Only what hiredis is given needs the `*N` guard (a match across the
                    # previous chunk's end starts in its last 8 bytes).
                    if fed >= n or BIG_ARRAY.search(data, max(0, fed - 8), fed + _FEED_BYTES):
                        break
                    reader.feed(view[fed : fed + _FEED_BYTES])  # type: ignore[arg-type]  # any buffer
                    fed += _FEED_BYTES
                    continue
                end = _checked_end(data, pos, value)
                if end < 0:
                    break
                ends.append(end)
                pos = end
        except hiredis.ProtocolError:
            pass
    if pos < n:
        _scan(data, pos, 1, [], ends)
        if (ends[-1] if ends else 0) != n:
            raise RespProtocolError("truncated RESP reply")
    return ends


def _bulk_run(data: bytes, ends: list[int]) -> int:
    """Walk the leading run of bulk replies encoded the canonical way (`$<len>` exactly as
    Redis writes it, the payload, CRLF; or `$-1`), adding each one's end to `ends`; return
    where the run stops. The body of a batch of GETs is all such a run: walked here it costs
    no hiredis start (3.5 us before the first reply). Anything else (another type, a length
    written any other way, a missing CRLF, a truncated reply) ends the run, for the code
    after it to decide, with its errors."""
    n = len(data)
    pos = 0
    lengths = _BULK_LENGTHS
    find = data.find
    while pos < n and data[pos] == 0x24:  # '$'
        eol = find(CRLF, pos + 1, pos + 24)
        if eol < 0:
            break
        line = data[pos:eol]
        length = lengths.get(line)
        if length is None:
            try:
                length = int(line[1:])
            except ValueError:
                break
            if length < _BULK_SMALL or line != b"$%d" % length:
                break
        if length < 0:
            pos = eol + 2
        else:
            end = eol + 4 + length
            if data[end - 2 : end] != CRLF:
                break
            pos = end
        ends.append(pos)
    return pos


def _checked_end(data: bytes, pos: int, value: object) -> int:
    """The end of the reply at `pos` if it is `value` canonically encoded, else -1."""
    kind = data[pos]
    if kind == 0x24:  # '$'
        if value is None:
            return pos + 5 if data.startswith(b"$-1\r\n", pos) else -1
        if type(value) is not bytes:
            return -1
        length = len(value)
        head = _BULK_HEAD[length] if length < _BULK_SMALL else b"$%d\r\n" % length
        end = pos + len(head) + length
        if not data.startswith(head, pos) or data[end : end + 2] != CRLF:
            return -1
        return end + 2
    if kind == 0x2A:  # '*'
        if value is None:
            return pos + 5 if data.startswith(b"*-1\r\n", pos) else -1
        if type(value) is not list:
            return -1
        head = b"*%d\r\n" % len(value)
        elements = _flat_bulks(value)
        if elements is None or not data.startswith(head, pos):
            return -1
        pos += len(head)
        return pos + len(elements) if data.startswith(elements, pos) else -1
    if kind == 0x2B or kind == 0x2D or kind == 0x3A:  # '+', '-', ':': one line
        expected = bytes if kind == 0x2B else int if kind == 0x3A else hiredis.ReplyError
        if type(value) is not expected:
            return -1
        eol = data.find(CRLF, pos + 1)
        return eol + 2 if eol >= 0 else -1
    return -1


def _flat_bulks(items: list[Any]) -> bytes | None:
    """The canonical encoding of `items` as bulks (`$<len>\r\n<item>\r\n` each), in C-level
    steps; None unless every item is bytes under 1,000 bytes (the exact scan takes the rest)."""
    if not items:
        return b""
    try:
        parts: list[bytes] = [b""] * (2 * len(items) + 1)
        parts[0:-1:2] = map(_BULK_LINE.__getitem__, map(len, items))
        parts[1::2] = items
        return CRLF.join(parts)  # TypeError when an item is not bytes
    except (TypeError, IndexError):
        return None


#: `$<n>` and `$<n>\r\n` for bulks under _BULK_SMALL bytes.
_BULK_SMALL = 1000
_BULK_LINE = [b"$%d" % n for n in range(_BULK_SMALL)]
_BULK_HEAD = [line + CRLF for line in _BULK_LINE]
#: The canonical `$<n>` line of each length under _BULK_SMALL (and `$-1`) -> that length.
_BULK_LENGTHS = {line: n for n, line in enumerate(_BULK_LINE)} | {b"$-1": -1}


class FrameReader:
    """Incremental splitter: feed bytes, take complete frames (exact bytes) out in order.

    Same grammar as `frame_end`, but it keeps its position inside an incomplete frame, so a
    huge reply arriving in many reads is scanned once (linear), not from its start after
    every read (quadratic).
    """

    __slots__ = ("_buf", "_owed", "_pos", "_stack", "_start")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # start of the frame being scanned
        self._pos = 0  # next element to scan
        self._owed = 1
        self._stack: list[int] = []

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._start

    def feed(self, data: bytes) -> None:
        if self._start and self._start == len(self._buf):
            self._buf.clear()
            self._pos -= self._start
            self._start = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        buf = self._buf
        self._pos, self._owed = _scan(buf, self._pos, self._owed, self._stack)
        if self._owed:
            return None
        frame = bytes(buf[self._start : self._pos])
        self._start = self._pos
        self._owed = 1
        if self._start > 65536 and self._start * 2 > len(buf):
            del buf[: self._start]
            self._pos = self._start = 0
        return frame

    def frames(self) -> Iterable[bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame


def parse_frame(frame: bytes) -> object:
    """Parse one complete frame into Python values, keeping Status/ErrorReply apart from bulk."""
    value, end = _parse_at(frame, 0)
    if end != len(frame):
        raise RespProtocolError("trailing bytes after RESP frame")
    return value


def _parse_at(buf: bytes, pos: int) -> tuple[object, int]:
    kind = buf[pos]
    eol = buf.index(b"\r\n", pos + 1)
    line = buf[pos + 1 : eol]
    nxt = eol + 2
    if kind == 0x2B:  # +
        return Status(line), nxt
    if kind == 0x2D:  # -
        return ErrorReply(line), nxt
    if kind == 0x3A:  # :
        return int(line), nxt
    if kind == 0x24:  # $
        length = int(line)
        if length < 0:
            return None, nxt
        return buf[nxt : nxt + length], nxt + length + 2
    if kind == 0x2A:  # *
        count = int(line)
        if count < 0:
            return None, nxt
        items = []
        for _ in range(count):
            item, nxt = _parse_at(buf, nxt)
            items.append(item)
        return items, nxt
    if kind == 0x5F:  # _
        return None, nxt
    if kind == 0x2C:  # ,
        return float(line), nxt
    if kind == 0x23:  # #
        return line == b"t", nxt
    if kind == 0x28:  # (
        return int(line), nxt
    if kind in (0x21, 0x3D):  # ! =
        length = int(line)
        body = buf[nxt : nxt + length]
        return (ErrorReply(body) if kind == 0x21 else body[4:]), nxt + length + 2
    if kind in (0x25, 0x7E, 0x3E):  # % ~ >
        count = int(line) * (2 if kind == 0x25 else 1)
        items = []
        for _ in range(count):
            item, nxt = _parse_at(buf, nxt)
            items.append(item)
        return items, nxt
    raise RespProtocolError(f"unexpected RESP type byte {bytes([kind])!r}")


# --- RESP3 pieces the bridge builds itself (local replies) ----------------------------------


def encode_null(proto: int) -> bytes:
    return b"_\r\n" if proto == 3 else NULL_BULK


def encode_map(pairs: Sequence[tuple[bytes, bytes]], proto: int) -> bytes:
    """A map of already-encoded keys and values: `%N` in RESP3, a flat array in RESP2."""
    head = b"%%%d\r\n" % len(pairs) if proto == 3 else b"*%d\r\n" % (2 * len(pairs))
    return head + b"".join(k + v for k, v in pairs)


def encode_verbatim(text: bytes, proto: int, fmt: bytes = b"txt") -> bytes:
    """Verbatim string (`=`) in RESP3, as Redis sends INFO and CLIENT INFO; bulk in RESP2."""
    if proto != 3:
        return encode_bulk(text)
    return b"=%d\r\n%s:%s\r\n" % (len(text) + 4, fmt, text)


def encode_array(items: Sequence[bytes]) -> bytes:
    """An array of already-encoded items."""
    return b"*%d\r\n" % len(items) + b"".join(items)
