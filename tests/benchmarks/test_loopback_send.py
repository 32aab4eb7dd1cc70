"""The loopback send-cost tool runs and reports both kinds of send."""

from __future__ import annotations

from benchmarks.loopback_send import measure


def test_measure_reports_first_and_later_sends() -> None:
    first, later = measure(3, 0.0002, spin=False, rounds=20)
    assert first > 0 and later is not None and later > 0
    alone, none = measure(1, 0, spin=True, rounds=5)
    assert alone > 0 and none is None  # one connection: no later sends in a round
