"""The blocking hub against a stand-in dispatcher, in trio's virtual time: how many polls a
repeated blocking command costs, wake-ups by local writes, WATCH groups made dirty.

The stand-in answers every poll "nothing there" at once and records it; trio's autojump clock
runs the waits instantly, so the counts are exact and no test measures time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from bridge.core import commands
from bridge.core.actions import WatchGroup
from bridge.core.blocking_plans import plan_blocking, watch_plan
from bridge.server.blocking_hub import BlockingHub
from bridge.server.counters import Stats
from bridge.server.dispatcher import ClientQueue


class EmptyUpstream:
    """Answers each submitted command with an empty reply, recording it and its source."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []

    def submit_command(
        self,
        queue: ClientQueue,
        args: list[bytes],
        spec: Any,
        deliver: Callable[[bytes], None],
        payload_bytes: int | None = None,
        source: str = "client",
    ) -> None:
        self.sent.append((args[0], source))
        deliver(b"*1\r\n$3\r\nfp1\r\n" if args[0] == b"EVAL" else b"*-1\r\n")


def make_hub() -> tuple[BlockingHub, EmptyUpstream]:
    upstream = EmptyUpstream()
    hub = BlockingHub(
        upstream,  # type: ignore[arg-type]
        Stats(),
        min_interval_s=0.05,
        max_interval_s=1.0,
    )
    return hub, upstream


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


BRPOP = [b"BRPOP", b"celery", b"1"]


async def celery_loop(hub: BlockingHub, calls: int) -> None:
    """Celery's idle worker: BRPOP ... 1 again as soon as the last one timed out."""
    queue = ClientQueue()
    spec = commands.resolve(BRPOP)
    assert spec is not None
    interval = None
    for _ in range(calls):
        frame, interval = await hub.wait(queue, plan_blocking(BRPOP), spec, interval)
        assert frame == b"*-1\r\n"


async def test_a_repeated_brpop_polls_once_per_interval_not_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub, upstream = make_hub()
    started = trio.current_time()
    await celery_loop(hub, 60)
    minutes = (trio.current_time() - started) / 60
    polls = len(upstream.sent)
    # The interval doubles from 50 ms to 1 s in the first second, then one poll a second:
    # no poll at each deadline plus another as the next BRPOP starts (about 120 a minute).
    assert polls <= 60 / minutes + 6
    assert all(source == "blocking" for _, source in upstream.sent)
    assert hub.polls_skipped > 0


async def test_a_local_write_wakes_the_waiter_and_forgets_the_memo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub, _ = make_hub()
    await celery_loop(hub, 3)
    assert hub._memos  # the next identical BRPOP would wait out the interval
    lpush = [b"LPUSH", b"celery", b"job"]
    hub.notify_write(commands.resolve(lpush), lpush, b":1\r\n")
    assert not hub._memos
    # A write that changed nothing (DEL of a missing key) forgets nothing.
    await celery_loop(hub, 1)
    delete = [b"DEL", b"celery"]
    hub.notify_write(commands.resolve(delete), delete, b":0\r\n")
    assert hub._memos


async def test_writes_through_the_bridge_make_watches_dirty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub, upstream = make_hub()
    group = WatchGroup([b"k"])
    spec = commands.resolve([b"WATCH", b"k"])
    assert spec is not None
    frame, _ = await hub.wait(ClientQueue(), watch_plan(group), spec, None)
    assert upstream.sent == [(b"EVAL", "watch")]
    assert group.record(frame) == b"+OK\r\n"
    assert hub.has_waiters()  # replies to writes matter now
    same = [b"SET", b"k", b"0"]
    nothing = [b"DEL", b"k"]
    hub.notify_write(commands.resolve(nothing), nothing, b":0\r\n")
    assert not group.dirty  # deleted nothing: Redis would not touch the watch either
    hub.notify_write(commands.resolve(same), same, b"+OK\r\n")
    assert group.dirty  # a write that may leave the value as it was still counts
    assert hub.watches.dirtied_locally == 1
    del group
    assert not hub.has_waiters()  # the session dropped it: the registry forgets it
