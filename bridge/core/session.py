"""Per-client session: the state machine between parsed commands and their reply bytes.

Inbound, `handle(args)` classifies every command into an action (`bridge.core.actions`): a
local reply, a command to forward upstream, a transaction, a blocking command or a change of
subscriptions. Outbound, `finish(action, frame)` turns the upstream's RESP2 reply frame into the
bytes this client gets (RESP3 shaping, EXEC merging, CLIENT REPLY silence), `confirm` answers a
subscription (rolling it back when the stream could not be opened) and `push_frame` /
`monitor_frame` frame pub/sub and MONITOR output. No I/O: the server layer only moves actions
and bytes, in command order. Invariant: exactly one action per command, returned in the order
the commands arrived, and exactly one reply per action.
"""

from __future__ import annotations

import time

from bridge import errors
from bridge.core import commands, local, monitor
from bridge.core.actions import (
    Action,
    Block,
    Forward,
    PubSub,
    QueuedCommand,
    Reply,
    Transaction,
    WatchGroup,
)
from bridge.core.blocking_plans import (
    BlockingSyntaxError,
    exec_plan,
    plan_blocking,
    poll_result,
    watch_plan,
)
from bridge.core.client_state import ClientState, ServerContext
from bridge.core.commands import CommandSpec, Route
from bridge.core.resp import OK, encode_error, frame_end
from bridge.core.resp3 import encode_resp3_frame

QUEUED = b"+QUEUED\r\n"
#: EXEC's reply when a watched key changed, by protocol (RESP3 clients expect a null).
NULL_EXEC = {2: b"*-1\r\n", 3: b"_\r\n"}

__all__ = [
    "Action", "Block", "ClientState", "Forward", "PubSub", "QueuedCommand", "Reply",
    "ServerContext", "Session", "Transaction", "WatchGroup",
]  # fmt: skip


class Session(ClientState):
    """One client: `handle(args)` -> the action for that command; `finish` -> its reply bytes."""

    __slots__ = ()

    # -- entry point -----------------------------------------------------------------------

    def handle(self, args: list[bytes]) -> Action:
        self.last_seen = time.monotonic()
        action = self._dispatch(args)
        action.protocol = self.protocol
        if self.reply_mode == "off":
            action.silent = True
        elif self.skip_next:
            self.skip_next = False
            action.silent = True
        if self.reply_mode == "skip":
            self.reply_mode = "on"
            self.skip_next = True
        return action

    def _dispatch(self, args: list[bytes]) -> Action:
        spec = commands.resolve(args)
        name = args[0].lower()
        self.last_command = spec.name if spec is not None else name.decode("utf-8", "replace")
        if not self.authenticated and name not in (b"auth", b"hello", b"quit", b"reset"):
            return self._error(errors.NOAUTH)
        if self.multi is not None and name not in _NOT_QUEUED:
            return self._queue(args, spec)
        if self.protocol == 2 and (self.channels or self.patterns) and name not in _SUBSCRIBED_OK:
            return self._error(
                f"ERR Can't execute '{name.decode('utf-8', 'replace')}': only (P|S)SUBSCRIBE / "
                "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )
        if spec is None:
            # Unknown to our table: the upstream may know it (newer Redis, modules).
            return Forward(args, None)
        if not commands.check_arity(spec, len(args)):
            return self._error(errors.wrong_arity(_display_name(spec)))
        route = spec.route
        if route is Route.FORWARD:
            return self._forward(args, spec)
        if route is Route.LOCAL:
            return self._local(args, spec)
        if route is Route.TRANSACTION:
            if name in _MONITORED_HERE and self.context.monitors:
                self.context.feed_monitors(self, args)  # the upstream never sees them
            return self._transaction(name, args)
        if route is Route.PUBSUB:
            return self._pubsub(name, args)
        if route is Route.BLOCKING:
            return self._block(args, spec)
        reason = spec.reason or "not available over REST"
        return self._refuse(spec.name, reason, errors.refused(spec.name, reason))

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, text: str) -> Reply:
        return Reply(encode_error(text))

    def _refuse(self, command: str, reason: str, text: str) -> Reply:
        """A command the bridge will not run: the server counts it by reason (admin STATS,
        METRICS) and logs it once per client and reason, so operators see what apps try."""
        self.context.note_refusal(self, command, reason)
        return Reply(encode_error(text))

    def _forward(self, args: list[bytes], spec: CommandSpec) -> Action:
        if "write" in spec.flags and self.context.read_only:
            return self._refuse(spec.name, "read-only mode", errors.READ_ONLY)
        if spec.name in ("xread", "xreadgroup") and _has_block(args):
            return self._block(args, spec)
        if spec.name == "copy" and len(args) > 4:
            problem = local.copy_problem(self, args)
            if problem is not None:
                return self._error(problem)
        return Forward(args, spec)

    def _block(self, args: list[bytes], spec: CommandSpec) -> Action:
        if "write" in spec.flags and self.context.read_only:
            return self._refuse(spec.name, "read-only mode", errors.READ_ONLY)
        try:
            plan = plan_blocking(args)
        except BlockingSyntaxError as exc:
            return self._error(str(exc))
        return Block(args, spec, plan)

    def _local(self, args: list[bytes], spec: CommandSpec) -> Action:
        result = local.run(self, args, spec)
        if isinstance(result, Forward):
            return result
        data, close = result
        self._note_local_refusal(spec, data)
        if self.context.monitors and monitor.shown(spec):
            self.context.feed_monitors(self, args)
        # RESET also ended the connection's subscriptions: the server drops them upstream.
        return Reply(data, close=close, reset=spec.name == "reset")

    def _note_local_refusal(self, spec: CommandSpec, data: bytes) -> bool:
        """Whether a local reply is a refusal ("ERR SELECT inside MULTI is not supported by
        the bridge: why"); if so it is counted and logged like the table's refusals."""
        if data[:1] != b"-":
            return False
        if _REFUSED_MARK in data:
            reason = data[data.index(_REFUSED_MARK) + len(_REFUSED_MARK) :].partition(b": ")[2]
        elif _NOT_CONFIGURED_MARK in data:  # "ERR DB index 3 is not configured: add ..."
            reason = data[1:].partition(b" ")[2].partition(b": ")[0]
        else:
            return False
        self.context.note_refusal(self, spec.name, reason.strip().decode("utf-8", "replace"))
        return True

    def _transaction(self, name: bytes, args: list[bytes]) -> Action:
        if name == b"multi":
            if self.multi is not None:
                return self._error(errors.MULTI_NESTED)
            self.multi = []
            self.multi_dirty = False
            return Reply(OK)
        if name == b"exec":
            if self.multi is None:
                return self._error(errors.EXEC_WITHOUT_MULTI)
            queued, dirty, watches = self.multi, self.multi_dirty, self.watches
            self.multi = None
            self.multi_dirty = False
            self.watches = []  # EXEC always unwatches, like Redis
            if dirty:
                return self._error(errors.EXECABORT)
            if any(g.dirty for g in watches):  # a write to a watched key was seen
                return Reply(NULL_EXEC[self.protocol])
            if not queued and not watches:
                return Reply(b"*0\r\n")
            transaction = Transaction(queued, watches)
            refusal = _script_path_refusal(transaction)
            if refusal is not None:
                return self._error(refusal)
            if any(g.covered for g in watches):
                # Writes from outside the bridge are seen through keyspace events: the server
                # layer first makes sure every event published before EXEC has arrived.
                spec = commands.resolve(args)
                assert spec is not None
                return Block(args, spec, exec_plan(transaction))
            return transaction
        if name == b"discard":
            if self.multi is None:
                return self._error(errors.DISCARD_WITHOUT_MULTI)
            self.multi = None
            self.multi_dirty = False
            self.watches = []
            return Reply(OK)
        if name == b"unwatch":
            self.watches = []
            return Reply(OK)
        if self.multi is not None:
            return self._error(errors.WATCH_IN_MULTI)
        group = WatchGroup(args[1:])
        self.watches.append(group)
        # The server layer registers the group (writes mark it dirty) before reading its
        # fingerprints; with keyspace events it waits for the keys' streams first.
        spec = commands.resolve(args)
        assert spec is not None
        return Block(args, spec, watch_plan(group))

    def _pubsub(self, name: bytes, args: list[bytes]) -> Action:
        """(P)(UN)SUBSCRIBE and MONITOR with Redis' replies and per-client counts."""
        if name == b"monitor":
            self.monitoring = True
            return PubSub("monitor", "monitor", [], [OK])
        pattern = name in (b"psubscribe", b"punsubscribe")
        kind = "pattern" if pattern else "channel"
        subs = self.patterns if pattern else self.channels
        names = args[1:]
        replies: list[bytes] = []
        if name in (b"subscribe", b"psubscribe"):
            for item in names:
                if item not in subs:
                    self.unconfirmed.add((kind, item))
                subs.add(item)
                replies.append(self._pubsub_frame(name, item))
            return PubSub("subscribe", kind, names, replies)
        if not names:
            names = sorted(subs)
        gone = []
        for item in names:
            if item in subs:
                subs.discard(item)
                gone.append(item)
            replies.append(self._pubsub_frame(name, item))
        if not replies:
            replies.append(self._pubsub_frame(name, None))
        return PubSub("unsubscribe", kind, gone, replies)

    def _pubsub_frame(self, label: bytes, item: bytes | None) -> bytes:
        count = len(self.channels) + len(self.patterns)
        head = b">3\r\n" if self.protocol == 3 else b"*3\r\n"
        if item is None:
            body = b"_\r\n" if self.protocol == 3 else b"$-1\r\n"
        else:
            body = b"$%d\r\n%s\r\n" % (len(item), item)
        return head + b"$%d\r\n%s\r\n" % (len(label), label) + body + b":%d\r\n" % count

    def _queue(self, args: list[bytes], spec: CommandSpec | None) -> Reply:
        """Queue a command inside MULTI, or flag the transaction like Redis' queue-time errors."""
        assert self.multi is not None
        if spec is None and b"." not in args[0]:
            # Redis rejects an unknown command at queue time; names with a dot are module
            # commands (Upstash's JSON.*) that the upstream may know: they are queued.
            self.multi_dirty = True
            return self._error(errors.unknown_command(args))
        if spec is not None:
            if spec.subcommands and len(args) > 1:  # a container: the subcommand is unknown
                self.multi_dirty = True
                return self._error(errors.unknown_subcommand(args[1], spec.name))
            if not commands.check_arity(spec, len(args)):
                self.multi_dirty = True
                return self._error(errors.wrong_arity(_display_name(spec)))
            if spec.route in (Route.PUBSUB, Route.REFUSED):
                self.multi_dirty = True
                reason = spec.reason or "not available inside MULTI through the bridge"
                return self._refuse(spec.name, reason, errors.refused(spec.name, reason))
            if "write" in spec.flags and self.context.read_only:
                self.multi_dirty = True
                return self._refuse(spec.name, "read-only mode", errors.READ_ONLY)
            if spec.route is Route.TRANSACTION:  # UNWATCH: queued like Redis, a no-op here
                self.multi.append(QueuedCommand(args, spec, OK))
                return Reply(QUEUED)
            if spec.route is Route.BLOCKING or (
                spec.name in ("xread", "xreadgroup") and _has_block(args)
            ):
                self.multi.append(_queued_without_blocking(args, spec))
                return Reply(QUEUED)
            if spec.route is Route.LOCAL:
                result = local.run(self, args, spec)
                if isinstance(result, Forward):  # INFO, CONFIG GET: upstream, then merged
                    self.multi.append(_queued_forward(result))
                    return Reply(QUEUED)
                if self._note_local_refusal(spec, result[0]):
                    # Refused (SELECT inside MULTI): answered now, EXEC aborts, as in Redis
                    # for a command rejected at queue time.
                    self.multi_dirty = True
                    return Reply(result[0])
                self.multi.append(QueuedCommand(args, spec, result[0]))
                return Reply(QUEUED)
        self.multi.append(QueuedCommand(args, spec, None))
        return Reply(QUEUED)

    # -- outbound: reply bytes ----------------------------------------------------------------

    def finish(self, action: Forward | Transaction | Block, frame: bytes) -> bytes:
        """The bytes this client gets for `action`, given the upstream's RESP2 reply `frame`."""
        if type(action) is Forward:
            post = action.post
            if post is not None:
                frame = post(frame)
            if action.silent:
                return b""
            if action.protocol == 2:
                return frame
            return encode_resp3_frame(action.spec, action.args, frame)
        if type(action) is Transaction:
            return b"" if action.silent else self._merge_exec(action, frame)
        assert type(action) is Block
        group = action.plan.group
        if action.plan.kind == "exec":  # EXEC synced with keyspace events
            group.protocol = action.protocol
            return b"" if action.silent else self._merge_exec(group, frame)
        if group is not None:  # WATCH
            frame = group.record(frame)
        if action.silent:
            return b""
        if action.protocol == 2:
            return frame
        return encode_resp3_frame(action.spec, action.args, frame)

    def local_exec(self, action: Transaction) -> bytes | None:
        """EXEC's reply when every queued command was answered locally (no WATCH), else None."""
        if action.watches or any(q.local is None for q in action.commands):
            return None
        if action.silent:
            return b""
        return b"*%d\r\n" % len(action.commands) + b"".join(q.local or b"" for q in action.commands)

    def _merge_exec(self, action: Transaction, frame: bytes) -> bytes:
        """Rebuild the EXEC reply: upstream results interleaved with locally answered ones."""
        if frame.startswith(b"*-1"):  # a watched key changed: the protocol's null
            return NULL_EXEC[action.protocol]
        if frame[:1] != b"*":
            return frame
        pos = frame.index(b"\r\n") + 2
        proto = action.protocol
        parts: list[bytes] = []
        for q in action.commands:
            if q.local is not None:
                parts.append(q.local)
                continue
            end = frame_end(frame, pos)
            item = frame[pos:end]
            pos = end
            if q.post is not None:
                parts.append(q.post(item, proto))
            else:
                parts.append(item if proto == 2 else encode_resp3_frame(q.spec, q.args, item))
        return b"*%d\r\n" % len(parts) + b"".join(parts)

    def confirm(self, kind: str, name: bytes, reply: bytes, error: str) -> bytes:
        """A subscription's answer once the hub knows: `reply` (the confirmation) when the
        stream is live (error ""), else the error, and the subscription is forgotten so that
        the counts in later confirmations stay true."""
        self.unconfirmed.discard((kind, name))
        if not error:
            return reply
        if kind == "channel":
            self.channels.discard(name)
        elif kind == "pattern":
            self.patterns.discard(name)
        else:
            self.monitoring = False
        return encode_error(error)

    def push_frame(self, parts: list[bytes]) -> bytes:
        """A message or pmessage, parts already bulk-encoded (e.g. [$7 message, $2 ch,
        $5 hello]): a RESP2 array, or a RESP3 push frame."""
        head = b">%d\r\n" if self.protocol == 3 else b"*%d\r\n"
        return head % len(parts) + b"".join(parts)

    @staticmethod
    def monitor_frame(line: bytes) -> bytes:
        """One MONITOR line (a status reply in Redis)."""
        return b"+" + line.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


# Commands a RESP2 client may send while subscribed (Redis' rule).
_SUBSCRIBED_OK = frozenset(
    {
        b"subscribe", b"psubscribe", b"unsubscribe", b"punsubscribe", b"ssubscribe",
        b"sunsubscribe", b"ping", b"quit", b"reset",
    }
)  # fmt: skip

#: Transaction commands MONITOR shows from the bridge: the upstream runs WATCH as a script and
#: never sees UNWATCH or DISCARD (MULTI and EXEC come with the upstream's /multi-exec).
_MONITORED_HERE = frozenset({b"watch", b"unwatch", b"discard"})

#: What every local refusal's text says before its reason ("... is not supported by ...: why").
_REFUSED_MARK = b" is not supported by "
#: A setting the bridge lacks (SELECT of a number without a [databases.N] table).
_NOT_CONFIGURED_MARK = b" is not configured"

# Commands never queued by MULTI: they act on the transaction or the connection itself.
_NOT_QUEUED = frozenset({b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"})


def _queued_forward(forward: Forward) -> QueuedCommand:
    """A local command that needs the upstream, queued: its `post` runs on EXEC's item."""
    rewrite = forward.post

    def post(frame: bytes, protocol: int) -> bytes:
        if rewrite is not None:
            frame = rewrite(frame)
        return frame if protocol == 2 else encode_resp3_frame(forward.spec, forward.args, frame)

    return QueuedCommand(forward.args, forward.spec, None, post)


def _queued_without_blocking(args: list[bytes], spec: CommandSpec) -> QueuedCommand:
    """A blocking command inside MULTI runs without blocking, as in Redis: its non-blocking
    form is queued and its reply reshaped (nil when nothing was there). Bad arguments are
    EXEC's error for that command, as Redis reports them at EXEC too."""
    try:
        plan = plan_blocking(args)
    except BlockingSyntaxError as exc:
        return QueuedCommand(args, spec, encode_error(str(exc)))
    poll = list(plan.poll)
    empty = b"$-1\r\n" if plan.kind == "move" else b"*-1\r\n"

    def post(frame: bytes, protocol: int) -> bytes:
        reply = poll_result(plan, frame)
        if reply is None:
            reply = empty
        return reply if protocol == 2 else encode_resp3_frame(spec, args, reply)

    return QueuedCommand(poll, commands.resolve(poll), None, post)


def _display_name(spec: CommandSpec) -> str:
    return spec.name.replace("|", " ")


def _has_block(args: list[bytes]) -> bool:
    for arg in args[1:]:
        low = arg.lower()
        if low == b"block":
            return True
        if low == b"streams":
            return False
    return False


def _script_path_refusal(transaction: Transaction) -> str | None:
    """EXEC's error for a transaction that runs as one Lua script (no `multi_exec_json`:
    WATCH, or binary arguments) and holds a command Redis does not allow in scripts (EVAL,
    EVALSHA, FCALL, SCRIPT LOAD, ...). Run in the script it would fail alone while the rest of
    the transaction ran; refused, nothing runs and the client is told why."""
    if transaction.multi_exec_json() is not None:
        return None  # one /multi-exec: Redis' own MULTI runs these
    for queued in transaction.remote:
        spec = commands.resolve(queued.args)
        if spec is not None and "noscript" in spec.flags:
            name = spec.name.replace("|", " ").upper()
            why = "WATCH" if transaction.watches else "binary (non-UTF-8) arguments"
            return (
                f"EXECABORT Transaction discarded: with {why} the bridge runs MULTI/EXEC as "
                f"one Lua script, and Redis does not allow {name} in scripts; send {name} "
                "outside the transaction (nothing ran)"
            )
    return None
