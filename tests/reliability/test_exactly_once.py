"""Exactly-once accounting under faults: no acknowledged write lost, none run twice.

Concurrent clients send `INCR c` (one shared counter) and `RPUSH ledger:<client> <seq>` (a
unique entry per command) through a bridge whose devserver injects one kind of fault. With
S the INCRs acknowledged, U those answered "outcome unknown" and V the final value read
straight from redis-server: S <= V <= S + U. The ledgers say which RPUSH ran and how often:
an acknowledged one exactly once, one answered "command not executed" (circuit open,
refused before any request) never, none twice (the bridge never retries a write that may
have run). An error reply that is neither "not executed" nor "outcome unknown" is counted
as `unlabelled`: it says nothing about the outcome, so it may not hide a run write.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess
from tests.conftest import DevServerHandle
from tests.e2e.conftest import BridgeProcess
from tests.reliability.helpers import (
    NO_FAULTS,
    NOT_RUN,
    Checker,
    Command,
    LoadDriver,
    Mismatch,
    Stack,
    Workload,
    classify_error,
    error_text,
    report,
    set_faults,
    wait_until_served,
)

UPSTREAM_TIMEOUT_S = 1.0
ROUND_DEADLINE_S = 4 * (UPSTREAM_TIMEOUT_S + 1.0) + 8.0
CLIENTS = 12
RUN_S = 1.5
#: After the run, requests the devserver received late may still be running: let them land.
SETTLE_S = 0.5

KINDS = {
    "error": {"error_rate": 0.25},
    "error_after": {"error_after_rate": 0.25},
    "reset": {"reset_rate": 0.25},
    "stall": {"stall_rate": 0.2, "stall_s": 2.0 * UPSTREAM_TIMEOUT_S},
    "garbage": {"garbage_rate": 0.25},
}


class CounterWorkload(Workload):
    """Rounds of INCR c, RPUSH ledger seq (twice); outcomes recorded for the final check."""

    def __init__(self, run_id: str) -> None:
        self.counter_key = f"rb:eo:{run_id}:c"
        self.ledger_prefix = f"rb:eo:{run_id}:ledger:"
        self.incr: Counter[str] = Counter()
        self.incr_values: list[int] = []
        self.pushes: dict[tuple[int, int], str] = {}
        self._seq: Counter[int] = Counter()

    @staticmethod
    def _kind(reply: object) -> str | None:
        text = error_text(reply)
        if text is None:
            return None
        kind = classify_error(text)
        if kind == "upstream_other":
            return "unlabelled"
        if kind not in NOT_RUN and kind != "outcome_unknown":
            raise Mismatch(f"not an upstream error reply: {text[:200]!r}")
        return kind

    def next_round(self, cid: int) -> list[tuple[Command, Checker]]:
        commands: list[tuple[Command, Checker]] = []
        for _ in range(2):
            self._seq[cid] += 1
            seq = self._seq[cid]

            def check_incr(reply: object) -> str:
                kind = self._kind(reply)
                if kind is None:
                    if not isinstance(reply, int) or reply < 1:
                        raise Mismatch(f"INCR answered {reply!r:.100}")
                    self.incr_values.append(reply)
                    kind = "ok"
                self.incr[kind] += 1
                return kind

            def check_push(reply: object, key: tuple[int, int] = (cid, seq)) -> str:
                kind = self._kind(reply)
                if kind is None:
                    if not isinstance(reply, int) or reply < 1:
                        raise Mismatch(f"RPUSH answered {reply!r:.100}")
                    kind = "ok"
                self.pushes[key] = kind
                return kind

            commands.append((("INCR", self.counter_key), check_incr))
            commands.append((("RPUSH", f"{self.ledger_prefix}{cid}", seq), check_push))
        return commands


@pytest.fixture(scope="module")
def pair(stack: Stack) -> tuple[DevServerHandle, BridgeProcess]:
    dev = stack.devserver()
    return dev, stack.bridge(dev, "--upstream-timeout-s", str(UPSTREAM_TIMEOUT_S))


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_write_lost_none_run_twice(
    pair: tuple[DevServerHandle, BridgeProcess], redis_server: RedisServerProcess, kind: str
) -> None:
    dev, bridge = pair
    wait_until_served(bridge.port)
    dev.reset_stats()
    workload = CounterWorkload(f"{kind}-{time.time_ns()}")
    set_faults(dev, **KINDS[kind], seed=1000 + len(kind))
    driver = LoadDriver(bridge.port, CLIENTS, workload, round_deadline_s=ROUND_DEADLINE_S)
    driver.connect()
    try:
        result = driver.run(RUN_S)
    finally:
        driver.close()
        set_faults(dev, **NO_FAULTS)
    time.sleep(SETTLE_S)
    injected = dev.stats()["faults_injected"]
    direct = redis.Redis.from_url(redis_server.url)
    try:
        value = int(direct.get(workload.counter_key) or 0)
        ledgers = {
            cid: Counter(int(x) for x in direct.lrange(f"{workload.ledger_prefix}{cid}", 0, -1))
            for cid in range(CLIENTS)
        }
    finally:
        direct.close()

    s, u = workload.incr["ok"], workload.incr["outcome_unknown"]
    not_run = sum(workload.incr[k] for k in NOT_RUN)
    unlabelled = workload.incr["unlabelled"]
    twice = [(c, q) for c, ledger in ledgers.items() for q, n in ledger.items() if n > 1]
    ran = {(c, q) for c, ledger in ledgers.items() for q in ledger}
    lost = [k for k, outcome in workload.pushes.items() if outcome == "ok" and k not in ran]
    ran_anyway = [k for k, outcome in workload.pushes.items() if outcome in NOT_RUN and k in ran]
    unlabelled_ran = [
        k for k, outcome in workload.pushes.items() if outcome == "unlabelled" and k in ran
    ]
    report(
        f"exactly_once[{kind}]",
        {
            "incr_S_acknowledged": s,
            "incr_U_outcome_unknown": u,
            "incr_not_executed": not_run,
            "incr_unlabelled_errors": unlabelled,
            "final_V": value,
            "rpush_total": len(workload.pushes),
            "rpush_run_twice": len(twice),
            "rpush_acknowledged_but_lost": len(lost),
            "rpush_not_executed_but_ran": len(ran_anyway),
            "rpush_unlabelled_but_ran": len(unlabelled_ran),
            "faults_injected": injected,
            "failures": len(result.failures),
        },
    )
    assert result.failures == [], result.failures[:5]
    assert sum(injected.values()) > 0 and s > 0
    assert len(set(workload.incr_values)) == s, "two acknowledged INCRs returned the same value"
    assert max(workload.incr_values) <= value
    assert twice == [], f"writes run twice: {twice[:10]}"
    assert lost == [], f"acknowledged writes lost: {lost[:10]}"
    assert ran_anyway == [], f"'command not executed' but it ran: {ran_anyway[:10]}"
    assert s <= value, f"acknowledged INCRs lost: S={s} > V={value}"
    assert value <= s + u, (
        f"V={value} > S+U={s + u}: {value - s - u} INCR(s) ran although their reply did not "
        f"say 'outcome unknown' ({unlabelled} unlabelled upstream error replies, e.g. "
        "'ERR upstream HTTP 500: ...', of which some ran)"
    )
    assert unlabelled_ran == [], (
        f"{len(unlabelled_ran)} RPUSH(es) ran although their error reply said neither "
        "'outcome unknown' nor 'not executed'"
    )
