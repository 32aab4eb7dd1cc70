"""Request parser: bytes from a client in, commands (lists of bytes) or a protocol error out.

hiredis parses multibulk requests (the fast path); inline commands (`PING\\r\\n` typed in
telnet, redis-benchmark's PING_INLINE), which hiredis rejects, take a small path of our own.
Limits are enforced here, before anything is buffered beyond them: a client announcing a 1 GB
bulk is refused at the header. After a protocol error the parser is dead (sticky, like h11):
the connection must send the error and close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import hiredis

from bridge.core.resp import BIG_ARRAY

#: Longest inline command line (Redis: PROTO_INLINE_MAX_SIZE).
MAX_INLINE_BYTES = 64 * 1024
#: Largest single argument (Redis: proto-max-bulk-len defaults to 512 MB; the REST upstream's
#: biggest plan takes 100 MB per request, so anything larger could never be executed).
MAX_BULK_BYTES = 100 * 1024 * 1024
#: Most arguments in one command (bounds the Python list hiredis builds).
MAX_ARGS = 1024 * 1024
#: Most unparsed bytes buffered per client (Redis: client-query-buffer-limit, 1 GB).
MAX_QUERY_BUFFER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParserLimits:
    max_inline_bytes: int = MAX_INLINE_BYTES
    max_bulk_bytes: int = MAX_BULK_BYTES
    max_args: int = MAX_ARGS
    max_query_buffer_bytes: int = MAX_QUERY_BUFFER_BYTES


class ProtocolError(ValueError):
    """The client sent bytes that are not a valid request; the text is Redis' wording."""


class RequestParser:
    """Incremental parser. `feed()` then `commands()`; `ProtocolError` is final.

    Each multibulk request is first delimited by a scan of its headers (`*N`, then `$len`
    per argument, skipping the payloads): this enforces the limits before anything is
    allocated (hiredis would allocate a list for any announced `*N`, even 2^31) and tells
    exactly where each request ends. The scan resumes where it stopped, so a large request
    arriving in many reads is scanned once. hiredis then parses the delimited requests.
    """

    __slots__ = ("_dead", "_limits", "_quick", "_reader", "_scan", "_tail")

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self._limits = limits or ParserLimits()
        self._reader = hiredis.Reader()
        self._quick = hiredis.Reader()
        self._tail = bytearray()
        # Resumable scan of the incomplete request at the start of _tail:
        # (offset of its next header, arguments still to come).
        self._scan: tuple[int, int] | None = None
        self._dead: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._tail)

    def feed(self, data: bytes) -> None:
        if self._dead is not None:
            raise self._dead
        if len(self._tail) + len(data) > self._limits.max_query_buffer_bytes:
            self._fail("Protocol error: query buffer limit exceeded")
        self._tail += data

    def commands(self) -> list[list[bytes]]:
        """Every complete command buffered so far, in order."""
        if self._dead is not None:
            raise self._dead
        tail = self._tail
        if not tail:
            return []
        if (
            self._scan is None
            and tail[:1] == b"*"
            and tail[-2:] == b"\r\n"
            and BIG_ARRAY.search(tail) is None
        ):
            whole = self._whole(tail)
            if whole is not None:
                tail.clear()
                return whole
        out: list[list[bytes]] = []
        n = len(tail)
        pos = 0
        while pos < n:
            if tail[pos] == 0x2A:  # '*': a run of multibulk requests
                run_start = pos
                count = 0
                while pos < n and tail[pos] == 0x2A:
                    end = self._delimit(tail, pos)
                    if end < 0:
                        break
                    pos = end
                    count += 1
                if count:
                    self._parse_run(bytes(tail[run_start:pos]), count, out)
                if pos < n and tail[pos] == 0x2A:
                    break  # an incomplete request waits for more bytes
                continue
            end = tail.find(b"\n", pos)
            if end < 0:
                if n - pos > self._limits.max_inline_bytes:
                    self._fail("Protocol error: too big inline request")
                break
            if end - pos > self._limits.max_inline_bytes:
                self._fail("Protocol error: too big inline request")
            args = split_inline(bytes(tail[pos:end]).rstrip(b"\r"))
            pos = end + 1
            if args is None:
                self._fail("Protocol error: unbalanced quotes in request")
            if args:
                out.append(args)
        if pos:
            del tail[:pos]
        return out

    def _whole(self, tail: bytearray) -> list[list[bytes]] | None:
        """`tail` parsed by hiredis alone, when it is nothing but complete requests encoded
        the canonical way (`$<len>` bulks), within the limits: the usual read of a client.
        None for anything else (a partial request, an inline one, `*0`, an error, a limit),
        which the exact scan then decides, with Redis' error texts. Measured: 5.2 -> ~1 us
        for a GET. The canonical length of what hiredis returned must add up to every byte
        of `tail`: that proves the requests complete and each element a `$` bulk (hiredis
        also takes `:1` or `+x` as elements; the former is not bytes, the latter shorter),
        and each bulk's closing CRLF is checked (hiredis does not look at it).
        hiredis allocates an array when it reads its `*N` header: the caller first makes
        sure no `*` in `tail` is followed by 7 digits or more (N < 1,000,000 elements)."""
        reader = self._quick
        reader.feed(tail)  # type: ignore[arg-type]  # any buffer (stub: str | bytes)
        limits = self._limits
        max_args = limits.max_args
        max_bulk = limits.max_bulk_bytes
        out: list[list[bytes]] = []
        size = 0
        try:
            while True:
                item = reader.gets()
                if item is False:
                    break
                if type(item) is not list or not item or len(item) > max_args:
                    size = -1
                    break
                count = len(item)
                size += _FRAMING[count] - 2 if count < _SMALL else len(str(count)) + 3
                for arg in item:
                    if type(arg) is not bytes:
                        size = -1
                        break
                    length = len(arg)
                    if length < _SMALL:
                        size += length + _FRAMING[length]
                    elif length <= max_bulk:
                        size += length + len(str(length)) + 5
                    else:
                        size = -1
                        break
                    # hiredis skips a bulk's 2 closing bytes unread: Redis wants CRLF there
                    if tail[size - 2] != 0x0D or tail[size - 1] != 0x0A:
                        size = -1
                        break
                if size < 0:
                    break
                out.append(item)
        except (hiredis.ProtocolError, IndexError):  # IndexError: shorter than canonical
            size = -1
        if size != len(tail):
            self._quick = hiredis.Reader()  # it may hold part of a request
            return None
        return out

    def _parse_run(self, data: bytes, count: int, out: list[list[bytes]]) -> None:
        reader = self._reader
        reader.feed(data)
        for _ in range(count):
            try:
                item = reader.gets()
            except hiredis.ProtocolError as exc:
                self._reader = hiredis.Reader()
                self._fail(f"Protocol error: {_hiredis_reason(exc)}")
            if item is False or (item is not None and type(item) is not list):
                self._reader = hiredis.Reader()
                self._fail("Protocol error: invalid multibulk request")
            if item:  # `*0` and `*-1` are ignored, like Redis
                out.append(item)

    def _delimit(self, tail: bytearray, start: int) -> int:
        """End offset of the multibulk request at `start`, or -1 while incomplete.

        Validates every header on the way (Redis' error texts), before hiredis sees a byte.
        """
        limits = self._limits
        n = len(tail)
        state = self._scan if start == 0 else None
        if state is None:
            eol = tail.find(b"\r\n", start + 1, start + _MAX_HEADER)
            if eol < 0:
                if n - start >= _MAX_HEADER:
                    self._fail("Protocol error: invalid multibulk length")
                return -1
            count = _to_int(tail[start + 1 : eol], allow_null=True)
            if count is None or count > limits.max_args:
                self._fail("Protocol error: invalid multibulk length")
            rel, left = eol + 2 - start, max(count, 0)
        else:
            rel, left = state
        p = start + rel
        find = tail.find
        max_bulk = limits.max_bulk_bytes
        while left:
            if p >= n:
                break
            if tail[p] != 0x24:  # '$'
                self._fail(f"Protocol error: expected '$', got '{chr(tail[p])}'")
            eol = find(b"\r\n", p + 1, p + _MAX_HEADER)
            if eol < 0:
                if n - p >= _MAX_HEADER:
                    self._fail("Protocol error: invalid bulk length")
                break
            raw = tail[p + 1 : eol]
            length = int(raw) if raw.isdigit() else -1  # no sign, space or "_" (int() takes them)
            if length < 0 or length > max_bulk:
                self._fail("Protocol error: invalid bulk length")
            end = eol + 2 + length
            if end + 2 > n:
                break
            if tail[end] != 0x0D or tail[end + 1] != 0x0A:
                self._fail("Protocol error: bulk argument not terminated by CRLF")
            p = end + 2
            left -= 1
        if left:
            # Relative to the request: it is the last one buffered, and moves to offset 0
            # once the complete requests before it are consumed.
            self._scan = (p - start, left)
            return -1
        self._scan = None
        return p

    def _fail(self, message: str) -> NoReturn:
        self._dead = ProtocolError(message)
        self._tail = bytearray()
        raise self._dead


#: Bytes of framing around a bulk (or an array header) of a small length n: `$n\r\n` + `\r\n`.
_SMALL = 1000
_FRAMING = [len(str(n)) + 5 for n in range(_SMALL)]

#: Longest `*N` / `$N` header line we wait for (digits + CRLF); longer is garbage.
_MAX_HEADER = 24


def _to_int(raw: bytes | bytearray, *, allow_null: bool = False) -> int | None:
    if not raw or not (raw.isdigit() or (raw[:1] == b"-" and raw[1:].isdigit())):
        return None
    value = int(raw)
    if value < 0 and not (allow_null and value == -1):
        return None
    return value


def _hiredis_reason(exc: Exception) -> str:
    text = str(exc)
    return text[len("Protocol error, ") :] if text.startswith("Protocol error, ") else text


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a", '"': '"', "\\": "\\"}


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command like Redis' sdssplitargs: spaces, "double" and 'single' quotes.

    Returns None for unbalanced quotes (Redis: "Protocol error: unbalanced quotes in request").
    """
    if b'"' not in line and b"'" not in line:
        return line.split()
    text = line.decode("latin-1")
    args: list[bytes] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return args
        current: list[str] = []
        in_dq = in_sq = False
        while True:
            if in_dq:
                if i >= n:
                    return None
                c = text[i]
                if c == "\\" and i + 3 < n and text[i + 1] == "x" and _is_hex(text[i + 2 : i + 4]):
                    current.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 3
                elif c == "\\" and i + 1 < n:
                    current.append(_ESCAPES.get(text[i + 1], text[i + 1]))
                    i += 1
                elif c == '"':
                    if i + 1 < n and not text[i + 1].isspace():
                        return None
                    in_dq = False
                    i += 1
                    break
                else:
                    current.append(c)
            elif in_sq:
                if i >= n:
                    return None
                c = text[i]
                if c == "\\" and i + 1 < n and text[i + 1] == "'":
                    current.append("'")
                    i += 1
                elif c == "'":
                    if i + 1 < n and not text[i + 1].isspace():
                        return None
                    in_sq = False
                    i += 1
                    break
                else:
                    current.append(c)
            else:
                if i >= n or text[i].isspace():
                    break
                c = text[i]
                if c == '"':
                    in_dq = True
                elif c == "'":
                    in_sq = True
                else:
                    current.append(c)
            i += 1
        args.append("".join(current).encode("latin-1"))


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)
