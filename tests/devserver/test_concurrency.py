"""Concurrent requests: transactions never interfere, pipelines stay in order, latency is async."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import redis
import trio

from tests.conftest import DevServerHandle

CONCURRENT = 50


async def test_concurrent_multi_exec_are_atomic_and_independent(
    devserver: DevServerHandle, flush_redis: redis.Redis
) -> None:
    results: list[list[dict]] = []
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=CONCURRENT)

    async with httpx.AsyncClient(
        base_url=devserver.url, headers=devserver.headers, limits=limits, timeout=20
    ) as client:

        async def transaction(i: int) -> None:
            response = await client.post(
                "/multi-exec",
                json=[
                    ["INCR", "counter"],
                    ["GET", "counter"],
                    ["RPUSH", "order", str(i)],
                    ["LINDEX", "order", -1],
                ],
            )
            statuses.append(response.status_code)
            results.append(response.json())

        async with trio.open_nursery() as nursery:
            for i in range(CONCURRENT):
                nursery.start_soon(transaction, i)

    assert statuses == [200] * CONCURRENT
    counters = []
    for incr, get, rpush, lindex in results:
        # Inside one transaction nothing else ran: GET sees exactly its own INCR, and the
        # list tail is its own element.
        assert get == {"result": str(incr["result"])}
        assert rpush["result"] == incr["result"]
        counters.append(incr["result"])
        assert lindex["result"] is not None
    assert sorted(counters) == list(range(1, CONCURRENT + 1))
    assert flush_redis.get("counter") == str(CONCURRENT).encode()


async def test_concurrent_failing_and_passing_transactions(
    devserver: DevServerHandle, flush_redis: redis.Redis
) -> None:
    """EXECABORTs interleaved with good transactions leave no connection inside a MULTI."""
    outcomes: list[tuple[bool, int, object]] = []
    async with httpx.AsyncClient(
        base_url=devserver.url, headers=devserver.headers, timeout=20
    ) as client:

        async def run(i: int) -> None:
            bad = i % 3 == 0
            commands = [["INCR", "n"], ["NOSUCH"] if bad else ["GET", "n"]]
            response = await client.post("/multi-exec", json=commands)
            outcomes.append((bad, response.status_code, response.json()))

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(run, i)
    for bad, status, body in outcomes:
        if bad:
            assert status == 400
            assert body["error"].startswith("EXECABORT")  # type: ignore[index]
        else:
            assert status == 200
            incr, get = body  # type: ignore[misc]
            assert get == {"result": str(incr["result"])}
    assert flush_redis.get("n") == b"20"


async def test_concurrent_pipelines_keep_their_own_order(
    devserver: DevServerHandle, flush_redis: redis.Redis
) -> None:
    async with httpx.AsyncClient(
        base_url=devserver.url, headers=devserver.headers, timeout=20
    ) as client:

        async def pipeline(i: int) -> None:
            commands = [["RPUSH", f"list:{i}", str(j)] for j in range(50)]
            commands.append(["LRANGE", f"list:{i}", 0, -1])
            response = await client.post("/pipeline", json=commands)
            items = response.json()
            assert [item["result"] for item in items[:50]] == list(range(1, 51))
            assert items[50] == {"result": [str(j) for j in range(50)]}

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(pipeline, i)


async def test_latency_is_added_without_serializing_requests(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory(latency_ms=200)
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        started = time.monotonic()
        response = await client.get("/ping")
        assert response.json() == {"result": "PONG"}
        assert time.monotonic() - started >= 0.2
        # Errors are delayed too.
        started = time.monotonic()
        assert (await client.get("/ping", headers={"Authorization": "x"})).status_code == 401
        assert time.monotonic() - started >= 0.2
        # Ten concurrent requests each take at least the delay (lower bounds only).
        durations: list[float] = []

        async def timed() -> None:
            t0 = time.monotonic()
            await client.post("/pipeline", json=[["PING"]])
            durations.append(time.monotonic() - t0)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(timed)
        assert len(durations) == 10
        assert min(durations) >= 0.2
