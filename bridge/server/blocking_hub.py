"""Blocking commands emulated by polling, with local wake-ups (BLPOP, BLMOVE, XREAD BLOCK, ...).

A waiter polls the non-blocking equivalent of its command (see `bridge.core.blocking_plans`) through
the dispatcher, in its client's order, with an interval that doubles from
`blocking_poll_min_ms` to `blocking_poll_max_ms`. When any client of this bridge writes to a
key a waiter watches (LPUSH, ZADD, XADD, ...), the waiter polls at once; woken waiters poll in
arrival order, so on one key they are served first come, first served. A client repeating the
same blocking command after a timeout (Celery's `BRPOP ... 1` every second) resumes at the
interval it had reached, so an idle worker costs about 60000 / blocking_poll_max_ms commands
per minute, not one per poll_min.

Nothing is lost: a poll in flight when its client goes away still completes, and whatever it
popped is pushed back (or, for moves, stays in the destination list).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from bridge.core import commands
from bridge.core.blocking_plans import (
    TIMEOUT_FRAME,
    BlockPlan,
    last_id_script,
    poll_result,
    pushback,
)
from bridge.core.commands import CommandSpec
from bridge.core.resp import parse_frame
from bridge.server.dispatcher import ClientQueue, Dispatcher

if TYPE_CHECKING:
    from bridge.server.counters import Stats

log = logging.getLogger("bridge.blocking")


class Waiter:
    """One blocked client command. At most one poll of it is in flight at a time."""

    __slots__ = ("abandoned", "in_flight", "keys", "plan", "queue", "result", "seq", "wake")

    def __init__(self, seq: int, plan: BlockPlan, queue: ClientQueue) -> None:
        self.seq = seq
        self.plan = plan
        self.keys = plan.keys
        self.queue = queue
        self.wake = trio.Event()  # set when a poll's reply arrived
        self.in_flight = False
        self.result: bytes | None = None
        self.abandoned = False


class BlockingHub:
    """Registry of waiters by key, wake-ups from local writes, the poll loop."""

    def __init__(
        self, dispatcher: Dispatcher, stats: Stats, *, min_interval_s: float, max_interval_s: float
    ) -> None:
        self.dispatcher = dispatcher
        self.stats = stats
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self._by_key: dict[bytes, dict[int, Waiter]] = defaultdict(dict)
        self._seq = itertools.count()
        self.polls = 0
        self.wakeups = 0
        self.pushbacks = 0

    @property
    def waiting(self) -> int:
        return len({w.seq for ws in self._by_key.values() for w in ws.values()})

    def has_waiters(self) -> bool:
        return bool(self._by_key)

    async def wait(
        self, queue: ClientQueue, plan: BlockPlan, spec: CommandSpec, resume_s: float | None
    ) -> tuple[bytes, float]:
        """Poll until the command has a result or times out; (RESP2 reply frame, interval).

        Cancellation (client gone, shutdown) is safe at any point: a poll in flight still
        completes, and what it popped is pushed back.
        """
        if plan.dollar_positions:
            keys = [plan.poll[p] for p in _dollar_keys(plan)]
            ids_frame = await self._run(queue, last_id_script(keys))
            if ids_frame[:1] == b"-":
                return ids_frame, self.min_interval_s
            ids = parse_frame(ids_frame)
            assert isinstance(ids, list)
            plan = plan.with_resolved_ids([i if isinstance(i, bytes) else b"0-0" for i in ids])
        deadline = None if plan.timeout_s is None else time.monotonic() + plan.timeout_s
        interval = resume_s or self.min_interval_s
        waiter = Waiter(next(self._seq), plan, queue)
        for key in plan.keys:
            self._by_key[key][waiter.seq] = waiter
        try:
            self._start_poll(waiter)
            while True:
                await waiter.wake.wait()
                waiter.wake = trio.Event()
                frame = waiter.result
                assert frame is not None
                waiter.result = None
                result = poll_result(plan, frame)
                if result is not None or not plan.blocks:
                    return (result if result is not None else TIMEOUT_FRAME), self.min_interval_s
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return TIMEOUT_FRAME, interval
                sleep = interval if deadline is None else min(interval, deadline - now)
                with trio.move_on_after(sleep):
                    await waiter.wake.wait()  # a local write may start a poll meanwhile
                if not waiter.in_flight and waiter.result is None:
                    interval = min(interval * 2, self.max_interval_s)
                    self._start_poll(waiter)
        except BaseException:
            waiter.abandoned = True
            if waiter.result is not None:  # delivered just as we were cancelled
                self._restore(plan, waiter.result)
            raise
        finally:
            for key in plan.keys:
                waiters = self._by_key.get(key)
                if waiters is not None:
                    waiters.pop(waiter.seq, None)
                    if not waiters:
                        del self._by_key[key]

    def notify_write(self, spec: CommandSpec | None, args: list[bytes]) -> None:
        """A write went through this bridge: its key's waiters poll now, oldest first.

        The polls are submitted here, synchronously and in arrival order, so they ride in one
        /pipeline in that order and the oldest waiter gets the first element.
        """
        if spec is None or not self._by_key:
            return
        if not spec.is_write() and spec.name not in _SCRIPTS_THAT_MAY_WRITE:
            return
        woken: dict[int, Waiter] = {}
        for key in commands.get_keys(spec, args):
            for waiter in self._by_key.get(key, {}).values():
                woken[waiter.seq] = waiter
        for seq in sorted(woken):
            waiter = woken[seq]
            if not waiter.in_flight and waiter.result is None:
                self.wakeups += 1
                self._start_poll(waiter)

    def _start_poll(self, waiter: Waiter) -> None:
        self.polls += 1
        waiter.in_flight = True
        plan = waiter.plan

        def deliver(frame: bytes) -> None:
            waiter.in_flight = False
            if waiter.abandoned:
                self._restore(plan, frame)
                return
            waiter.result = frame
            waiter.wake.set()

        self._submit(waiter.queue, list(plan.poll), deliver)

    def _submit(
        self, queue: ClientQueue, args: list[bytes], deliver: Callable[[bytes], None]
    ) -> None:
        self.dispatcher.submit_command(queue, args, None, deliver)

    async def _run(self, queue: ClientQueue, args: tuple[bytes, ...]) -> bytes:
        """Send one read-only command in the client's order and wait for its reply."""
        done = trio.Event()
        box: list[bytes] = []

        def deliver(frame: bytes) -> None:
            box.append(frame)
            done.set()

        self._submit(queue, list(args), deliver)
        await done.wait()
        return box[0]

    def _restore(self, plan: BlockPlan, frame: bytes) -> None:
        command = pushback(plan, frame)
        if command is None:
            return
        self.pushbacks += 1
        log.info("client left while its %s popped an element: pushing it back", plan.name)

        def deliver(result: bytes) -> None:
            if result[:1] == b"-":
                log.error("could not push back an element for %s: %s", plan.name, result[:200])

        self._submit(ClientQueue(), list(command), deliver)


#: Scripts carry no `write` flag, but may write their declared keys (RQ-style job pushes).
_SCRIPTS_THAT_MAY_WRITE = frozenset({"eval", "evalsha", "fcall"})


def _dollar_keys(plan: BlockPlan) -> list[int]:
    """Positions (in plan.poll) of the stream keys whose ID is `$`."""
    streams_at = next(i for i, a in enumerate(plan.poll) if a.lower() == b"streams")
    n = (len(plan.poll) - streams_at - 1) // 2
    return [p - n for p in plan.dollar_positions if streams_at < p - n <= streams_at + n]
