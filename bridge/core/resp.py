"""RESP wire primitives shared by the bridge and the devserver: encoders and a frame splitter.

Owns the byte-level format only. hiredis parses values fast but folds status replies into
bulk strings; the frame splitter here keeps each reply's exact bytes so that a reply can be
passed through untouched (and `+OK` told apart from `$2 OK`). No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def encode_resp2(value: object) -> bytes:
    """Encode a Python value as a RESP2 reply (Status/ErrorReply keep their types)."""
    out: list[bytes] = []
    _encode_into(value, out)
    return b"".join(out)


def _encode_into(value: object, out: list[bytes]) -> None:
    if value is None:
        out.append(NULL_BULK)
    elif isinstance(value, Status):
        out.append(encode_status(bytes(value)))
    elif isinstance(value, ErrorReply):
        out.append(encode_error(bytes(value)))
    elif isinstance(value, bytes):
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif isinstance(value, bool):
        out.append(b":1\r\n" if value else b":0\r\n")
    elif isinstance(value, int):
        out.append(b":%d\r\n" % value)
    elif isinstance(value, str):
        data = value.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, float):
        data = repr(value).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    elif isinstance(value, (list, tuple)):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, out)
    elif isinstance(value, dict):
        out.append(b"*%d\r\n" % (2 * len(value)))
        for key, item in value.items():
            _encode_into(key, out)
            _encode_into(item, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")


def frame_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Return the index just past the complete frame starting at `start`, or -1 if incomplete.

    Raises RespProtocolError on bytes that cannot be RESP.
    """
    pos, owed = _scan(buf, start, 1, [])
    return -1 if owed else pos


def _scan(buf: bytes | bytearray, pos: int, owed: int, stack: list[int]) -> tuple[int, int]:
    """Walk frames from `pos` while `owed` remain; return where it stopped and what is owed.

    Iterative (an explicit count of frames still owed, `stack` remembering the count owed
    outside each open aggregate) so that deep nesting cannot exhaust the Python stack, and
    resumable: FrameReader keeps (pos, owed, stack) across reads. `pos` only ever stops at a
    frame boundary, so a resumed scan never re-reads a header.
    """
    n = len(buf)
    while owed:
        if pos >= n:
            break
        kind = buf[pos]
        eol = buf.find(b"\r\n", pos + 1)
        if eol < 0:
            break
        if kind in _LINE_TYPES:
            pos = eol + 2
            owed -= 1
        elif kind in _BLOB_TYPES:
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
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = frame_end(data, pos)
        if end < 0:
            raise RespProtocolError("truncated RESP reply")
        frames.append(data[pos:end])
        pos = end
    return frames


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
