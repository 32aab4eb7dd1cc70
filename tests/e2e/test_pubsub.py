"""Pub/sub and MONITOR through the bridge: real redis-server + devserver + bridge + clients.

Covers redis-py `PubSub` (RESP2 and RESP3: `get_message`, `listen`, `run_in_thread`, patterns,
unsubscribe all, per-client counts), `redis-cli SUBSCRIBE`/`MONITOR` as subprocesses, the one
shared upstream stream per channel, a stream broken under the bridge, a slow subscriber, and
channel names and payloads the SSE text format has to carry. Every wait has a deadline.
"""

from __future__ import annotations

import os
import queue
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.client

from tests.conftest import DevServerHandle
from tests.e2e.conftest import BridgeProcess

#: Upper bound for anything a test waits for (a failure, not a timing assertion).
WAIT_S = 10.0

Factory = Callable[..., Any]


# -- helpers -----------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def next_message(
    p: redis.client.PubSub, types: tuple[str, ...] = ("message", "pmessage")
) -> dict[str, Any]:
    """The next message of one of `types` (others are skipped), within WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while (remaining := deadline - time.monotonic()) > 0:
        message = p.get_message(timeout=remaining)
        if message is not None and message["type"] in types:
            return message  # type: ignore[no-any-return]
    raise AssertionError(f"no {types} message within {WAIT_S} s")


def confirmations(p: redis.client.PubSub, n: int) -> list[tuple[str, bytes | None, int]]:
    """The next n (p)(un)subscribe confirmations as (type, name, count)."""
    kinds = ("subscribe", "psubscribe", "unsubscribe", "punsubscribe")
    out = []
    for _ in range(n):
        m = next_message(p, kinds)
        out.append((m["type"], m["channel"], m["data"]))
    return out


def no_message(p: redis.client.PubSub, wait_s: float = 0.3) -> None:
    message = p.get_message(timeout=wait_s)
    assert message is None, message


class LineReader:
    """Lines of a subprocess' stdout, each read under a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def line(self, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"no line within {timeout} s (have {self.buffer!r})")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"EOF (have {self.buffer!r})")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def until(self, predicate: Callable[[str], bool], timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.01, deadline - time.monotonic()))
            if predicate(line):
                return line


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
def isolated(devserver_factory: Factory, bridge_factory: Factory) -> tuple[DevServerHandle, Any]:
    """A devserver and a bridge of this test's own, so stream counts are this test's only."""
    dev = devserver_factory()
    return dev, bridge_factory(dev.url, dev.token)


def pubsub_of(bridge: BridgeProcess, protocol: int = 2) -> redis.client.PubSub:
    return bridge.client(protocol=protocol).pubsub()


# -- redis-py ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_get_message_patterns_and_counts(bridge: BridgeProcess, protocol: int) -> None:
    publisher = bridge.client(protocol=protocol)
    p = pubsub_of(bridge, protocol)
    other = pubsub_of(bridge, protocol)
    p.subscribe("gm:a", "gm:b")
    p.psubscribe("gm:p.*")
    other.subscribe("gm:a")
    assert confirmations(p, 3) == [
        ("subscribe", b"gm:a", 1),
        ("subscribe", b"gm:b", 2),
        ("psubscribe", b"gm:p.*", 3),
    ]
    assert confirmations(other, 1) == [("subscribe", b"gm:a", 1)]  # counts are per client

    assert publisher.publish("gm:a", "hello") == 1  # one shared upstream stream
    assert publisher.publish("gm:p.x", "via pattern") == 1
    got = next_message(p)
    assert (got["type"], got["channel"], got["data"]) == ("message", b"gm:a", b"hello")
    got = next_message(p)
    assert (got["type"], got["pattern"], got["channel"], got["data"]) == (
        "pmessage",
        b"gm:p.*",
        b"gm:p.x",
        b"via pattern",
    )
    assert next_message(other)["data"] == b"hello"
    no_message(other)

    p.ping()
    assert next_message(p, ("pong",))["data"] in (b"", "")

    p.unsubscribe()  # all channels
    got_unsub = confirmations(p, 2)
    assert sorted(got_unsub) == [("unsubscribe", b"gm:a", 2), ("unsubscribe", b"gm:b", 1)]
    p.punsubscribe()
    assert confirmations(p, 1) == [("punsubscribe", b"gm:p.*", 0)]
    publisher.publish("gm:a", "after")
    assert next_message(other)["data"] == b"after"
    no_message(p)
    p.close()
    other.close()


def test_listen(bridge: BridgeProcess) -> None:
    publisher = bridge.client()
    p = pubsub_of(bridge)
    p.subscribe("listen:ch")
    assert confirmations(p, 1) == [("subscribe", b"listen:ch", 1)]
    for i in range(3):
        publisher.publish("listen:ch", f"m{i}")
    seen: list[bytes] = []
    for message in p.listen():  # the client's 10 s socket timeout bounds each read
        if message["type"] == "message":
            seen.append(message["data"])
            if len(seen) == 3:
                break
    assert seen == [b"m0", b"m1", b"m2"]
    p.close()


def test_run_in_thread(bridge: BridgeProcess) -> None:
    publisher = bridge.client()
    p = pubsub_of(bridge)
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    p.subscribe(**{"thread:ch": received.put})
    p.psubscribe(**{"thread:p*": received.put})
    worker = p.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        wait_until(lambda: publisher.pubsub_numpat() >= 1, "the pattern to be live")
        wait_until(
            lambda: dict(publisher.pubsub_numsub("thread:ch"))[b"thread:ch"] >= 1,
            "the channel to be live",
        )
        publisher.publish("thread:ch", "one")
        publisher.publish("thread:pq", "two")
        # Two streams (the channel's, the pattern's): their messages may arrive in either
        # order (README, Pub/Sub), so they are compared by channel.
        got = {m["channel"]: m for m in (received.get(timeout=WAIT_S) for _ in range(2))}
        assert (got[b"thread:ch"]["type"], got[b"thread:ch"]["data"]) == ("message", b"one")
        assert (got[b"thread:pq"]["pattern"], got[b"thread:pq"]["data"]) == (b"thread:p*", b"two")
    finally:
        worker.stop()
        worker.join(WAIT_S)
    assert not worker.is_alive()
    p.close()


def test_message_after_confirmation_is_never_missed(bridge: BridgeProcess) -> None:
    """The confirmation waits for the upstream stream: a publish right after it arrives."""
    publisher = bridge.client()
    for i in range(15):
        p = pubsub_of(bridge)
        channel = f"race:{i}"
        p.subscribe(channel)
        assert confirmations(p, 1) == [("subscribe", channel.encode(), 1)]
        assert publisher.publish(channel, "right away") == 1
        assert next_message(p)["data"] == b"right away"
        p.close()


def test_pubsub_introspection(bridge: BridgeProcess, redis_server: Any) -> None:
    publisher = bridge.client()
    subs = [pubsub_of(bridge) for _ in range(3)]
    for p in subs:
        p.subscribe("intro:ch")
        confirmations(p, 1)
    subs[0].psubscribe("intro:*")
    confirmations(subs[0], 1)
    assert b"intro:ch" in publisher.pubsub_channels("intro:*")
    # Three bridge clients share one upstream stream; NUMSUB counts the clients, as Redis.
    assert publisher.pubsub_numsub("intro:ch") == [(b"intro:ch", 3)]
    assert publisher.pubsub_numpat() >= 1
    for p in subs:
        p.close()


# -- names and payloads -------------------------------------------------------------------------

CHANNELS = [
    b"with/slash",
    b"with,comma,s",
    b"with space",
    "non-ASCII ü €".encode(),
    b"..",
    b"%41",
    b"a?b#c&d=e",
    b"bin\xff\x00ary",
]


def test_channel_names(bridge: BridgeProcess) -> None:
    publisher = bridge.client()
    p = pubsub_of(bridge)
    p.subscribe(*CHANNELS)
    assert [c for _, c, _ in confirmations(p, len(CHANNELS))] == CHANNELS
    for i, channel in enumerate(CHANNELS):
        assert publisher.publish(channel, f"to channel {i}") == 1
        got = next_message(p)
        assert (got["channel"], got["data"]) == (channel, f"to channel {i}".encode())
    p.close()


def test_pattern_channel_names(bridge: BridgeProcess) -> None:
    publisher = bridge.client()
    p = pubsub_of(bridge)
    p.psubscribe("pn/*", "pn,a,*", "pn ü?")
    confirmations(p, 3)
    cases = [
        ("pn/x/y z", "pn/*", "payload, with, commas"),
        ("pn,a,b", "pn,a,*", "literal commas in the pattern"),
        ("pn ü!", "pn ü?", "ü"),
    ]
    for channel, pattern, payload in cases:
        assert publisher.publish(channel, payload) == 1
        got = next_message(p)
        assert (got["pattern"], got["channel"], got["data"]) == (
            pattern.encode(),
            channel.encode(),
            payload.encode(),
        )
    # With base64 events (the devserver's extension) even a comma that only a wildcard covers
    # is exact; over Upstash's plain text the channel would be cut at that comma (documented).
    assert publisher.publish("pn/a,b", "tail") == 1
    got = next_message(p)
    assert (got["channel"], got["data"]) == (b"pn/a,b", b"tail")
    p.close()


def test_payloads(bridge: BridgeProcess) -> None:
    publisher = bridge.client()
    p = pubsub_of(bridge)
    p.subscribe("payloads")
    confirmations(p, 1)
    exact = [
        b"",
        b"a,b,,c,",
        b"line 1\nline 2\n\n",
        "ünïcödé €𝄞".encode(),
        b"data: not a field\n\nevent: x",
        (b"0123456789abcdef" * 6400),  # 100 KB
        b'{"json": [1, 2, 3], "s": "x,y"}',
    ]
    # Binary-exact too: the bridge asks for base64 event fields (a devserver extension that
    # Upstash ignores; against Upstash, CR/CRLF would arrive as LF and invalid UTF-8 as U+FFFD).
    exact += [b"cr\rlf\r\nend", b"bin\xff\xfe\x00"]
    for payload in exact:
        publisher.publish("payloads", payload)
        assert next_message(p)["data"] == payload
    p.close()


# -- redis-cli ----------------------------------------------------------------------------------


def test_redis_cli_subscribe(bridge: BridgeProcess, spawn: Callable[..., Any]) -> None:
    proc = spawn("redis-cli", "-p", str(bridge.port), "SUBSCRIBE", "cli:ch", "cli,2")
    out = LineReader(proc)
    assert [out.line() for _ in range(6)] == ["subscribe", "cli:ch", "1", "subscribe", "cli,2", "2"]
    publisher = bridge.client()
    assert publisher.publish("cli,2", "hello from, redis-py") == 1
    assert [out.line() for _ in range(3)] == ["message", "cli,2", "hello from, redis-py"]


def test_redis_cli_monitor(bridge: BridgeProcess, spawn: Callable[..., Any]) -> None:
    proc = spawn("redis-cli", "-p", str(bridge.port), "MONITOR")
    out = LineReader(proc)
    assert out.line() == "OK"
    client = bridge.client()
    client.set("monitor:key", "watched value")
    line = out.until(lambda text: '"monitor:key"' in text)
    assert '"SET" "monitor:key" "watched value"' in line or '"set" "monitor:key"' in line


def test_redis_py_monitor_and_stream_sharing(isolated: tuple[DevServerHandle, Any]) -> None:
    dev, bridge = isolated
    first = bridge.client()
    second = bridge.client()
    with first.monitor() as m1, second.monitor() as m2:
        wait_until(lambda: dev.stats()["sse_streams_open"] == 1, "one shared /monitor stream")
        bridge.client().get("monitored:key")
        for m in (m1, m2):
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                command = m.next_command()
                if "monitored:key" in command["command"]:
                    break
            else:
                raise AssertionError("the command never showed up in MONITOR")
    first.close()
    second.close()
    wait_until(lambda: dev.stats()["sse_streams_open"] == 0, "the /monitor stream to close")


# -- sharing, breaking, slow subscribers ------------------------------------------------------


def test_twenty_clients_share_one_stream(isolated: tuple[DevServerHandle, Any]) -> None:
    dev, bridge = isolated
    subs = [pubsub_of(bridge) for _ in range(20)]
    for p in subs:
        p.subscribe("shared:ch")
    for p in subs:
        assert confirmations(p, 1) == [("subscribe", b"shared:ch", 1)]
    assert dev.stats()["sse_streams_open"] == 1
    assert dev.stats()["sse_streams_total"] == 1
    assert bridge.client().publish("shared:ch", "to all") == 1
    for p in subs:
        assert next_message(p)["data"] == b"to all"
    # Half leave with UNSUBSCRIBE, half by disconnecting: the stream stays until the last.
    for p in subs[:10]:
        p.unsubscribe("shared:ch")
        confirmations(p, 1)
    for p in subs[10:19]:
        p.close()
    time.sleep(0.2)
    assert dev.stats()["sse_streams_open"] == 1
    subs[19].close()
    wait_until(lambda: dev.stats()["sse_streams_open"] == 0, "the shared stream to close")
    for p in subs[:10]:
        p.close()


def test_stream_break_reconnects(
    isolated: tuple[DevServerHandle, Any], redis_client: redis.Redis
) -> None:
    dev, bridge = isolated
    publisher = bridge.client()
    p = pubsub_of(bridge)
    p.subscribe("break:ch")
    p.psubscribe("break:*")
    confirmations(p, 2)
    publisher.publish("break:ch", "before")
    assert [next_message(p)["data"] for _ in range(2)] == [b"before", b"before"]
    opened = dev.stats()["sse_streams_total"]

    # Killing the upstream's subscriber connections makes the devserver end both SSE streams.
    assert redis_client.client_kill_filter(_type="pubsub") >= 2
    wait_until(
        lambda: (
            dev.stats()["sse_streams_total"] >= opened + 2 and dev.stats()["sse_streams_open"] == 2
        ),
        "the bridge to reopen both streams",
    )
    wait_until(
        lambda: (
            dict(redis_client.pubsub_numsub("break:ch"))[b"break:ch"] == 1
            and redis_client.pubsub_numpat() == 1
        ),
        "the upstream subscriptions to be back",
    )
    publisher.publish("break:ch", "after")
    # The subscriber saw nothing of the break: no new confirmations, no duplicates.
    got = [next_message(p, ("message", "pmessage", "subscribe", "psubscribe")) for _ in range(2)]
    assert sorted((m["type"], m["data"]) for m in got) == [
        ("message", b"after"),
        ("pmessage", b"after"),
    ]
    no_message(p)
    p.ping()
    assert next_message(p, ("pong",)) is not None  # same connection, still subscribed
    assert "broke" in bridge.log() and "reconnecting" in bridge.log()
    p.close()


def test_slow_subscriber_is_disconnected_others_keep_receiving(
    isolated: tuple[DevServerHandle, Any],
) -> None:
    _dev, bridge = isolated
    publisher = bridge.client(socket_timeout=30)
    channel = b"slow:ch"

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", bridge.port))
    slow.settimeout(WAIT_S)
    slow.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\n" + channel + b"\r\n")
    assert slow.recv(64).startswith(b"*3\r\n$9\r\nsubscribe\r\n")

    good = pubsub_of(bridge)
    good.subscribe(channel)
    confirmations(good, 1)
    count = 50
    payload = b"x" * (1024 * 1024)  # 50 MB in all: past the 32 MB pub/sub output limit
    received: list[int] = []
    errors: list[BaseException] = []

    def read_all() -> None:
        try:
            while len(received) < count:
                received.append(len(next_message(good)["data"]))
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    for _ in range(count):
        publisher.publish(channel, payload)
    reader.join(30)
    assert not errors, errors
    assert received == [len(payload)] * count

    wait_until(lambda: "pub/sub output unread" in bridge.log(), "the slow client to be cut")
    slow.settimeout(0.5)
    deadline = time.monotonic() + WAIT_S
    while True:  # drain what the kernel buffered: the bridge has closed the connection
        assert time.monotonic() < deadline, "the slow subscriber was never disconnected"
        try:
            if not slow.recv(1 << 20):
                break
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
    slow.close()
    publisher.publish(channel, "still flowing")
    assert next_message(good)["data"] == b"still flowing"
    good.close()
