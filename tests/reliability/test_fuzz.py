"""Fuzz the LIVE bridge: random byte streams and mutated valid RESP on raw sockets, and
garbage HTTP bodies from the upstream.

Client side, per connection: the bridge answers with well-formed RESP, and if it found a
protocol error, `-ERR Protocol error...` is its last reply and it closes the connection; a
connection the client half-closes is answered and closed in time (no hang). The daemon never
dies: after the run it is alive, answers PING and serves commands, and logged no traceback.
Upstream side: every forwarded command answered by a garbage body gets an `-ERR upstream`
error reply, whatever the form (pipeline, path form, transaction) and format (resp2, JSON).

`RESP_BRIDGE_FUZZ_SEED` and `RESP_BRIDGE_FUZZ_CASES` change the run; figures are reported.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DevServerHandle
from tests.e2e.conftest import BridgeProcess
from tests.reliability.helpers import (
    NO_FAULTS,
    RespClient,
    Stack,
    error_text,
    pack,
    report,
    rss_kb,
    set_faults,
    wait_until_served,
)

SEED = int(os.environ.get("RESP_BRIDGE_FUZZ_SEED", "20261123"))
CASES = int(os.environ.get("RESP_BRIDGE_FUZZ_CASES", "300"))
#: A half-closed connection must be answered and closed within this (generous) time.
CASE_DEADLINE_S = 30.0
WORKERS = 8

#: Commands the mutations start from: harmless, on keys of their own.
SEEDS: list[tuple[bytes, ...]] = [
    (b"SET", b"rb:fz:a", b"hello"),
    (b"GET", b"rb:fz:a"),
    (b"INCR", b"rb:fz:n"),
    (b"HSET", b"rb:fz:h", b"f", b"v"),
    (b"LPUSH", b"rb:fz:l", b"x", b"y"),
    (b"LRANGE", b"rb:fz:l", b"0", b"-1"),
    (b"MGET", b"rb:fz:a", b"rb:fz:b"),
    (b"PING",),
    (b"ECHO", b"fuzz"),
    (b"EXISTS", b"rb:fz:a"),
    (b"MULTI",),
    (b"EXEC",),
    (b"SET", b"rb:fz:bin", b"\x00\xff\r\n"),
]
# fmt: off
TOKENS = [b"*", b"$", b"\r\n", b"\n", b"-1", b"0", b"1", b"3", b"2147483648", b"99999999999",
          b"-5", b" ", b"\"", b"'", b"GET", b"SET", b"PING", b"\x00", b"+OK", b":", b"%2", b"~"]
# fmt: on


def _valid(rng: random.Random) -> bytes:
    return b"".join(pack(*rng.choice(SEEDS)) for _ in range(rng.randint(1, 5)))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:  # insert noise
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 2 and buf:  # delete a range
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3:  # duplicate a range
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 64)]
        elif op == 4:  # insert a RESP-ish token
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 5:  # truncate
            del buf[pos:]
        else:  # a huge length where a length was
            idx = buf.find(rng.choice([b"*", b"$"]), pos)
            if idx >= 0:
                buf[idx + 1 : idx + 2] = rng.choice([b"1073741824", b"-7", b"99999999999", b"x"])
    return bytes(buf)


def make_case(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.randrange(4)
    if kind == 0:
        return "random_bytes", rng.randbytes(rng.randint(1, 2048))
    if kind == 1:
        return "resp_tokens", b"".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 60)))
    if kind == 2:
        text = "".join(rng.choice("abcdefgh SETGETPING\"'\\\r\n\t") for _ in range(300))
        return "inline_text", text.encode()
    return "mutated_resp", _mutate(rng, _valid(rng))


def run_case(port: int, data: bytes) -> tuple[int, bool]:
    """Send `data`, half-close, read to EOF. Returns (replies, ended by a protocol error).
    Raises AssertionError when the bridge misbehaves."""
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_DEADLINE_S) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may already have refused a protocol error and closed
        received = bytearray()
        end = time.monotonic() + CASE_DEADLINE_S
        while True:
            remaining = end - time.monotonic()
            assert remaining > 0, f"no EOF within {CASE_DEADLINE_S} s for input {data[:200]!r}"
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break  # closed with our input unread (after a protocol error)
            if not chunk:
                break
            received += chunk
    reader = hiredis.Reader()
    reader.feed(bytes(received))
    replies: list[object] = []
    try:
        while (reply := reader.gets()) is not False:
            replies.append(reply)
    except hiredis.ProtocolError as exc:
        raise AssertionError(f"unparsable output {bytes(received)[:300]!r}: {exc}") from None
    assert reader.gets() is False and not reader.has_data(), f"trailing bytes {received[-200:]!r}"
    protocol = [i for i, r in enumerate(replies) if (error_text(r) or "").startswith(
        "ERR Protocol error")]  # fmt: skip
    if protocol:
        assert protocol == [len(replies) - 1], f"replies after a protocol error: {replies!r:.300}"
    return len(replies), bool(protocol)


@pytest.fixture(scope="module")
def pair(stack: Stack) -> tuple[DevServerHandle, BridgeProcess]:
    dev = stack.devserver()
    return dev, stack.bridge(dev)


def _assert_alive(bridge: BridgeProcess) -> None:
    assert bridge.proc.poll() is None, f"the bridge died:\n{bridge.log()[-3000:]}"
    client = RespClient(bridge.port)
    try:
        assert client.call("PING") == b"PONG"
        assert client.call("SET", "rb:fz:alive", "1") == b"OK"
        assert client.call("GET", "rb:fz:alive") == b"1"
    finally:
        client.close()
    log = bridge.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_random_streams_get_replies_or_protocol_error(
    pair: tuple[DevServerHandle, BridgeProcess],
) -> None:
    _, bridge = pair
    rng = random.Random(SEED)
    cases = [make_case(rng) for _ in range(CASES)]
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda case: run_case(bridge.port, case[1]), cases))
    by_kind: Counter[str] = Counter(kind for kind, _ in cases)
    report(
        "fuzz[client]",
        {
            "seed": SEED,
            "cases": len(cases),
            "cases_by_kind": dict(by_kind),
            "bytes_sent": sum(len(data) for _, data in cases),
            "replies_checked": sum(n for n, _ in outcomes),
            "protocol_errors": sum(p for _, p in outcomes),
            "elapsed_s": round(time.monotonic() - started, 2),
        },
    )
    assert sum(p for _, p in outcomes) > 0 and sum(n for n, _ in outcomes) > len(cases)
    _assert_alive(bridge)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(TOKENS),
            st.binary(max_size=24),
            st.sampled_from(SEEDS).map(lambda c: pack(*c)),
        ),
        max_size=30,
    ).map(b"".join)
)
def test_hypothesis_streams(pair: tuple[DevServerHandle, BridgeProcess], data: bytes) -> None:
    _, bridge = pair
    run_case(bridge.port, data)
    assert bridge.proc.poll() is None


def test_oversized_headers_are_refused_at_once(
    pair: tuple[DevServerHandle, BridgeProcess],
) -> None:
    """A 1 GB bulk header or 2^31 arguments is refused at once with a protocol error
    (nothing allocated for it), and a bystander client is not held up meanwhile."""
    _, bridge = pair
    rss_before = rss_kb(bridge.proc.pid)
    bystander = RespClient(bridge.port)
    slowest: dict[str, float] = {}
    problems: list[str] = []
    try:
        for header in (
            b"*1\r\n$1073741824\r\n",
            b"*2147483648\r\n",
            b"*4294967295\r\n",
            b"*2\r\n$3\r\nGET\r\n$-5\r\n",
            b"*3000000\r\n",
        ):
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", bridge.port), timeout=30) as sock:
                sock.sendall(header + b"x" * 1024)
                time.sleep(0.05)
                ping_started = time.monotonic()
                assert bystander.call("PING", timeout_s=30) == b"PONG"
                ping_s = time.monotonic() - ping_started
                try:
                    reply = sock.recv(4096)
                except ConnectionResetError:
                    reply = b"(connection reset)"
            elapsed = time.monotonic() - started
            slowest[header.decode()] = round(max(elapsed, ping_s), 3)
            if not reply.startswith(b"-ERR Protocol error"):
                problems.append(f"{header!r}: answered {reply or b'(closed)'!r}")
            if elapsed >= 2.0 or ping_s >= 2.0:
                problems.append(
                    f"{header!r}: refused after {elapsed:.2f} s, a bystander's PING took "
                    f"{ping_s:.2f} s (the event loop was busy with it)"
                )
    finally:
        bystander.close()
        report("fuzz[oversized_headers]", {"seconds": slowest, "problems": problems})
    assert problems == []
    assert rss_kb(bridge.proc.pid) - rss_before < 64 * 1024  # kB: nothing near 1 GB
    _assert_alive(bridge)


@pytest.mark.parametrize("response_format", ["auto", "json"])
def test_garbage_upstream_bodies_become_error_replies(stack: Stack, response_format: str) -> None:
    dev = stack.devserver()
    bridge = stack.bridge(dev, "--response-format", response_format)
    client = RespClient(bridge.port, timeout_s=20)
    commands: list[tuple[bytes | str, ...]] = [
        ("SET", "rb:fz:g", "v"),
        ("GET", "rb:fz:g"),
        ("INCR", "rb:fz:gn"),
        ("HGETALL", "rb:fz:h"),
        ("LRANGE", "rb:fz:l", "0", "-1"),
        ("MGET", "rb:fz:g", "rb:fz:x"),
        ("SET", "rb:fz:gbin", b"\xff\x00"),  # binary: the path form
        ("EVAL", "return {1, 'a', {2}}", "0"),
    ]
    try:
        set_faults(dev, garbage_rate=1.0, seed=SEED)
        kinds: Counter[str] = Counter()
        for _ in range(5):
            client.send(*commands)
            for reply in client.read(len(commands)):
                text = error_text(reply)
                assert text is not None and text.startswith("ERR upstream"), reply
                kinds[text.split(":")[0]] += 1
            # A transaction: /multi-exec.
            client.send(("MULTI",), ("INCR", "rb:fz:gn"), ("GET", "rb:fz:g"), ("EXEC",))
            multi, q1, q2, exec_reply = client.read(4)
            assert (multi, q1, q2) == (b"OK", b"QUEUED", b"QUEUED")
            text = error_text(exec_reply)
            assert text is not None and text.startswith("ERR upstream"), exec_reply
            kinds["EXEC " + text.split(":")[0]] += 1
        injected = dev.stats()["faults_injected"]["garbage"]
        assert injected > 0
        set_faults(dev, **NO_FAULTS)
        wait_until_served(bridge.port)
        assert client.call("SET", "rb:fz:g", "ok") == b"OK"
        assert client.call("GET", "rb:fz:g") == b"ok"
        report(
            f"fuzz[upstream_garbage,{response_format}]",
            {"garbage_bodies": injected, "error_replies": dict(kinds)},
        )
    finally:
        client.close()
    _assert_alive(bridge)
