"""RedisServerProcess: start/stop a real redis-server child (sync and from trio)."""

from __future__ import annotations

import socket

import pytest
import redis

from bridge.devserver.redis_process import (
    RedisProcessError,
    RedisServerProcess,
    find_free_port,
)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_sync_context_manager_starts_and_stops(redis_server: RedisServerProcess) -> None:
    with RedisServerProcess() as process:
        assert process.url == f"redis://127.0.0.1:{process.port}"
        assert process.port != redis_server.port
        client = redis.Redis.from_url(process.url)
        assert client.ping() is True
        # Persistence is off: no RDB snapshots, no AOF.
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
        port = process.port
    assert not process.running
    assert not _port_open(port)


def test_fixed_port() -> None:
    port = find_free_port()
    with RedisServerProcess(port) as process:
        assert process.port == port
        assert _port_open(port)


def test_missing_binary_gives_install_hint() -> None:
    with pytest.raises(RedisProcessError, match="apt-get install redis-server"):
        RedisServerProcess(executable="no-such-redis-server-binary").start()


def test_failed_start_reports_the_log() -> None:
    with pytest.raises(RedisProcessError, match="exited with code"):
        RedisServerProcess(
            find_free_port(), extra_args=("--no-such-option", "1"), startup_timeout_s=5
        ).start()


async def test_async_context_manager() -> None:
    async with RedisServerProcess() as process:
        client = redis.Redis.from_url(process.url)
        assert client.set("k", "v") is True
        assert client.get("k") == b"v"
        client.close()
    assert not process.running
