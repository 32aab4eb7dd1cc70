"""Counters and latency histograms of a running bridge (read by INFO, admin STATS, METRICS).

Plain integers updated from the trio thread only, so no locks. Latency uses fixed log-spaced
buckets: constant memory however long the bridge runs.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

from bridge.server.cost import CostMeter

#: Upper bounds (ms) of the latency buckets: 0.25 ms … 30 s, roughly x1.5 apart.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    *tuple(round(0.25 * 1.5**i, 3) for i in range(29)),
    float("inf"),
)


class Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(LATENCY_BUCKETS_MS)
        self.count = 0
        self.total = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.count += 1
        self.total += ms

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (0 when empty)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for bound, n in zip(LATENCY_BUCKETS_MS, self.counts, strict=True):
            seen += n
            if seen >= rank:
                return bound if bound != float("inf") else LATENCY_BUCKETS_MS[-2]
        return LATENCY_BUCKETS_MS[-2]


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    connections_total: int = 0
    connections_rejected: int = 0
    commands_total: int = 0
    commands_local: int = 0
    commands_forwarded: int = 0
    transactions: int = 0
    batches: int = 0
    batched_commands: int = 0
    http_requests: int = 0
    retries: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    protocol_errors: int = 0
    #: Commands the bridge refused itself, by (command, reason): what apps try that it lacks.
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    upstream_latency: Histogram = field(default_factory=Histogram)
    #: Upstream commands by what caused them, budgets (bridge.server.cost).
    cost: CostMeter = field(default_factory=CostMeter)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def commands_per_batch(self) -> float:
        return self.batched_commands / self.batches if self.batches else 0.0
