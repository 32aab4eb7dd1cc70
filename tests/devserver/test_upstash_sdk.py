"""The official `upstash-redis` Python SDK (sync and async) as a real client of the devserver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import trio
from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from tests.conftest import DevServerHandle


@pytest.fixture
def sdk(devserver: DevServerHandle, flush_redis: redis.Redis) -> Iterator[Redis]:
    client = Redis(url=devserver.url, token=devserver.token, allow_telemetry=False, rest_retries=0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def async_sdk(
    devserver: DevServerHandle, flush_redis: redis.Redis
) -> AsyncIterator[AsyncRedis]:
    # rest_retries=0: the SDK sleeps with asyncio between retries, and these tests run on trio.
    client = AsyncRedis(
        url=devserver.url, token=devserver.token, allow_telemetry=False, rest_retries=0
    )
    try:
        yield client
    finally:
        await client.close()


def test_sync_strings_and_numbers(sdk: Redis) -> None:
    assert sdk.set("foo", "bar") is True
    assert sdk.get("foo") == "bar"
    assert sdk.set("foo", "baz", nx=True) is False
    assert sdk.set("n", 10, ex=100) is True
    assert sdk.incr("n") == 11
    assert sdk.incrbyfloat("f", 1.5) == 1.5
    assert sdk.ttl("n") > 0
    assert sdk.mget("foo", "missing") == ["bar", None]
    assert sdk.ping() == "PONG"
    assert sdk.echo("héllo ✓") == "héllo ✓"
    assert sdk.get("missing") is None
    assert sdk.type("foo") == "string"


def test_sync_hash_list_set_zset(sdk: Redis) -> None:
    assert sdk.hset("h", values={"a": "1", "b": "2"}) == 2
    assert sdk.hgetall("h") == {"a": "1", "b": "2"}
    assert sdk.rpush("l", "x", "y", "z") == 3
    assert sdk.lrange("l", 0, -1) == ["x", "y", "z"]
    assert sdk.sadd("s", "m1", "m2") == 2
    assert sorted(sdk.smembers("s")) == ["m1", "m2"]
    assert sdk.zadd("z", {"a": 1.5, "b": 3}) == 2
    assert sdk.zrange("z", 0, -1, withscores=True) == [("a", 1.5), ("b", 3.0)]
    assert sdk.zscore("z", "b") == 3.0
    assert sdk.geoadd("geo", (13.361389, 38.115556, "Palermo")) == 1


def test_sync_eval_and_keys(sdk: Redis) -> None:
    assert sdk.eval("return ARGV[1]", args=["x"]) == "x"
    sdk.set("k1", "v")
    assert sdk.keys("k*") == ["k1"]
    assert sdk.scan(0, match="k*") == (0, ["k1"])
    assert sdk.dbsize() == 1


def test_sync_errors_raise(sdk: Redis) -> None:
    sdk.set("s", "text")
    with pytest.raises(UpstashError, match="not an integer"):
        sdk.incr("s")


def test_sync_pipeline_and_multi(sdk: Redis) -> None:
    pipe = sdk.pipeline()
    pipe.set("a", "1")
    pipe.incr("a")
    pipe.get("a")
    assert pipe.exec() == [True, 2, "2"]
    tx = sdk.multi()
    tx.incr("a")
    tx.hset("h", "f", "v")
    tx.hget("h", "f")
    assert tx.exec() == [3, 1, "v"]


def test_sync_read_your_writes_token_changes(sdk: Redis) -> None:
    sdk.set("a", "1")
    first = sdk._sync_token
    sdk.get("a")
    second = sdk._sync_token
    pipe = sdk.pipeline()
    pipe.get("a")
    pipe.exec()
    assert first and second and sdk._sync_token
    assert len({first, second, sdk._sync_token}) == 3


def test_sync_unicode_round_trip(sdk: Redis, flush_redis: redis.Redis) -> None:
    value = 'emoji 🎉, accents é, CJK 漢字, newline\nand "quotes"'
    assert sdk.set("ü-key 🎉", value) is True
    assert sdk.get("ü-key 🎉") == value
    assert flush_redis.get("ü-key 🎉") == value.encode()


def test_sync_readonly_token(devserver: DevServerHandle, flush_redis: redis.Redis) -> None:
    flush_redis.set("k", "v")
    with Redis(
        url=devserver.url,
        token=devserver.readonly_token,
        allow_telemetry=False,
        rest_retries=0,
    ) as ro:
        assert ro.get("k") == "v"
        with pytest.raises(UpstashError, match="NOPERM"):
            ro.set("k", "x")
        with pytest.raises(UpstashError, match="NOPERM"):
            ro.keys("*")
    assert flush_redis.get("k") == b"v"


def test_sync_without_base64(devserver: DevServerHandle, flush_redis: redis.Redis) -> None:
    with Redis(
        url=devserver.url,
        token=devserver.token,
        rest_encoding=None,
        allow_telemetry=False,
        rest_retries=0,
    ) as plain:
        assert plain.set("k", "välue") is True
        assert plain.get("k") == "välue"


async def test_async_client(async_sdk: AsyncRedis) -> None:
    assert await async_sdk.set("foo", "bar") is True
    assert await async_sdk.get("foo") == "bar"
    assert await async_sdk.incr("n") == 1
    assert await async_sdk.hset("h", "f", "v") == 1
    assert await async_sdk.hgetall("h") == {"f": "v"}
    pipe = async_sdk.pipeline()
    pipe.incr("n")
    pipe.get("n")
    assert await pipe.exec() == [2, "2"]
    tx = async_sdk.multi()
    tx.incr("n")
    tx.get("n")
    assert await tx.exec() == [3, "3"]
    with pytest.raises(UpstashError):
        await async_sdk.execute(["GET"])


async def test_async_concurrent_transactions(async_sdk: AsyncRedis) -> None:
    results: list[list] = []

    async def one() -> None:
        tx = async_sdk.multi()
        tx.incr("c")
        tx.get("c")
        results.append(await tx.exec())

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert sorted(incr for incr, _ in results) == list(range(1, 21))
    assert all(get == str(incr) for incr, get in results)
