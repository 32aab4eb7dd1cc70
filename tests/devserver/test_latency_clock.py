"""The devserver's latency clock: responses leave at arrival + latency, never sooner.

Unit tests of `LatencyClock` check ordering and bookkeeping, never how late a wake-up is;
the end-to-end test checks lower bounds only (a response before the latency is a bug).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import httpx
import pytest
import trio
import trio.testing

from bridge.devserver import latency_clock
from bridge.devserver.latency_clock import LatencyClock
from tests.conftest import DevServerHandle

#: Offsets (ms) of the sleepers' deadlines, registered out of order on purpose.
OFFSETS_MS = (60, 30, 70, 40, 80, 50)
#: Upper bound for anything a test waits for (a failure, not a timing assertion).
WAIT_S = 10.0
LATENCY_MS = 60


async def _sleepers_wake_in_order(clock: LatencyClock) -> list[float]:
    """Run one sleeper per offset; each checks, as it wakes, that no earlier one still waits."""
    woken: list[float] = []

    async def sleeper(deadline: float) -> None:
        await clock.sleep_until(deadline)
        assert time.monotonic() >= deadline
        assert clock.next_deadline is None or clock.next_deadline > deadline
        woken.append(deadline)

    base = time.monotonic()
    deadlines = [base + ms / 1000 for ms in OFFSETS_MS]
    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            for deadline in deadlines:
                nursery.start_soon(sleeper, deadline)
            await trio.testing.wait_all_tasks_blocked()
            if clock.precise:  # armed for the earliest, whatever the order they came in
                assert clock.armed_for == clock.next_deadline
    assert sorted(woken) == sorted(deadlines)
    assert clock.pending == 0
    return woken


async def test_sleepers_wake_in_deadline_order() -> None:
    clock = LatencyClock()
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        if sys.platform == "linux":
            assert clock.precise
        await _sleepers_wake_in_order(clock)
        # The clock is reusable once idle (the timerfd re-arms from nothing pending).
        await _sleepers_wake_in_order(clock)
        nursery.cancel_scope.cancel()
    assert not clock.precise  # stopped: the timerfd is closed


async def test_past_deadline_returns_without_waiting() -> None:
    clock = LatencyClock()
    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        with trio.testing.assert_no_checkpoints():
            await clock.sleep_until(time.monotonic() - 1.0)
            await clock.sleep_until(time.monotonic())
        assert clock.pending == 0
        nursery.cancel_scope.cancel()


async def test_cancelled_sleepers_are_removed_and_others_still_wake() -> None:
    clock = LatencyClock()
    outcomes: dict[str, str] = {}

    async def sleeper(name: str, deadline: float, scope: trio.CancelScope) -> None:
        with scope:
            await clock.sleep_until(deadline)
            assert time.monotonic() >= deadline
            outcomes[name] = "woke"
            return
        outcomes[name] = "cancelled"

    async with trio.open_nursery() as nursery:
        await nursery.start(clock.run)
        base = time.monotonic()
        scopes = {name: trio.CancelScope() for name in ("first", "middle", "last")}
        with trio.fail_after(WAIT_S):
            async with trio.open_nursery() as sleepers:
                for i, name in enumerate(scopes):
                    sleepers.start_soon(sleeper, name, base + 0.05 * (i + 1), scopes[name])
                await trio.testing.wait_all_tasks_blocked()
                assert clock.pending == 3
                # The first is the one the timerfd is armed for: its expiry finds nothing due.
                scopes["first"].cancel()
                scopes["middle"].cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert clock.pending == 1
                assert clock.next_deadline == base + 0.15
        nursery.cancel_scope.cancel()
    assert outcomes == {"first": "cancelled", "middle": "cancelled", "last": "woke"}


async def test_sleepers_outlive_a_stopped_clock_without_waking_early() -> None:
    clock = LatencyClock()
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as clock_nursery:
            await clock_nursery.start(clock.run)
            deadline = time.monotonic() + 0.05
            done = trio.Event()

            async def sleeper() -> None:
                await clock.sleep_until(deadline)
                assert time.monotonic() >= deadline
                done.set()

            outer.start_soon(sleeper)
            await trio.testing.wait_all_tasks_blocked()
            assert clock.pending == 1
            clock_nursery.cancel_scope.cancel()
        assert clock.pending == 0
        assert not clock.precise
        with trio.fail_after(WAIT_S):
            await done.wait()


async def test_fallback_without_timerfd(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_timerfd() -> latency_clock._TimerFd:
        raise OSError(38, "timerfd_create: Function not implemented")

    monkeypatch.setattr(latency_clock, "_open_timerfd", no_timerfd)
    clock = LatencyClock()
    with caplog.at_level(logging.DEBUG, logger="bridge.devserver"):
        async with trio.open_nursery() as nursery:
            await nursery.start(clock.run)
            assert not clock.precise
            await _sleepers_wake_in_order(clock)
            with trio.testing.assert_no_checkpoints():
                await clock.sleep_until(time.monotonic() - 1.0)
    fallback_lines = [r for r in caplog.records if "no timerfd" in r.getMessage()]
    assert len(fallback_lines) == 1
    assert fallback_lines[0].levelno == logging.DEBUG


async def test_sleep_until_without_a_running_clock_uses_trio() -> None:
    clock = LatencyClock()
    assert not clock.precise
    await _sleepers_wake_in_order(clock)


# -- end to end: a real devserver with --latency-ms ------------------------------------------


async def test_devserver_answers_correctly_and_never_before_the_latency(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory(latency_ms=LATENCY_MS)
    latency_s = LATENCY_MS / 1000

    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=WAIT_S
    ) as client:

        async def timed(method: str, url: str, **kwargs: object) -> httpx.Response:
            started = time.monotonic()
            response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
            assert time.monotonic() - started >= latency_s, (method, url)
            return response

        assert (await timed("POST", "/set/latency:k/v1")).json() == {"result": "OK"}
        assert (await timed("GET", "/get/latency:k")).json() == {"result": "v1"}
        pipeline = await timed(
            "POST", "/pipeline", json=[["INCR", "latency:n"], ["GET", "latency:k"]]
        )
        assert pipeline.json() == [{"result": 1}, {"result": "v1"}]
        transaction = await timed("POST", "/multi-exec", json=[["INCR", "latency:n"]])
        assert transaction.json() == [{"result": 2}]
        resp2 = await timed(
            "POST",
            "/pipeline",
            json=[["GET", "latency:k"]],
            headers={"Upstash-Response-Format": "resp2"},
        )
        assert resp2.content == b"$2\r\nv1\r\n"
        # Errors wait too: a 400 from Redis and a 401 answered before any Redis round trip.
        wrong_type = await timed("POST", "/lpush/latency:k/x")
        assert wrong_type.status_code == 400
        assert wrong_type.json()["error"].startswith("WRONGTYPE")
        unauthorized = await timed("GET", "/get/latency:k", headers={"Authorization": "Bearer no"})
        assert unauthorized.status_code == 401
        # Concurrent requests each wait their own latency (not serialised, not early).
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(timed, "GET", f"/echo/{i}")
        # The SSE stream opens no sooner than the latency either.
        started = time.monotonic()
        async with client.stream(
            "GET", "/subscribe/latency:chat", headers={"Accept": "text/event-stream"}
        ) as stream:
            assert time.monotonic() - started >= latency_s
            assert stream.status_code == 200
            with trio.fail_after(WAIT_S):
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        assert line == "data: subscribe,latency:chat,1"
                        break
        assert (await timed("POST", "/del/latency:k/latency:n")).json() == {"result": 2}
