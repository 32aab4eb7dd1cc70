"""Concurrency, batching and real tools (redis-cli --pipe, redis-benchmark) through the bridge."""

from __future__ import annotations

import subprocess
import threading

import redis

from tests.e2e.conftest import BridgeProcess


def test_200_concurrent_clients_keep_their_order(bridge: BridgeProcess, r: redis.Redis) -> None:
    errors: list[BaseException] = []
    per_client = 30

    def worker(n: int) -> None:
        try:
            client = redis.Redis(host="127.0.0.1", port=bridge.port, protocol=2, socket_timeout=20)
            pipe_results = []
            for i in range(per_client):
                # RPUSH returns the list length: any reordering or lost command shows up.
                pipe_results.append(client.rpush(f"order:{n}", i))
            assert pipe_results == list(range(1, per_client + 1))
            assert client.lrange(f"order:{n}", 0, -1) == [
                str(i).encode() for i in range(per_client)
            ]
            client.close()
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert all(r.llen(f"order:{n}") == per_client for n in range(200))


def test_batching_cuts_http_requests(bridge_factory, devserver_factory, redis_server) -> None:
    dev = devserver_factory(latency_ms=20)
    bridge = bridge_factory(dev.url, dev.token)
    clients = [bridge.client() for _ in range(50)]
    for c in clients:
        c.ping()  # connect first: local commands do not reach the upstream
    dev.reset_stats()
    rounds = 10
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for n in range(rounds):
                clients[i].set(f"batch:{i}:{n}", n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    stats = dev.stats()
    commands = 50 * rounds
    assert stats["commands"] >= commands
    # 500 commands from 50 clients behind a 20 ms round trip: one request per command would be
    # 500 requests; auto-batching needs about rounds x (50 / in-flight slots) at most.
    assert stats["http_requests"] * 4 <= commands, stats


def test_redis_cli_pipe_mass_insert(bridge: BridgeProcess, r: redis.Redis) -> None:
    n = 20000
    payload = "".join(f"SET mass:{i} {i}\r\n" for i in range(n)).encode()
    out = subprocess.run(
        ["redis-cli", "-p", str(bridge.port), "--pipe"],
        input=payload,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert b"errors: 0, replies: 20000" in out.stdout
    assert r.get("mass:19999") == b"19999"
    assert r.dbsize() == n


def test_redis_cli_commands(bridge: BridgeProcess, r: redis.Redis) -> None:
    def cli(*args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-p", str(bridge.port), *args], capture_output=True, timeout=20
        )
        return out.stdout.decode()

    assert cli("SET", "cli", "hello") == "OK\n"
    assert cli("GET", "cli") == "hello\n"
    assert cli("LPUSH", "cl", "a", "b") == "2\n"
    assert cli("LRANGE", "cl", "0", "-1") == "b\na\n"
    assert "ERR" in cli("SELECT", "3")


def test_redis_benchmark_completes_without_errors(bridge: BridgeProcess, r: redis.Redis) -> None:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(bridge.port),
            "-q",
            "-n",
            "2000",
            "-t",
            "set,get,incr,lpush,rpop,sadd,hset,mset",
        ],
        capture_output=True,
        timeout=180,
    )
    text = out.stdout.decode() + out.stderr.decode()
    assert out.returncode == 0, text
    for test in ("SET", "GET", "INCR", "LPUSH", "RPOP", "SADD", "HSET", "MSET"):
        assert f"{test}:" in text or f"{test} (" in text, text
    assert "ERR" not in text and "error" not in text.lower(), text
    assert r.get("key:__rand_int__") is not None
