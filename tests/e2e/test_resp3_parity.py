"""RESP3 parity: redis-py values through the bridge equal those from redis-server directly.

Each case runs its setup and then the command under test twice on the same redis-server:
once straight (redis-py, RESP3) and once through devserver + bridge (redis-py, RESP3), with a
FLUSHALL in between; the parsed Python values must be equal.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

Setup = list[tuple[Any, ...]]

CASES: list[tuple[str, Setup, tuple[Any, ...]]] = [
    ("get-missing", [], ("GET", "nope")),
    ("set-get", [("SET", "k", "v")], ("GET", "k")),
    ("mget", [("SET", "a", "1")], ("MGET", "a", "b")),
    ("incrbyfloat", [], ("INCRBYFLOAT", "f", "1.5")),
    ("hgetall", [("HSET", "h", "a", "1", "b", "2")], ("HGETALL", "h")),
    ("hgetall-empty", [], ("HGETALL", "none")),
    ("hrandfield", [("HSET", "h", "a", "1")], ("HRANDFIELD", "h", "1", "WITHVALUES")),
    ("hmget", [("HSET", "h", "a", "1")], ("HMGET", "h", "a", "x")),
    ("smembers", [("SADD", "s", "a", "b")], ("SMEMBERS", "s")),
    ("sinter", [("SADD", "s", "a", "b"), ("SADD", "t", "b")], ("SINTER", "s", "t")),
    ("sunion", [("SADD", "s", "a"), ("SADD", "t", "b")], ("SUNION", "s", "t")),
    ("sdiff", [("SADD", "s", "a", "b"), ("SADD", "t", "b")], ("SDIFF", "s", "t")),
    ("smismember", [("SADD", "s", "a")], ("SMISMEMBER", "s", "a", "b")),
    ("sismember", [("SADD", "s", "a")], ("SISMEMBER", "s", "a")),
    ("zscore", [("ZADD", "z", "1.5", "a")], ("ZSCORE", "z", "a")),
    ("zscore-missing", [], ("ZSCORE", "z", "a")),
    ("zmscore", [("ZADD", "z", "1", "a")], ("ZMSCORE", "z", "a", "b")),
    ("zincrby", [("ZADD", "z", "1", "a")], ("ZINCRBY", "z", "2", "a")),
    ("zadd-incr", [], ("ZADD", "z", "INCR", "3", "a")),
    ("zrange-ws", [("ZADD", "z", "1", "a", "2", "b")], ("ZRANGE", "z", "0", "-1", "WITHSCORES")),
    (
        "zrangebyscore-ws",
        [("ZADD", "z", "1", "a")],
        ("ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"),
    ),
    (
        "zrevrange-ws",
        [("ZADD", "z", "1", "a", "2", "b")],
        ("ZREVRANGE", "z", "0", "-1", "WITHSCORES"),
    ),
    ("zpopmin", [("ZADD", "z", "1", "a", "2", "b")], ("ZPOPMIN", "z")),
    ("zpopmax-count", [("ZADD", "z", "1", "a", "2", "b")], ("ZPOPMAX", "z", "2")),
    ("zrandmember-ws", [("ZADD", "z", "1", "a")], ("ZRANDMEMBER", "z", "1", "WITHSCORES")),
    (
        "zunion-ws",
        [("ZADD", "z", "1", "a"), ("ZADD", "y", "2", "a")],
        ("ZUNION", "2", "z", "y", "WITHSCORES"),
    ),
    ("zmpop", [("ZADD", "z", "1", "a")], ("ZMPOP", "1", "z", "MIN")),
    ("zrank", [("ZADD", "z", "1", "a")], ("ZRANK", "z", "a")),
    ("lpos", [("RPUSH", "l", "a", "b", "a")], ("LPOS", "l", "a", "COUNT", "0")),
    ("lmpop", [("RPUSH", "l", "a", "b")], ("LMPOP", "1", "l", "LEFT", "COUNT", "2")),
    ("lrange", [("RPUSH", "l", "a")], ("LRANGE", "l", "0", "-1")),
    ("geopos", [("GEOADD", "g", "13.361389", "38.115556", "P")], ("GEOPOS", "g", "P", "nope")),
    (
        "geodist",
        [("GEOADD", "g", "13.36", "38.11", "P", "15.08", "37.50", "C")],
        ("GEODIST", "g", "P", "C"),
    ),
    (
        "geosearch-full",
        [("GEOADD", "g", "13.36", "38.11", "P")],
        (
            "GEOSEARCH",
            "g",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "300",
            "km",
            "WITHDIST",
            "WITHCOORD",
            "WITHHASH",
        ),
    ),
    ("xrange", [("XADD", "st", "1-1", "f", "v")], ("XRANGE", "st", "-", "+")),
    ("xread", [("XADD", "st", "1-1", "f", "v")], ("XREAD", "COUNT", "5", "STREAMS", "st", "0")),
    ("xread-empty", [], ("XREAD", "STREAMS", "st", "0")),
    ("xinfo-stream", [("XADD", "st", "1-1", "f", "v")], ("XINFO", "STREAM", "st")),
    (
        "xinfo-groups",
        [("XADD", "st", "1-1", "f", "v"), ("XGROUP", "CREATE", "st", "g", "0")],
        ("XINFO", "GROUPS", "st"),
    ),
    (
        "xpending",
        [
            ("XADD", "st", "1-1", "f", "v"),
            ("XGROUP", "CREATE", "st", "g", "0"),
            ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "st", ">"),
        ],
        ("XPENDING", "st", "g"),
    ),
    (
        "xautoclaim",
        [
            ("XADD", "st", "1-1", "f", "v"),
            ("XGROUP", "CREATE", "st", "g", "0"),
            ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "st", ">"),
        ],
        ("XAUTOCLAIM", "st", "g", "c2", "0", "0"),
    ),
    ("config-get", [], ("CONFIG", "GET", "save")),
    ("eval-mixed", [], ("EVAL", "return {1, 'two', false, {3}}", "0")),
    ("eval-status", [], ("EVAL", "return redis.call('SET', 'x', 'y')", "0")),
    ("type", [("SET", "k", "v")], ("TYPE", "k")),
    ("ttl", [], ("TTL", "k")),
    ("exists", [("SET", "k", "v")], ("EXISTS", "k", "z")),
    ("pfcount", [("PFADD", "p", "a", "b")], ("PFCOUNT", "p")),
    ("bitfield", [], ("BITFIELD", "bf", "INCRBY", "u8", "0", "5", "GET", "u8", "0")),
    ("lcs-idx", [("SET", "a", "ohmytext"), ("SET", "b", "mynewtext")], ("LCS", "a", "b", "IDX")),
    ("object-encoding", [("SET", "k", "12")], ("OBJECT", "ENCODING", "k")),
    ("scan", [("SET", "k", "v")], ("SCAN", "0")),
    ("hscan", [("HSET", "h", "a", "1")], ("HSCAN", "h", "0")),
    ("zscan", [("ZADD", "z", "1", "a")], ("ZSCAN", "z", "0")),
    ("srandmember", [("SADD", "s", "a")], ("SRANDMEMBER", "s", "1")),
    ("spop-count", [("SADD", "s", "a")], ("SPOP", "s", "5")),
    ("ping", [], ("PING",)),
    ("echo", [], ("ECHO", "hi")),
    ("dbsize", [("SET", "k", "v")], ("DBSIZE",)),
    ("wrongtype", [("SET", "k", "v")], ("LPUSH", "k", "x")),
    # Introspection and server commands (issue 15; more in test_introspection_parity.py).
    ("config-get-notify", [], ("CONFIG", "GET", "notify-keyspace-events")),
    ("command-info-sub", [], ("COMMAND", "INFO", "config|get", "get")),
    ("pubsub-numsub", [], ("PUBSUB", "NUMSUB", "parity:none")),
    ("pubsub-channels", [], ("PUBSUB", "CHANNELS", "parity:*")),
    ("wait", [("SET", "k", "v")], ("WAIT", "0", "0")),
    ("client-unpause", [], ("CLIENT", "UNPAUSE")),
]


def run_case(client: redis.Redis, setup: Setup, command: tuple[Any, ...]) -> Any:
    for step in setup:
        client.execute_command(*step)
    try:
        return ("ok", client.execute_command(*command))
    except redis.ResponseError as exc:
        return ("error", type(exc).__name__, str(exc))


@pytest.mark.parametrize(("name", "setup", "command"), CASES, ids=[c[0] for c in CASES])
def test_bridge_equals_direct_in_resp3(
    bridge, redis_server, name: str, setup: Setup, command: tuple
) -> None:
    direct = redis.Redis.from_url(redis_server.url, protocol=3)
    through = bridge.client(protocol=3)
    try:
        direct.flushall()
        expected = run_case(direct, setup, command)
        direct.flushall()
        got = run_case(through, setup, command)
    finally:
        direct.close()
    assert got == expected


def test_pipeline_and_transaction_in_resp3(bridge, redis_server) -> None:
    direct = redis.Redis.from_url(redis_server.url, protocol=3)
    through = bridge.client(protocol=3)

    def scenario(client: redis.Redis) -> list[Any]:
        pipe = client.pipeline(transaction=True)
        pipe.hset("h", mapping={"a": "1"}).hgetall("h").zadd("z", {"m": 1.5}).zscore("z", "m")
        pipe.smembers("nothing").get("missing")
        first = pipe.execute()
        pipe = client.pipeline(transaction=False)
        pipe.zrange("z", 0, -1, withscores=True).hgetall("h").incrbyfloat("f", 0.5)
        return first + pipe.execute()

    direct.flushall()
    expected = scenario(direct)
    direct.flushall()
    assert scenario(through) == expected
    direct.close()


def test_blocking_commands_in_a_transaction_in_resp3(bridge, redis_server) -> None:
    """Inside MULTI blocking commands run at once (nil or the element), shaped as Redis."""
    direct = redis.Redis.from_url(redis_server.url, protocol=3)
    through = bridge.client(protocol=3)

    def scenario(client: redis.Redis) -> list[Any]:
        client.rpush("l", "a")
        client.zadd("z", {"m": 1.5})
        pipe = client.pipeline(transaction=True)
        pipe.blpop(["l"], 0).blpop(["l"], 0).bzpopmin(["z"], 0).bzpopmax(["z"], 0)
        pipe.blmove("nothing", "d", 0).config_get("notify-keyspace-events")
        return pipe.execute()

    direct.flushall()
    expected = scenario(direct)
    direct.flushall()
    assert scenario(through) == expected
    direct.close()


def test_hello_3_reply_matches_redis_shape(bridge) -> None:
    client = bridge.client(protocol=3)
    reply = client.execute_command("HELLO", "3")
    assert reply[b"proto"] == 3 and reply[b"server"] == b"redis" and b"version" in reply
