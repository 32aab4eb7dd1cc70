"""The circuit breaker: during an outage clients get fast "not executed" errors instead of
piling up timeouts, the upstream sees only probes, and recovery is automatic.

Contract: after `breaker_failures` (default 5) consecutive failed upstream requests
(unavailable, timeout, 5xx, garbage) commands are answered at once with
`-ERR upstream unavailable ... circuit open ... command not executed` for `breaker_open_s`
(default 1 s, doubling up to 30 s while the failures go on); then one request goes through
as a probe, and a success closes the circuit.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections import Counter

import hiredis
import pytest

from tests.conftest import DevServerHandle
from tests.e2e.conftest import BridgeProcess
from tests.reliability.helpers import (
    NO_FAULTS,
    RespClient,
    Stack,
    classify_error,
    error_text,
    pack,
    report,
    set_faults,
    wait_until_served,
)

#: Upstream deadline of the default-settings bridge (the breaker's own settings are defaults).
UPSTREAM_TIMEOUT_S = 2.0
DEFAULT_BREAKER_FAILURES = 5
#: How long the outage lasts while a client hammers the bridge.
OUTAGE_S = 2.0
RECOVERY_DEADLINE_S = 35.0  # the longest open period (30 s) plus slack


@pytest.fixture(scope="module")
def pair(stack: Stack) -> tuple[DevServerHandle, BridgeProcess]:
    dev = stack.devserver()
    return dev, stack.bridge(dev, "--upstream-timeout-s", str(UPSTREAM_TIMEOUT_S))


def _info_breaker(client: RespClient) -> str:
    # INFO is forwarded (the upstream's INFO + a bridge section), so only while it is served.
    info = client.call("INFO")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("bridge_circuit_breaker:"):
            return line.split(":", 1)[1]
    raise AssertionError("INFO has no bridge_circuit_breaker line")


@pytest.mark.parametrize("fault", ["error_rate", "garbage_rate"])
def test_outage_gives_fast_errors_then_recovers(
    pair: tuple[DevServerHandle, BridgeProcess], fault: str
) -> None:
    dev, bridge = pair
    wait_until_served(bridge.port)
    client = RespClient(bridge.port, timeout_s=2 * UPSTREAM_TIMEOUT_S + 5)
    try:
        assert _info_breaker(client) == "closed"
        dev.reset_stats()
        set_faults(dev, **{fault: 1.0})
        # Sequential commands: the first few reach the upstream and fail, then the circuit
        # opens and the bridge answers by itself.
        before_open: list[str] = []
        while True:
            text = error_text(client.call("GET", "rb:breaker"))
            assert text is not None, "a command succeeded during a total outage"
            if "circuit open" in text:
                break
            assert text.startswith("ERR upstream"), text
            before_open.append(text)
            assert len(before_open) <= DEFAULT_BREAKER_FAILURES, before_open
        assert "not executed" in text and text.startswith("ERR upstream unavailable"), text
        requests_to_open = dev.stats()["http_requests"]
        assert requests_to_open == DEFAULT_BREAKER_FAILURES

        # While it lasts: fast errors for everyone, only probes reach the upstream.
        latencies: list[float] = []
        kinds: Counter[str] = Counter()
        end = time.monotonic() + OUTAGE_S
        while time.monotonic() < end:
            started = time.monotonic()
            reply = client.call("GET", "rb:breaker")
            latencies.append(time.monotonic() - started)
            text = error_text(reply)
            assert text is not None
            kinds[classify_error(text)] += 1
        probes = dev.stats()["http_requests"] - requests_to_open
        # 1 s open, a failed probe, 2 s open: one probe, never a stream of requests.
        assert 1 <= probes <= 3, probes
        assert kinds["circuit_open"] >= 20 and kinds["circuit_open"] >= len(latencies) - probes
        assert statistics.median(latencies) < UPSTREAM_TIMEOUT_S / 4
        assert max(latencies) < UPSTREAM_TIMEOUT_S

        # The outage ends: the next probe succeeds and the circuit closes by itself.
        set_faults(dev, **NO_FAULTS)
        recovery_s = wait_until_served(bridge.port, RECOVERY_DEADLINE_S)
        replies = [client.call("GET", "rb:breaker") for _ in range(20)]
        assert all(error_text(r) is None for r in replies), replies
        assert _info_breaker(client) == "closed"
        report(
            f"breaker[{fault}]",
            {
                "upstream_requests_to_open": requests_to_open,
                "probes_during_outage": probes,
                "replies_during_outage": dict(kinds),
                "median_error_ms": round(statistics.median(latencies) * 1000, 2),
                "max_error_ms": round(max(latencies) * 1000, 2),
                "recovery_s": round(recovery_s, 2),
            },
        )
    finally:
        client.close()
        set_faults(dev, **NO_FAULTS)


def test_timeouts_open_the_circuit_with_configured_settings(stack: Stack) -> None:
    """Stalls (timeouts) count as failures; --breaker-failures / --breaker-open-s apply; many
    clients at once get fast errors instead of waiting for their own timeouts."""
    timeout_s = 1.0
    dev = stack.devserver()
    bridge = stack.bridge(
        dev,
        "--upstream-timeout-s", str(timeout_s),
        "--breaker-failures", "2",
        "--breaker-open-s", "1.5",
    )  # fmt: skip
    set_faults(dev, stall_rate=1.0, stall_s=4.0)
    client = RespClient(bridge.port, timeout_s=10)
    try:
        for _ in range(2):
            text = error_text(client.call("GET", "rb:breaker:t"))
            assert text is not None and "outcome unknown" in text, text
        # Open now: 30 clients pipelining 10 commands each are all answered at once.
        clients = [RespClient(bridge.port, timeout_s=10) for _ in range(30)]
        try:
            started = time.monotonic()
            for c in clients:
                c.send(*[("GET", f"rb:breaker:{i}") for i in range(10)])
            replies = [r for c in clients for r in c.read(10)]
            elapsed = time.monotonic() - started
        finally:
            for c in clients:
                c.close()
        texts = [error_text(r) or "" for r in replies]
        assert all("circuit open" in t and "not executed" in t for t in texts), texts[:3]
        assert elapsed < timeout_s, f"300 fast errors took {elapsed:.2f} s"
        assert dev.stats()["faults_injected"]["stall"] == 2  # nothing else reached it
        set_faults(dev, **NO_FAULTS)
        recovery_s = wait_until_served(bridge.port, 10.0)
        assert recovery_s < 1.5 + 3.0, recovery_s  # --breaker-open-s 1.5, then the probe
        report("breaker[stall]", {"open_replies": len(texts), "all_in_s": round(elapsed, 3)})
    finally:
        client.close()


def test_admin_upstream_shows_the_breaker(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 10: "the admin UPSTREAM shows the state" (open/closed) of the circuit."""
    dev = stack.devserver()
    admin = str(tmp_path_factory.mktemp("admin") / "admin.sock")
    bridge = stack.bridge(dev, "--admin-socket", admin, "--breaker-failures", "1")

    def upstream_view() -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(admin)
            sock.sendall(pack("UPSTREAM"))
            reader = hiredis.Reader()
            while (reply := reader.gets()) is False:
                data = sock.recv(65536)
                assert data, "admin socket closed"
                reader.feed(data)
        return repr(reply)

    assert "closed" in upstream_view(), "UPSTREAM does not show the circuit breaker"
    set_faults(dev, error_rate=1.0)
    client = RespClient(bridge.port)
    try:
        client.call("GET", "rb:admin")
        view = upstream_view()
        assert "breaker" in view or "circuit" in view, view
        assert "open" in view, view
    finally:
        client.close()
        set_faults(dev, **NO_FAULTS)
