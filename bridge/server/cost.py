"""What the upstream bills: every command the bridge sends, counted by what caused it, the
estimate at a price, and the optional daily/monthly budgets.

Upstash bills each command (a /pipeline of n commands is n, a /multi-exec of n commands is n,
an EVAL is one, an SSE stream is one SUBSCRIBE when opened). The bridge sends commands for
reasons of its own too, so each is counted under its source:

- `client`: commands of clients (and the commands of their MULTI/EXEC);
- `blocking`: polls of emulated blocking commands (BLPOP & co.), `$` ID look-ups, push-backs;
- `watch`: WATCH fingerprints and the EXEC scripts that check them;
- `probe`: start-up and admin probes, /readyz PINGs, CONFIG GET/SET notify-keyspace-events;
- `pubsub`: SSE streams opened for clients' SUBSCRIBE/PSUBSCRIBE/MONITOR;
- `keyspace`: SSE streams opened for keyspace notifications (blocked clients, WATCH).

Budgets count per UTC day and UTC calendar month from the bridge's start (a restart starts
from zero). At 80% and 100% a warning is logged once per window and shown in systemd STATUS=.
With enforcement, `allow(source)` refuses new work past a budget: the bridge's own sources
(polls, probes, streams) once `BACKGROUND_SHARE` of it is used, client commands at 100%.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

log = logging.getLogger("bridge.cost")

CLIENT, BLOCKING, WATCH, PROBE, PUBSUB, KEYSPACE = (
    "client", "blocking", "watch", "probe", "pubsub", "keyspace",
)  # fmt: skip
SOURCES = (CLIENT, BLOCKING, WATCH, PROBE, PUBSUB, KEYSPACE)
#: Sources refused first when a budget is enforced (client commands keep the last share).
BACKGROUND = frozenset({BLOCKING, PROBE, KEYSPACE})
#: Share of a budget after which, when enforced, the bridge's own commands are refused.
BACKGROUND_SHARE = 0.95
#: Warning thresholds (share of a budget).
THRESHOLDS = (0.8, 1.0)
#: The rate is measured over this many recent seconds (since the start when younger).
RATE_WINDOW_S = 300.0
#: Seconds between the samples the rate is computed from.
SAMPLE_S = 5.0
DAY_S = 86400.0
MONTH_DAYS = 30
#: Upstash pay-as-you-go price of 100,000 commands, in USD.
DEFAULT_PRICE_PER_100K = 0.20


def budget_error(window: str, budget: int) -> str:
    """The client's error for a command refused by an enforced budget."""
    return (
        f"ERR command budget exhausted (command_budget_per_{window} = {budget} upstream "
        f"commands, budget_enforce = true): command not executed"
    )


class CostMeter:
    """Counters by source, the per-day and per-month windows, budgets and the rate."""

    def __init__(
        self,
        *,
        price_per_100k: float = DEFAULT_PRICE_PER_100K,
        budget_per_day: int = 0,
        budget_per_month: int = 0,
        enforce: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.by_source: Counter[str] = Counter()
        self.total = 0
        self.refused: Counter[str] = Counter()
        self.price_per_100k = price_per_100k
        self.budget_per_day = budget_per_day
        self.budget_per_month = budget_per_month
        self.enforce = enforce
        self._clock = clock
        self.started = clock()
        self._day = self._month = ""
        self._roll_at = 0.0
        self.day_count = self.month_count = 0
        self._warned: set[tuple[str, str, float]] = set()
        #: Budget warning lines currently in force (for systemd STATUS=).
        self.notes: dict[str, str] = {}
        self._roll(self.started)
        #: (time, total) samples for the rate.
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])
        #: Whether new work may be refused (kept false without budgets: a cheap check).
        self.limited = False
        self._update_limited()

    def configure(
        self, *, price_per_100k: float, budget_per_day: int, budget_per_month: int, enforce: bool
    ) -> None:
        """Apply (reloaded) settings; the counts stay."""
        self.price_per_100k = price_per_100k
        self.budget_per_day = budget_per_day
        self.budget_per_month = budget_per_month
        self.enforce = enforce
        self._warned.clear()
        self.notes.clear()
        self._check(self._clock())

    # -- counting ------------------------------------------------------------------------

    def add(self, source: str, n: int = 1) -> None:
        """`n` commands of `source` were sent upstream."""
        if n <= 0:
            return
        self.by_source[source] += n
        self.total += n
        now = self._clock()
        if now >= self._roll_at:
            self._roll(now)
        self.day_count += n
        self.month_count += n
        if self.budget_per_day or self.budget_per_month:
            self._check(now)
        samples = self._samples
        if now - samples[-1][0] >= SAMPLE_S:
            samples.append((now, self.total))
            while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
                samples.popleft()

    def add_sources(self, sources: Sequence[str]) -> None:
        """One command per element (a /pipeline's items), mostly of one source: then one
        `add`, without building a Counter per request."""
        if not sources:
            return
        first = sources[0]
        if sources.count(first) == len(sources):
            self.add(first, len(sources))
            return
        for source, n in Counter(sources).items():
            self.add(source, n)

    def _roll(self, now: float) -> None:
        t = time.gmtime(now)
        self._roll_at = (now // DAY_S + 1) * DAY_S  # the next UTC midnight
        day = time.strftime("%Y-%m-%d", t)
        if day != self._day:
            self._day = day
            self.day_count = 0
            self._warned = {w for w in self._warned if w[0] != "day"}
            self.notes.pop("day", None)
        month = day[:7]
        if month != self._month:
            self._month = month
            self.month_count = 0
            self._warned = {w for w in self._warned if w[0] != "month"}
            self.notes.pop("month", None)

    # -- budgets -------------------------------------------------------------------------

    def _windows(self) -> list[tuple[str, int, int]]:
        """(window, used, budget) of each budget set."""
        out = []
        if self.budget_per_day:
            out.append(("day", self.day_count, self.budget_per_day))
        if self.budget_per_month:
            out.append(("month", self.month_count, self.budget_per_month))
        return out

    def _update_limited(self) -> None:
        self.limited = self.enforce and bool(self.budget_per_day or self.budget_per_month)

    def _check(self, now: float) -> None:
        self._update_limited()
        for window, used, budget in self._windows():
            for share in THRESHOLDS:
                if used >= budget * share and (window, self._period(window), share) not in (
                    self._warned
                ):
                    self._warned.add((window, self._period(window), share))
                    what = "exhausted" if share >= 1 else f"{share:.0%} used"
                    action = (
                        "commands are now refused"
                        if share >= 1 and self.enforce
                        else "commands still run (budget_enforce = false)"
                        if share >= 1
                        else "keep an eye on COST"
                    )
                    note = f"{window} budget {what} ({used} of {budget} commands)"
                    self.notes[window] = note
                    log.warning("upstream command %s: %s", note, action)

    def _period(self, window: str) -> str:
        return self._day if window == "day" else self._month

    def refusal(self, source: str) -> str | None:
        """The error for new work of `source` when an enforced budget refuses it, else None.
        Callers check `limited` first (false without an enforced budget)."""
        now = self._clock()
        if now >= self._roll_at:
            self._roll(now)
        for window, used, budget in self._windows():
            limit = budget * BACKGROUND_SHARE if source in BACKGROUND else budget
            if used >= limit:
                self.refused[source] += 1
                return budget_error(window, budget)
        return None

    def status_note(self) -> str:
        """Short text for systemd STATUS= ("" when no budget threshold was crossed)."""
        return "; ".join(self.notes[w] for w in ("day", "month") if w in self.notes)

    # -- reporting -----------------------------------------------------------------------

    def rate_per_minute(self) -> float:
        """Commands a minute over the last RATE_WINDOW_S (since the start when younger)."""
        now = self._clock()
        first_t, first_n = self._samples[0]
        span = now - first_t
        if span < 1.0:
            return 0.0
        return (self.total - first_n) * 60.0 / span

    def dollars(self, commands: float) -> float:
        return round(commands * self.price_per_100k / 100_000, 4)

    def report(self) -> dict[str, object]:
        """The admin COST reply."""
        per_min = self.rate_per_minute()
        per_day = per_min * 1440
        per_month = per_day * MONTH_DAYS
        budgets: dict[str, object] = {}
        for window, used, budget in self._windows():
            budgets[window] = {
                "budget": budget,
                "used": used,
                "used_percent": round(100.0 * used / budget, 1),
                "state": self.notes.get(window, "ok"),
            }
        return {
            "commands_total": self.total,
            "by_source": {s: self.by_source.get(s, 0) for s in SOURCES},
            "today_utc": self.day_count,
            "this_month_utc": self.month_count,
            "rate_per_minute": round(per_min, 2),
            "extrapolated_per_day": round(per_day),
            "extrapolated_per_month": round(per_month),
            "price_per_100k_commands": self.price_per_100k,
            "estimate": {
                "since_start": self.dollars(self.total),
                "this_month": self.dollars(self.month_count),
                "per_day_at_this_rate": self.dollars(per_day),
                "per_month_at_this_rate": self.dollars(per_month),
            },
            "budgets": budgets or "none (command_budget_per_day / command_budget_per_month)",
            "budget_enforce": self.enforce,
            "refused": {s: n for s, n in sorted(self.refused.items())},
            "since_s": round(self._clock() - self.started, 1),
        }
