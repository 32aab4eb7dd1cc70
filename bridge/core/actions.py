"""What a session decides for one command: the actions the server layer carries out.

`Session.handle(args)` returns exactly one of these per command, in command order; the server
layer only moves them (bytes to the socket, work to the upstream, subscriptions to the hub) and
hands each upstream reply back to `Session.finish`. Plain slotted classes, not dataclasses: one
is built per command on the hot path. The session sets `silent` (CLIENT REPLY OFF/SKIP) and
`protocol` (the client's RESP version when it sent the command: a reply is finished in it,
even if a HELLO pipelined after the command changed the connection's).
No I/O, and no import of the session (local commands build `Forward`s too).
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.core.blocking_plans import BlockPlan
from bridge.core.commands import CommandSpec
from bridge.core.resp import OK, encode_error, parse_frame
from bridge.core.rest_codec import json_args


class Reply:
    """Bytes to send as this command's reply; `close` ends the connection after them;
    `reset` says the connection's subscriptions and MONITOR ended with it (RESET)."""

    __slots__ = ("close", "data", "protocol", "reset", "silent")

    def __init__(
        self, data: bytes, *, close: bool = False, silent: bool = False, reset: bool = False
    ) -> None:
        self.data = data
        self.close = close
        self.silent = silent
        self.reset = reset
        self.protocol = 2


class Forward:
    """One command to execute upstream; `post` rewrites its RESP2 reply frame (INFO, WATCH)."""

    __slots__ = ("args", "post", "protocol", "silent", "spec")

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
        self.protocol = 2


class QueuedCommand:
    """A command queued between MULTI and EXEC; `local` is its reply when answered here.
    `post(frame, protocol)`, when set, turns the upstream's RESP2 reply to `args` into the
    client's reply bytes (a blocking command queued as its non-blocking form)."""

    __slots__ = ("args", "local", "post", "spec")

    def __init__(
        self,
        args: list[bytes],
        spec: CommandSpec | None,
        local: bytes | None,
        post: Callable[[bytes, int], bytes] | None = None,
    ) -> None:
        self.args = args
        self.spec = spec
        self.local = local
        self.post = post


class WatchGroup:
    """The keys of one WATCH and, once its reply arrived, their fingerprints. `dirty`: a
    write to one of them was seen since the WATCH (EXEC then answers null at once)."""

    __slots__ = ("__weakref__", "covered", "dirty", "fingerprints", "keys")

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys
        self.fingerprints: list[bytes] | None = None
        self.dirty = False
        #: Its keys' keyspace streams are held: EXEC first syncs with them (set by the server).
        self.covered = False

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
    """EXEC of a queued MULTI block: one /multi-exec, or (with WATCH, or a binary argument)
    one checking script."""

    __slots__ = ("commands", "protocol", "silent", "watches")

    def __init__(self, commands: list[QueuedCommand], watches: list[WatchGroup]) -> None:
        self.commands = commands
        self.watches = watches
        self.silent = False
        self.protocol = 2

    def multi_exec_json(self) -> list[list[str]] | None:
        """The remote commands as /multi-exec's JSON arrays; None when EXEC runs as the
        checking script instead (WATCH, or an argument that is not UTF-8, which JSON cannot
        carry). The one rule for the session and the dispatcher; computed when asked, since
        the server layer may still answer queued commands itself (`_publish_aside`)."""
        if self.watches:
            return None
        remote: list[list[str]] = []
        for queued in self.remote:
            as_json = json_args(queued.args)
            if as_json is None:
                return None
            remote.append(as_json)
        return remote

    @property
    def remote(self) -> list[QueuedCommand]:
        """The queued commands the upstream runs (the others were answered locally)."""
        return [q for q in self.commands if q.local is None]

    def watched(self) -> list[tuple[bytes, bytes]]:
        """(key, fingerprint) pairs; read when the request is sent, after WATCH's reply."""
        pairs: list[tuple[bytes, bytes]] = []
        for group in self.watches:
            if group.fingerprints is not None:
                pairs += zip(group.keys, group.fingerprints, strict=True)
        return pairs


class Block:
    """A blocking command, emulated by polling (see bridge/core/blocking_plans.py)."""

    __slots__ = ("args", "plan", "protocol", "silent", "spec")

    def __init__(self, args: list[bytes], spec: CommandSpec, plan: BlockPlan) -> None:
        self.args = args
        self.spec = spec
        self.plan = plan
        self.silent = False
        self.protocol = 2


class PubSub:
    """A change of subscriptions. `replies` holds one confirmation frame per name, in order;
    for subscriptions each is sent once the upstream stream is live (so a message published
    after the confirmation cannot be missed), for the others at once."""

    __slots__ = ("kind", "names", "op", "protocol", "replies", "silent")

    def __init__(self, op: str, kind: str, names: list[bytes], replies: list[bytes]) -> None:
        self.op = op  # "subscribe" | "unsubscribe" | "monitor"
        self.kind = kind  # "channel" | "pattern" | "monitor"
        self.names = names
        self.replies = replies
        self.silent = False
        self.protocol = 2


Action = Reply | Forward | Transaction | PubSub | Block
