"""Soak: 1,000 connected clients under sustained load, with a trickle of every upstream
fault, for a bounded time (RESP_BRIDGE_SOAK_S, default 20 s); memory must stay flat.

Every reply is checked against its command (`KeyValueWorkload`); the bridge's RSS (VmRSS)
is sampled after the clients connected and a warm-up, every second, and at the end. Figures
(commands, replies checked, errors by kind, faults injected, RSS) are reported.
"""

from __future__ import annotations

import os
import time

from tests.reliability.helpers import (
    NO_FAULTS,
    KeyValueWorkload,
    LoadDriver,
    RespClient,
    Stack,
    report,
    rss_kb,
    set_faults,
)

SOAK_S = float(os.environ.get("RESP_BRIDGE_SOAK_S", "20"))
CLIENTS = int(os.environ.get("RESP_BRIDGE_SOAK_CLIENTS", "1000"))
WARMUP_S = 1.0
#: Generous: with 1,000 clients a round waits behind everyone else's batches, and a stalled
#: batch times out after the bridge's 3 s upstream deadline.
ROUND_DEADLINE_S = 30.0
#: Allowed RSS growth from the warmed-up start to the end: 64 MB plus 20 %.
RSS_GROWTH_KB = 64 * 1024
RSS_GROWTH_FRACTION = 0.2
#: A trickle of every fault kind per upstream request (each request carries hundreds of
#: commands under this load): rarely enough to never open the circuit breaker.
TRICKLE = {
    "error_rate": 0.01,
    "error_after_rate": 0.01,
    "reset_rate": 0.01,
    "garbage_rate": 0.01,
    "stall_rate": 0.003,
    "stall_s": 4.0,
}


def _connected_clients(port: int) -> int:
    client = RespClient(port)
    try:
        for _ in range(20):  # INFO is forwarded: a rare injected fault may fail it
            info = client.call("INFO")
            if isinstance(info, bytes):
                for line in info.decode().splitlines():
                    if line.startswith("bridge_connected_clients:"):
                        return int(line.split(":")[1])
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError("INFO never answered")


def test_thousand_clients_soak_with_flat_memory(stack: Stack) -> None:
    dev = stack.devserver()
    bridge = stack.bridge(dev)
    pid = bridge.proc.pid
    rss_idle = rss_kb(pid)
    driver = LoadDriver(
        bridge.port,
        CLIENTS,
        KeyValueWorkload(f"soak-{time.time_ns()}", per_round=1),
        round_deadline_s=ROUND_DEADLINE_S,
    )
    driver.connect()
    samples: list[int] = []
    try:
        assert _connected_clients(bridge.port) >= CLIENTS + 1
        set_faults(dev, **TRICKLE, seed=2026)
        driver.run(WARMUP_S)
        dev.reset_stats()
        driver.reset_result()
        rss_start = rss_kb(pid)
        result = driver.run(SOAK_S, tick=lambda: samples.append(rss_kb(pid)))
        rss_end = rss_kb(pid)
        connected = driver.connected
    finally:
        driver.close()
        set_faults(dev, **NO_FAULTS)
    stats = dev.stats()
    figures = {
        **result.figures(),
        "soak_s": SOAK_S,
        "commands_per_s": round(result.commands_sent / max(result.elapsed_s, 1e-9)),
        "errors_by_kind": {k: v for k, v in result.outcomes.items() if k != "ok"},
        "faults_injected": stats["faults_injected"],
        "upstream_http_requests": stats["http_requests"],
        "upstream_commands": stats["commands"],
        "rss_idle_kb": rss_idle,
        "rss_start_kb": rss_start,
        "rss_end_kb": rss_end,
        "rss_max_kb": max(samples or [rss_end]),
        "clients_connected_at_end": connected,
    }
    report("soak", figures)
    assert result.failures == [], result.failures[:5]
    assert connected == CLIENTS
    assert result.replies_checked == result.commands_sent
    assert result.outcomes["ok"] > 0.9 * result.replies_checked
    assert sum(stats["faults_injected"].values()) > 0
    limit = RSS_GROWTH_KB + RSS_GROWTH_FRACTION * rss_start
    assert rss_end - rss_start < limit, f"RSS grew {rss_end - rss_start} kB (limit {limit:.0f})"
    assert bridge.proc.poll() is None
