"""RESP frame splitting and the REST ↔ RESP codec."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import rest_codec
from bridge.core.resp import (
    ErrorReply,
    FrameReader,
    RespProtocolError,
    Status,
    encode_resp2,
    frame_end,
    parse_frame,
    split_frames,
)

values = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=30),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@given(st.lists(values, max_size=6))
def test_split_and_parse_roundtrip(items: list[object]) -> None:
    data = b"".join(encode_resp2(v) for v in items)
    frames = split_frames(data)
    assert len(frames) == len(items)
    assert [parse_frame(f) for f in frames] == items
    reader = FrameReader()
    got = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        got += list(reader.frames())
    assert got == frames


def test_status_and_errors_keep_their_type() -> None:
    frames = split_frames(b"+OK\r\n$2\r\nOK\r\n-ERR bad\r\n")
    assert frames == [b"+OK\r\n", b"$2\r\nOK\r\n", b"-ERR bad\r\n"]
    assert isinstance(parse_frame(frames[0]), Status)
    assert not isinstance(parse_frame(frames[1]), Status)
    assert isinstance(parse_frame(frames[2]), ErrorReply)


def test_incomplete_and_invalid() -> None:
    assert frame_end(b"*2\r\n:1\r\n") == -1
    assert frame_end(b"$5\r\nab") == -1
    with pytest.raises(RespProtocolError):
        frame_end(b"?what\r\n")
    with pytest.raises(RespProtocolError):
        frame_end(b"$2\r\nabcd\r\n")


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


def test_json_pipeline_items_to_frames() -> None:
    body = orjson.dumps(
        [
            {"result": "OK"},
            {"result": b64(b"\x00\xffbin")},
            {"result": 42},
            {"result": None},
            {"result": [b64(b"a"), None, [b64(b"OK"), 1]]},
            {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"},
            {"error": "max daily request limit exceeded"},
        ]
    )
    frames = rest_codec.json_pipeline_frames(body, 7)
    assert frames[0] == b"+OK\r\n"
    assert frames[1] == b"$5\r\n\x00\xffbin\r\n"
    assert frames[2] == b":42\r\n"
    assert frames[3] == b"$-1\r\n"
    assert frames[4] == b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n$2\r\nOK\r\n:1\r\n"
    assert frames[5].startswith(b"-WRONGTYPE")
    assert frames[6] == b"-ERR max daily request limit exceeded\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b"[1]",
        b'[{"result": 1}, {"nothing": 2}]',
        b'[{"result": "@@@"}, {"result": 1}]',
    ],
)
def test_garbage_bodies_raise_codec_error(body: bytes) -> None:
    with pytest.raises(rest_codec.CodecError):
        rest_codec.json_pipeline_frames(body, 2)


def test_multi_exec_frame() -> None:
    body = orjson.dumps([{"result": "OK"}, {"error": "ERR x"}, {"result": 3}])
    assert rest_codec.multi_exec_frame(body, 3) == b"*3\r\n+OK\r\n-ERR x\r\n:3\r\n"
    abort = orjson.dumps({"error": "EXECABORT Transaction discarded because of previous errors."})
    assert rest_codec.multi_exec_frame(abort, 3).startswith(b"-EXECABORT")


def test_path_form_and_json_args() -> None:
    assert rest_codec.json_args([b"SET", b"k", b"v"]) == ["SET", "k", "v"]
    assert rest_codec.json_args([b"SET", b"\xff", b"v"]) is None
    path, body = rest_codec.path_form([b"SET", b"a/b \xff", b"\x00value"])
    assert path == "/SET/a%2Fb%20%FF"
    assert body == b"\x00value"
