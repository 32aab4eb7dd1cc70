"""The loopback send-cost tool runs and reports both kinds of send."""

from __future__ import annotations

from benchmarks.loopback_send import measure


def test_measure_reports_first_and_later_sends() -> None:
    first, later = measure(3, 0.0002, spin=False, rounds=20)
    assert 0 < first < 1 and later is not None and 0 < later < 1
    alone, none = measure(1, 0, spin=True, rounds=5)
    assert 0 < alone < 1 and none is None
