"""Under each upstream fault, every command gets exactly one reply, in order, in time.

Many raw clients pipeline `SET k v` / `GET k` / `INCR own-counter` rounds through a bridge
whose devserver injects one kind of fault (switched at runtime); every reply is checked
against the command it answers (see `KeyValueWorkload`): a matching result or a Redis-style
`-ERR upstream ...` error, never a reply meant for another command, never a hang (a round
unanswered after ROUND_DEADLINE_S fails the test), never a dropped connection.
"""

from __future__ import annotations

import time
import zlib

import pytest

from tests.conftest import DevServerHandle
from tests.e2e.conftest import BridgeProcess
from tests.reliability.helpers import (
    NO_FAULTS,
    KeyValueWorkload,
    LoadDriver,
    RespClient,
    Stack,
    report,
    set_faults,
    wait_until_served,
)

#: The bridge's upstream deadline in these tests (small, so stalls become timeouts quickly).
UPSTREAM_TIMEOUT_S = 1.0
#: Generous: a round may wait behind a few timed-out batches on a loaded 2-core machine.
ROUND_DEADLINE_S = 4 * (UPSTREAM_TIMEOUT_S + 1.0) + 8.0
CLIENTS = 16
RUN_S = 1.5

KINDS = {
    "error": {"error_rate": 0.25},
    "error_after": {"error_after_rate": 0.25},
    "reset": {"reset_rate": 0.25},
    "garbage": {"garbage_rate": 0.25},
    "stall": {"stall_rate": 0.2, "stall_s": 2.5 * UPSTREAM_TIMEOUT_S},
    "mixed": {
        "error_rate": 0.05,
        "error_after_rate": 0.05,
        "reset_rate": 0.05,
        "garbage_rate": 0.05,
        "stall_rate": 0.05,
        "stall_s": 2.5 * UPSTREAM_TIMEOUT_S,
    },
}


@pytest.fixture(scope="module")
def pair(stack: Stack) -> tuple[DevServerHandle, BridgeProcess]:
    dev = stack.devserver()
    return dev, stack.bridge(dev, "--upstream-timeout-s", str(UPSTREAM_TIMEOUT_S))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_command_gets_its_own_reply_in_time(
    pair: tuple[DevServerHandle, BridgeProcess], kind: str
) -> None:
    dev, bridge = pair
    wait_until_served(bridge.port)
    dev.reset_stats()
    set_faults(dev, **KINDS[kind], seed=zlib.crc32(kind.encode()))
    driver = LoadDriver(
        bridge.port,
        CLIENTS,
        KeyValueWorkload(f"fr-{kind}-{time.time_ns()}", per_round=2),
        round_deadline_s=ROUND_DEADLINE_S,
    )
    driver.connect()
    try:
        result = driver.run(RUN_S)
    finally:
        driver.close()
        set_faults(dev, **NO_FAULTS)
    injected = dev.stats()["faults_injected"]
    recovery_s = wait_until_served(bridge.port)
    report(
        f"fault_replies[{kind}]",
        {**result.figures(), "faults_injected": injected, "recovery_s": round(recovery_s, 2)},
    )
    assert result.failures == [], result.failures[:5]
    assert result.replies_checked == result.commands_sent > 0
    assert result.max_round_s < ROUND_DEADLINE_S
    assert result.outcomes["ok"] > 0
    assert sum(injected.values()) > 0, "no fault was injected: the test proved nothing"
    errors = result.replies_checked - result.outcomes["ok"]
    assert errors > 0, "faults were injected but no client saw an error"
    assert bridge.proc.poll() is None


def test_pubsub_survives_a_slow_event_stream(pair: tuple[DevServerHandle, BridgeProcess]) -> None:
    """Every SSE chunk delayed: subscribers still get the confirmation, then every message,
    in order, while other clients' commands are not held up."""
    dev, bridge = pair
    set_faults(dev, slow_sse_ms=150)
    subscriber = RespClient(bridge.port, timeout_s=15)
    publisher = RespClient(bridge.port, timeout_s=15)
    try:
        subscriber.send(("SUBSCRIBE", "rb:slow-sse"))
        assert subscriber.read(1) == [[b"subscribe", b"rb:slow-sse", 1]]
        started = time.monotonic()
        for i in range(5):
            assert publisher.call("PUBLISH", "rb:slow-sse", f"m{i}") == 1
        assert time.monotonic() - started < 5.0  # publishing is not held up by the stream
        messages = subscriber.read(5)
        assert messages == [[b"message", b"rb:slow-sse", f"m{i}".encode()] for i in range(5)]
        assert dev.stats()["faults_injected"]["slow_sse"] >= 6
    finally:
        subscriber.close()
        publisher.close()
        set_faults(dev, **NO_FAULTS)
