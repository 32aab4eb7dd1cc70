"""Per-client session: the state machine between parsed commands and where they go.

Owns the connection state Redis keeps per client (AUTH, RESP version, name, MULTI queue,
CLIENT REPLY mode) and classifies every command into an action: a local reply, a command to
forward upstream, or a transaction to execute. No I/O: the server layer carries the actions
out, in command order. Invariant: exactly one action per command, and actions are returned in
the order the commands arrived.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from bridge import errors
from bridge.core import commands, local
from bridge.core.blocking_plans import (
    BlockingSyntaxError,
    BlockPlan,
    plan_blocking,
    watch_command,
)
from bridge.core.commands import CommandSpec, Route
from bridge.core.resp import OK, encode_error, parse_frame

QUEUED = b"+QUEUED\r\n"


class Reply:
    """Bytes to send as this command's reply; `close` ends the connection after them."""

    __slots__ = ("close", "data", "silent")

    def __init__(self, data: bytes, *, close: bool = False, silent: bool = False) -> None:
        self.data = data
        self.close = close
        self.silent = silent


class Forward:
    """One command to execute upstream; `post` rewrites its RESP2 reply frame (INFO)."""

    __slots__ = ("args", "post", "silent", "spec")

    def __init__(
        self,
        args: list[bytes],
        spec: CommandSpec | None,
        post: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.args = args
        self.spec = spec
        self.post = post
        self.silent = False


class QueuedCommand:
    """A command queued between MULTI and EXEC; `local` is its reply when answered here."""

    __slots__ = ("args", "local", "spec")

    def __init__(self, args: list[bytes], spec: CommandSpec | None, local: bytes | None) -> None:
        self.args = args
        self.spec = spec
        self.local = local


class WatchGroup:
    """The keys of one WATCH and, once its reply arrived, their fingerprints."""

    __slots__ = ("fingerprints", "keys")

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys
        self.fingerprints: list[bytes] | None = None

    def record(self, frame: bytes) -> bytes:
        """WATCH's `post`: keep the fingerprints, answer +OK (or pass an error through)."""
        if frame[:1] == b"-":
            return frame
        value = parse_frame(frame)
        if isinstance(value, list) and len(value) == len(self.keys):
            self.fingerprints = [v if isinstance(v, bytes) else b"" for v in value]
            return OK
        return encode_error("ERR upstream returned an unexpected reply to WATCH")


class Transaction:
    """EXEC of a queued MULTI block: one /multi-exec, or (with WATCH) one checking script."""

    __slots__ = ("commands", "silent", "watches")

    def __init__(self, commands: list[QueuedCommand], watches: list[WatchGroup]) -> None:
        self.commands = commands
        self.watches = watches
        self.silent = False

    def watched(self) -> list[tuple[bytes, bytes]]:
        """(key, fingerprint) pairs; read when the request is sent, after WATCH's reply."""
        pairs: list[tuple[bytes, bytes]] = []
        for group in self.watches:
            if group.fingerprints is not None:
                pairs += zip(group.keys, group.fingerprints, strict=True)
        return pairs


class Block:
    """A blocking command, emulated by polling (see bridge/core/blocking_plans.py)."""

    __slots__ = ("args", "plan", "silent", "spec")

    def __init__(self, args: list[bytes], spec: CommandSpec, plan: BlockPlan) -> None:
        self.args = args
        self.spec = spec
        self.plan = plan
        self.silent = False


class PubSub:
    """A change of subscriptions. `replies` holds one confirmation frame per name, in order;
    for subscriptions each is sent once the upstream stream is live (so a message published
    after the confirmation cannot be missed), for the others at once."""

    __slots__ = ("kind", "names", "op", "replies", "silent")

    def __init__(self, op: str, kind: str, names: list[bytes], replies: list[bytes]) -> None:
        self.op = op  # "subscribe" | "unsubscribe" | "monitor"
        self.kind = kind  # "channel" | "pattern" | "monitor"
        self.names = names
        self.replies = replies
        self.silent = False


Action = Reply | Forward | Transaction | PubSub | Block


class ServerContext(Protocol):
    """What a session may ask of the server it lives in (implemented by the server layer)."""

    requirepass: str | None

    def sessions(self) -> Iterable[Session]: ...

    def bridge_info(self) -> str: ...

    def kill_client(self, client_id: int) -> bool: ...


class Session:
    """State of one client connection. `handle(args)` → the action for that command."""

    __slots__ = (
        "addr", "authenticated", "channels", "context", "created", "flags_extra", "id", "laddr",
        "last_command", "last_seen", "lib_name", "lib_ver", "monitoring", "multi", "multi_dirty",
        "name", "patterns", "protocol", "reply_mode", "skip_next", "watches",
    )  # fmt: skip

    def __init__(self, client_id: int, context: ServerContext, addr: str = "", laddr: str = ""):
        self.id = client_id
        self.context = context
        self.addr = addr
        self.laddr = laddr
        self.created = time.monotonic()
        self.last_seen = self.created
        self.last_command = "NULL"
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.protocol = 2
        self.authenticated = not context.requirepass
        self.multi: list[QueuedCommand] | None = None
        self.multi_dirty = False
        self.reply_mode = "on"
        self.skip_next = False
        self.flags_extra = ""
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.monitoring = False
        self.watches: list[WatchGroup] = []

    # -- entry point -----------------------------------------------------------------------

    def handle(self, args: list[bytes]) -> Action:
        self.last_seen = time.monotonic()
        action = self._dispatch(args)
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
            return self._transaction(name, args)
        if route is Route.PUBSUB:
            return self._pubsub(name, args)
        if route is Route.BLOCKING:
            return self._block(args, spec)
        return self._error(errors.refused(spec.name, spec.reason or "not available over REST"))

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, text: str) -> Reply:
        return Reply(encode_error(text))

    def _forward(self, args: list[bytes], spec: CommandSpec) -> Action:
        if "write" in spec.flags and getattr(self.context, "read_only", False):
            return self._error(errors.READ_ONLY)
        if spec.name in ("xread", "xreadgroup") and _has_block(args):
            return self._block(args, spec)
        return Forward(args, spec)

    def _block(self, args: list[bytes], spec: CommandSpec) -> Action:
        if "write" in spec.flags and getattr(self.context, "read_only", False):
            return self._error(errors.READ_ONLY)
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
        return Reply(data, close=close)

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
            if not queued and not watches:
                return Reply(b"*0\r\n")
            return Transaction(queued, watches)
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
        return Forward(list(watch_command(group.keys)), None, post=group.record)

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

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns)

    def _queue(self, args: list[bytes], spec: CommandSpec | None) -> Reply:
        """Queue a command inside MULTI, or flag the transaction like Redis' queue-time errors."""
        assert self.multi is not None
        if spec is not None:
            if not commands.check_arity(spec, len(args)):
                self.multi_dirty = True
                return self._error(errors.wrong_arity(_display_name(spec)))
            if spec.route in (Route.PUBSUB, Route.REFUSED) or spec.name == "info":
                self.multi_dirty = True
                reason = spec.reason or "not available inside MULTI through the bridge"
                return self._error(errors.refused(spec.name, reason))
            if "write" in spec.flags and getattr(self.context, "read_only", False):
                self.multi_dirty = True
                return self._error(errors.READ_ONLY)
            if spec.route is Route.TRANSACTION:  # UNWATCH: queued like Redis, a no-op here
                self.multi.append(QueuedCommand(args, spec, OK))
                return Reply(QUEUED)
            if spec.route is Route.LOCAL:
                result = local.run(self, args, spec)
                if isinstance(result, Forward):
                    self.multi_dirty = True
                    return self._error(errors.refused(spec.name, "not available inside MULTI"))
                self.multi.append(QueuedCommand(args, spec, result[0]))
                return Reply(QUEUED)
        self.multi.append(QueuedCommand(args, spec, None))
        return Reply(QUEUED)

    # -- authentication (used by local commands) -------------------------------------------

    def check_password(self, user: bytes | None, password: bytes) -> str | None:
        """Authenticate; returns None on success or the error text to reply."""
        expected = self.context.requirepass
        if not expected:
            # Like Redis without requirepass: the default user has `nopass`, so AUTH default
            # <anything> (redis-py's HELLO 3 AUTH default <pw>) succeeds; one-argument AUTH
            # says no password is configured.
            if user is None:
                return errors.AUTH_NOT_CONFIGURED
            return None if user == b"default" else errors.WRONGPASS
        user_ok = user is None or user == b"default"
        pass_ok = hmac.compare_digest(password, expected.encode())
        if user_ok and pass_ok:
            self.authenticated = True
            return None
        return errors.WRONGPASS

    def reset(self) -> None:
        """RESET: back to a fresh connection's state (Redis 6.2+)."""
        self.multi = None
        self.multi_dirty = False
        self.name = b""
        self.protocol = 2
        self.reply_mode = "on"
        self.skip_next = False
        self.authenticated = not self.context.requirepass
        self.channels.clear()
        self.patterns.clear()
        self.monitoring = False
        self.watches = []

    @property
    def age_s(self) -> int:
        return int(time.monotonic() - self.created)

    @property
    def idle_s(self) -> int:
        return int(time.monotonic() - self.last_seen)

    def flags(self) -> str:
        flags = ""
        if self.monitoring:
            flags += "O"
        if self.subscribed:
            flags += "P"
        if self.multi is not None:
            flags += "x"
        return flags or "N"


# Commands a RESP2 client may send while subscribed (Redis' rule).
_SUBSCRIBED_OK = frozenset(
    {
        b"subscribe", b"psubscribe", b"unsubscribe", b"punsubscribe", b"ssubscribe",
        b"sunsubscribe", b"ping", b"quit", b"reset",
    }
)  # fmt: skip

# Commands never queued by MULTI: they act on the transaction or the connection itself.
_NOT_QUEUED = frozenset({b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"})


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
