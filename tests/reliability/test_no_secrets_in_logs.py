"""No secret in anything the daemons printed, nor in what clients were told.

Self-contained: its fixture starts its own devservers and bridges (debug logging) and runs the
scenarios in which a token or password is at hand: AUTH with wrong and right passwords, every
upstream fault kind (errors, resets, garbage bodies, stalls), a read-only token whose writes
the upstream refuses, a refused token, client protocol errors, and pub/sub streams (the token
travels in each SSE request). Then every log file those processes wrote is grepped for every
token and password used: none may appear. What clients can read (INFO, CONFIG GET, CLIENT
LIST, error replies) is checked too.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bridge.devserver.redis_process import RedisServerProcess
from tests.reliability.helpers import (
    NO_FAULTS,
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
    stack.recorded.secrets.add(password)
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
    stack.recorded.secrets.add(wrong)
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


def _read_only_token(stack: Stack) -> list[bytes]:
    """A bridge on the read-only token: the upstream refuses its first write (NOPERM)."""
    dev = stack.devserver(log_level="debug")
    bridge = stack.bridge(dev, "--log-level", "debug", token=dev.readonly_token)
    client = RespClient(bridge.port)
    try:
        replies = [client.call("GET", "rb:secret:ro"), client.call("SET", "rb:secret:ro", "v")]
        assert error_text(replies[1]) is not None, replies
        replies.append(client.call("SET", "rb:secret:ro", "again"))  # refused locally now
    finally:
        client.close()
    return [repr(reply).encode() for reply in replies]


def _protocol_errors_and_pubsub(stack: Stack) -> list[bytes]:
    """Bad RESP from a client, then pub/sub through SSE streams under a slow-stream fault."""
    dev = stack.devserver(log_level="debug")
    bridge = stack.bridge(dev, "--log-level", "debug")
    told: list[bytes] = []
    bad = RespClient(bridge.port)
    try:
        bad.sock.sendall(b"*2\r\n$3\r\nGET\r\n$-7\r\n")
        reply = bad.read(1)[0]
        told.append(repr(reply).encode())
        assert "Protocol error" in (error_text(reply) or ""), reply
    finally:
        bad.close()
    set_faults(dev, slow_sse_ms=20)
    subscriber, publisher = RespClient(bridge.port), RespClient(bridge.port)
    try:
        assert subscriber.call("SUBSCRIBE", "rb:secret:ch") == [b"subscribe", b"rb:secret:ch", 1]
        assert subscriber.call("PSUBSCRIBE", "rb:secret:*") == [b"psubscribe", b"rb:secret:*", 2]
        told.append(repr(publisher.call("PUBLISH", "rb:secret:ch", "hello")).encode())
        told += [repr(message).encode() for message in subscriber.read(2)]
    finally:
        subscriber.close()
        publisher.close()
        set_faults(dev, **NO_FAULTS)
    return told


@dataclass
class Provoked:
    """What the provoking scenarios left behind: the stack's records and the client replies."""

    stack: Stack
    told: list[bytes]


@pytest.fixture(scope="module")
def provoked(
    redis_server: RedisServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provoked]:
    stack = Stack(str(tmp_path_factory.mktemp("secrets")), redis_server.url)
    try:
        told = _provoke(stack) + _read_only_token(stack) + _protocol_errors_and_pubsub(stack)
    finally:
        stack.close()  # the logs are complete once the processes have exited
    yield Provoked(stack, told)


def test_no_token_or_password_in_logs(provoked: Provoked) -> None:
    recorded, told = provoked.stack.recorded, provoked.told
    leaks: list[str] = []
    scanned = 0
    for path in recorded.logs:
        with contextlib.suppress(FileNotFoundError):
            data = pathlib.Path(path).read_bytes()
            scanned += len(data)
            leaks += [f"{path}: {s[:12]}..." for s in recorded.secrets if s.encode() in data]
    for i, text in enumerate(told):
        leaks += [f"client reply {i}: {s[:12]}..." for s in recorded.secrets if s.encode() in text]
    report(
        "secrets",
        {
            "log_files": len(recorded.logs),
            "log_bytes": scanned,
            "client_replies": len(told),
            "secrets": len(recorded.secrets),
            "leaks": len(leaks),
        },
    )
    assert scanned > 0 and len(recorded.secrets) >= 3
    assert leaks == []
