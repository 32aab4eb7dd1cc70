"""Circuit breaker for the upstream: during an outage, clients get fast errors, not timeouts.

After `failures` consecutive failed requests the circuit opens: requests are refused at once
(the commands were certainly not executed) for `open_s`. Then one request is let through as a
probe (half-open): success closes the circuit, failure opens it again for twice as long, up to
`MAX_OPEN_S`. No I/O and no timers: the dispatcher asks `allow()` before each request and
reports the outcome.
"""

from __future__ import annotations

import time

#: Longest the circuit stays open between probes while the outage lasts.
MAX_OPEN_S = 30.0

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, failures: int = 5, open_s: float = 1.0) -> None:
        self.threshold = max(1, failures)
        self.base_open_s = open_s
        self.open_s = open_s
        self.consecutive_failures = 0
        self.state = CLOSED
        self.open_until = 0.0
        self.opened_total = 0
        self.rejected_total = 0

    def allow(self) -> bool:
        """May a request go out now? In half-open state only the probe may."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and time.monotonic() >= self.open_until:
            self.state = HALF_OPEN
            return True  # this request is the probe
        self.rejected_total += 1
        return False

    def retry_in_s(self) -> float:
        return max(0.0, self.open_until - time.monotonic())

    def success(self) -> None:
        self.consecutive_failures = 0
        self.state = CLOSED
        self.open_s = self.base_open_s

    def failure(self) -> None:
        self.consecutive_failures += 1
        if self.state == HALF_OPEN:
            self.open_s = min(self.open_s * 2, MAX_OPEN_S)
            self._open()
        elif self.state == CLOSED and self.consecutive_failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self.state = OPEN
        self.opened_total += 1
        self.open_until = time.monotonic() + self.open_s
