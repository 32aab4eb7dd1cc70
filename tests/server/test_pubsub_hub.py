"""Unit tests of the SSE client (bridge/upstream/sse_client.py) and the pub/sub hub (pubsub.py).

The upstream is faked at the transport seam (`httpx.MockTransport`): each SSE request gets a
`FakeSse` body that the test feeds, ends or breaks. Subscribers are plain recorders.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import unquote_to_bytes

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
)
from bridge.server.pubsub import GlobPattern, PubSubHub, split_pmessage
from bridge.upstream.rest import RestClient
from bridge.upstream.sse_client import SseClient, SseParser, credentials, stream_path

#: Upper bound for anything a test waits for (a failure, not a timing assertion).
WAIT_S = 5.0
URL = "http://upstream.test/base"


# -- fakes -------------------------------------------------------------------------------------


class FakeSse(httpx.AsyncByteStream):
    """The body of one SSE response, fed by the test."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._send, self._receive = trio.open_memory_channel[bytes | Exception | None](1000)
        self.closed = trio.Event()

    def push(self, data: bytes) -> None:
        self._send.send_nowait(data)

    def event(self, text: str) -> None:
        self.push("".join(f"data: {line}\n" for line in text.split("\n")).encode() + b"\n")

    def end(self) -> None:
        self._send.send_nowait(None)

    def fail(self, exc: Exception | None = None) -> None:
        self._send.send_nowait(exc or httpx.ReadError("connection reset"))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._receive.receive()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    async def aclose(self) -> None:
        self.closed.set()


class FakeUpstream:
    """MockTransport handler: every request opens a FakeSse that confirms itself (unless
    `confirm` is False); `refuse[path] = (status, json)` answers with an error instead."""

    def __init__(self, *, confirm: bool = True) -> None:
        self.confirm = confirm
        self.requests: list[httpx.Request] = []
        self.streams: list[FakeSse] = []
        self.refuse: dict[str, tuple[int, object]] = {}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode()
        if path in self.refuse:
            status, body = self.refuse[path]
            return httpx.Response(status, json=body)
        stream = FakeSse(path)
        self.streams.append(stream)
        if self.confirm:
            stream.event(confirmation(path))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    def by_path(self, path: str) -> FakeSse:
        """The newest stream opened on `path`."""
        return [s for s in self.streams if s.path == path][-1]

    def open_paths(self) -> list[str]:
        return [s.path for s in self.streams if not s.closed.is_set()]


def confirmation(path: str) -> str:
    kind, _, name = path.removeprefix("/base/").partition("/")
    if kind == "monitor":
        return '"OK"'
    return f"{kind},{unquote_to_bytes(name).decode('utf-8', 'replace')},1"


class Recorder:
    """A subscriber that records what the hub delivers (bulk strings decoded)."""

    def __init__(self) -> None:
        self.pushes: list[list[bytes]] = []
        self.lines: list[bytes] = []

    def deliver_push(self, frame_parts: list[bytes]) -> None:
        self.pushes.append([unbulk(part) for part in frame_parts])

    def deliver_monitor(self, line: bytes) -> None:
        self.lines.append(line)


def unbulk(part: bytes) -> bytes:
    match = re.fullmatch(rb"\$(\d+)\r\n(.*)\r\n", part, re.DOTALL)
    assert match is not None, part
    assert int(match[1]) == len(match[2])
    return match[2]


async def wait_until(predicate: Callable[[], bool], what: str = "condition") -> None:
    with trio.move_on_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.002)
        return
    raise AssertionError(f"timed out waiting for {what}")


def sse_client(upstream: FakeUpstream, token: Callable[[], str] = lambda: "tok") -> SseClient:
    return SseClient(
        URL,
        token,
        connect_timeout_s=1,
        transport=httpx.MockTransport(upstream.handler),
    )


@asynccontextmanager
async def running_hub(upstream: FakeUpstream, **kwargs: object) -> AsyncIterator[PubSubHub]:
    options: dict[str, object] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    options.update(kwargs)
    hub = PubSubHub(sse_client(upstream), rng=random.Random(1), **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        yield hub
        nursery.cancel_scope.cancel()


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


# -- glob patterns and pmessage splitting ---------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (b"news.*", b"news.sport", True),
        (b"news.*", b"news", False),
        (b"h?llo", b"hello", True),
        (b"h?llo", b"hllo", False),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hbllo", True),  # reversed ranges are swapped, as in Redis
        (b"a\\*b", b"a*b", True),
        (b"a\\*b", b"axb", False),
        (b"[\\]]", b"]", True),
        (b"*a*a*a*a*a*a*b", b"a" * 200, False),  # no exponential blow-up
        (b"a,b*", b"a,b,c", True),
        (b"*", b"", True),
        (b"", b"", True),
        (b"[abc", b"a", True),  # unterminated class ends at the end of the pattern
    ],
)
def test_glob(pattern: bytes, text: bytes, expected: bool) -> None:
    assert GlobPattern(pattern).match(text) is expected


@given(
    pattern=st.text(alphabet="ab*?,", max_size=8),
    text=st.text(alphabet="ab,", max_size=10),
)
def test_glob_agrees_with_fnmatch_on_stars_and_marks(pattern: str, text: str) -> None:
    expected = fnmatch.fnmatchcase(text, pattern)
    assert GlobPattern(pattern.encode()).match(text.encode()) is expected


@pytest.mark.parametrize(
    ("pattern", "rest", "channel", "payload"),
    [
        (b"news.*", "news.a,hello", b"news.a", b"hello"),
        (b"news.*", 'news.a,{"x":1,"y":2}', b"news.a", b'{"x":1,"y":2}'),
        (b"a,b*", "a,b,c,payload", b"a,b", b"c,payload"),  # literal commas honoured
        (b"a,b,*", "a,b,c,payload", b"a,b,c", b"payload"),
        (b"x*", "x,y,z", b"x", b"y,z"),  # wildcards never extend over a comma
        (b"n*", "n,", b"n", b""),
        (b"zzz", "no,match,here", b"no", b"match,here"),  # fallback: first comma
    ],
)
def test_split_pmessage(pattern: bytes, rest: str, channel: bytes, payload: bytes) -> None:
    assert split_pmessage(rest, GlobPattern(pattern)) == (channel, payload)


# -- the hub ------------------------------------------------------------------------------------


async def test_shared_stream_confirmation_and_fanout() -> None:
    upstream = FakeUpstream(confirm=False)
    async with running_hub(upstream) as hub:
        a, b = Recorder(), Recorder()
        done_a: list[str] = []
        done_b: list[str] = []
        hub.subscribe(a, "channel", b"ch,1", done_a.append)
        hub.subscribe(b, "channel", b"ch,1", done_b.append)
        hub.subscribe(a, "channel", b"ch,1", done_a.append)  # twice: confirmed, not doubled
        await wait_until(lambda: len(upstream.streams) == 1, "the stream to open")
        await trio.sleep(0.02)
        assert done_a == [] and done_b == []  # not before the upstream confirmed
        upstream.streams[0].event("subscribe,ch,1,1")
        await wait_until(lambda: len(done_b) == 1, "confirmation")
        assert done_a == ["", ""] and done_b == [""]
        upstream.streams[0].event("message,ch,1,hello, world\nline 2")
        await wait_until(lambda: len(b.pushes) == 1, "delivery")
        expected = [b"message", b"ch,1", b"hello, world\nline 2"]
        assert a.pushes == [expected] and b.pushes == [expected]
        assert len(upstream.requests) == 1
        assert (hub.streams, hub.streams_open, hub.messages, hub.deliveries) == (1, 1, 1, 2)
        c = Recorder()
        done_c: list[str] = []
        hub.subscribe(c, "channel", b"ch,1", done_c.append)  # live already: confirmed at once
        assert done_c == [""]
        assert hub.subscriber_count("channel", b"ch,1") == 3


async def test_stream_closes_with_last_subscriber() -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream) as hub:
        a, b = Recorder(), Recorder()
        done: list[str] = []
        hub.subscribe(a, "channel", b"c", done.append)
        hub.subscribe(b, "channel", b"c", done.append)
        await wait_until(lambda: done == ["", ""], "confirmations")
        hub.unsubscribe(a, "channel", b"c")
        await trio.sleep(0.02)
        assert upstream.open_paths() == ["/base/subscribe/c"]
        hub.drop(b)
        hub.drop(b)  # idempotent
        await wait_until(lambda: upstream.streams[0].closed.is_set(), "the stream to close")
        await wait_until(lambda: hub.streams_open == 0, "streams_open to drop")
        assert hub.streams == 0
        hub.unsubscribe(a, "channel", b"c")  # unknown: harmless


async def test_unsubscribe_before_live_confirms_and_closes() -> None:
    upstream = FakeUpstream(confirm=False)
    async with running_hub(upstream) as hub:
        a = Recorder()
        done: list[str] = []
        hub.subscribe(a, "pattern", b"p*", done.append)
        await wait_until(lambda: len(upstream.streams) == 1, "the stream to open")
        hub.unsubscribe(a, "pattern", b"p*")
        assert done == [""]  # the pending reply is released (it precedes the unsubscribe's)
        await wait_until(lambda: upstream.streams[0].closed.is_set(), "the stream to close")
        assert hub.streams == 0


async def test_refused_stream_reports_the_error() -> None:
    upstream = FakeUpstream()
    upstream.refuse["/base/subscribe/secret"] = (400, {"error": "NOPERM no permissions"})
    upstream.refuse["/base/subscribe/busy"] = (503, {"error": "ERR too many SSE streams"})
    async with running_hub(upstream) as hub:
        a = Recorder()
        done: list[str] = []
        hub.subscribe(a, "channel", b"secret", done.append)
        hub.subscribe(a, "channel", b"busy", done.append)
        await wait_until(lambda: len(done) == 2, "both answers")
        assert "NOPERM no permissions" in done
        assert any(d.startswith("ERR upstream refused the pub/sub stream (HTTP 503)") for d in done)
        assert hub.streams == 0
        assert len(upstream.requests) == 2  # no retries when nobody is subscribed
        hub.drop(a)


async def test_max_streams() -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream, max_streams=2) as hub:
        a = Recorder()
        done: list[str] = []
        for name in (b"1", b"2", b"3"):
            hub.subscribe(a, "channel", name, done.append)
        assert done == [
            "ERR resp-bridge: too many upstream pub/sub streams open (2); each channel, "
            "pattern and MONITOR needs one"
        ]
        await wait_until(lambda: len(done) == 3, "confirmations")
        hub.unsubscribe(a, "channel", b"1")
        hub.subscribe(a, "channel", b"3", done.append)
        await wait_until(lambda: len(done) == 4, "a slot freed")
        assert done[-1] == ""


async def test_stream_break_reconnects_subscribers_stay() -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream) as hub:
        a, b = Recorder(), Recorder()
        done: list[str] = []
        hub.subscribe(a, "channel", b"c", done.append)
        hub.subscribe(b, "pattern", b"c*", done.append)
        await wait_until(lambda: done == ["", ""], "confirmations")
        first, pfirst = (
            upstream.by_path("/base/subscribe/c"),
            upstream.by_path("/base/psubscribe/c%2A"),
        )
        first.event("message,c,before")
        pfirst.event("pmessage,c*,c,before")
        await wait_until(lambda: len(b.pushes) == 1 and len(a.pushes) == 1, "first messages")
        first.fail()  # a network error
        pfirst.end()  # the server ends the stream
        await wait_until(lambda: len(upstream.streams) == 4, "both streams to reconnect")
        await wait_until(lambda: hub.streams_open == 2, "both live again")
        assert hub.reconnects == 2
        upstream.by_path("/base/subscribe/c").event("message,c,after")
        upstream.by_path("/base/psubscribe/c%2A").event("pmessage,c*,c,after")
        await wait_until(lambda: len(b.pushes) == 2 and len(a.pushes) == 2, "later messages")
        assert a.pushes == [[b"message", b"c", b"before"], [b"message", b"c", b"after"]]
        assert b.pushes == [
            [b"pmessage", b"c*", b"c", b"before"],
            [b"pmessage", b"c*", b"c", b"after"],
        ]
        assert done == ["", ""]  # nothing else was sent to the subscribers


async def test_switch_upstream_reconnects_at_once_elsewhere() -> None:
    """DB USE: open streams reconnect now, to the new URL; subscribers stay subscribed."""
    upstream = FakeUpstream()
    # A long backoff: the reconnect must not wait for it.
    async with running_hub(upstream, backoff_initial_s=30, backoff_max_s=30) as hub:
        a = Recorder()
        done: list[str] = []
        hub.subscribe(a, "channel", b"c", done.append)
        await wait_until(lambda: done == [""], "confirmation")
        assert hub.switch_upstream("http://other.test/base/") == 1
        await wait_until(lambda: len(upstream.requests) == 2, "the reconnect")
        await wait_until(lambda: hub.streams_open == 1, "live again")
        assert [r.url.host for r in upstream.requests] == ["upstream.test", "other.test"]
        assert upstream.streams[0].closed.is_set()
        upstream.by_path("/base/subscribe/c").event("message,c,after")
        await wait_until(lambda: len(a.pushes) == 1, "a message from the new upstream")
        assert a.pushes == [[b"message", b"c", b"after"]]
        assert done == [""] and hub.reconnects == 1


async def test_rest_client_switch() -> None:
    rest = RestClient("http://upstream.test/db/", "old-token", timeout_s=1, connect_timeout_s=1)
    rest.sync_token = "sync-of-the-old-database"
    rest.switch("https://user:pw@new.test/", "new-token")
    url, token = credentials(rest)
    assert (url, token()) == ("https://user:pw@new.test", "new-token")
    assert rest.display_url == "https://new.test" and rest.sync_token == ""
    await rest.aclose()


async def test_idle_timeout_reopens_quietly(caplog: pytest.LogCaptureFixture) -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream) as hub:
        a = Recorder()
        done: list[str] = []
        hub.subscribe(a, "channel", b"quiet", done.append)
        await wait_until(lambda: done == [""], "confirmation")
        with caplog.at_level(logging.INFO, logger="bridge.pubsub"):
            upstream.streams[0].fail(httpx.ReadTimeout("no data"))  # what httpx raises
            await wait_until(lambda: hub.reconnects == 1 and hub.streams_open == 1, "reopen")
        records = [r for r in caplog.records if r.name == "bridge.pubsub"]
        assert [r.levelno for r in records] == [logging.INFO]
        assert "ReadTimeout" in records[0].getMessage()
        upstream.streams[1].event("message,quiet,still here")
        await wait_until(lambda: len(a.pushes) == 1, "delivery")


async def test_waiter_during_outage_gets_the_failure() -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream, backoff_initial_s=0.2, backoff_max_s=0.2) as hub:
        a, b = Recorder(), Recorder()
        done_a: list[str] = []
        done_b: list[str] = []
        hub.subscribe(a, "channel", b"c", done_a.append)
        await wait_until(lambda: done_a == [""], "confirmation")
        upstream.refuse["/base/subscribe/c"] = (503, {"error": "ERR down"})
        upstream.streams[0].end()
        await wait_until(lambda: hub.streams_open == 0, "the break")
        hub.subscribe(b, "channel", b"c", done_b.append)  # joins while reconnecting
        await wait_until(lambda: len(done_b) == 1, "the failed attempt")
        assert done_b[0] == "ERR upstream refused the pub/sub stream (HTTP 503): ERR down"
        assert hub.subscriber_count("channel", b"c") == 1  # a stays, b was refused
        del upstream.refuse["/base/subscribe/c"]
        await wait_until(lambda: hub.streams_open == 1, "recovery")
        upstream.streams[-1].event("message,c,back")
        await wait_until(lambda: len(a.pushes) == 1, "delivery after recovery")
        assert b.pushes == []


async def test_unexpected_first_event_and_unsubscribe_event() -> None:
    upstream = FakeUpstream(confirm=False)
    async with running_hub(upstream) as hub:
        a = Recorder()
        done: list[str] = []
        hub.subscribe(a, "channel", b"c", done.append)
        await wait_until(lambda: len(upstream.streams) == 1, "the stream")
        upstream.streams[0].event("message,c,too early")
        await wait_until(lambda: len(done) == 1, "the refusal")
        assert done[0].startswith("ERR upstream pub/sub stream unavailable: ")
        assert "did not start with its confirmation" in done[0]
        hub.subscribe(a, "channel", b"d", done.append)
        await wait_until(lambda: len(upstream.streams) == 2, "the second stream")
        upstream.streams[1].event("subscribe,d,1")
        await wait_until(lambda: len(done) == 2, "confirmation")
        upstream.streams[1].event("unsubscribe,d,0")  # the server dropped us: reconnect
        await wait_until(lambda: len(upstream.streams) == 3, "the reconnect")
        assert hub.reconnects == 1


async def test_pattern_and_monitor_delivery() -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream) as hub:
        p, m = Recorder(), Recorder()
        done: list[str] = []
        hub.subscribe(p, "pattern", "ü,*".encode(), done.append)
        hub.monitor(m, done.append)
        await wait_until(lambda: done == ["", ""], "confirmations")
        pstream, mstream = (
            upstream.by_path("/base/psubscribe/%C3%BC%2C%2A"),
            upstream.by_path("/base/monitor"),
        )
        pstream.event("pmessage,ü,*,ü,x,1,2")
        mstream.event('1721284005.242090 [0 127.0.0.1:1] "SET" "k" "v"')
        await wait_until(lambda: len(p.pushes) == 1 and len(m.lines) == 1, "delivery")
        assert p.pushes == [[b"pmessage", "ü,*".encode(), "ü,x".encode(), b"1,2"]]
        assert m.lines == [b'1721284005.242090 [0 127.0.0.1:1] "SET" "k" "v"']
        hub.drop(m)
        await wait_until(lambda: mstream.closed.is_set(), "monitor stream to close")


class Broken(Recorder):
    def deliver_push(self, frame_parts: list[bytes]) -> None:
        raise RuntimeError("a bug in one connection")


async def test_one_failing_subscriber_does_not_affect_others() -> None:
    upstream = FakeUpstream()
    async with running_hub(upstream) as hub:
        bad, good = Broken(), Recorder()
        done: list[str] = []
        hub.subscribe(bad, "channel", b"c", done.append)
        hub.subscribe(good, "channel", b"c", done.append)
        await wait_until(lambda: done == ["", ""], "confirmations")
        upstream.streams[0].event("message,c,1")
        upstream.streams[0].event("message,c,2")
        await wait_until(lambda: len(good.pushes) == 2, "delivery")
        assert hub.reconnects == 0 and len(upstream.streams) == 1


async def test_not_running() -> None:
    hub = PubSubHub(sse_client(FakeUpstream()))
    done: list[str] = []
    hub.subscribe(Recorder(), "channel", b"c", done.append)
    assert done and done[0].startswith("ERR pub/sub is not running")
