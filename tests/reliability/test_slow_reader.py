"""Slow readers are bounded: the bridge stops reading from a client with `max_pending_replies`
replies outstanding, and disconnects it once more than `max_output_buffer_bytes` of replies
wait unsent; meanwhile other clients keep getting fast replies."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
import redis

from tests.conftest import DevServerHandle
from tests.reliability.helpers import RespClient, Stack, pack, report, rss_kb

BIG_BYTES = 1024 * 1024
OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024
SLOW_GETS = 100  # 100 MB of replies asked for, far above the limit
#: Generous bounds for the other client while the slow one is being dealt with.
FAST_MEDIAN_S = 0.25
FAST_MAX_S = 6.0


@pytest.fixture(scope="module")
def dev(stack: Stack) -> DevServerHandle:
    return stack.devserver()


def _slow_socket(port: int, rcvbuf: int = 16 * 1024) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: small window
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def _read_to_eof(sock: socket.socket, deadline_s: float) -> tuple[int, bool]:
    """(bytes read, whether the bridge closed the connection) within the deadline."""
    total = 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = sock.recv(1024 * 1024)
        except (ConnectionResetError, BrokenPipeError):
            return total, True
        except TimeoutError:
            return total, False
        if not data:
            return total, True
        total += len(data)
    return total, False


def test_slow_reader_is_disconnected_others_stay_fast(
    stack: Stack, dev: DevServerHandle, direct: redis.Redis
) -> None:
    direct.set("rb:slow:big", b"x" * BIG_BYTES)
    direct.set("rb:slow:small", b"small")
    bridge = stack.bridge(dev, "--max-output-buffer-bytes", str(OUTPUT_LIMIT_BYTES))
    fast = RespClient(bridge.port)
    rss_start = rss_kb(bridge.proc.pid)
    slow = _slow_socket(bridge.port)
    try:
        slow.sendall(b"".join(pack("GET", "rb:slow:big") for _ in range(SLOW_GETS)))
        latencies: list[float] = []
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            started = time.monotonic()
            assert fast.call("GET", "rb:slow:small", timeout_s=10) == b"small"
            latencies.append(time.monotonic() - started)
        rss_peak = rss_kb(bridge.proc.pid)
        received, closed = _read_to_eof(slow, 20.0)
    finally:
        slow.close()
    try:
        # The bridge itself is fine and still serving.
        assert fast.call("PING") == b"PONG"
    finally:
        fast.close()
    report(
        "slow_reader[disconnect]",
        {
            "asked_bytes": SLOW_GETS * BIG_BYTES,
            "received_bytes": received,
            "disconnected": closed,
            "fast_calls": len(latencies),
            "fast_median_ms": round(statistics.median(latencies) * 1000, 2),
            "fast_max_ms": round(max(latencies) * 1000, 2),
            "rss_start_kb": rss_start,
            "rss_peak_kb": rss_peak,
        },
    )
    assert closed, "the slow reader was never disconnected"
    assert received < SLOW_GETS * BIG_BYTES // 2, "the slow reader got (nearly) everything"
    assert statistics.median(latencies) < FAST_MEDIAN_S
    assert max(latencies) < FAST_MAX_S
    assert bridge.proc.poll() is None
    assert "slow" in bridge.log() or "unread" in bridge.log()


def test_bridge_stops_reading_at_max_pending_replies(
    stack: Stack, dev: DevServerHandle, direct: redis.Redis
) -> None:
    """With room for 20 pending replies, a client that sends 600 large GETs and reads nothing
    gets only a bounded number of them executed; once it reads, every reply arrives intact."""
    value = b"v" * (50 * 1024)
    key = "rb:slow:" + "k" * 1000  # 1 KB commands: one socket read holds only ~64 of them
    direct.set(key, value)
    bridge = stack.bridge(
        dev, "--max-pending-replies", "20", "--max-output-buffer-bytes", str(1 << 30)
    )
    total = 600
    payload = b"".join(pack("GET", key) for _ in range(total))
    slow = _slow_socket(bridge.port, rcvbuf=64 * 1024)
    dev.reset_stats()
    sender = threading.Thread(target=slow.sendall, args=(payload,), daemon=True)
    sender.start()
    try:
        # Wait for the upstream command count to settle.
        previous, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            count = dev.stats()["commands"]
            if count != previous:
                previous, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since > 1.0:
                break
            time.sleep(0.1)
        plateau = previous
        assert 0 < plateau < total // 2, f"{plateau} of {total} executed without being read"
        # Now read: every reply arrives, in order, intact.
        expected = b"$%d\r\n%s\r\n" % (len(value), value)
        want = expected * total
        got = bytearray()
        end = time.monotonic() + 60
        slow.settimeout(10)
        while len(got) < len(want) and time.monotonic() < end:
            data = slow.recv(1024 * 1024)
            assert data, f"closed after {len(got)} of {len(want)} bytes"
            got += data
        assert bytes(got) == want
        sender.join(10)
        assert not sender.is_alive()
    finally:
        slow.close()
    report("slow_reader[backpressure]", {"sent": total, "executed_before_reading": plateau})


def test_idle_clients_closed_only_when_configured(stack: Stack, dev: DevServerHandle) -> None:
    """Idle timeout: off by default (like Redis); with --idle-timeout-s an idle client is
    closed, while one that keeps talking is not."""
    default = stack.bridge(dev)
    timed = stack.bridge(dev, "--idle-timeout-s", "0.5")
    idle_default = RespClient(default.port)
    idle = RespClient(timed.port)
    busy = RespClient(timed.port)
    try:
        for c in (idle_default, idle, busy):
            assert c.call("PING") == b"PONG"
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            assert busy.call("PING") == b"PONG"
            time.sleep(0.1)
        idle.sock.settimeout(5)
        assert idle.sock.recv(100) == b"", "the idle client was not closed"
        assert idle_default.call("PING") == b"PONG"  # 2 s idle, default: still open
    finally:
        for c in (idle_default, idle, busy):
            c.close()
