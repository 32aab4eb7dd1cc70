"""Blocking commands emulated by polling, woken by writes (BLPOP, BLMOVE, XREAD BLOCK, ...),
and WATCH, which depends on the same knowledge of who writes which key.

A waiter polls the non-blocking equivalent of its command (see `bridge.core.blocking_plans`)
through the dispatcher, in its client's order. What wakes it at once:
- a write to one of its keys by any client of this bridge (LPUSH, ZADD, XADD, a script);
- with keyspace events (bridge.server.keyspace), a write from anywhere: its keys' streams are
  live before its first poll, so no write can fall between them.
Woken waiters poll in arrival order, so on one key they are served first come, first served.
Without events the interval doubles from `blocking_poll_min_ms` to `blocking_poll_max_ms`;
with them (every key's stream live) the waiter polls only every `blocking_fallback_poll_s`
(lost events, reconnects). A client repeating the same blocking command (Celery's
`BRPOP ... 1` every second) continues where the last one stopped: it never polls twice within
one interval (no poll at the deadline and another as the next call starts), and while nothing
was written to its keys since, an idle worker costs 60 / blocking_fallback_poll_s polls a
minute with events, 60000 / blocking_poll_max_ms without.

Nothing is lost: a poll in flight when its client goes away still completes, and whatever it
popped is pushed back (or, for moves, stays in the destination list).
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import trio

from bridge.core import commands
from bridge.core.blocking_plans import (
    TIMEOUT_FRAME,
    BlockPlan,
    last_id_script,
    poll_result,
    pushback,
    write_changed_nothing,
)
from bridge.core.commands import CommandSpec
from bridge.core.resp import parse_frame
from bridge.server.cost import BLOCKING, WATCH
from bridge.server.dispatcher import ClientQueue, Dispatcher
from bridge.server.keyspace import CLASSES_FOR_KIND, Keyspace, KeyStream
from bridge.server.watch_registry import WatchRegistry

if TYPE_CHECKING:
    from bridge.server.counters import Stats

log = logging.getLogger("bridge.blocking")

#: Longest wait for a blocked client's keyspace streams before its first poll (then it polls
#: without them). Within clients' usual socket timeouts.
STREAMS_READY_TIMEOUT_S = 3.0
#: Memos (the last blocking command of each client) kept before closed clients' are pruned.
MEMO_PRUNE_AT = 1024


class Waiter:
    """One blocked client command. At most one poll of it is in flight at a time."""

    __slots__ = (
        "abandoned", "again", "covered_at_send", "in_flight", "keys", "plan", "queue", "result",
        "sent_at", "seq", "streams", "wake",
    )  # fmt: skip

    def __init__(self, seq: int, plan: BlockPlan, queue: ClientQueue) -> None:
        self.seq = seq
        self.plan = plan
        self.keys = plan.keys
        self.queue = queue
        self.wake = trio.Event()  # set when a poll's reply arrived or the timing changed
        self.in_flight = False
        self.again = False  # woken while a poll was in flight: poll again after its reply
        self.result: bytes | None = None
        self.abandoned = False
        self.streams: list[KeyStream] | None = None
        self.sent_at: float | None = None  # when its last poll was sent
        self.covered_at_send = False

    @property
    def covered(self) -> bool:
        """Every key's keyspace stream is live: writes from anywhere wake this waiter."""
        return self.streams is not None and all(s.live for s in self.streams)


class _Memo:
    """Where a client's last blocking command stopped, for the same command repeated: its
    last poll (sent at `sent_at`, found nothing) and the step to the next one."""

    __slots__ = ("covered", "interval", "keys", "poll", "sent_at")

    def __init__(self, plan: BlockPlan, sent_at: float, interval: float, covered: bool):
        self.poll = plan.poll
        self.keys = plan.keys
        self.sent_at = sent_at
        self.interval = interval
        self.covered = covered


class BlockingHub:
    """Waiters and WATCH groups by key, wake-ups from writes and events, the poll loop."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        stats: Stats,
        *,
        min_interval_s: float,
        max_interval_s: float,
        fallback_s: float = 30.0,
        keyspace: Keyspace | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stats = stats
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self.fallback_s = fallback_s
        self.keyspace = keyspace
        self.watches = WatchRegistry(keyspace)
        self._by_key: dict[bytes, dict[int, Waiter]] = defaultdict(dict)
        self._memos: dict[ClientQueue, _Memo] = {}
        self._memos_by_key: dict[bytes, set[ClientQueue]] = {}
        self._memo_prune_at = MEMO_PRUNE_AT
        self._seq = itertools.count()
        self.polls = 0
        self.polls_skipped = 0
        self.wakeups = 0
        self.event_wakeups = 0
        self.pushbacks = 0
        if keyspace is not None:
            keyspace.on_key_event = self._on_key_event
            keyspace.on_key_state = self._on_key_state

    @property
    def waiting(self) -> int:
        return len({w.seq for ws in self._by_key.values() for w in ws.values()})

    def has_waiters(self) -> bool:
        """Someone waits on keys (a blocked client or a WATCH): replies to writes matter."""
        return bool(self._by_key) or bool(self.watches.by_key)

    # -- blocking commands ---------------------------------------------------------------

    async def wait(
        self, queue: ClientQueue, plan: BlockPlan, spec: CommandSpec, resume_s: float | None
    ) -> tuple[bytes, float]:
        """Poll until the command has a result or times out; (RESP2 reply frame, interval).

        Cancellation (client gone, shutdown) is safe at any point: a poll in flight still
        completes, and what it popped is pushed back.
        """
        if plan.kind == "watch":
            return await self._watch(queue, plan), self.min_interval_s
        if plan.kind == "exec":
            return await self._exec(queue, plan), self.min_interval_s
        if plan.dollar_positions:
            keys = [plan.poll[p] for p in _dollar_keys(plan)]
            ids_frame = await self._run(queue, last_id_script(keys), BLOCKING)
            if ids_frame[:1] == b"-":
                return ids_frame, self.min_interval_s
            ids = parse_frame(ids_frame)
            assert isinstance(ids, list)
            plan = plan.with_resolved_ids([i if isinstance(i, bytes) else b"0-0" for i in ids])
        started = trio.current_time()
        deadline = None if plan.timeout_s is None else started + plan.timeout_s
        memo = self._take_memo(queue)
        if memo is not None and memo.poll != plan.poll:
            memo = None
        interval = resume_s or self.min_interval_s
        if memo is not None:
            interval = max(interval, memo.interval)
        waiter = Waiter(next(self._seq), plan, queue)
        for key in plan.keys:
            self._by_key[key][waiter.seq] = waiter
        try:
            await self._subscribe(waiter, deadline)
            now = trio.current_time()
            due = now
            step = interval
            if memo is not None:
                step = self.fallback_s if memo.covered and waiter.covered else memo.interval
                if now - memo.sent_at < step:
                    due = memo.sent_at + step  # polled moments ago, and nothing was written
                    waiter.sent_at, waiter.covered_at_send = memo.sent_at, memo.covered
                    self.polls_skipped += 1
            if due <= now and not waiter.in_flight:
                self._start_poll(waiter)
            while True:
                until = due if not waiter.in_flight else float("inf")
                if deadline is not None:
                    until = min(until, deadline)
                with trio.move_on_at(until):
                    await waiter.wake.wait()
                waiter.wake = trio.Event()
                now = trio.current_time()
                frame = waiter.result
                if frame is not None:
                    waiter.result = None
                    result = poll_result(plan, frame)
                    if result is not None or not plan.blocks:
                        return (
                            result if result is not None else TIMEOUT_FRAME
                        ), self.min_interval_s
                    if waiter.again:  # woken while that poll was on its way: look again
                        waiter.again = False
                        self._start_poll(waiter)
                        continue
                    if waiter.covered_at_send and waiter.covered:
                        step = self.fallback_s
                    else:
                        step = interval
                        interval = min(interval * 2, self.max_interval_s)
                    assert waiter.sent_at is not None  # a reply came: a poll was sent
                    due = waiter.sent_at + step
                elif waiter.again and not waiter.in_flight:
                    waiter.again = False  # a stream changed state: its timing changed
                    due = now
                if waiter.in_flight:
                    continue
                if deadline is not None and now >= deadline:
                    covered = waiter.covered_at_send and waiter.covered
                    if not covered:
                        step = min(step, self.max_interval_s)
                    if waiter.sent_at is not None:
                        self._remember(queue, _Memo(plan, waiter.sent_at, step, covered))
                    return TIMEOUT_FRAME, interval
                if now >= due:
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
            if waiter.streams is not None and self.keyspace is not None:
                self.keyspace.release(waiter.streams)

    async def _subscribe(self, waiter: Waiter, deadline: float | None) -> None:
        """With usable keyspace events, hold the keys' streams and wait until they are live
        (before the first poll); otherwise, or past the cap, the waiter polls."""
        keyspace = self.keyspace
        classes = CLASSES_FOR_KIND.get(waiter.plan.kind)
        if keyspace is None or classes is None or not keyspace.usable(classes):
            return
        streams = keyspace.hold(waiter.keys)
        if streams is None:
            return
        waiter.streams = streams
        if all(s.live for s in streams):
            return
        limit = STREAMS_READY_TIMEOUT_S
        if deadline is not None:
            limit = min(limit, deadline - trio.current_time())
        if not await keyspace.until_live(streams, limit):
            log.debug("keyspace streams for %s not live in time: polling", waiter.plan.name)

    def _remember(self, queue: ClientQueue, memo: _Memo) -> None:
        self._take_memo(queue)
        self._memos[queue] = memo
        for key in memo.keys:
            self._memos_by_key.setdefault(key, set()).add(queue)
        if len(self._memos) >= self._memo_prune_at:
            for q in [q for q in self._memos if q.closed]:
                self._take_memo(q)
            self._memo_prune_at = max(MEMO_PRUNE_AT, 2 * len(self._memos))

    def _take_memo(self, queue: ClientQueue) -> _Memo | None:
        memo = self._memos.pop(queue, None)
        if memo is not None:
            for key in memo.keys:
                queues = self._memos_by_key.get(key)
                if queues is not None:
                    queues.discard(queue)
                    if not queues:
                        del self._memos_by_key[key]
        return memo

    def _forget_memos(self, keys: Iterable[bytes]) -> None:
        """A write (or a stream's state change) on these keys: repeated commands poll again."""
        for key in keys:
            for queue in list(self._memos_by_key.get(key, ())):
                self._take_memo(queue)

    # -- wake-ups ------------------------------------------------------------------------

    def notify_write(
        self, spec: CommandSpec | None, args: list[bytes], frame: bytes | None = None
    ) -> None:
        """A write went through this bridge (its reply `frame`, when known): its keys'
        waiters poll now, oldest first, and their WATCHes are dirty.

        The polls are submitted here, synchronously and in arrival order, so they ride in one
        /pipeline in that order and the oldest waiter gets the first element.
        """
        if spec is None:
            return
        script = spec.name in _SCRIPTS_THAT_MAY_WRITE
        if not script and not spec.is_write():
            return
        if frame is not None and not script and write_changed_nothing(spec.name, frame):
            return
        keys = commands.get_keys(spec, args)
        if self.watches.by_key:
            self.watches.touched(keys)
        if self._memos:
            self._forget_memos(keys)
        if self._by_key:
            self._wake(keys, event=False)

    def _on_key_event(self, key: bytes, event: bytes) -> None:
        """A keyspace event: the key was written, by anyone. Its WATCHes are dirty; its
        waiters poll unless the event only removed something (a pop, a DEL, an expiry: a
        waiter had nothing to take before and has nothing now)."""
        self.watches.touched((key,), event=True)
        if event in REMOVAL_EVENTS:
            return
        self._forget_memos((key,))
        self._wake([key], event=True)

    def _on_key_state(self, key: bytes, up: bool) -> None:
        """A key's stream broke (events may be missed: poll on the interval) or is live
        again (events may have been missed: poll now)."""
        self._forget_memos((key,))
        for waiter in list(self._by_key.get(key, {}).values()):
            if up:
                self._kick(waiter)
            else:
                waiter.again = True
                waiter.wake.set()

    def _wake(self, keys: list[bytes], *, event: bool) -> None:
        woken: dict[int, Waiter] = {}
        for key in keys:
            for waiter in self._by_key.get(key, {}).values():
                woken[waiter.seq] = waiter
        for seq in sorted(woken):
            if event:
                self.event_wakeups += 1
            else:
                self.wakeups += 1
            self._kick(woken[seq])

    def _kick(self, waiter: Waiter) -> None:
        """Poll now, or right after the poll on its way."""
        if waiter.abandoned:
            return
        if waiter.in_flight or waiter.result is not None:
            waiter.again = True
        else:
            self._start_poll(waiter)

    def _start_poll(self, waiter: Waiter) -> None:
        self.polls += 1
        waiter.in_flight = True
        waiter.again = False
        waiter.sent_at = trio.current_time()
        waiter.covered_at_send = waiter.covered
        plan = waiter.plan

        def deliver(frame: bytes) -> None:
            waiter.in_flight = False
            if waiter.abandoned:
                self._restore(plan, frame)
                return
            waiter.result = frame
            waiter.wake.set()

        self._submit(waiter.queue, list(plan.poll), deliver, BLOCKING)

    # -- WATCH ---------------------------------------------------------------------------

    async def _watch(self, queue: ClientQueue, plan: BlockPlan) -> bytes:
        """Register the group (writes through the bridge mark it dirty from now on); with
        keyspace events hold its keys' streams and wait until they are live, so that every
        write after the fingerprints were read is seen; then read them."""
        streams = self.watches.add(plan.group)
        keyspace = self.keyspace
        if streams is not None and keyspace is not None:
            already = [s for s in streams if s.live]
            if len(already) < len(streams):
                await keyspace.until_live(streams, STREAMS_READY_TIMEOUT_S)
            if already:
                # A stream that was open before (lingering, or another client's) may still
                # bring events of writes made before this WATCH (this client's own `SET k`
                # right before `WATCH k`): once a marker came back they have all arrived,
                # and what happened until the fingerprints are read is before the WATCH.
                await keyspace.sync(already, queue, WATCH)
                plan.group.dirty = False
        return await self._run(queue, plan.poll, WATCH)

    async def _exec(self, queue: ClientQueue, plan: BlockPlan) -> bytes:
        """EXEC with watched keys that have keyspace streams: a sync marker on each stream
        first (one PUBLISH per key), so that a write from anywhere that happened before EXEC
        has marked the watch dirty; then null at once, or the checking script."""
        transaction = plan.group
        keyspace = self.keyspace
        if keyspace is not None:
            streams = [s for s in map(keyspace.stream_of, plan.keys) if s is not None]
            if not await keyspace.sync(streams, queue, WATCH):
                log.debug("keyspace sync before EXEC timed out: the fingerprints decide")
        if any(g.dirty for g in transaction.watches):
            return b"*-1\r\n"
        done = trio.Event()
        box: list[bytes] = []

        def deliver(frame: bytes) -> None:
            box.append(frame)
            done.set()

        self.dispatcher.submit_transaction(queue, transaction, deliver)
        await done.wait()
        frame = box[0]
        if frame[:1] == b"*" and frame[:3] != b"*-1":
            for q in transaction.commands:
                if q.local is None:
                    self.notify_write(q.spec, q.args)
        return frame

    # -- upstream ------------------------------------------------------------------------

    def _submit(
        self, queue: ClientQueue, args: list[bytes], deliver: Callable[[bytes], None], source: str
    ) -> None:
        self.dispatcher.submit_command(queue, args, None, deliver, source=source)

    async def _run(self, queue: ClientQueue, args: tuple[bytes, ...], source: str) -> bytes:
        """Send one read-only command in the client's order and wait for its reply."""
        done = trio.Event()
        box: list[bytes] = []

        def deliver(frame: bytes) -> None:
            box.append(frame)
            done.set()

        self._submit(queue, list(args), deliver, source)
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

        self._submit(ClientQueue(), list(command), deliver, BLOCKING)


#: Scripts carry no `write` flag, but may write their declared keys (RQ-style job pushes).
_SCRIPTS_THAT_MAY_WRITE = frozenset({"eval", "evalsha", "fcall"})
#: Keyspace events that only take something away: they wake no waiter (our own polls' pops
#: among them, which would otherwise wake every other waiter of a busy queue again).
REMOVAL_EVENTS = frozenset({
    b"lpop", b"rpop", b"lrem", b"ltrim", b"del", b"expired", b"evicted", b"expire",
    b"persist", b"zpopmin", b"zpopmax", b"zrem", b"zremrangebyscore", b"zremrangebyrank",
    b"zremrangebylex", b"xdel", b"xtrim", b"rename_from", b"move_from", b"srem", b"spop",
    b"hdel", b"xgroup-createconsumer", b"xgroup-delconsumer", b"xautoclaim", b"xclaim",
})  # fmt: skip


def _dollar_keys(plan: BlockPlan) -> list[int]:
    """Positions (in plan.poll) of the stream keys whose ID is `$`."""
    streams_at = next(i for i, a in enumerate(plan.poll) if a.lower() == b"streams")
    n = (len(plan.poll) - streams_at - 1) // 2
    return [p - n for p in plan.dollar_positions if streams_at < p - n <= streams_at + n]
