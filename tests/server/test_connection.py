"""A client connection's life: a client that goes away is an INFO line, never an ERROR.

The bridge runs in-process (`run_bridge`) in front of the session's real devserver, so the
log records can be read as they are made; clients are raw sockets that leave rudely.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from typing import Any

import pytest
import trio

from bridge.config import BridgeConfig
from bridge.server.connection import disconnect_reason
from bridge.server.runner import BridgeInfo, run_bridge


def _broken(err: int) -> trio.BrokenResourceError:
    exc = trio.BrokenResourceError("socket error")
    exc.__cause__ = OSError(err, "os text")
    return exc


def test_disconnect_reason_unwraps_nursery_groups() -> None:
    reset = ExceptionGroup("nursery", [_broken(errno.ECONNRESET)])
    assert disconnect_reason(reset) == "connection reset by peer"
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [_broken(errno.EPIPE)])])
    assert disconnect_reason(nested) == "broken pipe"
    assert disconnect_reason(trio.ClosedResourceError()) == "closed"
    assert disconnect_reason(TimeoutError(errno.ETIMEDOUT, "timed out")) == "timed out"
    assert disconnect_reason(ConnectionResetError(errno.ECONNRESET, "x")) == (
        "connection reset by peer"
    )


def test_disconnect_reason_is_none_for_bugs() -> None:
    assert disconnect_reason(ValueError("bug")) is None
    mixed = ExceptionGroup("nursery", [_broken(errno.ECONNRESET), KeyError("bug")])
    assert disconnect_reason(mixed) is None


async def _rude_client(port: int, data: bytes) -> None:
    """Send `data` without reading the replies, then reset the connection (RST)."""
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    await sock.send(data)
    await trio.sleep(0.2)  # the bridge has replies to send by now
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_a_client_that_resets_its_connection_is_an_info_line(
    devserver: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = BridgeConfig(
        url=devserver.url, token=devserver.token, port=0, admin_socket="off", bind="127.0.0.1"
    )
    big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$65536\r\n" + b"x" * 65536 + b"\r\n"
    gets = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * 200
    with caplog.at_level(logging.INFO, logger="bridge"):
        async with trio.open_nursery() as nursery:
            info: BridgeInfo = await nursery.start(run_bridge, config)
            assert info.port is not None
            await _rude_client(info.port, big)
            for _ in range(3):
                await _rude_client(info.port, gets)
            with trio.fail_after(10):
                while sum("disconnected" in r.getMessage() for r in caplog.records) < 4:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == [], [r.getMessage() for r in problems]
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert all(r.levelno == logging.INFO for r in gone)
    assert all("127.0.0.1:" in r.getMessage() for r in gone), [r.getMessage() for r in gone]


async def test_idle_timeout_closes_a_quiet_client_and_only_that_one(
    devserver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With idle_timeout_s set, a client that sends nothing for that long is closed (an INFO
    line); one that keeps sending stays. (Without it no timer runs per receive at all.)"""
    config = BridgeConfig(
        url=devserver.url, token=devserver.token, port=0, admin_socket="off", bind="127.0.0.1",
        idle_timeout_s=0.5,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bridge"):
        async with trio.open_nursery() as nursery:
            info: BridgeInfo = await nursery.start(run_bridge, config)
            assert info.port is not None
            quiet = trio.socket.socket()
            busy = trio.socket.socket()
            await quiet.connect(("127.0.0.1", info.port))
            await busy.connect(("127.0.0.1", info.port))
            await quiet.send(b"PING\r\n")
            assert await quiet.recv(100) == b"+PONG\r\n"
            with trio.fail_after(10):
                for _ in range(8):  # 1.6 s of traffic, 0.2 s apart: never idle for 0.5 s
                    await busy.send(b"PING\r\n")
                    assert await busy.recv(100) == b"+PONG\r\n"
                    await trio.sleep(0.2)
                assert await quiet.recv(100) == b""  # closed by the bridge
            await busy.send(b"PING\r\n")
            assert await busy.recv(100) == b"+PONG\r\n"
            quiet.close()
            busy.close()
            nursery.cancel_scope.cancel()
    assert any("idle for" in r.getMessage() for r in caplog.records)
