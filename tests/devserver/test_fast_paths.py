"""The devserver's fast paths give what its exact paths give.

The common /pipeline body (strings only) is parsed by orjson and checked in C-level passes,
replies are counted by hiredis and turned into JSON from its values: each is checked here
against the exact path it stands in for, on generated input (exact frames come from the
core's splitter, tested with the devserver's units). The last test drives the HTTP server's
reaper (the wait time limits).
"""

from __future__ import annotations

import json
import socket

import hiredis
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.resp import encode_resp2, split_frames
from bridge.devserver import http_server, rest_encoding
from bridge.devserver.http_server import HttpServer, Request, Response
from tests.devserver.resp_values import replies


@given(replies)
def test_values_json_matches_item_json_of_the_frames(values: list[object]) -> None:
    data = b"".join(encode_resp2(v) for v in values)
    reader = hiredis.Reader()
    reader.feed(data)
    parsed = [reader.gets() for _ in values]
    frames = split_frames(data)
    assert rest_encoding.values_json(parsed) == [
        rest_encoding.item_json(frame, False) for frame in frames
    ]
    for value, frame in zip(parsed, frames, strict=True):
        if not isinstance(value, hiredis.ReplyError):
            assert rest_encoding.plain_value(value) == rest_encoding.reply_to_json(frame, False)


@given(replies)
def test_values_json_b64_matches_item_json_of_the_frames_or_declines(
    values: list[object],
) -> None:
    data = b"".join(encode_resp2(v) for v in values)
    reader = hiredis.Reader()
    reader.feed(data)
    items = rest_encoding.values_json_b64([reader.gets() for _ in values])
    expected = [rest_encoding.item_json(frame, True) for frame in split_frames(data)]
    if items is not None:
        assert items == expected


def test_values_json_b64_declines_where_the_values_are_ambiguous() -> None:
    assert rest_encoding.values_json_b64([b"OK"]) is None  # +OK stays raw, $2 OK is encoded
    assert rest_encoding.values_json_b64([[hiredis.ReplyError("ERR x")]]) is None
    assert rest_encoding.values_json_b64([b"v", 3, None, hiredis.ReplyError("ERR y")]) == [
        {"result": "dg=="},
        {"result": 3},
        {"result": None},
        {"error": "ERR y"},
    ]


_text = st.text(max_size=8)
_command = st.lists(_text, min_size=1, max_size=4).filter(lambda c: c[0] != "")


@given(st.lists(_command, min_size=1, max_size=5))
def test_plain_commands_are_what_the_exact_parser_returns(commands: list[list[str]]) -> None:
    body = json.dumps(commands).encode()
    plain = rest_encoding.plain_commands(body)
    assert plain == commands
    loaded = rest_encoding._load_json(body)
    assert isinstance(loaded, list)
    exact = [rest_encoding._to_command(item, f"command {i}") for i, item in enumerate(loaded)]
    assert rest_encoding.parse_json_commands(body) == exact


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'[["SET", "k", 1]]',  # numbers keep their literal text: the exact path
        b'[["SET", "k", true]]',
        b'[["GET"], []]',
        b'[["", "k"]]',
        b'[["GET", "k"], "GET"]',
        b'{"GET": "k"}',
        b'[["GET", "\\ud800"]]',  # a lone surrogate: orjson refuses it
        '[["GET", "k"]]'.encode("utf-16"),
        b"",
        b"[[",
    ],
)
def test_other_bodies_take_the_exact_path(body: bytes) -> None:
    assert rest_encoding.plain_commands(body) is None


def test_number_literals_survive_the_fallback() -> None:
    body = b'[["SET", "k", 1e3], ["INCRBYFLOAT", "f", 1.50], ["GET", "k"]]'
    assert rest_encoding.parse_json_commands(body) == [
        [b"SET", b"k", b"1e3"],
        [b"INCRBYFLOAT", b"f", b"1.50"],
        [b"GET", b"k"],
    ]


async def test_reaper_closes_an_idle_keep_alive_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_server, "KEEPALIVE_IDLE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(http_server, "REAP_INTERVAL_S", 0.05)

    async def handler(request: Request) -> Response:
        return Response(200, b'{"result":"ok"}')

    server = HttpServer(
        handler,
        max_body_bytes=1024,
        on_too_large=lambda exc: Response(413),
        on_bad_request=lambda status, message: Response(status),
    )
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    def client() -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(4096)
            after_idle = sock.recv(4096)  # the server's EOF once the idle limit is over
            return answer, after_idle

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        answer, after_idle = await trio.to_thread.run_sync(client)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert after_idle == b""
