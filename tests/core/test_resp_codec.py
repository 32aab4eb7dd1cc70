"""RESP frame splitting and the REST ↔ RESP codec."""

from __future__ import annotations

import base64
import contextlib
from unittest import mock

import hiredis
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import resp, rest_codec
from bridge.core.resp import (
    ErrorReply,
    FrameReader,
    RespProtocolError,
    Status,
    _scan,
    encode_resp2,
    frame_end,
    parse_frame,
    split_frames,
)
from tests.devserver.resp_values import replies

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


def _exact_frames(data: bytes) -> list[bytes]:
    """The reference split: the Python scan alone."""
    ends: list[int] = []
    _scan(data, 0, 1, [], ends)
    if (ends[-1] if ends else 0) != len(data):
        raise RespProtocolError("truncated RESP reply")
    return [data[a:b] for a, b in zip([0, *ends], ends, strict=False)]


@settings(max_examples=500, deadline=None)
@given(replies, st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), max_size=3))
def test_hiredis_split_agrees_with_the_exact_scan(
    items: list[object], edits: list[tuple[int, bytes]]
) -> None:
    """split_frames' hiredis path against the Python scan alone: on the canonical encoding of
    any replies (statuses and errors too, in arrays as well), and after random edits; the
    same frames, or the same refusal."""
    data = b"".join(encode_resp2(v) for v in items)
    if not edits:
        assert split_frames(data) == _exact_frames(data) and len(_exact_frames(data)) == len(items)
        if all(type(v) is not list or _flat_bulks(v) for v in items) and (
            data[:1] == b"$" or b"*" in data
        ):
            assert _scan_starts(data) == []  # hiredis' parse, checked, took every reply
    _assert_split_agrees(_edited(data, edits))


def _edited(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    for at, repl in edits:
        at %= len(data) + 1
        data = data[:at] + repl + data[at + len(repl) :]
    return data


def _assert_split_agrees(data: bytes) -> None:
    """split_frames gives the exact scan's frames, or refuses what it refuses."""
    try:
        expected = _exact_frames(data)
    except RespProtocolError:
        with pytest.raises(RespProtocolError):
            split_frames(data)
        return
    assert split_frames(data) == expected


@settings(max_examples=150, deadline=None)
@given(
    replies,
    st.integers(1, 40),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), max_size=2),
)
def test_hiredis_split_fed_in_small_pieces_agrees_with_the_exact_scan(
    items: list[object], feed_bytes: int, edits: list[tuple[int, bytes]]
) -> None:
    """The same with hiredis given a few bytes at a time, so that replies cross the pieces
    (the exact scan then walks the one that does) and `*N` headers straddle them."""
    data = _edited(b"".join(encode_resp2(v) for v in items), edits)
    with mock.patch.object(resp, "_FEED_BYTES", feed_bytes):
        _assert_split_agrees(data)


class _FeedLog:
    """Stands in for the hiredis module in `resp`: its Readers record what they are fed."""

    ProtocolError = hiredis.ProtocolError
    ReplyError = hiredis.ReplyError

    def __init__(self) -> None:
        self.fed: list[int] = []

    def Reader(self) -> object:  # the module's name for it
        real = hiredis.Reader()
        log = self.fed

        class _Logged:
            def feed(self, data: bytes) -> None:
                log.append(len(data))
                real.feed(data)

            def gets(self) -> object:
                return real.gets()

        return _Logged()


def test_a_big_body_is_split_without_feeding_its_bulks_to_hiredis() -> None:
    """hiredis moves the unread rest of its buffer after every reply: fed a whole body, a
    response of 100 bulks of 1 MB took 940 ms to split (quadratic). It gets small pieces, and
    a bulk that runs past its piece is walked by the exact scan without reading its payload."""
    payload = (b"*1234567\r\n" * 104858)[: 1024 * 1024]  # `*N`-looking, for the guard
    big = b"$1048576\r\n" + payload + b"\r\n"
    # arrays first: a body that starts with bulks is walked without hiredis up to the first
    # reply of another kind (see the test after this one)
    small = b"*2\r\n$1\r\na\r\n$1\r\nb\r\n" * 500 + b"$5\r\nsmall\r\n" * 3000
    data = small + big + small + big + big + small
    log = _FeedLog()
    with mock.patch.object(resp, "hiredis", log):
        frames = split_frames(data)
    assert frames == _exact_frames(data)
    assert frames.count(big) == 3 and len(frames) == 3 + 3 * 3500
    assert max(log.fed) <= resp._FEED_BYTES
    assert sum(log.fed) < len(data) // 20  # the 3 MB of bulks were not given to hiredis
    # A real `*N` header of a million elements across a piece's end: never given to hiredis.
    for cut in range(resp._FEED_BYTES - 10, resp._FEED_BYTES + 2):
        head = b"+" + b"x" * (cut - 3) + b"\r\n"
        starts = _scan_starts(head + b"*1000000\r\n")
        assert starts and starts[-1] <= cut
        with pytest.raises(RespProtocolError):
            split_frames(head + b"*1000000\r\n")


def test_a_run_of_plain_bulks_is_split_before_hiredis_starts() -> None:
    """A batch of GETs answers with bulks only: they are walked without starting hiredis,
    which gets the body from the first reply of another kind, or from a bulk written any
    other way than Redis writes it; a defect in the run is refused as the exact scan does."""
    run = b"$3\r\nabc\r\n$-1\r\n$0\r\n\r\n" + b"$1500\r\n" + b"x" * 1500 + b"\r\n"
    log = _FeedLog()
    with mock.patch.object(resp, "hiredis", log):
        assert split_frames(run * 50) == _exact_frames(run * 50)
    assert log.fed == []
    others = (b"*1\r\n$1\r\na\r\n", b":5\r\n", b"$01\r\na\r\n", b"$+1\r\na\r\n", b"$1 \r\na\r\n")
    for tail in others:
        log = _FeedLog()
        with mock.patch.object(resp, "hiredis", log):
            frames = split_frames(run + tail + run)
        assert frames == [*_exact_frames(run), tail, *_exact_frames(run)]
        if tail[:1] == b"*":  # hiredis starts at the array, not before
            assert log.fed and log.fed[0] == len(tail + run)
    for broken in (b"$3\r\nabcd\r\n", b"$3\r\nab", b"$3\r\nabc\r", b"$-2\r\n", b"$x\r\n"):
        _assert_split_agrees(run + broken)
        with pytest.raises(RespProtocolError):
            split_frames(run + broken)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.none() | st.binary(max_size=1200), max_size=12),
    st.lists(st.tuples(st.integers(0, 20_000), st.binary(max_size=3)), max_size=3),
)
def test_bulk_bodies_split_as_the_exact_scan_does(
    items: list[bytes | None], edits: list[tuple[int, bytes]]
) -> None:
    """Bodies of bulks and nils, the run's own input, edited at random: the exact scan's
    frames or its refusal."""
    data = b"".join(encode_resp2(v) for v in items)
    assert split_frames(data) == _exact_frames(data) and len(split_frames(data)) == len(items)
    _assert_split_agrees(_edited(data, edits))


def _scan_starts(data: bytes) -> list[int]:
    """Where split_frames had the exact scan start (after the replies hiredis' parse took)."""
    starts: list[int] = []
    real = resp._scan

    def spy(buf: bytes, pos: int, *args: object) -> tuple[int, int]:
        starts.append(pos)
        return real(buf, pos, *args)  # type: ignore[arg-type]

    with mock.patch.object(resp, "_scan", spy), contextlib.suppress(RespProtocolError):
        split_frames(data)
    return starts


def _flat_bulks(value: list[object]) -> bool:
    """What split_frames' fast path takes: an array of plain bulks (not statuses)."""
    return all(type(v) is bytes for v in value)


def test_hiredis_split_of_long_arrays_and_bulks() -> None:
    lrange = b"*100\r\n" + b"$3\r\nxxx\r\n" * 100
    big = b"$1500\r\n" + b"x" * 1500 + b"\r\n"
    data = lrange * 3 + big + b":7\r\n+OK\r\n-ERR no\r\n$-1\r\n*0\r\n"
    assert _scan_starts(data) == []
    assert split_frames(data) == _exact_frames(data)
    assert split_frames(data)[:4] == [lrange, lrange, lrange, big]
    # an array with a nil, a status or a non-canonical length: the exact scan from there on
    for odd in (b"*2\r\n$1\r\na\r\n$-1\r\n", b"*1\r\n+OK\r\n", b"$01\r\na\r\n"):
        assert _scan_starts(big + odd + big) == [len(big)]
        assert split_frames(big + odd + big) == [big, odd, big]
    huge = b"*1000000\r\n"  # never given to hiredis (it would allocate the array at once)
    assert _scan_starts(huge) == [0]
    with pytest.raises(RespProtocolError):
        split_frames(huge)


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
