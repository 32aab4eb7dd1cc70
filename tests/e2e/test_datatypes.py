"""Every data type through the bridge with redis-py: RESP2 and RESP3, hiredis and pure-Python
parsers (redis-py 8 unifies reply shapes across protocols, so one set of assertions serves)."""

from __future__ import annotations

import pytest
import redis
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

PARSERS = [
    (2, _HiredisParser),
    (2, _RESP2Parser),
    (3, _HiredisParser),
    (3, _RESP3Parser),
]


@pytest.fixture(
    params=PARSERS, ids=["resp2-hiredis", "resp2-python", "resp3-hiredis", "resp3-python"]
)
def rc(request: pytest.FixtureRequest, bridge, r) -> redis.Redis:
    """A client with each protocol and parser, on the flushed database prepared by `r`."""
    protocol, parser = request.param
    return bridge.pool_client(parser_class=parser, protocol=protocol)


def test_strings(rc: redis.Redis) -> None:
    assert rc.set("s", "v") is True
    assert rc.get("s") == b"v"
    assert rc.set("s", "w", nx=True) is None
    assert rc.set("ttl", "x", ex=100) is True
    assert 0 < rc.ttl("ttl") <= 100
    assert rc.incr("n") == 1
    assert rc.incrby("n", 41) == 42
    assert rc.incrbyfloat("f", 1.5) == 1.5
    assert rc.append("s", "xyz") == 4
    assert rc.getrange("s", 1, 2) == b"xy"
    assert rc.mset({"a": "1", "b": "2"}) is True
    assert rc.mget("a", "b", "missing") == [b"1", b"2", None]
    assert rc.strlen("s") == 4
    assert rc.getdel("a") == b"1"
    assert rc.exists("a", "b") == 1
    assert rc.type("b") == b"string"
    assert rc.delete("b", "s") == 2


def test_bitmaps(rc: redis.Redis) -> None:
    assert rc.setbit("bm", 7, 1) == 0
    assert rc.getbit("bm", 7) == 1
    assert rc.bitcount("bm") == 1
    assert rc.bitpos("bm", 1) == 7
    rc.set("x", b"\xff")
    assert rc.bitop("NOT", "y", "x") == 1
    assert rc.get("y") == b"\x00"


def test_hashes(rc: redis.Redis) -> None:
    assert rc.hset("h", mapping={"f1": "v1", "f2": "v2"}) == 2
    assert rc.hget("h", "f1") == b"v1"
    assert rc.hgetall("h") == {b"f1": b"v1", b"f2": b"v2"}
    assert rc.hincrby("h", "n", 5) == 5
    assert sorted(rc.hkeys("h")) == [b"f1", b"f2", b"n"]
    assert rc.hlen("h") == 3
    assert rc.hexists("h", "nope") is False
    assert rc.hdel("h", "f1") == 1
    cursor, data = rc.hscan("h")
    assert cursor == 0 and data[b"f2"] == b"v2"


def test_lists(rc: redis.Redis) -> None:
    assert rc.rpush("l", "a", "b", "c") == 3
    assert rc.lpush("l", "z") == 4
    assert rc.lrange("l", 0, -1) == [b"z", b"a", b"b", b"c"]
    assert rc.lpop("l") == b"z"
    assert rc.rpop("l", 2) == [b"c", b"b"]
    assert rc.llen("l") == 1
    assert rc.lmove("l", "l2", "LEFT", "RIGHT") == b"a"
    assert rc.lpos("l2", "a") == 0
    assert rc.lpop("empty") is None


def test_sets(rc: redis.Redis) -> None:
    assert rc.sadd("s1", "a", "b", "c") == 3
    assert rc.sadd("s2", "b", "c", "d") == 3
    assert rc.smembers("s1") == {b"a", b"b", b"c"}
    assert rc.sinter("s1", "s2") == {b"b", b"c"}
    assert rc.sunion("s1", "s2") == {b"a", b"b", b"c", b"d"}
    assert rc.sismember("s1", "a") == 1
    assert rc.smismember("s1", ["a", "z"]) == [1, 0]
    assert rc.scard("s1") == 3
    assert rc.srem("s1", "a") == 1


def test_sorted_sets(rc: redis.Redis) -> None:
    assert rc.zadd("z", {"a": 1, "b": 2.5, "c": 3}) == 3
    assert rc.zscore("z", "b") == 2.5
    assert rc.zrange("z", 0, -1) == [b"a", b"b", b"c"]
    pairs = rc.zrange("z", 0, -1, withscores=True)  # tuples in RESP2, lists in RESP3
    assert [tuple(p) for p in pairs] == [(b"a", 1.0), (b"b", 2.5), (b"c", 3.0)]
    assert rc.zrangebyscore("z", 2, 3) == [b"b", b"c"]
    assert rc.zincrby("z", 1, "a") == 2.0
    assert rc.zrank("z", "c") == 2
    assert rc.zpopmin("z") in ([(b"a", 2.0)], [b"a", 2.0])  # RESP2 / RESP3, as with Redis
    assert rc.zcard("z") == 2
    assert rc.zmscore("z", ["b", "nope"]) == [2.5, None]


def test_geo(rc: redis.Redis) -> None:
    assert rc.geoadd("g", (13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania")) == 2
    dist = rc.geodist("g", "Palermo", "Catania", unit="km")
    assert dist is not None and 166 < dist < 167
    near = rc.geosearch("g", longitude=15, latitude=37, radius=200, unit="km")
    assert set(near) == {b"Palermo", b"Catania"}
    pos = rc.geopos("g", "Palermo")[0]
    assert pos is not None and abs(pos[0] - 13.361389) < 1e-4


def test_hyperloglog(rc: redis.Redis) -> None:
    assert rc.pfadd("hll", "a", "b", "c") == 1
    assert rc.pfcount("hll") == 3
    rc.pfadd("hll2", "c", "d")
    assert rc.pfmerge("hll3", "hll", "hll2") is True
    assert rc.pfcount("hll3") == 4


def test_streams(rc: redis.Redis) -> None:
    first = rc.xadd("st", {"f": "v1"})
    rc.xadd("st", {"f": "v2"})
    assert rc.xlen("st") == 2
    entries = rc.xrange("st")
    assert [e[1] for e in entries] == [{b"f": b"v1"}, {b"f": b"v2"}]
    assert rc.xgroup_create("st", "grp", id="0") is True
    got = rc.xreadgroup("grp", "c1", {"st": ">"}, count=1)
    # RESP2: [[stream, entries]]; RESP3 (a map): {stream: [entries]}
    entries = got[b"st"][0] if isinstance(got, dict) else got[0][1]
    assert entries[0][0] == first
    assert rc.xack("st", "grp", first) == 1
    read = rc.xread({"st": "0"}, count=5)
    assert (list(read) if isinstance(read, dict) else [read[0][0]]) == [b"st"]
    info = rc.xinfo_stream("st")
    assert info["length"] == 2


def test_scripting(rc: redis.Redis) -> None:
    assert rc.eval("return {1, 'two', redis.call('SET', KEYS[1], ARGV[1])}", 1, "k", "v") == [
        1,
        b"two",
        b"OK",
    ]
    sha = rc.script_load("return redis.call('GET', KEYS[1])")
    assert rc.evalsha(sha, 1, "k") == b"v"
    assert rc.script_exists(sha) == [True]
    incr = rc.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert incr(keys=["counter"], args=[5]) == 5
    with pytest.raises(redis.ResponseError, match="boom"):
        rc.eval("return redis.error_reply('ERR boom')", 0)


def test_keys_and_server(rc: redis.Redis) -> None:
    rc.mset({"k1": "1", "k2": "2"})
    assert sorted(rc.keys("k*")) == [b"k1", b"k2"]
    assert rc.dbsize() == 2
    assert rc.expire("k1", 100) is True
    assert rc.persist("k1") is True
    assert rc.rename("k2", "k3") is True
    _cursor, keys = rc.scan(0, match="k*", count=100)
    assert sorted(keys) == [b"k1", b"k3"]
    assert isinstance(rc.time()[0], int)


def test_binary_keys_and_values(rc: redis.Redis) -> None:
    key = b"bin\x00\xff\xfe/key %2F"
    value = bytes(range(256)) * 4
    assert rc.set(key, value) is True
    assert rc.get(key) == value
    assert rc.hset(b"h\xff", b"f\x00", b"\x80\x81") == 1
    assert rc.hgetall(b"h\xff") == {b"f\x00": b"\x80\x81"}
    assert rc.rpush(b"\xc3\x28", b"\xa0\xa1", b"ok") == 2
    assert rc.lrange(b"\xc3\x28", 0, -1) == [b"\xa0\xa1", b"ok"]


def test_one_megabyte_value(rc: redis.Redis) -> None:
    value = b"x" * (1024 * 1024 - 7) + b"\x00\xff end"
    assert rc.set("big", value) is True
    assert rc.get("big") == value
    assert rc.strlen("big") == len(value)


def test_pipeline_without_transaction(rc: redis.Redis) -> None:
    pipe = rc.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"p{i}", i)
    for i in range(500):
        pipe.get(f"p{i}")
    results = pipe.execute()
    assert results[:500] == [True] * 500
    assert results[500:] == [str(i).encode() for i in range(500)]


def test_pipeline_with_transaction(rc: redis.Redis) -> None:
    pipe = rc.pipeline(transaction=True)
    pipe.set("t", "1").incr("t").lpush("tl", "a").get("t").hset("th", "f", "v")
    assert pipe.execute() == [True, 2, 1, b"2", 1]


def test_transaction_runtime_error_is_per_command(rc: redis.Redis) -> None:
    rc.set("str", "x")
    pipe = rc.pipeline(transaction=True)
    pipe.incr("c").lpush("str", "oops").incr("c")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        pipe.execute()
    assert rc.get("c") == b"2"  # the other commands of the transaction ran
    pipe = rc.pipeline(transaction=True)
    pipe.incr("c").lpush("str", "oops").incr("c")
    results = pipe.execute(raise_on_error=False)
    assert results[0] == 3 and isinstance(results[1], redis.ResponseError) and results[2] == 4
