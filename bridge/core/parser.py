"""Request parser: bytes from a client in, commands (lists of bytes) or a protocol error out.

hiredis parses multibulk requests (the fast path); inline commands (`PING\\r\\n` typed in
telnet, redis-benchmark's PING_INLINE), which hiredis rejects, take a small path of our own.
Limits are enforced here, before anything is buffered beyond them: a client announcing a 1 GB
bulk is refused at the header. After a protocol error the parser is dead (sticky, like h11):
the connection must send the error and close.
"""

from __future__ import annotations

from dataclasses import dataclass

import hiredis

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

    We keep our own copy of the unparsed tail (`_tail`) so that we know exactly where each
    request ends: hiredis does not say how many bytes it consumed, so the length of each
    parsed multibulk is recomputed (canonical encoding) and checked against the tail.
    """

    __slots__ = ("_dead", "_in_reader", "_limits", "_reader", "_scan", "_tail")

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self._limits = limits or ParserLimits()
        self._reader = hiredis.Reader()
        # True while the reader has been fed everything in _tail from the current request on.
        self._in_reader = False
        self._tail = bytearray()
        # Resumable header scan of the incomplete request at the start of _tail:
        # (position of next header, arguments still to come) or None when not started.
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
        if self._in_reader:
            self._reader.feed(data)

    def commands(self) -> list[list[bytes]]:
        """Every complete command buffered so far, in order."""
        if self._dead is not None:
            raise self._dead
        out: list[list[bytes]] = []
        tail = self._tail
        consumed = 0
        while consumed < len(tail):
            first = tail[consumed]
            if first == 0x2A:  # '*': multibulk, parsed by hiredis
                if not self._in_reader:
                    self._reader = hiredis.Reader()
                    self._reader.feed(bytes(tail[consumed:]))
                    self._in_reader = True
                try:
                    item = self._reader.gets()
                except hiredis.ProtocolError as exc:
                    self._fail(f"Protocol error: {_hiredis_reason(exc)}")
                if item is False:
                    self._check_incomplete(tail, consumed)
                    break
                size = _multibulk_size(item)
                if size < 0:
                    self._fail(f"Protocol error: expected '$', got '{_type_char(item)}'")
                if item is not None and not _ends_as_computed(tail, consumed, size, item):
                    self._fail("Protocol error: expected '$' with a canonical length")
                consumed += size
                self._scan = None
                if item:  # `*0` and `*-1` are ignored, like Redis
                    out.append(item)
            else:
                # hiredis cannot parse inline commands: it is re-fed from the next '*'.
                self._in_reader = False
                end = tail.find(b"\n", consumed)
                if end < 0:
                    if len(tail) - consumed > self._limits.max_inline_bytes:
                        self._fail("Protocol error: too big inline request")
                    break
                if end - consumed > self._limits.max_inline_bytes:
                    self._fail("Protocol error: too big inline request")
                line = bytes(tail[consumed:end]).rstrip(b"\r")
                consumed = end + 1
                args = split_inline(line)
                if args is None:
                    self._fail("Protocol error: unbalanced quotes in request")
                if args:
                    out.append(args)
        if consumed:
            del tail[:consumed]
        return out

    def _check_incomplete(self, tail: bytearray, start: int) -> None:
        """Validate the headers of the incomplete request at `start` without waiting for it."""
        if self._scan is None:
            eol = tail.find(b"\r\n", start)
            if eol < 0:
                if len(tail) - start > 64:
                    self._fail("Protocol error: invalid multibulk length")
                return
            count = _to_int(tail[start + 1 : eol])
            if count is None or count > self._limits.max_args:
                self._fail("Protocol error: invalid multibulk length")
            self._scan = (eol + 2 - start, count)
        rel, left = self._scan
        pos = start + rel
        while left > 0:
            eol = tail.find(b"\r\n", pos)
            if eol < 0:
                if len(tail) - pos > 64:
                    self._fail("Protocol error: invalid bulk length")
                break
            if tail[pos] != 0x24:
                self._fail(f"Protocol error: expected '$', got '{chr(tail[pos])}'")
            length = _to_int(tail[pos + 1 : eol])
            if length is None or length > self._limits.max_bulk_bytes:
                self._fail("Protocol error: invalid bulk length")
            nxt = eol + 2 + length + 2
            if nxt > len(tail):
                # Remember where this bulk's header is so we do not rescan earlier headers.
                self._scan = (pos - start, left)
                return
            pos = nxt
            left -= 1
        self._scan = (pos - start, left)

    def _fail(self, message: str) -> None:
        self._dead = ProtocolError(message)
        self._tail = bytearray()
        raise self._dead


def _to_int(raw: bytes | bytearray) -> int | None:
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def _type_char(item: object) -> str:
    """The RESP type byte of what hiredis found where a bulk argument was expected."""
    if isinstance(item, list):
        for arg in item:
            if type(arg) is not bytes:
                return _TYPE_CHARS.get(type(arg), "?")
    return "?"


_TYPE_CHARS: dict[type, str] = {int: ":", list: "*", type(None): "$", float: ",", bool: "#"}


def _ends_as_computed(tail: bytearray, start: int, size: int, item: list[bytes]) -> bool:
    """Check the recomputed request length against the bytes: the last argument's `$len`
    header must sit exactly where a canonical encoding puts it. Catches the forms hiredis
    accepts but folds into bytes (`+status`, `=verbatim`, `$03` lengths), which would shift
    every later request."""
    end = start + size
    if end > len(tail) or tail[end - 2 : end] != b"\r\n":
        return False
    if not item:
        return True
    last = item[-1]
    header = b"$%d\r\n" % len(last)
    data_start = end - 2 - len(last)
    return tail[data_start - len(header) : data_start] == header


def _hiredis_reason(exc: Exception) -> str:
    text = str(exc)
    return text[len("Protocol error, ") :] if text.startswith("Protocol error, ") else text


def _multibulk_size(item: object) -> int:
    """Bytes of the canonical encoding of a parsed request, or -1 if it is not bytes args."""
    if item is None:
        return 5  # *-1\r\n
    if not isinstance(item, list):
        return -1
    size = len(str(len(item))) + 3
    for arg in item:
        if type(arg) is not bytes:
            return -1
        n = len(arg)
        size += n + len(str(n)) + 5
    return size


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
