"""Read-only mode: writes refused locally with `-READONLY`, before any HTTP request.

Either by flag (`--read-only`) or learned: with a read-only REST token the first write gets
NOPERM from the upstream, and from then on the bridge refuses writes by itself. Reads work
throughout. The devserver's `commands` counter proves what reached the upstream.
"""

from __future__ import annotations

import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess
from tests.conftest import DevServerHandle
from tests.reliability.helpers import RespClient, Stack, error_text


@pytest.fixture(scope="module")
def dev(stack: Stack, redis_server: RedisServerProcess) -> DevServerHandle:
    direct = redis.Redis.from_url(redis_server.url)
    direct.set("rb:ro:key", "value")
    direct.close()
    return stack.devserver()


WRITES: list[tuple[bytes | str, ...]] = [
    ("SET", "rb:ro:key", "other"),
    ("DEL", "rb:ro:key"),
    ("INCR", "rb:ro:n"),
    ("LPUSH", "rb:ro:list", "x"),
    ("SET", "rb:ro:bin", b"\xff\xfe"),  # binary: would travel alone in the path form
    ("BLMOVE", "rb:ro:a", "rb:ro:b", "LEFT", "RIGHT", "0.1"),  # emulated blocking write
]


def test_read_only_flag_refuses_writes_locally(stack: Stack, dev: DevServerHandle) -> None:
    bridge = stack.bridge(dev, "--read-only")
    client = RespClient(bridge.port)
    try:
        dev.reset_stats()
        for command in WRITES:
            text = error_text(client.call(*command))
            assert text is not None and text.startswith("READONLY "), (command, text)
        # Inside MULTI too: the write is refused at queue time, EXEC aborts.
        assert client.call("MULTI") == b"OK"
        assert (error_text(client.call("SET", "rb:ro:key", "x")) or "").startswith("READONLY")
        assert (error_text(client.call("EXEC")) or "").startswith("EXECABORT")
        stats = dev.stats()
        assert stats["commands"] == 0 and stats["http_requests"] == 0, stats
        # Reads still work and do reach the upstream.
        assert client.call("GET", "rb:ro:key") == b"value"
        assert client.call("EXISTS", "rb:ro:key") == 1
        assert dev.stats()["commands"] == 2
    finally:
        client.close()
    # redis-py maps READONLY to ReadOnlyError (no reconnect, no retry).
    r = bridge.client()
    with pytest.raises(redis.exceptions.ReadOnlyError):
        r.set("rb:ro:key", "x")
    assert r.get("rb:ro:key") == b"value"


def test_read_only_token_switches_the_bridge_to_read_only(
    stack: Stack, dev: DevServerHandle
) -> None:
    bridge = stack.bridge(dev, token=dev.readonly_token)
    client = RespClient(bridge.port)
    try:
        assert client.call("GET", "rb:ro:key") == b"value"
        dev.reset_stats()
        first = error_text(client.call("SET", "rb:ro:key", "x"))
        assert first is not None and first.startswith("NOPERM"), first
        assert dev.stats()["commands"] == 1
        for command in WRITES:
            text = error_text(client.call(*command))
            assert text is not None and text.startswith("READONLY "), (command, text)
        assert dev.stats()["commands"] == 1, "a write reached the upstream after NOPERM"
        # Other clients, new or old, are read-only too; reads keep working.
        other = RespClient(bridge.port)
        try:
            assert (error_text(other.call("INCR", "rb:ro:n")) or "").startswith("READONLY")
            assert other.call("GET", "rb:ro:key") == b"value"
        finally:
            other.close()
        assert client.call("GET", "rb:ro:key") == b"value"
        assert dev.stats()["commands"] == 3
    finally:
        client.close()
    assert "read-only" in bridge.log()
