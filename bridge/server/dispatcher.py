"""Auto-batching of every client's commands into upstream requests, without timers.

A batch is sent as soon as an upstream slot (of `max_in_flight`) is free; whatever queued
meanwhile, from all clients, rides in the next /pipeline. Idle load gets one command per
request and no added delay; heavy load gets big batches. With a read poller (`use_poller`),
the /pipeline batches its clients queue in a round leave at the end of that round, and their
answers are read in its rounds: no task wakes up for them. Everything that has to await
something (a transaction, the path form, a connection to open, a retry) goes to one of
`max_in_flight` worker tasks. Invariants:
- per client, at most one request in flight, and commands are taken in arrival order, so a
  client's replies come back in order and its commands run in order;
- commands that cannot share a /pipeline (a transaction, a command with binary arguments)
  travel alone, still in their client's order;
- a request that may have reached the upstream is never retried unless every command in it
  is read-only; every command gets exactly one reply (a result or an error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from bridge.core import rest_codec
from bridge.core.actions import Transaction
from bridge.core.blocking_plans import exec_script_command, exec_script_reply
from bridge.core.commands import CommandSpec
from bridge.core.resp import encode_error
from bridge.errors import (
    UpstreamError,
    UpstreamUnavailable,
    upstream_error_reply,
)
from bridge.server.breaker import CLOSED, CircuitBreaker
from bridge.server.cost import CLIENT, WATCH
from bridge.server.counters import Stats
from bridge.server.read_poller import ReadPoller
from bridge.upstream.http_client import NeedsTask
from bridge.upstream.rest import PipelineCall, RestClient

log = logging.getLogger("bridge.dispatcher")

#: Pending kinds: shares a /pipeline, travels alone in path form, or is a /multi-exec.
PIPE, SINGLE, MULTI = 0, 1, 2
#: JSON overhead per argument ("...",) used to estimate request size.
_ARG_OVERHEAD = 4
#: Commands CLIENT PAUSE WRITE holds besides those flagged write (Redis' may-replicate).
_MAY_REPLICATE = frozenset({"eval", "evalsha", "fcall", "publish", "spublish", "pfcount"})
#: One retry at most, and only while this fraction of the timeout is left.
MAX_RETRIES = 1
RETRY_BACKOFF_S = 0.05


class Pending:
    """One unit of upstream work from one client, waiting for its reply frame."""

    __slots__ = (
        "args", "deliver", "json", "kind", "prepare", "readonly", "size", "source", "spec",
    )  # fmt: skip

    def __init__(
        self,
        kind: int,
        args: list[bytes],
        json: list[str] | list[list[str]] | None,
        spec: CommandSpec | None,
        deliver: Callable[[bytes], None],
        payload_bytes: int | None = None,
    ) -> None:
        self.kind = kind
        self.args = args
        self.json = json
        self.spec = spec
        self.deliver = deliver
        if payload_bytes is None:
            payload_bytes = sum(map(len, args))
        self.size = payload_bytes + _ARG_OVERHEAD * len(args)
        self.readonly = spec is not None and "readonly" in spec.flags and kind != MULTI
        #: Called just before sending, to fill in what is only known then (WATCH fingerprints).
        self.prepare: Callable[[], None] | None = None
        #: What caused it, for the cost counters (bridge.server.cost).
        self.source = CLIENT


class ClientQueue:
    """A client's commands waiting for the dispatcher; owned by one connection."""

    __slots__ = ("closed", "idle", "in_flight", "items", "scheduled")

    def __init__(self) -> None:
        self.items: deque[Pending] = deque()
        self.in_flight = False
        self.scheduled = False
        self.closed = False
        #: Set (once) when nothing is queued or in flight any more: a connection switching
        #: database waits for it, so its commands run in order across upstreams.
        self.idle: trio.Event | None = None


@dataclass(frozen=True, slots=True)
class DispatchLimits:
    max_batch_commands: int = 1000
    max_batch_bytes: int = 2 * 1024 * 1024
    max_in_flight: int = 8
    timeout_s: float = 3.0


class Dispatcher:
    def __init__(
        self,
        upstream: RestClient,
        limits: DispatchLimits,
        stats: Stats,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.upstream = upstream
        self.limits = limits
        self.stats = stats
        self.breaker = breaker or CircuitBreaker()
        self._ready: deque[ClientQueue] = deque()
        #: Idle workers (`max_in_flight` tasks, each one request at a time) park here; new
        #: work unparks one directly, so a command reaches the upstream one task switch after
        #: the reader queued it (was two: a dispatcher task, then a task started per batch).
        self._workers = trio.lowlevel.ParkingLot()
        #: A worker was unparked and has not taken its batch yet: the commands queued
        #: meanwhile (a whole read-poller round of them) are its batch, so waking another
        #: one per command cost a wake-up and a park for nothing (5 per request at 50
        #: clients).
        self._waking = False
        #: Set when a CLIENT PAUSE starts or ends (the one thing `run` itself waits for).
        self._pause_changed = trio.Event()
        self.paused = False
        self.in_flight = 0
        #: CLIENT PAUSE: "" (none), "write" (hold commands that may write) or "all".
        self.client_pause = ""
        self._client_pause_until = 0.0
        #: Queues whose next command waits for the CLIENT PAUSE to end (still `scheduled`).
        self._held: list[ClientQueue] = []
        #: While a response's replies are delivered: what to run once they all are (clients
        #: send everything they got in one round at once, see `Connection._fill`).
        self.delivery_round: list[Callable[[], None]] | None = None
        #: The read poller whose rounds send /pipeline batches and read their answers (see
        #: `use_poller`), and the nursery of tasks that finish what cannot be done there.
        self._poller: ReadPoller | None = None
        self._nursery: trio.Nursery | None = None

    # -- turning commands into upstream work: the one place the request form is chosen -------

    def submit_command(
        self,
        queue: ClientQueue,
        args: list[bytes],
        spec: CommandSpec | None,
        deliver: Callable[[bytes], None],
        payload_bytes: int | None = None,
        source: str = CLIENT,
    ) -> None:
        """One command, in `queue`'s order: shares a /pipeline when its arguments fit JSON,
        else travels alone in path form (binary arguments). `deliver` gets its reply frame;
        `source` is what caused it (bridge.server.cost)."""
        json = rest_codec.json_args(args)
        kind = PIPE if json is not None else SINGLE
        pending = Pending(kind, args, json, spec, deliver, payload_bytes)
        pending.source = source
        self.submit(queue, pending)

    def submit_transaction(
        self, queue: ClientQueue, action: Transaction, deliver: Callable[[bytes], None]
    ) -> None:
        """EXEC of `action`'s queued commands that the upstream runs: one /multi-exec, or, with
        WATCH or binary arguments (which /multi-exec's JSON cannot carry), one Lua script that
        checks the watched keys' fingerprints and runs the commands atomically. `deliver` gets
        an EXEC-shaped reply either way (the script's false is EXEC's null array)."""
        commands = [q.args for q in action.remote]
        json_cmds = action.multi_exec_json()
        if json_cmds is not None:
            self.submit(queue, Pending(MULTI, [b"EXEC"], json_cmds, None, deliver))
            return
        binary = any(rest_codec.json_args(c) is None for c in commands) or any(
            rest_codec.json_args(g.keys) is None for g in action.watches
        )

        def deliver_script(frame: bytes) -> None:
            deliver(exec_script_reply(frame))

        pending = Pending(SINGLE if binary else PIPE, [b"EVAL"], None, None, deliver_script)
        pending.source = WATCH

        def prepare() -> None:
            # The fingerprints are read when the request is sent, after WATCH's reply arrived.
            args = list(exec_script_command(action.watched(), commands))
            pending.args = args
            pending.json = None if binary else rest_codec.json_args(args)

        pending.prepare = prepare
        self.submit(queue, pending)

    def set_batch_limits(self, max_batch_commands: int, max_batch_bytes: int) -> None:
        """Reload: later batches use these limits."""
        self.limits = dataclasses.replace(
            self.limits, max_batch_commands=max_batch_commands, max_batch_bytes=max_batch_bytes
        )

    def submit(self, queue: ClientQueue, item: Pending) -> None:
        """Queue prepared work (`submit_command` and `submit_transaction` build it); with an
        enforced budget (bridge.server.cost) work past it is answered with an error instead."""
        cost = self.stats.cost
        if cost.limited:
            refusal = cost.refusal(item.source)
            if refusal is not None:
                item.deliver(encode_error(refusal))
                return
        queue.items.append(item)
        if not queue.in_flight and not queue.scheduled:
            queue.scheduled = True
            self._ready.append(queue)
            if self._waking or not self._workers:
                return
            poller = self._poller
            if poller is not None and poller.in_round:
                return  # sent when the round ends (`_flush`)
            self._waking = True
            self._workers.unpark()

    def use_poller(self, poller: ReadPoller) -> None:
        """Send the /pipeline batches that the clients of `poller` queue in one of its rounds
        when that round ends, from there, and read their answers in its rounds: no worker
        task wakes up for them (each cost a wake-up, a park and a one-shot epoll registration
        for the upstream socket). Workers still take what needs awaiting: a transaction, the
        path form, a connection to open, a retry, an open circuit."""
        self._poller = poller
        poller.after_round(self._flush)

    def has_work(self) -> bool:
        """Commands are queued for a request (not counting those in flight)."""
        return any(queue.items for queue in self._ready)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._wake_all()

    def _wake_all(self) -> None:
        self._waking = bool(self._workers)
        self._workers.unpark_all()

    def pause_clients(self, mode: str, timeout_s: float) -> None:
        """CLIENT PAUSE: hold every client's commands that may write ("write") or all of
        them ("all") for `timeout_s`; commands already sent finish. As in Redis, a pause of
        the same mode extends to the later end, another mode replaces it."""
        until = trio.current_time() + timeout_s
        if mode == self.client_pause:
            until = max(until, self._client_pause_until)
        self.client_pause, self._client_pause_until = mode, until
        self._pause_changed.set()

    def unpause_clients(self) -> None:
        """CLIENT UNPAUSE (or the pause's end): held commands go in arrival order."""
        self.client_pause = ""
        self._ready.extend(self._held)
        self._held.clear()
        self._pause_changed.set()
        self._wake_all()

    def _holds(self, item: Pending) -> bool:
        """Whether the CLIENT PAUSE in force holds `item` (Redis: write or may-replicate
        commands in WRITE mode; transactions and unknown commands count as writes here)."""
        if self.client_pause == "all":
            return True
        spec = item.spec
        return (
            item.kind == MULTI
            or spec is None
            or "write" in spec.flags
            or spec.name in _MAY_REPLICATE
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(max(1, self.limits.max_in_flight)):
                nursery.start_soon(self._worker)
            self._nursery = nursery
            task_status.started()
            while True:  # only the end of a CLIENT PAUSE needs a timer
                if self.client_pause:
                    with trio.move_on_at(self._client_pause_until):
                        await self._pause_changed.wait()
                    if self.client_pause and trio.current_time() >= self._client_pause_until:
                        self.unpause_clients()
                else:
                    await self._pause_changed.wait()
                self._pause_changed = trio.Event()

    async def _worker(self) -> None:
        """One of `max_in_flight`: takes a batch, runs it, takes the next (no task switch in
        between while work is queued), parks when there is none."""
        ready = self._ready
        limit = self.limits.max_in_flight
        while True:
            batch = (
                self._take_batch() if ready and not self.paused and self.in_flight < limit else None
            )
            if not batch:
                await self._workers.park()
                self._waking = False
                continue
            if ready and not self._waking and self._workers:
                self._waking = True  # more than this batch is waiting: a second worker
                self._workers.unpark()
            self.in_flight += 1
            await self._execute(batch)

    def _take_batch(self, pipes_only: bool = False) -> list[tuple[ClientQueue, list[Pending]]]:
        """Take commands for one request: a run of PIPE items from as many clients as fit,
        or a single SINGLE/MULTI item (unless `pipes_only`)."""
        limits = self.limits
        batch: list[tuple[ClientQueue, list[Pending]]] = []
        count = 0
        size = 0
        ready = self._ready
        while ready:
            queue = ready[0]
            if not queue.items:
                ready.popleft()
                queue.scheduled = False
                continue
            first = queue.items[0]
            if self.client_pause and self._holds(first):
                ready.popleft()  # stays `scheduled`: unpause_clients puts it back in line
                self._held.append(queue)
                continue
            if first.kind != PIPE:
                if batch or pipes_only:
                    break  # send the pipeline first; this one goes next, alone
                ready.popleft()
                queue.scheduled = False
                queue.in_flight = True
                queue.items.popleft()
                return [(queue, [first])]
            if batch and (count >= limits.max_batch_commands or size >= limits.max_batch_bytes):
                break
            ready.popleft()
            queue.scheduled = False
            queue.in_flight = True
            taken: list[Pending] = []
            items = queue.items
            while items:
                item = items[0]
                if item.kind != PIPE or (self.client_pause and self._holds(item)):
                    break
                if taken and (
                    count >= limits.max_batch_commands or size + item.size > limits.max_batch_bytes
                ):
                    break
                items.popleft()
                taken.append(item)
                count += 1
                size += item.size
            batch.append((queue, taken))
            if count >= limits.max_batch_commands or size >= limits.max_batch_bytes:
                break
        return batch

    async def _execute(
        self,
        batch: list[tuple[ClientQueue, list[Pending]]],
        attempt: int = 0,
        started: float | None = None,
    ) -> None:
        items = [item for _, taken in batch for item in taken]
        try:
            frames = await self._call(items, attempt, started)
        except UpstreamError as exc:
            frames = self._error_frames(items, exc)
        except Exception:  # a bug must cost these commands an error reply, not the daemon
            frames = self._internal_error(items)
        finally:
            self.in_flight -= 1
        self._complete(batch, items, frames)

    def _error_frames(self, items: list[Pending], exc: UpstreamError) -> list[bytes]:
        self.stats.errors[exc.kind] += 1
        log.warning("upstream request of %d command(s) failed: %s", len(items), exc)
        return [encode_error(upstream_error_reply(exc))] * len(items)

    def _internal_error(self, items: list[Pending]) -> list[bytes]:
        log.exception("internal error while executing a batch")
        self.stats.errors["internal"] += 1
        return [encode_error("ERR internal error in resp-bridge (see its log)")] * len(items)

    def _complete(
        self,
        batch: list[tuple[ClientQueue, list[Pending]]],
        items: list[Pending],
        frames: list[bytes],
    ) -> None:
        """Deliver a request's reply frames in order, then let its clients' queues go on."""
        after: list[Callable[[], None]] = []
        outer, self.delivery_round = self.delivery_round, after
        try:
            for item, frame in zip(items, frames, strict=True):
                try:
                    item.deliver(frame)
                except Exception:  # one client's rendering bug must not take the bridge down
                    log.exception("internal error delivering a reply; the client gets an error")
                    self.stats.errors["internal"] += 1
                    with contextlib.suppress(Exception):
                        item.deliver(
                            encode_error("ERR internal error in resp-bridge (see its log)")
                        )
        finally:
            self.delivery_round = outer
            for flush in after:
                try:
                    flush()
                except Exception:  # as above: one client only
                    log.exception("internal error sending replies")
                    self.stats.errors["internal"] += 1
        for queue, _ in batch:
            queue.in_flight = False
            if queue.items:
                if not queue.scheduled:
                    queue.scheduled = True
                    self._ready.append(queue)
            elif queue.idle is not None:
                queue.idle.set()

    # -- /pipeline batches sent and read from the read poller's rounds (`use_poller`) -------

    def _flush(self) -> None:
        """The poller's round ended: send what it queued, while slots and idle connections
        last; what is left (or needs awaiting) goes to a worker."""
        try:
            self._send_ready()
        except Exception:  # a bug here must not stop the poller (every client's reader)
            log.exception("internal error while sending batches")
            self.stats.errors["internal"] += 1
        self._wake_worker()

    def _wake_worker(self) -> None:
        """Queued work that no round will send (what `_send_ready` left, or what a request
        finished outside a round let go on): one worker takes it."""
        if self._ready and not self._waking and self._workers and not self.paused:
            self._waking = True
            self._workers.unpark()

    def _send_ready(self) -> None:
        ready = self._ready
        if self._nursery is None:
            return
        limit = self.limits.max_in_flight
        upstream = self.upstream
        while (
            ready
            and not self.paused
            and self.in_flight < limit
            and self.breaker.state == CLOSED
            and upstream.can_start()
        ):
            batch = self._take_batch(pipes_only=True)
            if not batch:
                return  # nothing, or a transaction / path-form command first: a worker's
            self.in_flight += 1
            items = [item for _, taken in batch for item in taken]
            for item in items:
                if item.prepare is not None:
                    item.prepare()
                    item.prepare = None
            started = time.monotonic()
            try:
                call = upstream.start_pipeline([i.json for i in items])  # type: ignore[misc]
            except UpstreamError as exc:
                self._count_request(items)
                self._failed(batch, items, started, exc)
                continue
            except Exception:
                self.in_flight -= 1
                self._complete(batch, items, self._internal_error(items))
                continue
            if call is None:  # no live idle connection after all: a task waits for one
                if not self._spawn(self._execute, batch, 0, started):
                    self.in_flight -= 1
                    stopping = UpstreamUnavailable("the bridge is stopping")
                    self._complete(batch, items, self._error_frames(items, stopping))
                return
            self._count_request(items)
            exchange = _Exchange(self, batch, items, started, call)
            if not call.sent:  # the socket did not take it whole: a task sends the rest
                self._go_on_in_task(exchange)
                continue
            call.on_lost(exchange.on_lost)
            assert self._poller is not None
            self._poller.watch(call.fd, exchange)

    def _count_request(self, items: list[Pending]) -> None:
        stats = self.stats
        stats.http_requests += 1
        stats.batches += 1
        stats.batched_commands += len(items)

    def _read(self, exchange: _Exchange) -> None:
        """The poller saw the socket of `exchange` readable."""
        call = exchange.call
        try:
            frames = call.read()
        except NeedsTask:
            self._unwatch(call)
            self._go_on_in_task(exchange)
            return
        except UpstreamError as exc:
            self._unwatch(call)
            self._failed(exchange.batch, exchange.items, exchange.started, exc)
            return
        except Exception:
            self._unwatch(call)
            with contextlib.suppress(Exception):
                call.abandon()
            self._answered(exchange, self._internal_error(exchange.items))
            return
        if frames is not None:
            self._unwatch(call)
            self._succeeded(exchange.items, exchange.started)
            self._answered(exchange, frames)

    def _lost(self, exchange: _Exchange) -> None:
        """The connection of `exchange` was closed under it (deadline, shutdown): called by
        the HTTP client's watchdog task, not from a round."""
        call = exchange.call
        self._unwatch(call)
        self._failed(exchange.batch, exchange.items, exchange.started, call.abandon())
        self._wake_worker()

    def _go_on_in_task(self, exchange: _Exchange) -> None:
        if not self._spawn(self._finish, exchange):  # the bridge stops: it may have run
            call = exchange.call
            self._failed(exchange.batch, exchange.items, exchange.started, call.abandon())

    def _unwatch(self, call: PipelineCall) -> None:
        call.on_lost(None)
        if self._poller is not None:
            self._poller.unwatch(call.fd)

    async def _finish(self, exchange: _Exchange) -> None:
        """Go on with `exchange` by awaiting (a partial send, a TLS write, the poller ends)."""
        call = exchange.call
        call.on_lost(None)
        try:
            frames = await call.resume()
        except UpstreamError as exc:
            self._failed(exchange.batch, exchange.items, exchange.started, exc)
            return
        except Exception:
            frames = self._internal_error(exchange.items)
        else:
            self._succeeded(exchange.items, exchange.started)
        self._answered(exchange, frames)

    def _answered(self, exchange: _Exchange, frames: list[bytes]) -> None:
        self.in_flight -= 1
        self._complete(exchange.batch, exchange.items, frames)

    def _failed(
        self,
        batch: list[tuple[ClientQueue, list[Pending]]],
        items: list[Pending],
        started: float,
        exc: UpstreamError,
    ) -> None:
        """A request sent from a round failed: retried by a task when that is safe (as
        `_call` would), else every command gets the error."""
        if self._should_retry(items, exc, started, 0) and self._spawn(self._retry, batch, started):
            return
        self.in_flight -= 1
        self._complete(batch, items, self._error_frames(items, exc))

    async def _retry(self, batch: list[tuple[ClientQueue, list[Pending]]], started: float) -> None:
        await trio.sleep(RETRY_BACKOFF_S)
        await self._execute(batch, 1, started)

    def _spawn(self, task: Callable[..., Awaitable[None]], *args: object) -> bool:
        """Run `task(*args)` in a task of its own, then wake a worker for the work its
        request let go on (no round follows a task). False if the bridge is stopping."""
        nursery = self._nursery
        if nursery is None:
            return False

        async def run() -> None:
            await task(*args)
            self._wake_worker()

        try:
            nursery.start_soon(run)
        except RuntimeError:  # the nursery is closing: the bridge stops
            return False
        return True

    # -- request bookkeeping -----------------------------------------------------------------

    def _succeeded(self, items: list[Pending], started: float) -> None:
        self.breaker.success()
        self.stats.upstream_latency.observe((time.monotonic() - started) * 1000)
        self._count(items)

    def _should_retry(
        self, items: list[Pending], exc: UpstreamError, started: float, attempt: int
    ) -> bool:
        """Count a failed request; whether to send it again: only when nothing of it can have
        run or every command is read-only, once, early enough, and not for a refused token."""
        if exc.executed:  # it may have reached the upstream: billed
            self._count(items)
        if exc.kind != "auth":
            self.breaker.failure()
        retry_safe = not exc.executed or all(i.readonly for i in items)
        if (
            attempt >= MAX_RETRIES
            or not retry_safe
            or time.monotonic() - started > self.limits.timeout_s / 2
            or exc.kind == "auth"
        ):
            return False
        self.stats.retries += 1
        return True

    def _count(self, items: list[Pending]) -> None:
        """The commands of one request, by source (what the upstream bills)."""
        cost = self.stats.cost
        first = items[0]
        if first.kind == MULTI:
            cost.add(first.source, len(first.json or ()))
        elif len(items) == 1:
            cost.add(first.source)
        else:
            cost.add_sources([i.source for i in items])

    async def _call(
        self, items: list[Pending], attempt: int = 0, started: float | None = None
    ) -> list[bytes]:
        for item in items:
            if item.prepare is not None:
                item.prepare()
                item.prepare = None
        first = items[0]
        if started is None:
            started = time.monotonic()
        breaker = self.breaker
        while True:
            if not breaker.allow():
                raise UpstreamUnavailable(
                    f"circuit open after {breaker.consecutive_failures} consecutive upstream "
                    f"failures; next attempt in {breaker.retry_in_s():.1f} s"
                )
            self.stats.http_requests += 1
            # No cancel scope here: every request has its deadline in the HTTP client
            # (`upstream_timeout_s`, as UpstreamTimeout); a second one cost a scope per request.
            try:
                if first.kind == MULTI:
                    self.stats.transactions += 1
                    frames = [await self.upstream.multi_exec(first.json)]  # type: ignore[arg-type]
                elif first.kind == SINGLE:
                    frames = [await self.upstream.single(first.args)]
                else:
                    self.stats.batches += 1
                    self.stats.batched_commands += len(items)
                    frames = await self.upstream.pipeline([i.json for i in items])  # type: ignore[misc]
            except UpstreamError as exc:
                if not self._should_retry(items, exc, started, attempt):
                    raise
            else:
                self._succeeded(items, started)
                return frames
            attempt += 1
            await trio.sleep(RETRY_BACKOFF_S)


class _Exchange:
    """A /pipeline batch sent from a read-poller round, whose socket the poller watches."""

    __slots__ = ("batch", "call", "dispatcher", "items", "started")

    def __init__(
        self,
        dispatcher: Dispatcher,
        batch: list[tuple[ClientQueue, list[Pending]]],
        items: list[Pending],
        started: float,
        call: PipelineCall,
    ) -> None:
        self.dispatcher = dispatcher
        self.batch = batch
        self.items = items
        self.started = started
        self.call = call

    def on_readable(self) -> None:
        self.dispatcher._read(self)

    def on_poller_closed(self) -> None:
        self.dispatcher._go_on_in_task(self)

    def on_lost(self) -> None:
        self.dispatcher._lost(self)
