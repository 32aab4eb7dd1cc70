"""What Redis keeps per client (AUTH, RESP version, name, subscriptions, MULTI queue, CLIENT
REPLY mode), and `ServerContext`: what a client may ask of the server it lives in.

Split from the session's state machine so that the local commands (`bridge.core.local`) can
read and change a client's state without importing the session that dispatches to them. No I/O.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from typing import Protocol

from bridge import errors
from bridge.core.actions import QueuedCommand, WatchGroup


class ServerContext(Protocol):
    """The running bridge as a client sees it (`bridge.server.state.BridgeState`)."""

    @property
    def requirepass(self) -> str | None: ...

    @property
    def read_only(self) -> bool:
        """Writes are refused locally (configured, or learned from a NOPERM)."""
        ...

    @property
    def server_version(self) -> str:
        """The upstream's Redis version, announced in HELLO."""
        ...

    def sessions(self) -> Iterable[ClientState]: ...

    def bridge_info(self) -> str: ...

    def kill_client(self, client_id: int) -> bool: ...

    def pause_clients(self, mode: str, timeout_s: float) -> None:
        """CLIENT PAUSE: hold every client's write ("write") or all ("all") commands."""

    def unpause_clients(self) -> None: ...

    def note_refusal(self, client: ClientState, command: str, reason: str) -> None:
        """A command `client` sent was refused locally (counted, logged once per reason)."""

    @property
    def monitors(self) -> bool:
        """Whether some client is in MONITOR mode (checked per locally answered command)."""
        ...

    def feed_monitors(self, client: ClientState, args: list[bytes]) -> None:
        """Show a command `client` sent, answered locally, to the MONITOR clients."""

    def database_problem(self, index: int) -> str | None:
        """None when database `index` can be SELECTed, else the error text to reply."""
        ...

    def database_count(self) -> int:
        """What CONFIG GET databases reports: the highest number served + 1."""
        ...

    def databases_share_server(self) -> bool:
        """Every database number is a logical database of one Redis server (the embedded
        default): MOVE, SWAPDB and COPY ... DB keep Redis' guarantees when forwarded."""
        ...


class ClientState:
    """State of one client connection, as CLIENT LIST shows it and local commands change it."""

    __slots__ = (
        "addr", "authenticated", "channels", "context", "created", "db", "id", "laddr",
        "last_command", "last_seen", "lib_name", "lib_ver", "monitoring", "multi", "multi_dirty",
        "name", "patterns", "protocol", "reply_mode", "skip_next", "unconfirmed", "watches",
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
        #: The SELECTed database number (its upstream is chosen by the server layer).
        self.db = 0
        self.authenticated = not context.requirepass
        self.multi: list[QueuedCommand] | None = None
        self.multi_dirty = False
        self.reply_mode = "on"
        self.skip_next = False
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        #: (kind, name) subscribed but not yet live upstream: not counted by PUBSUB NUMSUB,
        #: NUMPAT or CHANNELS, so a publisher that sees a count can rely on delivery.
        self.unconfirmed: set[tuple[str, bytes]] = set()
        self.monitoring = False
        self.watches: list[WatchGroup] = []

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns)

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
        self.db = 0
        self.reply_mode = "on"
        self.skip_next = False
        self.authenticated = not self.context.requirepass
        self.channels.clear()
        self.unconfirmed.clear()
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

    def live_channels(self) -> set[bytes]:
        return {c for c in self.channels if ("channel", c) not in self.unconfirmed}

    def live_patterns(self) -> set[bytes]:
        return {p for p in self.patterns if ("pattern", p) not in self.unconfirmed}
