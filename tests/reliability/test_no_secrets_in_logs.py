"""No secret in anything the daemons printed. (Named `zz` to run last in this directory.)

Collects every log file of the bridges and devservers started by the reliability tests of
this session (`RECORDED`: faults, resets, garbage bodies, protocol errors, slow readers,
read-only tokens...) plus the logs of a provoking run of its own (debug logging, every fault
kind, a refused token, AUTH with wrong and right passwords), and greps them for every token
and password used: none may appear. What clients can read (INFO, CONFIG GET, CLIENT LIST,
error replies) is checked too.
"""

from __future__ import annotations

import contextlib
import pathlib

from bridge.devserver.redis_process import RedisServerProcess
from tests.reliability import (
    NO_FAULTS,
    RECORDED,
    RespClient,
    Stack,
    error_text,
    fresh_token,
    report,
    set_faults,
)


def _provoke(stack: Stack) -> list[bytes]:
    """A run meant to make the daemons talk; returns everything clients were told."""
    told: list[bytes] = []
    dev = stack.devserver(log_level="debug")
    password = fresh_token("rb-test-requirepass")
    RECORDED.secrets.add(password)
    bridge = stack.bridge(
        dev, "--log-level", "debug", "--requirepass", password, "--upstream-timeout-s", "1"
    )
    client = RespClient(bridge.port)
    try:
        for command, expected in (
            (("GET", "k"), "NOAUTH"),
            (("AUTH", "wrong-" + password), "WRONGPASS"),
        ):
            reply = client.call(*command)
            told.append(repr(reply).encode())
            assert (error_text(reply) or "").startswith(expected), reply
        assert client.call("AUTH", password) == b"OK"
        set_faults(
            dev,
            error_rate=0.2,
            error_after_rate=0.2,
            reset_rate=0.2,
            garbage_rate=0.2,
            stall_rate=0.1,
            stall_s=1.2,
        )
        for i in range(20):
            told.append(repr(client.call("SET", f"rb:secret:{i}", "v", timeout_s=10)).encode())
        set_faults(dev, **NO_FAULTS)
        for command in (("INFO",), ("CONFIG", "GET", "*"), ("CLIENT", "LIST"), ("HELLO", "3")):
            told.append(repr(client.call(*command)).encode())
    finally:
        client.close()
    # A token the upstream refuses: the bridge reports it (or exits) without printing it.
    wrong = fresh_token("rb-test-wrong-token")
    RECORDED.secrets.add(wrong)
    try:
        refused = stack.bridge(dev, token=wrong)
    except RuntimeError as exc:  # it exited at start: its log is in the message
        told.append(str(exc).encode())
    else:
        c = RespClient(refused.port)
        try:
            reply = c.call("GET", "k")
            told.append(repr(reply).encode())
            assert "401" in (error_text(reply) or ""), reply
        finally:
            c.close()
    return told


def test_no_token_or_password_in_logs(redis_server: RedisServerProcess, tmp_path: str) -> None:
    stack = Stack(str(tmp_path), redis_server.url)
    try:
        told = _provoke(stack)
    finally:
        stack.close()
    leaks: list[str] = []
    scanned = 0
    for path in RECORDED.logs:
        with contextlib.suppress(FileNotFoundError):
            data = pathlib.Path(path).read_bytes()
            scanned += len(data)
            leaks += [f"{path}: {s[:12]}..." for s in RECORDED.secrets if s.encode() in data]
    for i, text in enumerate(told):
        leaks += [f"client reply {i}: {s[:12]}..." for s in RECORDED.secrets if s.encode() in text]
    report(
        "secrets",
        {
            "log_files": len(RECORDED.logs),
            "log_bytes": scanned,
            "client_replies": len(told),
            "secrets": len(RECORDED.secrets),
            "leaks": len(leaks),
        },
    )
    assert scanned > 0 and len(RECORDED.secrets) >= 3
    assert leaks == []
