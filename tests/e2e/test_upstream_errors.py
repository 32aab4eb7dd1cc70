"""Upstream failures become clear Redis errors per command; the bridge never hangs or dies."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from tests.e2e.conftest import free_port


def test_unreachable_upstream_gives_fast_errors(bridge_factory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    bridge = bridge_factory(dead, "sometoken-123")
    client = bridge.client()
    assert client.ping() is True  # local commands still work
    started = time.monotonic()
    with pytest.raises(redis.ResponseError, match="upstream unavailable, command not executed"):
        client.get("k")
    assert time.monotonic() - started < 4
    assert "sometoken-123" not in bridge.log()
    assert bridge.proc.poll() is None


def test_upstream_timeout_reports_unknown_outcome(bridge_factory, devserver_factory) -> None:
    dev = devserver_factory(latency_ms=1500)
    bridge = bridge_factory(dev.url, dev.token, "--upstream-timeout-s", "0.5")
    client = bridge.client()
    started = time.monotonic()
    with pytest.raises(redis.ResponseError, match="outcome unknown"):
        client.incr("timeout:counter")
    assert time.monotonic() - started < 3
    # The write was not retried by the bridge: it ran at most once.
    time.sleep(1.6)
    direct = redis.Redis.from_url(dev.redis_url)
    assert direct.get("timeout:counter") in (None, b"1")
    direct.close()


def test_wrong_token_refused_at_start(tmp_path, devserver) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bridge.cli import main; main()",
            "serve",
            "--port",
            str(free_port()),
            "--url",
            devserver.url,
            "--token",
            "not-the-token-xyz",
        ],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 2
    text = out.stderr.decode()
    assert "refused the token" in text
    assert "not-the-token-xyz" not in text


def test_url_without_token_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from bridge.cli import main; main()", "serve", "--url", "http://x"],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert b"token" in out.stderr


def test_info_still_answers_when_the_upstream_is_down(bridge_factory) -> None:
    bridge = bridge_factory(f"http://127.0.0.1:{free_port()}", "sometoken-456")
    client = bridge.client()
    info = client.info()
    assert "bridge_version" in info and "upstream_error" in info
    assert "bridge_circuit_breaker" in client.info("bridge")
