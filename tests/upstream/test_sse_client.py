"""Unit tests of the SSE client (bridge/upstream/sse_client.py): the sans-I/O parser, stream
paths, and the HTTP side against the fake upstream of `sse_fakes` (requests, events, errors),
and how it follows the REST client's URL and token (reload, DB USE).
"""

from __future__ import annotations

import itertools
from urllib.parse import unquote_to_bytes

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
)
from bridge.upstream.rest import RestClient
from bridge.upstream.sse_client import SseClient, SseParser, credentials, stream_path
from tests.upstream.sse_fakes import URL, FakeUpstream, sse_client

# -- SSE parser --------------------------------------------------------------------------------


def test_parser_events_and_fields() -> None:
    parser = SseParser()
    data = (
        b": heartbeat\n\n"
        b"data: subscribe,ch,1\n\n"
        b"event: x\nid: 3\nretry: 10\ndata:no-space\n\n"
        b"data: line one\ndata: line two\n\n"
        b"data\n\n"
        b"data: \n\n"
        b"\n\n"
        b"data:  two spaces\n\n"
    )
    assert parser.feed(data) == [
        "subscribe,ch,1",
        "no-space",
        "line one\nline two",
        "",
        "",
        " two spaces",
    ]


def test_parser_line_endings_across_chunks() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []  # CR then LF in the next chunk: one line break
    assert parser.feed(b"\r") == ["a\nb"]
    assert parser.feed(b"data: c\r\n\r\ndata: d\n\n") == ["c", "d"]


def test_parser_bom_and_invalid_utf8() -> None:
    parser = SseParser()
    assert parser.feed(b"\xef\xbb\xbfdata: x\xff\xfey\n\n") == ["x\ufffd\ufffdy"]
    assert parser.feed("data: ünï\n\n".encode()) == ["ünï"]


def test_parser_bounds_event_size() -> None:
    parser = SseParser(max_event_bytes=100)
    assert parser.feed(b"data: " + b"x" * 90 + b"\n\n") == ["x" * 90]
    with pytest.raises(UpstreamProtocolError, match="larger than 100 bytes"):
        parser.feed(b"data: " + b"x" * 60 + b"\ndata: " + b"y" * 60 + b"\n")
    unterminated = SseParser(max_event_bytes=100)
    with pytest.raises(UpstreamProtocolError):
        for _ in range(20):
            unterminated.feed(b"z" * 10)  # a line that never ends is bounded too


_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)


@given(
    events=st.lists(st.lists(_texts, min_size=1, max_size=3), max_size=6),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_parser_any_chunking(events: list[list[str]], newline: bytes, cuts: list[int]) -> None:
    wire = b"".join(
        b"".join(b"data: " + line.encode() + newline for line in lines) + b": c" + newline
        + newline
        for lines in events
    )  # fmt: skip
    bounds = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    parser = SseParser()
    got: list[str] = []
    for start, end in itertools.pairwise(bounds):
        got += parser.feed(wire[start:end])
    assert got == ["\n".join(lines) for lines in events]
    byte_parser = SseParser()
    one_by_one = [e for i in range(len(wire)) for e in byte_parser.feed(wire[i : i + 1])]
    assert one_by_one == got


# -- paths and the HTTP side -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "path"),
    [
        ("channel", b"news", "/subscribe/news"),
        ("channel", b"a/b,c d", "/subscribe/a%2Fb%2Cc%20d"),
        ("channel", "ünï".encode(), "/subscribe/%C3%BCn%C3%AF"),
        ("channel", b"\xff%", "/subscribe/%FF%25"),
        ("channel", b"..", "/subscribe/%2E%2E"),
        ("pattern", b"n*[a-z]?", "/psubscribe/n%2A%5Ba-z%5D%3F"),
        ("monitor", b"", "/monitor"),
    ],
)
def test_stream_path(kind: str, name: bytes, path: str) -> None:
    assert stream_path(kind, name) == path
    if kind != "monitor":
        assert unquote_to_bytes(path.split("/", 2)[2]) == name


async def test_client_request_and_events() -> None:
    upstream = FakeUpstream()
    tokens = iter(["first", "second"])
    client = sse_client(upstream, lambda: next(tokens))
    async with client.open("channel", b"a/b") as events:
        request = upstream.requests[0]
        assert request.method == "POST"
        assert request.url.raw_path == b"/base/subscribe/a%2Fb"
        assert request.headers["accept"] == "text/event-stream"
        assert request.headers["authorization"] == "Bearer first"
        assert request.headers["accept-encoding"] == "identity"
        assert await events.next() == "subscribe,a/b,1"
        upstream.streams[0].push(b"data: message,a/b,x\ndata: y\n\ndata: mess")
        upstream.streams[0].push(b"age,a/b,z\n\n")
        assert await events.next() == "message,a/b,x\ny"
        assert await events.next() == "message,a/b,z"
        upstream.streams[0].end()
        assert await events.next() is None
    assert upstream.streams[0].closed.is_set()
    async with client.open("monitor") as events:
        assert upstream.requests[1].headers["authorization"] == "Bearer second"  # reloads
        assert await events.next() == '"OK"'
    await client.aclose()


async def test_for_rest_follows_the_rest_clients_token() -> None:
    rest = RestClient("http://upstream.test/db/", "old-token", timeout_s=1, connect_timeout_s=1)
    url, token = credentials(rest)
    assert (url, token()) == ("http://upstream.test/db", "old-token")
    rest.set_token("new-token")  # RELOAD: the next stream uses the new token
    assert token() == "new-token"
    client = SseClient.for_rest(rest, connect_timeout_s=1)
    assert client.url == "http://upstream.test/db"
    await client.aclose()
    await rest.aclose()


async def test_client_errors() -> None:
    upstream = FakeUpstream()
    upstream.refuse["/base/subscribe/x"] = (400, {"error": "NOPERM no permissions"})
    upstream.refuse["/base/subscribe/y"] = (401, {"error": "Unauthorized"})
    upstream.refuse["/base/subscribe/z"] = (503, {"nope": 1})
    client = sse_client(upstream)
    with pytest.raises(UpstreamHTTPError) as info:
        async with client.open("channel", b"x"):
            pass
    assert (info.value.status, str(info.value)) == (400, "NOPERM no permissions")
    with pytest.raises(UpstreamAuthError):
        async with client.open("channel", b"y"):
            pass
    with pytest.raises(UpstreamHTTPError) as info:
        async with client.open("channel", b"z"):
            pass
    assert info.value.status == 503
    assert "tok" not in str(info.value)

    async def not_sse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[])

    plain = SseClient(URL, lambda: "t", connect_timeout_s=1, transport=httpx.MockTransport(not_sse))
    with pytest.raises(UpstreamProtocolError, match="not text/event-stream"):
        async with plain.open("channel", b"q"):
            pass

    async def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    down = SseClient(URL, lambda: "t", connect_timeout_s=1, transport=httpx.MockTransport(refused))
    with pytest.raises(UpstreamError, match="refused") as err:
        async with down.open("channel", b"q"):
            pass
    assert err.value.executed is False


async def test_client_maps_read_errors() -> None:
    upstream = FakeUpstream()
    client = sse_client(upstream)
    with pytest.raises(UpstreamError, match="ReadError"):
        async with client.open("channel", b"c") as events:
            assert await events.next() == "subscribe,c,1"
            upstream.streams[0].fail()
            await events.next()


async def test_rest_client_switch() -> None:
    rest = RestClient("http://upstream.test/db/", "old-token", timeout_s=1, connect_timeout_s=1)
    rest.sync_token = "sync-of-the-old-database"
    rest.switch("https://user:pw@new.test/", "new-token")
    url, token = credentials(rest)
    assert (url, token()) == ("https://user:pw@new.test", "new-token")
    assert rest.display_url == "https://new.test" and rest.sync_token == ""
    await rest.aclose()
