"""A precise sleep-until for the devserver's injected latency (`--latency-ms`).

`trio.sleep` ends in `epoll_wait`, whose timeout CPython rounds up to whole milliseconds: a
2 ms latency would come out as 2-3 ms, so a benchmark would measure the devserver's timer
instead of the client. Here one Linux timerfd is armed (absolute, CLOCK_MONOTONIC) for the
earliest pending deadline; epoll wakes on the fd's readiness, which is exact to tens of µs.
Sleepers wait on a `trio.Event` in a heap; one task (`run`) releases every due one and re-arms.
Without timerfd (not Linux, ctypes failure) or when `run` is not running, `sleep_until` falls
back to `trio.sleep_until`.

Deadlines are `time.monotonic()` seconds (CLOCK_MONOTONIC on Linux, the timerfd's clock).
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import logging
import math
import os
import time

import trio

log = logging.getLogger("bridge.devserver")

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """One non-blocking CLOCK_MONOTONIC timerfd, armed with absolute one-shot deadlines."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._create = libc.timerfd_create
        self._create.argtypes = [ctypes.c_int, ctypes.c_int]
        self._create.restype = ctypes.c_int
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        ]
        self._settime.restype = ctypes.c_int
        fd = self._create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_create: {os.strerror(errno)}")
        self.fd: int = fd

    def arm(self, deadline: float | None) -> None:
        """Expire at `deadline` (monotonic seconds; a past one expires at once); None: disarm."""
        spec = _Itimerspec()
        if deadline is not None:
            # Rounded up (never early) and at least 1 ns: an all-zero it_value disarms.
            ns = max(1, math.ceil(deadline * 1e9))
            spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(ns, 1_000_000_000)
        if self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    def drain(self) -> None:
        """Consume the expiration count (a re-arm may have reset it already: not an error)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def close(self) -> None:
        os.close(self.fd)


def _open_timerfd() -> _TimerFd:
    """A timerfd; OSError, AttributeError or TypeError where there is none (not Linux)."""
    return _TimerFd()


class _Sleeper:
    """One pending `sleep_until`, ordered by (deadline, arrival order)."""

    __slots__ = ("deadline", "event", "orphaned", "seq")

    def __init__(self, deadline: float, seq: int) -> None:
        self.deadline = deadline
        self.seq = seq
        self.event = trio.Event()
        #: Set free by a stopping clock, not by its deadline.
        self.orphaned = False

    def __lt__(self, other: _Sleeper) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class LatencyClock:
    """`sleep_until(deadline)` woken by one timerfd; `run` must run in a nursery to use it."""

    def __init__(self) -> None:
        self._heap: list[_Sleeper] = []
        self._seq = itertools.count()
        self._timer: _TimerFd | None = None
        #: The deadline the timerfd is armed for (None: disarmed).
        self._armed: float | None = None

    @property
    def precise(self) -> bool:
        """True while the timerfd wakes the sleepers (else they use `trio.sleep_until`)."""
        return self._timer is not None

    @property
    def pending(self) -> int:
        """Sleepers waiting on the timerfd."""
        return len(self._heap)

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending deadline (None: nobody waits)."""
        return self._heap[0].deadline if self._heap else None

    @property
    def armed_for(self) -> float | None:
        """The deadline the timerfd will expire at (None: disarmed or no timerfd)."""
        return self._armed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the sleepers until cancelled, then close the timerfd.

        Without a timerfd it returns at once (after `started`): sleepers then fall back.
        """
        try:
            timer = _open_timerfd()
        except (OSError, AttributeError, TypeError) as exc:
            log.debug("no timerfd (%s): the injected latency uses trio.sleep_until", exc)
            task_status.started()
            return
        self._timer = timer
        task_status.started()
        try:
            while True:
                await trio.lowlevel.wait_readable(timer.fd)
                timer.drain()
                self._armed = None
                self._release_due()
        finally:
            self._timer = None
            self._armed = None
            timer.close()
            # Whoever still waits finishes on trio's timer (see `sleep_until`).
            for sleeper in self._heap:
                sleeper.orphaned = True
                sleeper.event.set()
            self._heap.clear()

    async def sleep_until(self, deadline: float) -> None:
        """Return no sooner than `deadline` (monotonic seconds); a past one: at once, no wait."""
        if deadline <= time.monotonic():
            return
        if self._timer is not None:
            sleeper = _Sleeper(deadline, next(self._seq))
            heapq.heappush(self._heap, sleeper)
            if self._armed is None or deadline < self._armed:
                self._arm(deadline)
            try:
                await sleeper.event.wait()
            finally:
                if not sleeper.event.is_set():  # cancelled: forget it (a spurious wake-up
                    self._heap.remove(sleeper)  # of the timerfd then finds nothing due)
                    heapq.heapify(self._heap)
            if not sleeper.orphaned:
                return
            # The clock stopped while this one waited: trio's timer finishes the wait.
        remaining = deadline - time.monotonic()  # read first: the trio target errs late
        await trio.sleep_until(trio.current_time() + remaining)

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0].deadline <= now:
            heapq.heappop(self._heap).event.set()
        if self._heap:
            self._arm(self._heap[0].deadline)

    def _arm(self, deadline: float) -> None:
        assert self._timer is not None
        self._timer.arm(deadline)
        self._armed = deadline
