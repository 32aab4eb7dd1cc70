"""Transactions through the bridge byte for byte as redis-server 7.0 answers them directly.

Each script runs on a raw connection twice against the same redis-server: straight, and
through devserver + bridge (FLUSHALL before each); the exact reply bytes must be equal. The
error texts (EXECABORT, unknown command, WATCH inside MULTI, ...) are therefore Redis' own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess
from tests.core.test_commands import RawConnection
from tests.e2e.conftest import BridgeProcess

Script = list[tuple[str, ...]]

SCRIPTS: dict[str, Script] = {
    "unknown-command-aborts": [
        ("MULTI",),
        ("FOO", "bar", "baz"),
        ("SET", "a", "1"),
        ("EXEC",),
        ("EXISTS", "a"),
    ],
    "wrong-arity-aborts": [("MULTI",), ("GET",), ("SET", "a", "1"), ("EXEC",), ("EXISTS", "a")],
    "unknown-subcommand-aborts": [("MULTI",), ("CONFIG", "FOO"), ("EXEC",)],
    "scripts-inside-multi": [
        ("MULTI",),
        ("EVAL", "return ARGV[1]", "0", "x"),
        ("SCRIPT", "LOAD", "return 7"),
        ("EVALSHA", "59b6ab2fbe0ee4b25733de0f62e6cda4899ef8e9", "0"),
        ("INCR", "c"),
        ("EXEC",),
    ],
    "runtime-error-does-not-abort": [
        ("SET", "s", "x"),
        ("MULTI",),
        ("LPUSH", "s", "1"),
        ("SET", "a", "1"),
        ("EXEC",),
    ],
    "blocking-inside-multi-empty": [
        ("MULTI",),
        ("BLPOP", "k", "0"),
        ("BRPOP", "k", "1"),
        ("BLMOVE", "k", "d", "LEFT", "RIGHT", "0"),
        ("BRPOPLPUSH", "k", "d", "0"),
        ("BLMPOP", "0", "1", "k", "LEFT"),
        ("BZPOPMIN", "z", "0"),
        ("BZMPOP", "0", "1", "z", "MIN"),
        ("XREAD", "BLOCK", "0", "STREAMS", "s", "$"),
        ("XREAD", "BLOCK", "0", "STREAMS", "s", "0"),
        ("BLPOP", "k", "abc"),
        ("EXEC",),
    ],
    "blocking-inside-multi-with-data": [
        ("RPUSH", "k", "a", "b", "c"),
        ("ZADD", "z", "1", "m", "2", "n"),
        ("XADD", "s", "1-1", "f", "v"),
        ("MULTI",),
        ("BLPOP", "k", "0"),
        ("BZPOPMIN", "z", "0"),
        ("BLMOVE", "k", "d", "LEFT", "RIGHT", "0"),
        ("BLMPOP", "0", "1", "k", "LEFT", "COUNT", "5"),
        ("BZMPOP", "0", "1", "z", "MAX"),
        ("XREAD", "BLOCK", "0", "STREAMS", "s", "0"),
        ("EXEC",),
        ("LRANGE", "d", "0", "-1"),
    ],
    "watch-inside-multi": [("MULTI",), ("WATCH", "x"), ("SET", "a", "1"), ("EXEC",)],
    "nested-multi": [("MULTI",), ("MULTI",), ("EXEC",)],
    "exec-discard-without-multi": [("EXEC",), ("DISCARD",)],
    "empty-transaction": [("MULTI",), ("EXEC",)],
}


def _run(port: int, script: Script, protocol: int = 2) -> list[bytes]:
    conn = RawConnection(port, protocol)
    try:
        return [conn.call(*command) for command in script]
    finally:
        conn.close()


@pytest.fixture
def ports(bridge: BridgeProcess, redis_server: RedisServerProcess) -> Iterator[tuple[int, int]]:
    direct = redis.Redis.from_url(redis_server.url)

    def flush() -> None:
        direct.flushall()

    flush()
    yield redis_server.port, bridge.port
    flush()
    direct.close()


def _both(ports: tuple[int, int], script: Script, protocol: int = 2) -> tuple[list[bytes], ...]:
    direct_port, bridge_port = ports
    flusher = redis.Redis(port=direct_port)
    flusher.flushall()
    direct = _run(direct_port, script, protocol)
    flusher.flushall()
    through = _run(bridge_port, script, protocol)
    flusher.close()
    return direct, through


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("protocol", [2, 3])
def test_transaction_replies_equal_redis(ports: tuple[int, int], name: str, protocol: int) -> None:
    direct, through = _both(ports, SCRIPTS[name], protocol)
    assert through == direct


def test_unknown_command_in_multi_is_answered_at_queue_time(ports: tuple[int, int]) -> None:
    direct, through = _both(ports, [("MULTI",), ("NOSUCHCMD", "x"), ("EXEC",)])
    assert through == direct
    assert through[1].startswith(b"-ERR unknown command 'NOSUCHCMD'")
    assert through[2] == b"-EXECABORT Transaction discarded because of previous errors.\r\n"


@pytest.mark.parametrize("ender", [("RESET",), ("DISCARD",), ("EXEC",), ("UNWATCH",)])
def test_watch_is_cleared_by(ports: tuple[int, int], ender: tuple[str, ...]) -> None:
    """WATCH x, then RESET/DISCARD/EXEC/UNWATCH, another client writes x: a later
    transaction runs (the old watch no longer applies), as in Redis."""
    results = []
    for port in ports:
        redis.Redis(port=ports[0]).flushall()
        conn = RawConnection(port)
        other = redis.Redis(port=port)
        script: Script = [("WATCH", "x")]
        if ender in (("DISCARD",), ("EXEC",)):
            script.append(("MULTI",))
        script.append(ender)
        replies = [conn.call(*c) for c in script]
        other.set("x", "changed")
        replies += [conn.call("MULTI"), conn.call("SET", "y", "1"), conn.call("EXEC")]
        results.append(replies)
        assert replies[-1] == b"*1\r\n+OK\r\n", (port, replies)
        conn.close()
        other.close()
    assert results[0] == results[1]


def test_blocking_command_in_multi_does_not_wait(ports: tuple[int, int]) -> None:
    """BLPOP k 0 inside MULTI returns nil at once (it would block forever outside)."""
    conn = RawConnection(ports[1])
    try:
        assert conn.call("MULTI") == b"+OK\r\n"
        assert conn.call("BLPOP", "nothing", "0") == b"+QUEUED\r\n"
        assert conn.call("EXEC") == b"*1\r\n*-1\r\n"
    finally:
        conn.close()


@pytest.mark.parametrize("why", ["watch", "binary"])
def test_no_script_command_in_a_script_run_transaction_is_refused_whole(
    ports: tuple[int, int], why: str
) -> None:
    """With WATCH or binary arguments the bridge runs EXEC as one Lua script, where Redis
    refuses EVAL (and SCRIPT, FUNCTION, FCALL ...): EXEC is refused with an EXECABORT that
    says so, and nothing of the transaction runs (Redis would run it: a known difference)."""
    client = redis.Redis(port=ports[1])
    script = client.register_script("return ARGV[1]")
    try:
        pipe = client.pipeline(transaction=True)
        if why == "watch":
            pipe.watch("w")
            pipe.multi()
        pipe.incr("c")
        script(args=[b"\x81abc" if why == "binary" else b"x"], client=pipe)
        with pytest.raises(redis.exceptions.ExecAbortError) as caught:
            pipe.execute()
        text = str(caught.value)
        assert "EVALSHA" in text and "nothing ran" in text
        assert ("WATCH" in text) == (why == "watch")
        assert redis.Redis(port=ports[0]).get("c") is None
        # without the script command the same transaction runs
        pipe = client.pipeline(transaction=True)
        if why == "watch":
            pipe.watch("w")
            pipe.multi()
        pipe.incr("c")
        pipe.set("b", b"\x81abc")
        assert pipe.execute() == [1, True]
    finally:
        client.close()
