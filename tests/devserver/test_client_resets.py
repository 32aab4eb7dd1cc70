"""Clients that go away in every way (EOF, reset, abort mid-request, mid-response, mid-stream)
are routine for a server: the devserver must log them at most at info level, never as an
ERROR with a traceback, and keep serving everybody else.

Real sockets closed with SO_LINGER 0 (the kernel sends RST instead of FIN), from many threads
at once, against a devserver of the test's own (its log is the one asserted).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable

import httpx
import redis

from tests.conftest import DevServerHandle

#: Rounds of every abort kind per thread, and threads at once.
ROUNDS = 4
THREADS = 12


def address(devserver: DevServerHandle) -> tuple[str, int]:
    url = httpx.URL(devserver.url)
    assert url.host and url.port
    return url.host, url.port


def reset(sock: socket.socket) -> None:
    """Close with RST: SO_LINGER on with a zero timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def request(devserver: DevServerHandle, method: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {devserver.token}\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def abort_kinds(devserver: DevServerHandle) -> list[Callable[[], None]]:
    where = address(devserver)

    def connect() -> socket.socket:
        return socket.create_connection(where, timeout=10)

    def reset_at_once() -> None:
        reset(connect())

    def eof_at_once() -> None:
        connect().close()

    def reset_mid_head() -> None:
        sock = connect()
        sock.sendall(request(devserver, "POST", "/pipeline")[:20])
        reset(sock)

    def reset_mid_body() -> None:
        sock = connect()
        sock.sendall(request(devserver, "POST", "/", b'["ECHO","' + b"x" * 5000 + b'"]')[:-100])
        reset(sock)

    def reset_before_reading_a_big_reply() -> None:
        sock = connect()
        sock.sendall(request(devserver, "GET", "/get/resets:big"))
        time.sleep(0.01)
        reset(sock)

    def reset_mid_reply() -> None:
        sock = connect()
        sock.sendall(request(devserver, "GET", "/get/resets:big"))
        sock.recv(1000)
        reset(sock)

    def reset_an_sse_stream() -> None:
        sock = connect()
        sock.sendall(request(devserver, "POST", "/subscribe/resets:channel"))
        sock.recv(1000)  # head and the subscribe event
        time.sleep(0.05)  # heartbeats are being written
        reset(sock)

    def close_a_monitor_stream() -> None:
        sock = connect()
        sock.sendall(request(devserver, "POST", "/monitor"))
        sock.recv(1000)
        sock.shutdown(socket.SHUT_WR)
        sock.close()

    return [
        reset_at_once,
        eof_at_once,
        reset_mid_head,
        reset_mid_body,
        reset_before_reading_a_big_reply,
        reset_mid_reply,
        reset_an_sse_stream,
        close_a_monitor_stream,
    ]


def run_aborts(devserver: DevServerHandle) -> None:
    """Every abort kind ROUNDS times from THREADS threads; raises what a thread raised."""
    kinds = abort_kinds(devserver)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(ROUNDS):
                for kind in kinds:
                    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                        kind()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures


def test_clients_going_away_are_not_errors(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    devserver = devserver_factory(sse_heartbeat_s=0.01)
    direct = redis.Redis.from_url(devserver.redis_url or "")
    direct.set("resets:big", b"v" * (4 * 1024 * 1024))
    direct.close()
    publisher = threading.Event()

    def publish() -> None:  # traffic for the open streams (monitor lines, messages)
        with httpx.Client(base_url=devserver.url, headers=devserver.headers) as client:
            while not publisher.wait(0.005):
                client.post("/", json=["PUBLISH", "resets:channel", "m"])

    traffic = threading.Thread(target=publish)
    traffic.start()
    try:
        run_aborts(devserver)
    finally:
        publisher.set()
        traffic.join(10)
    # Every stream and connection has been noticed as gone, and the server still serves.
    deadline = time.monotonic() + 10
    while (stats := devserver.stats())["sse_streams_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats["sse_streams_open"] == 0
    reply = httpx.post(f"{devserver.url}/", json=["ECHO", "alive"], headers=devserver.headers)
    assert reply.json() == {"result": "alive"}
    devserver.stop()
    log = devserver.log_text()
    assert stats["sse_streams_total"] >= THREADS * ROUNDS * 2, stats
    bad = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not bad, log[-5000:]
