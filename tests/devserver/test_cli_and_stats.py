"""The `devserver` command (flags, env vars, READY line, clean stop) and /_devserver/stats."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from click.testing import CliRunner

from bridge.devserver.command_line import devserver as devserver_command
from tests.conftest import DevServerHandle
from tests.conftest import devserver_command as command_line


def test_help_documents_every_flag() -> None:
    result = CliRunner().invoke(devserver_command, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--bind",
        "--port",
        "--redis-url",
        "--token",
        "--readonly-token",
        "--latency-ms",
        "--max-request-bytes",
        "--sse-heartbeat-s",
        "--tls-cert",
        "--tls-key",
    ):
        assert flag in result.output


def test_flags_come_from_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESP_BRIDGE_DEVSERVER_LATENCY_MS", "12.5")
    monkeypatch.setenv("RESP_BRIDGE_DEVSERVER_PORT", "0")
    monkeypatch.setenv("RESP_BRIDGE_DEVSERVER_TOKEN", "from-env")
    ctx = devserver_command.make_context("devserver", [])
    assert ctx.params["latency_ms"] == 12.5
    assert ctx.params["port"] == 0
    assert ctx.params["token"] == "from-env"


def test_same_tokens_are_rejected() -> None:
    result = CliRunner().invoke(devserver_command, ["--token", "same", "--readonly-token", "same"])
    assert result.exit_code != 0
    assert "must differ" in result.output


def test_given_tokens_are_masked_in_the_log(devserver: DevServerHandle) -> None:
    log = devserver.log_text()
    assert re.search(r"devserver listening on http://127\.0\.0\.1:\d+ \(redis redis://", log)
    assert "token=<not shown> readonly-token=<not shown>" in log
    assert devserver.token not in log
    assert devserver.readonly_token not in log


def test_own_redis_child_generated_tokens_and_clean_stop() -> None:
    process = subprocess.Popen(
        [*command_line("--port", "0")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        ready = process.stdout.readline().decode()
        assert ready.startswith("READY http://127.0.0.1:")
        url = ready.split()[1]
        log_line = ""
        deadline = time.monotonic() + 10
        while "listening" not in log_line and time.monotonic() < deadline:
            log_line = process.stderr.readline().decode()
        match = re.search(
            r"\(redis redis://127\.0\.0\.1:(\d+)\) token=(\S+) readonly-token=(\S+)", log_line
        )
        assert match, log_line
        redis_port, token, readonly_token = int(match[1]), match[2], match[3]
        assert len(token) >= 32 and len(readonly_token) >= 32 and token != readonly_token
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/set/k/v", headers=headers).json() == {"result": "OK"}
        assert redis.Redis(port=redis_port).get("k") == b"v"
        ro = {"Authorization": f"Bearer {readonly_token}"}
        assert httpx.get(f"{url}/get/k", headers=ro).json() == {"result": "v"}
    finally:
        process.terminate()
        code = process.wait(10)
    assert code == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()


def test_stats_count_requests_and_commands(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory()
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
        client.get("/set/a/1")
        client.post("/", json=["GET", "a"])
        client.post("/pipeline", json=[["GET", "a"], ["GET", "b"], ["SELECT", "1"]])
        client.post("/multi-exec", json=[["INCR", "a"], ["GET", "a"]])
        client.get("/get/a", headers={"Authorization": "Bearer wrong"})
        client.get("/nosuch")
        stats = server.stats()
        assert stats["http_requests"] == 6
        assert stats["commands"] == 8
        assert stats["single_commands"] == 3
        assert stats["pipelines"] == 1
        assert stats["multi_exec"] == 1
        assert stats["auth_failures"] == 1
        assert stats["http_4xx"] == 2
        assert stats["http_5xx"] == 0
        assert stats["sse_streams_open"] == 0
        assert stats["sse_streams_total"] == 0
        assert stats["redis_connections_open"] >= 1
        # Reading the stats is not counted.
        assert server.stats()["http_requests"] == 6
        server.reset_stats()
        stats = server.stats()
        assert stats["http_requests"] == 0
        assert stats["commands"] == 0
        client.get("/ping")
        assert server.stats()["http_requests"] == 1


def test_keep_alive_reuses_one_connection(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory()
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
        for _ in range(20):
            assert client.get("/ping").json() == {"result": "PONG"}
        stats = client.get("/_devserver/stats").json()
    assert stats["http_requests"] == 20
    assert stats["http_connections_total"] == 1
    assert stats["http_connections_open"] == 1
