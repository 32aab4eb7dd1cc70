"""One client connection: a reader, a writer task, and replies kept in command order.

Owns the socket and the reply slots, nothing else: the session (bridge.core.session) decides
what each command is and finishes every reply's bytes; the dispatcher turns commands into
upstream work; the state (bridge.server.state) is told of replies that teach it something.
The reader parses requests and turns each into a reply slot (filled at once for local
replies, later by the dispatcher for forwarded ones): while it has nothing to await, the read
poller (bridge.server.read_poller) calls it when the socket is readable, so an idle client
costs no task wake-up of its own; replies are sent directly when the socket takes them, else
by the writer task, strictly in order, coalescing every ready reply into one send (and the
replies of one upstream response into one send per client). Backpressure: the reader stops
reading while `max_pending_replies` slots are outstanding, so a client that never reads its
replies holds bounded memory. Any exception is contained here: one client can never bring
the server down; a client that goes away (EOF, reset, broken pipe, timeout) is an INFO line at
most, a traceback is logged only for a bug.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from bridge.core.actions import Action, Block, Forward, PubSub, QueuedCommand, Reply, Transaction
from bridge.core.parser import ProtocolError, RequestParser
from bridge.core.resp import encode_error
from bridge.core.session import Session
from bridge.server.databases import NumberedDatabase
from bridge.server.dispatcher import ClientQueue
from bridge.server.read_poller import ReadPoller
from bridge.server.state import BridgeState

if TYPE_CHECKING:
    from bridge.server.blocking_hub import BlockingHub

log = logging.getLogger("bridge.connection")

#: Bytes asked of the socket per read (redis-py reads 32 KB at a time; big pipelines benefit).
READ_SIZE = 64 * 1024
#: Longest time the writer may spend flushing after the client stopped sending (EOF).
DRAIN_AFTER_EOF_S = 30.0
#: Pub/sub and MONITOR bytes a client may leave unread before it is disconnected (Redis'
#: client-output-buffer-limit for pubsub is 32 MB hard).
MAX_PUSH_BUFFER_BYTES = 32 * 1024 * 1024


class Slot:
    """A reply position: `data` is None until the reply is known; `push` marks pub/sub output
    (counted against the push buffer limit, not the pending-replies limit)."""

    __slots__ = ("close", "data", "push")

    def __init__(self, data: bytes | None = None, close: bool = False, push: bool = False) -> None:
        self.data = data
        self.close = close
        self.push = push


class _Forwarded(Slot):
    """The reply slot of one forwarded command, which is also the dispatcher's callback for
    its reply frame: one object per command instead of a slot, a closure and its cells."""

    __slots__ = ("action", "blocking", "conn")

    def __init__(self, conn: Connection, action: Forward, blocking: BlockingHub) -> None:
        self.data = None
        self.close = False
        self.push = False
        self.conn = conn
        self.action = action
        self.blocking = blocking

    def __call__(self, frame: bytes) -> None:
        conn = self.conn
        action = self.action
        blocking = self.blocking
        if frame[:1] == b"-" or blocking.has_waiters():
            conn.state.on_reply(action.spec, action.args, frame, blocking)
        conn._fill(self, conn.session.finish(action, frame))


class Connection:
    """One client's socket and reply slots (implements `ClientConnection` and the pub/sub
    hub's `Subscriber`)."""

    def __init__(
        self,
        state: BridgeState,
        stream: trio.abc.Stream,
        client_id: int,
        addr: str,
        laddr: str,
        poller: ReadPoller | None = None,
    ) -> None:
        self.state = state
        self.stream = stream
        self.session = Session(client_id, state, addr, laddr)
        self.parser = RequestParser(state.parser_limits)
        self.queue = ClientQueue()
        self.slots: deque[Slot] = deque()
        self._writer_wakeup = trio.Event()
        self._room = trio.Event()
        self._closing = False
        self._killed = False
        self._cancel = trio.CancelScope()
        self.pending_limit = state.config.max_pending_replies
        self.push_bytes = 0
        self.push_limit = MAX_PUSH_BUFFER_BYTES
        self._raw = _plain_socket(stream)
        self._poller = poller
        #: Commands parsed and not yet carried out; the one that must be awaited first.
        self._parsed: deque[list[bytes]] = deque()
        self._held: Block | _Switch | None = None
        self._eof = False
        self._read_error: OSError | None = None
        self._flush_queued = False
        self._writer_busy = False
        self.unsent_bytes = 0
        self.output_limit = state.config.max_output_buffer_bytes
        # The last blocking command and the poll interval it reached (resumed on a repeat).
        self._last_block: list[bytes] | None = None
        self._block_interval: float | None = None
        # The database this connection's upstream work goes to (None: database 0), with its
        # dispatcher and blocking hub; changed only when `queue` is idle (see `_route`).
        self._target: NumberedDatabase | None = None
        self._dispatcher = state.dispatcher
        self._blocking = state.blocking

    @property
    def id(self) -> int:
        return self.session.id

    @property
    def addr(self) -> str:
        return self.session.addr

    def kill(self) -> None:
        """Close this connection (CLIENT KILL, admin KILL, shutdown)."""
        self._killed = True
        self._cancel.cancel()

    def stop_reading(self) -> None:
        """EOF for the reader (the drain); the writer still sends every reply owed."""
        sock = getattr(self.stream, "socket", None)
        if sock is None:
            self.kill()
            return
        with contextlib.suppress(OSError):  # already gone: its reader sees that too
            sock.shutdown(socket.SHUT_RD)

    def backlog(self) -> tuple[int, bool]:
        """(replies owed, whether one of them still waits for the upstream)."""
        slots = self.slots
        return len(slots), any(slot.data is None for slot in slots)

    async def run(self) -> None:
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, nursery.cancel_scope)
                    await self._reader()
                    # Reader finished (EOF or QUIT): let the writer flush what is owed.
                    self._closing = True
                    self._writer_wakeup.set()
        except Exception as exc:
            reason = disconnect_reason(exc)
            if reason is None:
                log.exception("client %d (%s): connection handler failed", self.id, self.addr)
            else:
                log.info("client %d (%s): disconnected (%s)", self.id, self.addr, reason)
        finally:
            self.queue.closed = True
            self.state.pubsub.drop(self)
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await self.stream.aclose()

    # -- socket I/O ------------------------------------------------------------------------
    # A request/response client (redis-py, redis-benchmark -P 1) leaves the socket empty
    # after each command, so trio's receive (try recv, EAGAIN, wait, recv again) costs two
    # recv calls per command, and its send_all adds layers around one send. With the plain
    # socket (when the stream has one) we wait first and then recv once, and send directly,
    # falling back to trio for partial writes: measured, this is the largest per-command
    # cost of the bridge at -P 1.

    async def _receive(self) -> bytes:
        raw = self._raw
        if raw is None:
            return await self.stream.receive_some(READ_SIZE)  # type: ignore[return-value]
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc

    async def _send(self, data: bytes) -> None:
        raw = self._raw
        if raw is None:
            await self.stream.send_all(data)
            return
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])

    # -- reading ---------------------------------------------------------------------------

    async def _reader(self) -> None:
        """Carry out parsed commands, awaiting what must be awaited (a blocking command, a
        database switch, room under `max_pending_replies`), and read more: from the read
        poller while there is nothing to await (plain sockets, no idle timeout), else here."""
        stats = self.state.stats
        idle = self.state.config.idle_timeout_s or None
        poller = self._poller if self._raw is not None and idle is None else None
        while True:
            drained = self._consume()
            if self._closing:
                return
            held = self._held
            if held is not None:
                self._held = None
                self._writer_wakeup.set()
                await self._block(held)
                continue
            if len(self.slots) >= self.pending_limit:
                # Backpressure: parsed commands (and the socket) wait their turn.
                self._writer_wakeup.set()
                self._room = trio.Event()
                await self._room.wait()
                continue
            if not drained:
                continue  # stopped at the limit, and sending the ready replies made room
            if poller is not None:
                assert self._raw is not None
                await poller.serve(self._raw.fileno(), self)
                if self._read_error is not None:
                    raise trio.BrokenResourceError(str(self._read_error)) from self._read_error
                if self._eof:
                    return
                continue
            if idle is None:
                data = await self._receive()
            else:
                with trio.move_on_after(idle) as timer:
                    data = await self._receive()
                if timer.cancelled_caught:
                    if not self.slots:
                        log.info("client %d: idle for %.0f s, closing", self.id, idle)
                        return
                    continue
            if not data:
                return
            stats.bytes_in += len(data)
            try:
                self.parser.feed(data)
            except ProtocolError as exc:
                self._protocol_error(exc)
                return

    def on_readable(self) -> bool:
        """The read poller saw the socket readable: read once, carry out what arrived.
        True while nothing has to be awaited (the poller keeps the socket)."""
        if self._killed or self._closing:
            return False
        try:
            data = self._raw.recv(READ_SIZE)  # type: ignore[union-attr]
        except BlockingIOError:
            return True
        except OSError as exc:
            self._read_error = exc
            return False
        if not data:
            self._eof = True
            return False
        self.state.stats.bytes_in += len(data)
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return False
        # Anything but "all carried out" (a command to await, backpressure, closing) is for
        # the connection's task; the direct send in `_consume` may have made room since.
        return self._consume() and not self._killed

    def _consume(self) -> bool:
        """Carry out parsed commands in order until one has to be awaited (left in `_held`),
        the connection closes or `max_pending_replies` is reached; then send what is ready.
        True when every complete command was carried out (nothing left but reading)."""
        parsed = self._parsed
        limit = self.pending_limit
        drained = False
        while not self._closing and self._held is None and len(self.slots) < limit:
            if not parsed:
                try:
                    commands = self.parser.commands()
                except ProtocolError as exc:
                    self._protocol_error(exc)
                    break
                if not commands:
                    drained = True
                    break
                parsed.extend(commands)
            self._held = self._handle(parsed.popleft())
        slots = self.slots
        if slots and slots[0].data is not None:  # a local reply (forwarded ones come later)
            self._wake_writer()
        return drained

    def _protocol_error(self, exc: ProtocolError) -> None:
        self.state.stats.protocol_errors += 1
        log.info("client %d (%s): %s", self.id, self.session.addr, exc)
        self._push(Slot(encode_error(f"ERR {exc}"), close=True))
        self._closing = True

    # -- blocking commands -----------------------------------------------------------------

    async def _block(self, action: Block | _Switch) -> None:
        """Run an emulated blocking command; later commands wait, like on a blocked Redis
        connection, but the socket is still watched so a client that leaves is noticed.
        (Also a command waiting for its database switch, see `_route`.)"""
        if type(action) is _Switch:
            await self._switch(action)
            if type(action.action) is not Block:
                return
            action = action.action
        assert type(action) is Block
        slot = Slot()
        self._push(slot)
        hub = self._blocking
        same = self._last_block == action.args
        resume = self._block_interval if same else None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_socket_while_blocked)
            frame, self._block_interval = await hub.wait(
                self.queue, action.plan, action.spec, resume
            )
            nursery.cancel_scope.cancel()
        self._last_block = action.args
        self._fill(slot, self.session.finish(action, frame))

    async def _watch_socket_while_blocked(self) -> None:
        """Buffer what the client sends meanwhile; if it disconnects, end the connection."""
        while True:
            data = await self._receive()
            if not data:
                self.kill()
                return
            self.state.stats.bytes_in += len(data)
            try:
                self.parser.feed(data)
            except ProtocolError:
                return  # sticky: reported when the block ends and commands() is called

    def _handle(self, args: list[bytes]) -> Block | _Switch | None:
        """Carry out one command's action; a blocking command is returned to be awaited
        (and a command that must wait for a database switch)."""
        stats = self.state.stats
        stats.commands_total += 1
        action = self.session.handle(args)
        if type(action) is Block:
            stats.commands_forwarded += 1
            if self.session.db or self._target is not None:
                routed = self._route(action)
                if routed is not True:
                    return routed or None
            return action
        if type(action) is Reply:
            stats.commands_local += 1
            data = b"" if action.silent else action.data
            self._push(Slot(data, action.close))
            if action.close:
                self._closing = True
            elif action.reset:
                self.state.pubsub.drop(self)
            return None
        if type(action) is PubSub:
            stats.commands_local += 1
            self._pubsub(action)
            return None
        stats.commands_forwarded += 1
        if self.session.db or self._target is not None:
            routed = self._route(action)
            if routed is not True:
                return routed or None
        if type(action) is Forward:
            self._forward(action)
        else:
            assert isinstance(action, Transaction)
            self._transaction(action)
        return None

    def _push(self, slot: Slot) -> None:
        self.slots.append(slot)
        if slot.data:
            self._account(len(slot.data))

    def _fill(self, slot: Slot, data: bytes) -> None:
        """A reply became known: queue it for the writer, within the output buffer limit.
        While a dispatcher delivers a response's replies, the sending waits for the end of
        that round: one send for all of this client's replies in it (was one per reply)."""
        slot.data = data
        self._account(len(data))
        after = self._dispatcher.delivery_round
        if after is None:
            self._wake_writer()
        elif not self._flush_queued:
            self._flush_queued = True
            after.append(self._flush_round)

    def _flush_round(self) -> None:
        self._flush_queued = False
        self._wake_writer()

    def _account(self, size: int) -> None:
        self.unsent_bytes += size
        if self.unsent_bytes > self.output_limit and not self._killed:
            log.warning(
                "client %d (%s): disconnected, %d bytes of replies unread (limit %d)",
                self.id, self.session.addr, self.unsent_bytes, self.output_limit,
            )  # fmt: skip
            self.state.stats.errors["slow_reader"] += 1
            self.kill()

    # -- pub/sub and MONITOR (the hub calls back into `on_*` and `deliver_*`) --------------

    def _pubsub(self, action: PubSub) -> None:
        hub = self.state.pubsub
        if action.op == "unsubscribe":
            for name in action.names:
                hub.unsubscribe(self, action.kind, name)
            for reply in action.replies:
                self._push(Slot(reply))
            return
        if action.op == "monitor":
            slot = Slot()
            self._push(slot)
            hub.monitor(self, self._confirm(slot, action.replies[0], action.kind, b""))
            return
        for name, reply in zip(action.names, action.replies, strict=True):
            slot = Slot()
            self._push(slot)
            hub.subscribe(self, action.kind, name, self._confirm(slot, reply, action.kind, name))

    def _confirm(self, slot: Slot, reply: bytes, kind: str, name: bytes) -> Callable[[str], None]:
        """Callback for the hub: the stream is live (error "") or could not be opened."""

        def done(error: str) -> None:
            if slot.data is None:
                self._fill(slot, self.session.confirm(kind, name, reply, error))

        return done

    def deliver_push(self, frame_parts: list[bytes]) -> None:
        """A message or pmessage from the hub (parts already bulk-encoded)."""
        self._push_bytes(self.session.push_frame(frame_parts))

    def deliver_monitor(self, line: bytes) -> None:
        """One MONITOR line from the hub."""
        self._push_bytes(Session.monitor_frame(line))

    def _push_bytes(self, data: bytes) -> None:
        if self._killed:
            return
        self.push_bytes += len(data)
        if self.push_bytes > self.push_limit:
            log.warning(
                "client %d (%s): disconnected, %d bytes of pub/sub output unread (limit %d)",
                self.id, self.session.addr, self.push_bytes, self.push_limit,
            )  # fmt: skip
            self.state.stats.errors["slow_subscriber"] += 1
            self.kill()
            return
        self.slots.append(Slot(data, push=True))
        self._writer_wakeup.set()

    # -- database numbers ------------------------------------------------------------------

    def _route(self, action: Action) -> _Switch | bool:
        """Point this connection at the database `action` runs on. True when the action can
        be carried out now; a `_Switch` to await when the queue of the previous database
        still has work (so no command overtakes an earlier one on another upstream); False
        when the database is not served any more (its error reply is queued)."""
        number = self.session.db
        databases = self.state.databases
        target: NumberedDatabase | None = None
        if number and not (
            # Pub/sub is global in Redis: PUBLISH & co. go where the subscriptions are.
            not databases.shared
            and type(action) is Forward
            and action.spec is not None
            and "pubsub" in action.spec.flags
        ):
            target = databases.get(number)
            if target is None:
                problem = databases.problem(number) or "ERR DB index is out of range"
                self._push(Slot(b"" if action.silent else encode_error(problem)))
                return False
            target.commands += 1
        if target is self._target:
            return True
        queue = self.queue
        if queue.items or queue.in_flight:
            return _Switch(action, target)
        self._use(target)
        return True

    async def _switch(self, switch: _Switch) -> None:
        """Wait until the previous database's queue is idle, then carry the action out on
        the new one."""
        queue = self.queue
        if queue.items or queue.in_flight:
            queue.idle = trio.Event()
            await queue.idle.wait()
        self._use(switch.target)
        action = switch.action
        if type(action) is Forward:
            self._forward(action)
        elif type(action) is Transaction:
            self._transaction(action)

    def _publish_aside(self, action: Transaction, deliver: Callable[[bytes], None]) -> bool:
        """A transaction on a numbered REST database of its own with PUBLISH (& co.) queued
        (Celery's result backend: MULTI SETEX PUBLISH EXEC): the rest runs there, the
        publishes on database 0's upstream (where the subscriptions are) once it ran, in
        order; their replies take their places in EXEC's. False when there is none."""
        aside = [
            q
            for q in action.commands
            if q.local is None and q.spec is not None and "pubsub" in q.spec.flags
        ]
        if not aside or self.state.databases.shared:
            return False
        for q in aside:
            q.local = b""  # not sent with the transaction; the reply is filled in below
        side_queue = ClientQueue()
        dispatcher = self.state.dispatcher

        def ran(frame: bytes) -> None:
            if frame[:1] != b"*" or frame.startswith(b"*-1"):
                deliver(frame)  # aborted or failed: nothing is published
                return
            left = [len(aside)]
            for q in aside:

                def published(reply: bytes, q: QueuedCommand = q) -> None:
                    q.local = reply
                    left[0] -= 1
                    if not left[0]:
                        deliver(frame)

                dispatcher.submit_command(side_queue, q.args, q.spec, published)

        if any(q.local is None for q in action.commands) or action.watches:
            self._dispatcher.submit_transaction(self.queue, action, ran)
        else:
            ran(b"*0\r\n")
        return True

    def _use(self, target: NumberedDatabase | None) -> None:
        self._target = target
        self.queue = ClientQueue()
        source = self.state if target is None else target
        self._dispatcher = source.dispatcher
        self._blocking = source.blocking

    # -- upstream work ---------------------------------------------------------------------

    def _forward(self, action: Forward) -> None:
        args = action.args
        size = sum(map(len, args))
        limit = self.state.config.max_request_bytes
        if size > limit:
            slot = Slot()
            self._push(slot)
            self._fill(
                slot,
                encode_error(
                    f"ERR command of {size} bytes exceeds the upstream's max request size "
                    f"({limit} bytes)"
                ),
            )
            return
        forwarded = _Forwarded(self, action, self._blocking)
        self.slots.append(forwarded)
        self._dispatcher.submit_command(self.queue, args, action.spec, forwarded, size)

    def _transaction(self, action: Transaction) -> None:
        slot = Slot()
        self._push(slot)
        session = self.session
        local = session.local_exec(action)
        if local is not None:
            self._fill(slot, local)
            return
        state = self.state
        blocking = self._blocking

        def deliver(frame: bytes) -> None:
            state.on_exec_reply(action, frame, blocking)
            self._fill(slot, session.finish(action, frame))

        if self._target is not None and self._publish_aside(action, deliver):
            return
        self._dispatcher.submit_transaction(self.queue, action, deliver)

    # -- writing ---------------------------------------------------------------------------

    def _wake_writer(self) -> None:
        """Send the replies that are ready now, from here, if the socket takes them at once;
        only what it does not take is left to the writer task. Saves a task switch per reply
        for request/response clients. Never while the writer is sending (order)."""
        slots = self.slots
        if not slots or slots[0].data is None:
            # Nothing to send yet (the reader after forwarding commands): the slot's fill
            # comes back here. Waking the writer now cost it a task switch for nothing.
            return
        raw = self._raw
        if raw is not None and not self._writer_busy and not self._closing:
            out: list[bytes] = []
            while slots and slots[0].data is not None and not slots[0].close:
                slot = slots.popleft()
                data = slot.data
                assert data is not None
                out.append(data)
                if slot.push:
                    self.push_bytes -= len(data)
                else:
                    self.unsent_bytes -= len(data)
            data = b"".join(out)
            sent = 0
            if data:
                try:
                    sent = raw.send(data)
                except OSError:  # EAGAIN, or a broken socket the writer will report
                    sent = 0
                if sent < len(data):
                    rest = data[sent:]
                    slots.appendleft(Slot(rest))
                    self.unsent_bytes += len(rest)
                    # The socket is full: until the writer has sent the backlog, more direct
                    # attempts would only re-join and copy it for every new reply.
                    self._writer_busy = True
                self.state.stats.bytes_out += sent
            if len(slots) < self.pending_limit:
                self._room.set()
            if not slots or slots[0].data is None:
                return
        self._writer_wakeup.set()

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        stats = self.state.stats
        slots = self.slots
        while True:
            self._writer_wakeup = trio.Event()
            out: list[bytes] = []
            close = False
            while slots and slots[0].data is not None:
                slot = slots.popleft()
                out.append(slot.data)  # type: ignore[arg-type]
                if slot.push:
                    self.push_bytes -= len(slot.data)  # type: ignore[arg-type]
                else:
                    self.unsent_bytes -= len(slot.data)  # type: ignore[arg-type]
                if slot.close:
                    close = True
                    break
            if out:
                data = b"".join(out)
                self._writer_busy = True
                try:
                    if data:
                        await self._send(data)
                        stats.bytes_out += len(data)
                finally:
                    self._writer_busy = False
                if len(slots) < self.pending_limit:
                    self._room.set()
            if close:
                cancel_scope.cancel()
                return
            if self._closing and not slots:
                cancel_scope.cancel()
                return
            if self._closing:
                with trio.move_on_after(DRAIN_AFTER_EOF_S):
                    await self._writer_wakeup.wait()
                    continue
                cancel_scope.cancel()
                return
            await self._writer_wakeup.wait()


class _Switch:
    """An action waiting for its connection's previous database queue to be idle."""

    __slots__ = ("action", "target")

    def __init__(self, action: Action, target: NumberedDatabase | None) -> None:
        self.action = action
        self.target = target


def _plain_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The stdlib socket under a trio SocketStream (non-blocking), or None for other streams.

    trio keeps it as `_sock` on its socket wrapper; if that ever changes, we fall back to
    trio's own receive/send, which are correct, only slower.
    """
    sock = getattr(getattr(stream, "socket", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


#: How a client that went away shows, by errno (anything else is reported by its text).
_GONE_ERRNOS = {
    errno.ECONNRESET: "connection reset by peer",
    errno.EPIPE: "broken pipe",
    errno.ETIMEDOUT: "timed out",
    errno.ENOTCONN: "not connected",
    errno.ECONNABORTED: "connection aborted",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def disconnect_reason(exc: BaseException) -> str | None:
    """Why the client went away, if `exc` (possibly a group from the connection's nursery)
    is made only of a peer leaving: reset, broken pipe, timeout, a closed stream. None for
    anything else: a bug, to be logged with its traceback."""
    if isinstance(exc, BaseExceptionGroup):
        reasons = [disconnect_reason(e) for e in exc.exceptions]
        if not reasons or any(r is None for r in reasons):
            return None
        return reasons[0]
    if isinstance(exc, trio.ClosedResourceError):
        return "closed"
    if isinstance(exc, trio.BrokenResourceError):
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return _GONE_ERRNOS.get(cause.errno or 0, cause.strerror or str(cause))
        return str(exc) or "broken connection"
    if isinstance(exc, ConnectionError | TimeoutError):
        return _GONE_ERRNOS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return None
