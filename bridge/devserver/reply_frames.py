"""Exact RESP reply frames out of the byte stream from Redis, for the devserver.

Owns one job: find where each top-level reply frame ends, so replies can be passed on as the
exact bytes Redis sent (RESP2 responses, base64 JSON, EXEC items) without re-encoding. The
scan keeps, between reads, the offset of the next element and how many elements the current
top-level frame still owes (an aggregate header adds its length): RESP aggregates are
prefix-counted, so no stack is needed, and a huge array arriving in many reads is scanned
once (linear), a huge bulk string is skipped by its length. RESP3 types are recognised too,
though the devserver's connections speak RESP2 (HELLO is refused).
"""

from __future__ import annotations

#: Types whose element is one line: simple string, error, integer, null, double, boolean,
#: big number.
_LINE = frozenset(b"+-:_,#(")
#: Types whose element is a length line and that many bytes + CRLF: bulk, blob error, verbatim.
_BLOB = frozenset(b"$!=")
#: Aggregate types -> elements owed per announced item (a map's item is a key and a value).
_AGGREGATE = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2}


class ReplyProtocolError(Exception):
    """The bytes from Redis are not RESP (a corrupted or out-of-step connection)."""


def _length(buf: bytes | bytearray, pos: int, eol: int) -> int:
    try:
        return int(buf[pos + 1 : eol])
    except ValueError:
        raise ReplyProtocolError(f"invalid length line {bytes(buf[pos:eol])[:40]!r}") from None


def scan(buf: bytes | bytearray, pos: int, owed: int) -> tuple[int, int]:
    """Step over the complete elements from `pos` while `owed` elements remain.

    Returns (pos, owed): owed == 0 means the frame ends at pos; else pos is the start of the
    first element not complete in `buf` yet (scan again from there once more has arrived)."""
    end = len(buf)
    find = buf.find
    while owed:
        if pos >= end:
            return pos, owed
        kind = buf[pos]
        eol = find(b"\r\n", pos + 1)
        if eol < 0:
            return pos, owed
        if kind in _LINE:
            pos = eol + 2
        elif kind in _BLOB:
            size = _length(buf, pos, eol)
            if size < 0:
                pos = eol + 2  # a null bulk string
            else:
                stop = eol + 4 + size
                if stop > end:
                    return pos, owed
                if buf[stop - 2 : stop] != b"\r\n":
                    raise ReplyProtocolError("bulk string not followed by CRLF")
                pos = stop
        elif kind in _AGGREGATE:
            count = _length(buf, pos, eol)
            if count > 0:
                owed += count * _AGGREGATE[kind]
            pos = eol + 2
        else:
            raise ReplyProtocolError(f"unknown reply type byte {bytes(buf[pos : pos + 1])!r}")
        owed -= 1
    return pos, owed


def split(data: bytes, count: int) -> list[bytes]:
    """The first `count` frames of `data`, which must hold them completely."""
    frames = []
    start = 0
    for _ in range(count):
        end, owed = scan(data, start, 1)
        if owed:
            raise ReplyProtocolError("incomplete reply")
        frames.append(data[start:end])
        start = end
    return frames


class FrameBuffer:
    """Incremental splitter: `feed` bytes as they arrive, take complete frames out in order."""

    __slots__ = ("_buf", "_owed", "_pos", "_start")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # start of the frame being scanned
        self._pos = 0  # next element of it to scan
        self._owed = 1

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken out as frames."""
        return len(self._buf) - self._start

    def feed(self, data: bytes) -> None:
        start = self._start
        if start and (start == len(self._buf) or start > 65536):
            # Drop the frames already taken out (at once when all are, else in big steps).
            del self._buf[:start]
            self._pos -= start
            self._start = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame (exact bytes), or None until more has been fed."""
        buf = self._buf
        self._pos, self._owed = scan(buf, self._pos, self._owed)
        if self._owed:
            return None
        frame = bytes(buf[self._start : self._pos])
        self._start = self._pos
        self._owed = 1
        return frame
