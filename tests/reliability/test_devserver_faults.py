"""The devserver's fault switches themselves: each kind does what it says, never to
/_devserver/*, switchable at runtime, counted, reproducible with a seed, set by flag or env."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import httpx
import orjson
import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess
from tests.conftest import DevServerHandle, devserver_command
from tests.reliability.helpers import NO_FAULTS, Stack, fresh_token, set_faults

T = 10.0  # seconds: deadline of every HTTP call here


@pytest.fixture(scope="module")
def dev(stack: Stack) -> DevServerHandle:
    return stack.devserver()


@pytest.fixture(autouse=True)
def _no_faults_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "dev" in request.fixturenames:
        set_faults(request.getfixturevalue("dev"), **NO_FAULTS, stall_s=5.0, seed=None)


def _injected(dev: DevServerHandle) -> dict[str, int]:
    return dev.stats()["faults_injected"]  # type: ignore[return-value]


def test_defaults_are_off_and_shown(dev: DevServerHandle) -> None:
    view = httpx.get(f"{dev.url}/_devserver/faults", headers=dev.headers, timeout=T).json()
    assert view["faults"] == {**NO_FAULTS, "stall_s": 5.0, "seed": None}
    assert set(view["faults_injected"]) == {
        "error", "error_after", "reset", "garbage", "stall", "slow_sse",
    }  # fmt: skip
    # The faults endpoint needs the standard token, like the other /_devserver endpoints.
    assert httpx.get(f"{dev.url}/_devserver/faults", timeout=T).status_code == 401
    ro = httpx.post(
        f"{dev.url}/_devserver/faults", headers=dev.readonly_headers, json={}, timeout=T
    )
    assert ro.status_code == 403


def test_each_kind_at_runtime(dev: DevServerHandle, direct: redis.Redis) -> None:
    url, h = dev.url, dev.headers
    direct.set("rb:faults:n", 0)
    dev.reset_stats()

    # error: answered 500 WITHOUT running the command; the stats endpoint is never faulted.
    set_faults(dev, error_rate=1.0)
    response = httpx.get(f"{url}/incr/rb:faults:n", headers=h, timeout=T)
    assert response.status_code == 500
    assert "error" in response.json()
    assert direct.get("rb:faults:n") == b"0"
    stats = dev.stats()
    assert stats["commands"] == 0 and stats["http_5xx"] == 1
    assert stats["faults_injected"]["error"] == 1

    # error_after: runs it, then 500.
    set_faults(dev, error_rate=0.0, error_after_rate=1.0)
    response = httpx.get(f"{url}/incr/rb:faults:n", headers=h, timeout=T)
    assert response.status_code == 500 and "error" in response.json()
    assert direct.get("rb:faults:n") == b"1"

    # reset: runs it, then closes the connection without any response.
    set_faults(dev, error_after_rate=0.0, reset_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{url}/incr/rb:faults:n", headers=h, timeout=T)
    assert direct.get("rb:faults:n") == b"2"

    # garbage: runs it, then 200 with a body that is not a reply.
    set_faults(dev, reset_rate=0.0, garbage_rate=1.0)
    response = httpx.get(f"{url}/incr/rb:faults:n", headers=h, timeout=T)
    assert response.status_code == 200
    assert not _valid_single(response.content)
    assert direct.get("rb:faults:n") == b"3"

    # stall: runs it, then holds the (correct) response.
    set_faults(dev, garbage_rate=0.0, stall_rate=1.0, stall_s=0.6)
    started = time.monotonic()
    response = httpx.get(f"{url}/incr/rb:faults:n", headers=h, timeout=T)
    assert time.monotonic() - started >= 0.55
    assert response.json() == {"result": 4}

    set_faults(dev, **NO_FAULTS)
    assert httpx.get(f"{url}/incr/rb:faults:n", headers=h, timeout=T).json() == {"result": 5}
    assert _injected(dev) == {  # reset-stats (above) restarted the counters too
        "error": 1, "error_after": 1, "reset": 1, "garbage": 1, "stall": 1, "slow_sse": 0,
    }  # fmt: skip


def _valid_single(body: bytes) -> bool:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and ("result" in value or "error" in value)


def _valid_pipeline_json(body: bytes, n: int) -> bool:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(value, list)
        and len(value) == n
        and all(isinstance(i, dict) and ("result" in i or "error" in i) for i in value)
    )


def _valid_resp2(body: bytes, n: int) -> bool:
    reader = hiredis.Reader()
    reader.feed(body)
    try:
        frames = [reader.gets() for _ in range(n)]
        return False not in frames and reader.gets() is False
    except hiredis.ProtocolError:
        return False


def test_garbage_never_looks_like_a_reply(dev: DevServerHandle) -> None:
    """Whatever the form and format, a garbage body can never pass for the real replies."""
    set_faults(dev, garbage_rate=1.0, seed=7)
    commands = [["SET", "rb:garbage", "v"], ["GET", "rb:garbage"], ["PING"]]
    for i in range(40):
        resp2 = i % 2 == 1
        headers = {**dev.headers, "Upstash-Response-Format": "resp2"} if resp2 else dev.headers
        body = httpx.post(f"{dev.url}/pipeline", headers=headers, json=commands, timeout=T)
        assert body.status_code == 200
        if resp2:
            assert not _valid_resp2(body.content, len(commands)), body.content
        else:
            assert not _valid_pipeline_json(body.content, len(commands)), body.content
    assert _injected(dev)["garbage"] >= 40


def test_faults_never_touch_devserver_endpoints(dev: DevServerHandle) -> None:
    set_faults(dev, error_rate=1.0, reset_rate=1.0, stall_rate=1.0, stall_s=5.0)
    started = time.monotonic()
    for _ in range(5):
        assert isinstance(dev.stats()["http_requests"], int)
        dev.reset_stats()
    assert time.monotonic() - started < 4.0  # no stall either
    assert set_faults(dev, **NO_FAULTS)["faults"]["error_rate"] == 0.0


def test_invalid_settings_are_refused_and_change_nothing(dev: DevServerHandle) -> None:
    url = f"{dev.url}/_devserver/faults"
    before = httpx.get(url, headers=dev.headers, timeout=T).json()["faults"]
    for body in (
        b'{"error_rate": 1.5}',
        b'{"error_rate": "high"}',
        b'{"stall_s": -1}',
        b'{"typo_rate": 0.1}',
        b'{"seed": 1.5}',
        b"[1]",
        b"{not json",
    ):
        response = httpx.post(url, headers=dev.headers, content=body, timeout=T)
        assert response.status_code == 400, body
        assert response.json()["error"].startswith("ERR ")
    assert httpx.get(url, headers=dev.headers, timeout=T).json()["faults"] == before


def test_seed_makes_the_draws_reproducible(stack: Stack) -> None:
    def statuses(dev: DevServerHandle) -> list[int]:
        with httpx.Client(headers=dev.headers, timeout=T) as client:
            return [client.get(f"{dev.url}/ping").status_code for _ in range(30)]

    a = stack.devserver(fault_error_rate=0.5, fault_seed=42)
    b = stack.devserver(fault_error_rate=0.5, fault_seed=42)
    first = statuses(a)
    assert first == statuses(b)
    assert 200 in first and 500 in first
    # Re-seeding at runtime restarts the sequence.
    set_faults(a, seed=42)
    assert statuses(a) == first


def test_slow_sse_and_errors_on_streams(dev: DevServerHandle) -> None:
    headers = {**dev.headers, "Accept": "text/event-stream"}
    set_faults(dev, slow_sse_ms=400)
    started = time.monotonic()
    with httpx.stream("GET", f"{dev.url}/subscribe/rb-slow", headers=headers, timeout=T) as s:
        assert s.status_code == 200
        first = next(s.iter_lines())
        assert first.startswith("data: subscribe,rb-slow")
        assert time.monotonic() - started >= 0.35
    assert _injected(dev)["slow_sse"] >= 1
    set_faults(dev, slow_sse_ms=0, error_rate=1.0)
    response = httpx.get(f"{dev.url}/subscribe/rb-slow", headers=headers, timeout=T)
    assert response.status_code == 500


def _start_with_env(redis_url: str, env_extra: dict[str, str]) -> tuple[Any, str, str]:
    token = fresh_token("rb-test-token")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESP_BRIDGE_DEVSERVER_")}
    env.update(env_extra)
    args = ["--port", "0", "--redis-url", redis_url, "--token", token,
            "--readonly-token", fresh_token("rb-test-ro-token")]  # fmt: skip
    proc = subprocess.Popen(
        devserver_command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    return proc, line.removeprefix("READY ").strip(), token


def test_flags_and_env_vars(redis_server: RedisServerProcess, stack: Stack) -> None:
    dev = stack.devserver(fault_error_after_rate=1.0, fault_stall_s=2.5)
    view = httpx.get(f"{dev.url}/_devserver/faults", headers=dev.headers, timeout=T).json()
    assert view["faults"]["error_after_rate"] == 1.0 and view["faults"]["stall_s"] == 2.5
    assert httpx.get(f"{dev.url}/ping", headers=dev.headers, timeout=T).status_code == 500

    proc, url, token = _start_with_env(
        redis_server.url, {"RESP_BRIDGE_DEVSERVER_FAULT_ERROR_RATE": "1"}
    )
    try:
        assert url.startswith("http://"), proc.stderr.read() if proc.stderr else ""
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/ping", headers=auth, timeout=T).status_code == 500
    finally:
        proc.terminate()
        proc.communicate(timeout=10)

    proc, url, _ = _start_with_env(
        redis_server.url, {"RESP_BRIDGE_DEVSERVER_FAULT_RESET_RATE": "2"}
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and url == ""
    assert b"fault-reset-rate" in err
