"""Blocking commands and WATCH emulated by the bridge, against the real devserver and Redis."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis


def direct_client(redis_server: Any, **kw: Any) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url, **kw)


def later(delay: float, action: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), action()))
    thread.start()
    return thread


def test_blpop_returns_at_once_and_first_nonempty_key_wins(r: redis.Redis) -> None:
    r.rpush("b", "b1", "b2")
    r.rpush("c", "c1")
    assert r.blpop(["a", "b", "c"], timeout=1) == (b"b", b"b1")
    assert r.brpop(["a", "c", "b"], timeout=1) == (b"c", b"c1")
    assert r.lrange("b", 0, -1) == [b"b2"]


def test_blpop_times_out_with_nil(r: redis.Redis) -> None:
    started = time.monotonic()
    assert r.blpop(["empty"], timeout=0.5) is None
    assert time.monotonic() - started >= 0.45


def test_external_producer_is_picked_up_by_polling(r: redis.Redis, redis_server: Any) -> None:
    direct = direct_client(redis_server)
    thread = later(0.3, lambda: direct.rpush("jobs", "external"))
    assert r.blpop(["jobs"], timeout=5) == (b"jobs", b"external")
    thread.join()
    direct.close()


def test_local_write_wakes_the_waiter_at_once(bridge_factory, devserver, redis_server) -> None:
    # With polls 3 s apart, only the local wake-up can deliver the element within 2 s.
    bridge = bridge_factory(
        devserver.url, devserver.token,
        "--blocking-poll-min-ms", "3000", "--blocking-poll-max-ms", "3000",
    )  # fmt: skip
    direct_client(redis_server).delete("wake")
    waiter = bridge.client()
    producer = bridge.client()
    thread = later(0.3, lambda: producer.lpush("wake", "now"))
    started = time.monotonic()
    assert waiter.blpop(["wake"], timeout=10) == (b"wake", b"now")
    assert time.monotonic() - started < 2.0
    thread.join()


def test_waiters_on_one_key_are_served_in_arrival_order(bridge, r: redis.Redis) -> None:
    results: dict[str, Any] = {}

    def wait(name: str) -> None:
        results[name] = bridge.client().blpop(["fifo"], timeout=10)

    first = threading.Thread(target=wait, args=("first",))
    first.start()
    time.sleep(0.3)
    second = threading.Thread(target=wait, args=("second",))
    second.start()
    time.sleep(0.3)
    r.rpush("fifo", "one", "two")
    first.join(10)
    second.join(10)
    assert results == {"first": (b"fifo", b"one"), "second": (b"fifo", b"two")}


def test_moves_and_sorted_set_pops(r: redis.Redis, redis_server: Any) -> None:
    r.rpush("src", "x", "y")
    assert r.brpoplpush("src", "dst", timeout=1) == b"y"
    assert r.blmove("src", "dst", 1, "LEFT", "LEFT") == b"x"
    assert r.lrange("dst", 0, -1) == [b"x", b"y"]
    assert r.blmove("nothing", "dst", 0.3, "LEFT", "LEFT") is None
    r.zadd("zs", {"a": 1, "b": 2})
    assert r.bzpopmin(["none", "zs"], timeout=1) == (b"zs", b"a", 1.0)
    assert r.bzpopmax(["zs"], timeout=1) == (b"zs", b"b", 2.0)
    assert r.bzpopmin(["zs"], timeout=0.3) is None
    r.rpush("m", "1", "2", "3")
    assert r.blmpop(1, 2, "x", "m", direction="LEFT", count=2) == [b"m", [b"1", b"2"]]
    r.zadd("mz", {"p": 5})
    assert r.bzmpop(1, 1, ["mz"], min=True) in ([b"mz", [[b"p", 5.0]]], [b"mz", [[b"p", b"5"]]])


def test_replies_equal_direct_redis(bridge, redis_server: Any) -> None:
    for protocol in (2, 3):
        direct = direct_client(redis_server, protocol=protocol)
        through = bridge.client(protocol=protocol)
        outcomes = []
        for client in (direct, through):
            direct.flushall()
            direct.rpush("l", "a", "b")
            direct.zadd("z", {"m": 1.5})
            outcomes.append(
                [
                    client.blpop(["l"], timeout=1),
                    client.bzpopmin(["z"], timeout=1),
                    client.blpop(["nope"], timeout=0.2),
                    client.execute_command("BLMOVE", "l", "l2", "LEFT", "RIGHT", "0.2"),
                ]
            )
        assert outcomes[0] == outcomes[1], protocol
        direct.close()


def test_xread_block_with_dollar_sees_only_new_entries(r: redis.Redis, redis_server: Any) -> None:
    r.xadd("stream", {"old": "1"}, id="1-1")
    direct = direct_client(redis_server)
    thread = later(0.4, lambda: direct.xadd("stream", {"new": "2"}, id="2-1"))
    got = r.xread({"stream": "$"}, block=5000)
    thread.join()
    assert got == [[b"stream", [(b"2-1", {b"new": b"2"})]]]
    assert r.xread({"stream": "$"}, block=200) is None or r.xread({"stream": "$"}, block=200) == []
    direct.close()


def test_xreadgroup_block(r: redis.Redis, redis_server: Any) -> None:
    r.xgroup_create("gs", "grp", id="$", mkstream=True)
    direct = direct_client(redis_server)
    thread = later(0.3, lambda: direct.xadd("gs", {"f": "v"}, id="5-1"))
    got = r.xreadgroup("grp", "c1", {"gs": ">"}, block=5000, count=1)
    thread.join()
    assert got == [[b"gs", [(b"5-1", {b"f": b"v"})]]]
    direct.close()


def test_blocking_syntax_errors_are_immediate(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="timeout is negative"):
        r.execute_command("BLPOP", "q", "-1")
    with pytest.raises(redis.ResponseError, match="timeout is not a float"):
        r.execute_command("BLPOP", "q", "soon")
    r.set("str", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.blpop(["str"], timeout=1)


def test_client_gone_while_poll_in_flight_loses_nothing(
    bridge_factory, devserver_factory, redis_server
) -> None:
    """The poll pops the element, but its client has disconnected: it must be pushed back."""
    dev = devserver_factory(latency_ms=400)
    bridge = bridge_factory(dev.url, dev.token)
    direct = redis.Redis.from_url(dev.redis_url)
    direct.rpush("precious", "e1", "e2")
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as sock:
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$8\r\nprecious\r\n$1\r\n0\r\n")
        time.sleep(0.15)  # the LMPOP is on the wire; its reply comes in ~400 ms
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and direct.llen("precious") != 2:
        time.sleep(0.05)
    assert direct.lrange("precious", 0, -1) == [b"e1", b"e2"]
    direct.close()


def test_idle_client_gone_stops_polling(bridge_factory, devserver) -> None:
    bridge = bridge_factory(devserver.url, devserver.token, "--blocking-poll-max-ms", "100")
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as sock:
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nidleq\r\n$1\r\n0\r\n")
        time.sleep(0.3)
    time.sleep(0.3)
    devserver.reset_stats()
    time.sleep(0.5)
    assert devserver.stats()["commands"] == 0


# --- WATCH -----------------------------------------------------------------------------------


def test_watch_unchanged_key_executes_with_types_kept(r: redis.Redis) -> None:
    r.set("w", "1")
    with r.pipeline() as pipe:
        pipe.watch("w")
        assert pipe.get("w") == b"1"
        pipe.multi()
        pipe.incr("w").get("missing").mget("w", "missing").lpush("w", "x").set("w2", "v")
        results = pipe.execute(raise_on_error=False)
    assert results[:3] == [2, None, [b"2", None]]
    assert isinstance(results[3], redis.ResponseError) and "WRONGTYPE" in str(results[3])
    assert results[4] is True


def test_watch_detects_a_concurrent_change(r: redis.Redis, redis_server: Any) -> None:
    r.set("acct", "100")
    direct = direct_client(redis_server)
    with r.pipeline() as pipe:
        pipe.watch("acct")
        direct.set("acct", "50")  # another client changes the key
        pipe.multi()
        pipe.set("acct", "0")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("acct") == b"50"
    with r.pipeline() as pipe:  # also a change of expiry only
        pipe.watch("acct")
        direct.expire("acct", 100)
        pipe.multi()
        pipe.set("acct", "1")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    direct.close()


def test_transaction_helper_retries_until_consistent(bridge, r: redis.Redis) -> None:
    r.set("counter", "0")
    errors: list[BaseException] = []

    def add(times: int) -> None:
        client = bridge.client()
        try:
            for _ in range(times):

                def step(pipe: redis.client.Pipeline) -> None:
                    value = int(pipe.get("counter"))
                    pipe.multi()
                    pipe.set("counter", value + 1)

                client.transaction(step, "counter")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(10,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert r.get("counter") == b"50"  # no lost update despite the read-modify-write races


def test_binary_arguments_inside_multi(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.set(b"bin\xff", b"\x00\xfe").get(b"bin\xff")
    assert pipe.execute() == [True, b"\x00\xfe"]


def test_a_script_writing_the_key_wakes_the_waiter(bridge_factory, devserver, redis_server) -> None:
    bridge = bridge_factory(
        devserver.url, devserver.token,
        "--blocking-poll-min-ms", "3000", "--blocking-poll-max-ms", "3000",
    )  # fmt: skip
    direct_client(redis_server).delete("scripted")
    waiter = bridge.client()
    producer = bridge.client()
    push = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
    thread = later(0.3, lambda: producer.eval(push, 1, "scripted", "job"))
    started = time.monotonic()
    assert waiter.blpop(["scripted"], timeout=10) == (b"scripted", b"job")
    assert time.monotonic() - started < 2.0
    thread.join()
