"""Unit tests of the pub/sub hub (bridge/server/pubsub.py).

The upstream is faked at the transport seam (`tests/upstream/sse_fakes.py`): each SSE request
gets a `FakeSse` body that the test feeds, ends or breaks. Subscribers are plain recorders.
The SSE client itself is tested in tests/upstream/test_sse_client.py.
"""

from __future__ import annotations

import fnmatch
import logging
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from bridge.server.pubsub import GlobPattern, PubSubHub, split_pmessage
from tests.upstream.sse_fakes import FakeUpstream, sse_client

#: Upper bound for anything a test waits for (a failure, not a timing assertion).
WAIT_S = 5.0


# -- fakes -------------------------------------------------------------------------------------


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


@asynccontextmanager
async def running_hub(upstream: FakeUpstream, **kwargs: object) -> AsyncIterator[PubSubHub]:
    options: dict[str, object] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    options.update(kwargs)
    hub = PubSubHub(sse_client(upstream), rng=random.Random(1), **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        yield hub
        nursery.cancel_scope.cancel()


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
