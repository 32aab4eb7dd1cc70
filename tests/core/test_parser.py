"""Request parser: whole, byte by byte, and garbage (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.parser import ParserLimits, ProtocolError, RequestParser, split_inline
from bridge.core.resp import encode_command

COMMANDS = [
    [b"SET", b"key", b"value"],
    [b"GET", b"\x00\xff\r\n"],
    [b"MSET", b"a", b"", b"b", b"x" * 1000],
    [b"PING"],
]


def parse_all(data: bytes, chunk: int | None = None) -> list[list[bytes]]:
    parser = RequestParser()
    out: list[list[bytes]] = []
    if chunk is None:
        parser.feed(data)
        out += parser.commands()
    else:
        for i in range(0, len(data), chunk):
            parser.feed(data[i : i + chunk])
            out += parser.commands()
    return out


def test_multibulk_whole_and_byte_by_byte() -> None:
    data = b"".join(encode_command(c) for c in COMMANDS)
    assert parse_all(data) == COMMANDS
    assert parse_all(data, chunk=1) == COMMANDS
    assert parse_all(data, chunk=7) == COMMANDS


def test_inline_mixed_with_multibulk() -> None:
    data = b"PING\r\n" + encode_command([b"GET", b"k"]) + b"set a 'b c'\n" + b"\r\n"
    expected = [[b"PING"], [b"GET", b"k"], [b"set", b"a", b"b c"]]
    assert parse_all(data) == expected
    assert parse_all(data, chunk=1) == expected


def test_empty_multibulk_ignored() -> None:
    assert parse_all(b"*0\r\n*-1\r\n" + encode_command([b"PING"])) == [[b"PING"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*1\r\n:1\r\n", "expected '.', got ':'"),
        (b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\na\r\n", "expected '.', got '.'"),
        (b"*1\r\n$-5\r\n", "Protocol error"),
        (b"*x\r\n", "Protocol error"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999999\r\n", "invalid bulk length"),
        (b'SET a "unbalanced\r\n', "unbalanced quotes"),
    ],
)
def test_protocol_errors(data: bytes, message: str) -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError, match=message):
        parser.feed(data)
        parser.commands()
    with pytest.raises(ProtocolError):  # sticky
        parser.feed(b"*1\r\n$4\r\nPING\r\n")


def test_limits() -> None:
    limits = ParserLimits(
        max_inline_bytes=10, max_bulk_bytes=5, max_args=2, max_query_buffer_bytes=100
    )
    for data in (b"PING PING PING\r\n", b"*3\r\n", b"*1\r\n$6\r\n", b"*1\r\n$1\r\n" + b"x" * 200):
        parser = RequestParser(limits)
        with pytest.raises(ProtocolError):
            parser.feed(data)
            parser.commands()


def test_split_inline_quotes() -> None:
    assert split_inline(b'set k "a\\x41\\n"') == [b"set", b"k", b"aA\n"]
    assert split_inline(b"  ping   ") == [b"ping"]
    assert split_inline(b"echo 'it\\'s'") == [b"echo", b"it's"]
    assert split_inline(b'echo "x"y') is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=6), max_size=8),
    st.integers(1, 13),
)
def test_roundtrip_any_chunking(commands: list[list[bytes]], chunk: int) -> None:
    data = b"".join(encode_command(c) for c in commands)
    assert parse_all(data, chunk=chunk) == commands


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_gives_commands_or_protocol_error(data: bytes) -> None:
    parser = RequestParser()
    try:
        parser.feed(data)
        result = parser.commands()
    except ProtocolError:
        return
    assert all(isinstance(c, list) and all(type(a) is bytes for a in c) for c in result)


@pytest.mark.parametrize(
    "data", [b"*2\r\n$3\r\nGET\r\n+OK\r\n", b"*2\r\n$3\r\nGET\r\n$01\r\na\r\n*1\r\n$4\r\nPING\r\n"]
)
def test_non_canonical_requests_are_refused_not_misframed(data: bytes) -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError):
        parser.feed(data)
        parser.commands()


@pytest.mark.parametrize(
    "data",
    [
        b"*2147483648\r\n" + b"x" * 64,
        b"*4294967295\r\n",
        b"*3\r\n$3\r\nSET\r\n*2147483647\r\n" + b"x" * 64,
        b"*1\r\n$1_0\r\n0123456789\r\n",
        b"*1\r\n$+1\r\nx\r\n",
    ],
)
def test_announced_sizes_are_checked_before_any_allocation(data: bytes) -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError):
        parser.feed(data)
        parser.commands()


class _ScanOnly(RequestParser):
    """The exact scan alone: the reference the hiredis-only path must agree with."""

    __slots__ = ()

    def _whole(self, tail: bytearray) -> list[list[bytes]] | None:
        return None


def _outcome(parser: RequestParser, chunks: list[bytes]) -> tuple[list[list[bytes]], str]:
    got: list[list[bytes]] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            got += parser.commands()
    except ProtocolError as exc:
        return got, str(exc)
    return got, f"buffered {parser.buffered}"


_ARGS = st.lists(st.binary(max_size=12), min_size=1, max_size=4)


@settings(max_examples=3000)
@given(
    requests=st.lists(_ARGS, min_size=1, max_size=4),
    edits=st.lists(st.tuples(st.integers(0, 200), st.binary(max_size=3)), max_size=3),
    cut=st.integers(0, 300),
)
def test_the_hiredis_only_path_agrees_with_the_exact_scan(
    requests: list[list[bytes]], edits: list[tuple[int, bytes]], cut: int
) -> None:
    """Valid requests, with a few bytes replaced (`:1`, `+x`, `*9999999`, CRs, cut short...)
    and split in two reads: same commands, same error text, same bytes left buffered."""
    data = bytearray(b"".join(encode_command(r) for r in requests))
    for at, junk in edits:
        at = min(at, len(data))
        data[at : at + len(junk)] = junk
    raw = bytes(data)
    chunks = [raw[:cut], raw[cut:]]
    assert _outcome(RequestParser(), chunks) == _outcome(_ScanOnly(), chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*1\r\n+PING\r\n",
        b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\nx\r\n",
        b"*1\r\n$-1\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*9999999\r\n",
        b"*0\r\n*1\r\n$4\r\nPING\r\n",
        b"*2\r\n$3\r\nGET\r\n",
        b"PING\r\n",
    ],
)
def test_unusual_reads_take_the_exact_scan(data: bytes) -> None:
    assert _outcome(RequestParser(), [data]) == _outcome(_ScanOnly(), [data])


@pytest.mark.parametrize(
    "request_args",
    [[b"MSET", *([b"k", b"v"] * 600)], [b"SET", b"k", b"x" * 5000], [b"GET", b"k" * 999]],
)
def test_long_requests_parse_alike_on_both_paths(request_args: list[bytes]) -> None:
    data = encode_command(request_args)
    assert _outcome(RequestParser(), [data]) == ([request_args], "buffered 0")
    assert _outcome(RequestParser(), [data]) == _outcome(_ScanOnly(), [data])
    broken = data[:-2] + b"\n\n"
    assert _outcome(RequestParser(), [broken]) == _outcome(_ScanOnly(), [broken])
