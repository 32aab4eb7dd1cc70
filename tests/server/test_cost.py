"""The cost meter without I/O: counts by source, windows, budget warnings and refusals."""

from __future__ import annotations

import logging

import pytest

from bridge.server.cost import BLOCKING, CLIENT, PROBE, WATCH, CostMeter
from bridge.server.keyspace import _normalise, flags_cover, key_pattern, parse_flags


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


DAY0 = 1_800_000_000.0 - 1_800_000_000.0 % 86400  # a UTC midnight


def test_counts_by_source_and_the_estimate() -> None:
    meter = CostMeter(clock=Clock(DAY0 + 10))
    meter.add(CLIENT, 3)
    meter.add_sources([BLOCKING, BLOCKING, WATCH])
    meter.add_sources([CLIENT, CLIENT])  # one source: counted in one step
    meter.add_sources([])
    report = meter.report()
    assert report["commands_total"] == 8
    assert report["by_source"] == {
        "client": 5, "blocking": 2, "watch": 1, "probe": 0, "pubsub": 0, "keyspace": 0,
    }  # fmt: skip
    assert report["estimate"]["since_start"] == round(8 * 0.20 / 100_000, 4)


def test_the_rate_is_extrapolated_to_a_day_and_a_month() -> None:
    clock = Clock(DAY0)
    meter = CostMeter(clock=clock)
    for _ in range(60):  # one command a second for a minute
        clock.now += 1
        meter.add(BLOCKING)
    report = meter.report()
    assert report["rate_per_minute"] == pytest.approx(60, rel=0.05)
    assert report["extrapolated_per_day"] == pytest.approx(86400, rel=0.05)
    assert report["extrapolated_per_month"] == pytest.approx(86400 * 30, rel=0.05)


def test_budget_warnings_at_80_and_100_percent_once(caplog: pytest.LogCaptureFixture) -> None:
    meter = CostMeter(budget_per_day=10, clock=Clock(DAY0 + 5))
    with caplog.at_level(logging.WARNING, logger="bridge.cost"):
        meter.add(CLIENT, 7)
        assert meter.status_note() == ""
        meter.add(CLIENT)
        assert "80% used" in meter.status_note()
        meter.add(CLIENT, 5)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "day budget 80% used (8 of 10 commands)" in warnings[0]
    assert "exhausted" in warnings[1] and "budget_enforce = false" in warnings[1]
    assert "exhausted" in meter.status_note()
    assert not meter.limited  # warn only


def test_an_enforced_budget_stops_bridge_commands_first_then_client_ones() -> None:
    clock = Clock(DAY0 + 5)
    meter = CostMeter(budget_per_day=100, enforce=True, clock=clock)
    assert meter.limited
    meter.add(CLIENT, 94)
    assert meter.refusal(BLOCKING) is None and meter.refusal(CLIENT) is None
    meter.add(CLIENT, 1)  # 95%: polls and probes stop
    refusal = meter.refusal(PROBE)
    assert refusal is not None and "command not executed" in refusal
    assert meter.refusal(BLOCKING) is not None
    assert meter.refusal(CLIENT) is None
    meter.add(CLIENT, 5)
    assert "command budget exhausted" in (meter.refusal(CLIENT) or "")
    assert meter.report()["refused"] == {"blocking": 1, "client": 1, "probe": 1}
    clock.now += 86400  # a new UTC day: the daily count starts again
    assert meter.refusal(CLIENT) is None
    assert meter.report()["today_utc"] == 0 and meter.report()["commands_total"] == 100


def test_keyspace_flags_and_patterns() -> None:
    assert flags_cover(parse_flags("KEA"), "g$lshzxet")
    assert flags_cover(parse_flags("Kgl"), "gl") and not flags_cover(parse_flags("Kgl"), "gz")
    assert not flags_cover(parse_flags("EA"), "gl")  # keyevent only: no key channel
    assert not flags_cover(None, "gl")
    assert _normalise("" + "KA") == b"KA"
    assert _normalise("Ex" + "KA") == b"KEA"
    assert key_pattern(b"q*[1]\\") == b"__keyspace@*__:q\\*\\[1\\]\\\\"
