"""Unit tests of the devserver's pure parts: frame scanner, request/response codec, policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.resp import (
    FrameReader,
    RespProtocolError,
    encode_resp2,
    split_frames,
)
from bridge.devserver import policy, rest_encoding
from bridge.devserver.redis_conn import RedisAddress, redact_url
from tests.devserver.resp_values import replies


@given(replies, st.lists(st.integers(1, 50), max_size=40))
def test_scanner_matches_split_frames_for_any_chunking(
    values: list[object], cuts: list[int]
) -> None:
    data = b"".join(encode_resp2(v) for v in values)
    scanner = FrameReader()
    frames: list[bytes] = []
    pos = 0
    for size in [*cuts, len(data)]:
        scanner.feed(data[pos : pos + size])
        pos += size
        while (frame := scanner.next_frame()) is not None:
            frames.append(frame)
        if pos >= len(data):
            break
    assert frames == split_frames(data)
    assert scanner.buffered == 0


@given(st.binary(max_size=200))
def test_scanner_on_garbage_returns_frames_or_protocol_error(data: bytes) -> None:
    scanner = FrameReader()
    scanner.feed(data)
    try:
        while scanner.next_frame() is not None:
            pass
    except RespProtocolError:
        pass


def test_scanner_is_linear_on_a_huge_array_fed_in_small_pieces() -> None:
    data = encode_resp2([b"x" * 5] * 200_000)
    scanner = FrameReader()
    for i in range(0, len(data), 4096):  # ~600 feeds; a rescanning parser would be quadratic
        scanner.feed(data[i : i + 4096])
        frame = scanner.next_frame()
    assert frame == data


def test_path_segments_and_query() -> None:
    assert rest_encoding.path_segments(b"/set/a%2Fb/%FF+x/") == [b"set", b"a/b", b"\xff+x", b""]
    pairs = rest_encoding.query_pairs(b"EX=100&NX&_token=t%2B&k=")
    assert pairs == [(b"EX", b"100"), (b"NX", None), (b"_token", b"t+"), (b"k", b"")]
    assert rest_encoding.query_args(pairs) == [b"EX", b"100", b"NX", b"k", b""]
    assert rest_encoding.query_token(pairs) == b"t+"


def test_json_arguments() -> None:
    assert rest_encoding.parse_json_command(b'["SET","k",1.0,true,false,-0,1E3]') == [
        b"SET",
        b"k",
        b"1.0",
        b"true",
        b"false",
        b"-0",
        b"1E3",
    ]
    with pytest.raises(rest_encoding.BadRequest, match="command name"):
        rest_encoding.parse_json_command(b'[true, "x"]')
    with pytest.raises(rest_encoding.BadRequest, match="command name"):
        rest_encoding.parse_json_command(b"[1]")


def test_reply_to_json() -> None:
    assert rest_encoding.reply_to_json(b"+OK\r\n", b64=True) == "OK"
    assert rest_encoding.reply_to_json(b"+PONG\r\n", b64=True) == "UE9ORw=="
    assert rest_encoding.reply_to_json(b"$2\r\nOK\r\n", b64=True) == "T0s="
    assert rest_encoding.reply_to_json(b"$-1\r\n", b64=True) is None
    assert rest_encoding.reply_to_json(b"*-1\r\n", b64=False) is None
    assert rest_encoding.reply_to_json(b":-5\r\n", b64=True) == -5
    assert rest_encoding.reply_to_json(b"*2\r\n+OK\r\n$1\r\n\xff\r\n", b64=False) == [
        "OK",
        "\ufffd",
    ]
    assert rest_encoding.reply_to_json(b"*2\r\n+OK\r\n:1\r\n", b64=True) == ["T0s=", 1]
    assert rest_encoding.item_json(b"-ERR x\r\n", b64=True) == {"error": "ERR x"}
    assert rest_encoding.array_items(b"*2\r\n+OK\r\n-ERR no\r\n") == [b"+OK\r\n", b"-ERR no\r\n"]


@pytest.mark.parametrize(
    ("args", "block"),
    [
        ([b"get", b"k"], 0.0),
        ([b"BLPOP", b"a", b"b", b"1.5"], 1.5),
        ([b"blmpop", b"2", b"1", b"l", b"LEFT"], 2.0),
        ([b"XREAD", b"COUNT", b"1", b"BLOCK", b"500", b"STREAMS", b"s", b"$"], 0.5),
        ([b"XREAD", b"STREAMS", b"BLOCK", b"0"], 0.0),  # BLOCK after STREAMS is a key
        ([b"WAIT", b"1", b"100"], 0.1),
        ([b"BLPOP", b"a", b"notanumber"], 0.0),
        ([b"CLIENT", b"LIST"], 0.0),
    ],
)
def test_policy_block_times(args: list[bytes], block: float) -> None:
    assert policy.check_command(args) == pytest.approx(block)


@pytest.mark.parametrize(
    "args",
    [
        [b"select", b"0"],
        [b"Client", b"Tracking", b"on"],
        [b"BRPOP", b"a", b"0"],
        [b"WAIT", b"1", b"0"],
        [b"BZPOPMIN", b"z", b"31"],
    ],
)
def test_policy_refusals(args: list[bytes]) -> None:
    with pytest.raises(policy.Refused, match=r"^ERR "):
        policy.check_command(args)


def test_redis_address() -> None:
    address = RedisAddress.from_url("redis://user:p%40ss@example:6380/2")
    assert address == RedisAddress("example", 6380, "user", "p@ss", 2)
    assert "p@ss" not in address.display
    assert redact_url("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    with pytest.raises(ValueError, match="scheme"):
        RedisAddress.from_url("http://h:1")
