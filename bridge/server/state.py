"""The running bridge's shared state, and its one owner: `BridgeState`.

Owns what every part of a running bridge shares: the effective configuration, the limits
derived from it (AUTH password, parser and batch limits, read-only mode), the upstream client
and what was learned about it (server version, response format, the database chosen by DB
USE), the registry of client connections, the dispatcher, the pub/sub and blocking hubs and
the counters. Each change is one method here: `reconfigure` (SIGHUP, admin RELOAD),
`switch_upstream` (DB USE), `rotate_token` (admin DB RESET-PASSWORD), `on_reply` (NOPERM
learning, blocking wake-ups), `register`/`unregister` (connections). Nothing else assigns
its attributes: the others read them and call these methods (tests/server/test_state.py
checks the tree for assignments).

It is also the `ServerContext` sessions consult (CLIENT LIST/KILL, INFO's bridge section,
AUTH, HELLO's version, READONLY). Connections are known through `ClientConnection`, so this
module imports neither the connection nor the listeners nor the runner.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from bridge import __version__, logs
from bridge.config import BridgeConfig
from bridge.core.actions import Transaction
from bridge.core.client_state import ClientState
from bridge.core.commands import CommandSpec
from bridge.core.local import DEFAULT_SERVER_VERSION
from bridge.core.monitor import monitor_line
from bridge.core.parser import ParserLimits
from bridge.server.blocking_hub import BlockingHub
from bridge.server.breaker import CircuitBreaker
from bridge.server.cost import CostMeter
from bridge.server.counters import Stats
from bridge.server.databases import Databases
from bridge.server.dispatcher import Dispatcher, DispatchLimits
from bridge.server.keyspace import Keyspace
from bridge.server.pubsub import Subscriber
from bridge.upstream.rest import RestClient

log = logging.getLogger("bridge.state")

#: Settings a reload applies to the running bridge (`BridgeState.reconfigure`). Every other
#: one shapes something built once at start (listeners, the upstream client, the admin socket,
#: hubs) and is reported as needing a restart: a new setting is safe until added here.
LIVE_SETTINGS = frozenset({
    "token", "requirepass", "max_clients", "max_batch_commands", "max_batch_bytes",
    "max_request_bytes", "max_query_buffer_bytes", "max_bulk_bytes", "max_args",
    "max_inline_bytes", "max_pending_replies", "idle_timeout_s", "log_level",
    "shutdown_timeout_s", "read_only", "max_output_buffer_bytes", "databases",
    "price_per_100k_commands", "command_budget_per_day", "command_budget_per_month",
    "budget_enforce",
})  # fmt: skip


class ClientConnection(Protocol):
    """What the state needs of a client connection (bridge.server.connection.Connection)."""

    @property
    def id(self) -> int: ...

    @property
    def session(self) -> ClientState: ...

    def kill(self) -> None:
        """Close now (CLIENT KILL, admin KILL, a slow reader)."""

    def stop_reading(self) -> None:
        """EOF for the reader; the replies owed are still sent (the drain)."""

    def backlog(self) -> tuple[int, bool]:
        """(replies owed, whether one of them still waits for the upstream)."""
        ...


class PubSubHubLike(Protocol):
    """What connections need from the pub/sub hub (bridge/server/pubsub.py implements it).

    `done(error)` is called once per subscribe/monitor request: error "" when the upstream
    stream is live (then the confirmation is sent), else the error text for the client.
    """

    def subscribe(
        self, conn: Subscriber, kind: str, name: bytes, done: Callable[[str], None]
    ) -> None: ...

    def unsubscribe(self, conn: Subscriber, kind: str, name: bytes) -> None: ...

    def monitor(self, conn: Subscriber, done: Callable[[str], None]) -> None: ...

    def drop(self, conn: Subscriber) -> None: ...

    def has_monitors(self) -> bool: ...

    def feed_monitors(self, line: bytes) -> None: ...

    def switch_upstream(self, url: str) -> int: ...

    def set_cost(self, cost: CostMeter) -> None:
        """Count the streams it opens in these cost counters."""


class UnavailableHub:
    """Stand-in when no pub/sub hub is wired in (unit tests): every subscription fails with
    a clear error."""

    REASON = "ERR pub/sub and MONITOR are not available in this build of resp-bridge"

    def subscribe(
        self, conn: Subscriber, kind: str, name: bytes, done: Callable[[str], None]
    ) -> None:
        done(self.REASON)

    def unsubscribe(self, conn: Subscriber, kind: str, name: bytes) -> None:
        pass

    def monitor(self, conn: Subscriber, done: Callable[[str], None]) -> None:
        done(self.REASON)

    def drop(self, conn: Subscriber) -> None:
        pass

    def has_monitors(self) -> bool:
        return False

    def feed_monitors(self, line: bytes) -> None:
        pass

    def switch_upstream(self, url: str) -> int:
        return 0

    def set_cost(self, cost: CostMeter) -> None:
        pass


def parser_limits_of(config: BridgeConfig) -> ParserLimits:
    return ParserLimits(
        max_inline_bytes=config.max_inline_bytes,
        max_bulk_bytes=config.max_bulk_bytes,
        max_args=config.max_args,
        max_query_buffer_bytes=config.max_query_buffer_bytes,
    )


class BridgeState:
    """The running bridge's shared state; see the module docstring. Implements
    `ServerContext` for sessions."""

    def __init__(
        self,
        config: BridgeConfig,
        upstream: RestClient,
        stats: Stats | None = None,
        pubsub: PubSubHubLike | None = None,
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.stats = stats if stats is not None else Stats()
        self.requirepass = config.requirepass
        self.read_only = config.read_only
        self.server_version = DEFAULT_SERVER_VERSION
        self.parser_limits = parser_limits_of(config)
        #: The Upstash database chosen by DB USE (its id); None: the configured one.
        self.database_in_use: str | None = None
        self.dispatcher = Dispatcher(
            upstream,
            DispatchLimits(
                max_batch_commands=config.max_batch_commands,
                max_batch_bytes=config.max_batch_bytes,
                max_in_flight=config.max_in_flight,
                timeout_s=config.upstream_timeout_s,
            ),
            self.stats,
            CircuitBreaker(config.breaker_failures, config.breaker_open_s),
        )
        self.pubsub: PubSubHubLike = pubsub if pubsub is not None else UnavailableHub()
        self.pubsub.set_cost(self.stats.cost)
        _configure_cost(self.stats.cost, config)
        #: Keyspace notifications as wake-ups (its `run` task reads the upstream's flags).
        self.keyspace = Keyspace(
            self.pubsub,
            self.dispatcher,
            mode=config.keyspace_events,
            max_streams=config.keyspace_max_streams,
        )
        self.blocking = BlockingHub(
            self.dispatcher,
            self.stats,
            min_interval_s=config.blocking_poll_min_ms / 1000,
            max_interval_s=config.blocking_poll_max_ms / 1000,
            fallback_s=config.blocking_fallback_poll_s,
            keyspace=self.keyspace,
        )
        #: Database numbers other than 0 (their own upstreams and queues; run by the runner).
        self.databases = Databases(config, self.stats, upstream)
        self.connections: dict[int, ClientConnection] = {}
        self._ids = itertools.count(1)
        #: (command, reason) pairs already logged, per client id (dropped with the client).
        self._refusals_logged: dict[int, set[tuple[str, str]]] = {}

    # -- ServerContext -----------------------------------------------------------------------

    def sessions(self) -> Iterable[ClientState]:
        return [c.session for c in self.connections.values()]

    def kill_client(self, client_id: int) -> bool:
        conn = self.connections.get(client_id)
        if conn is None:
            return False
        conn.kill()
        # Gone from CLIENT LIST and the counts at once, as in Redis: the connection's own
        # task closes it at its next checkpoint, and unregisters it again (a no-op) then.
        self.unregister(conn)
        return True

    def database_problem(self, index: int) -> str | None:
        return self.databases.problem(index)

    def databases_share_server(self) -> bool:
        return self.databases.shared

    def database_count(self) -> int:
        return self.databases.count_served()

    def pause_clients(self, mode: str, timeout_s: float) -> None:
        """CLIENT PAUSE <timeout> WRITE|ALL: held in the dispatcher, for every client."""
        log.info("CLIENT PAUSE %s for %.3f s: %s commands are held", mode.upper(), timeout_s,
                 "write" if mode == "write" else "all forwarded")  # fmt: skip
        self.dispatcher.pause_clients(mode, timeout_s)
        self.databases.pause_clients(mode, timeout_s)

    def unpause_clients(self) -> None:
        self.dispatcher.unpause_clients()
        self.databases.unpause_clients()

    @property
    def monitors(self) -> bool:
        """Whether a client is in MONITOR (then locally answered commands are fed to it)."""
        return self.pubsub.has_monitors()

    def feed_monitors(self, client: ClientState, args: list[bytes]) -> None:
        """A command answered locally, as a MONITOR line in Redis' format."""
        self.pubsub.feed_monitors(monitor_line(time.time(), client.db, client.addr, args))

    def note_refusal(self, client: ClientState, command: str, reason: str) -> None:
        """Count a locally refused command; log it at INFO the first time this client gets
        this refusal (an app retrying in a loop logs one line, not thousands)."""
        self.stats.refused[command, reason] += 1
        seen = self._refusals_logged.setdefault(client.id, set())
        if (command, reason) not in seen:
            seen.add((command, reason))
            lib = client.lib_name.decode("latin-1") or "unknown"
            name = command.replace("|", " ").upper()
            log.info("client %d (%s, lib %s) sent %s: refused, %s",
                     client.id, client.addr or "?", lib, name, reason)  # fmt: skip

    def bridge_info(self) -> str:
        s = self.stats
        lines = [
            "# Bridge",
            f"bridge_version:{__version__}",
            f"upstream_url:{self.upstream.display_url}",
            f"upstream_response_format:{'resp2' if self.upstream.resp2 else 'json'}",
            f"bridge_uptime_in_seconds:{int(s.uptime_s)}",
            f"bridge_connected_clients:{len(self.connections)}",
            f"bridge_total_connections_received:{s.connections_total}",
            f"bridge_rejected_connections:{s.connections_rejected}",
            f"bridge_commands_processed:{s.commands_total}",
            f"bridge_commands_local:{s.commands_local}",
            f"bridge_commands_forwarded:{s.commands_forwarded}",
            f"bridge_http_requests:{s.http_requests}",
            f"bridge_pipeline_batches:{s.batches}",
            f"bridge_commands_per_batch:{s.commands_per_batch:.2f}",
            f"bridge_transactions:{s.transactions}",
            f"bridge_upstream_retries:{s.retries}",
            f"bridge_upstream_errors:{sum(s.errors.values())}",
            f"bridge_upstream_latency_p50_ms:{s.upstream_latency.quantile(0.5)}",
            f"bridge_upstream_latency_p99_ms:{s.upstream_latency.quantile(0.99)}",
            f"bridge_requests_in_flight:{self.dispatcher.in_flight}",
            f"bridge_circuit_breaker:{self.dispatcher.breaker.state}",
            f"bridge_read_only:{int(self.read_only)}",
        ]
        return "\r\n".join(lines) + "\r\n"

    # -- connections -------------------------------------------------------------------------

    def accepts_more_clients(self) -> bool:
        return len(self.connections) < self.config.max_clients

    def next_client_id(self) -> int:
        return next(self._ids)

    def register(self, conn: ClientConnection) -> None:
        self.connections[conn.id] = conn

    def unregister(self, conn: ClientConnection) -> None:
        self.connections.pop(conn.id, None)
        self._refusals_logged.pop(conn.id, None)

    # -- replies -----------------------------------------------------------------------------

    def on_reply(
        self,
        spec: CommandSpec | None,
        args: list[bytes],
        frame: bytes,
        blocking: BlockingHub | None = None,
    ) -> None:
        """An upstream reply to one command: NOPERM teaches read-only mode; a write wakes the
        blocked clients waiting on its keys (in `blocking`, the hub of the database it ran
        on; default database 0's). Callers skip it for a success with no waiter."""
        if frame[:1] == b"-":
            if frame.startswith(b"-NOPERM"):
                self.noticed_noperm_write(spec)
        else:
            (blocking or self.blocking).notify_write(spec, args, frame)

    def on_exec_reply(
        self, action: Transaction, frame: bytes, blocking: BlockingHub | None = None
    ) -> None:
        """EXEC's reply: when the transaction ran (an array, not the null of a changed watched
        key), its writes wake blocked clients (of `blocking`, as in `on_reply`)."""
        hub = blocking or self.blocking
        if frame[:1] == b"*" and frame[:3] != b"*-1" and hub.has_waiters():
            for q in action.commands:
                if q.local is None:
                    hub.notify_write(q.spec, q.args)

    def noticed_noperm_write(self, spec: CommandSpec | None) -> None:
        """The upstream refused a write with NOPERM: the token is read-only. From now on
        writes are refused locally, before any HTTP request."""
        if spec is not None and spec.is_write() and not self.read_only:
            self.read_only = True
            log.warning(
                "the upstream refused a write (%s) with NOPERM: the REST token is read-only; "
                "write commands are now refused locally with READONLY",
                spec.name,
            )

    # -- what the upstream told us -----------------------------------------------------------

    def note_server_version(self, version: str | None) -> None:
        """A probe read the upstream's Redis version (announced in HELLO from now on)."""
        if version:
            self.server_version = version

    def choose_response_format(self, upstream_speaks_resp2: bool) -> None:
        """At start: RESP2 responses when configured, or (auto) when the upstream offers them."""
        wanted = self.config.response_format
        self.upstream.resp2 = upstream_speaks_resp2 if wanted == "auto" else wanted == "resp2"

    # -- changes -----------------------------------------------------------------------------

    def reconfigure(self, new: BridgeConfig) -> BridgeConfig:
        """Apply `new` to the running bridge; returns the effective config (restart-only
        settings keep their running values). Logs what changed; secret values are never
        logged."""
        old = self.config
        changed = [
            f.name
            for f in dataclasses.fields(BridgeConfig)
            if getattr(old, f.name) != getattr(new, f.name)
        ]
        # Switching between the embedded upstream and a configured one replaces the upstream.
        embedded_switch = old.embedded != new.embedded
        deferred = [
            n for n in changed if n not in LIVE_SETTINGS or (n == "token" and embedded_switch)
        ]
        applied = [n for n in changed if n not in deferred]
        effective = dataclasses.replace(new, **{n: getattr(old, n) for n in deferred})
        for secret in effective.secret_values():
            logs.add_secret(secret)
        self.config = effective
        self.requirepass = effective.requirepass
        self.parser_limits = parser_limits_of(effective)
        self.dispatcher.set_batch_limits(effective.max_batch_commands, effective.max_batch_bytes)
        _configure_cost(self.stats.cost, effective)
        self.keyspace.recheck()  # notify-keyspace-events may have been changed meanwhile
        if "token" in applied and effective.token:
            self.upstream.set_token(effective.token)
        # A new token may allow writes again: read-only mode is re-learned from the upstream.
        if "token" in applied or "read_only" in applied:
            self.read_only = effective.read_only
        if "log_level" in applied:
            logs.set_level(effective.log_level)
        renumbered = self.databases.reconfigure(effective)
        if renumbered:
            log.info("databases %s: new tables from the configuration", renumbered)
        if applied:
            log.info(
                "reloaded configuration: %s",
                ", ".join(_describe(n, old, effective) for n in applied),
            )
        elif not changed:
            log.info("reloaded configuration: no changes")
        if deferred:
            log.warning("restart needed to apply: %s (running values kept)", ", ".join(deferred))
        return effective

    def switch_upstream(self, url: str, token: str, database_id: str) -> int:
        """DB USE: later requests go to database `database_id` at `url` with `token`; clients
        stay connected, requests in flight finish on the old database, pub/sub streams
        reconnect to the new one (returns how many). The configuration is unchanged."""
        logs.add_secret(token)
        self.upstream.switch(url, token)
        self.database_in_use = database_id
        # Database 0 now lives elsewhere: numbered ones no longer share its server.
        self.databases.shared = False
        # The new token may allow writes: read-only mode is re-learned from the upstream.
        self.read_only = self.config.read_only
        return self.pubsub.switch_upstream(self.upstream.url)

    def rotate_token(self, token: str) -> bool:
        """The REST token of the database in use was reset: later requests use `token`.
        The configured token follows (True) unless DB USE chose another database."""
        logs.add_secret(token)
        self.upstream.set_token(token)
        if self.database_in_use is not None:
            return False
        self.config = dataclasses.replace(self.config, token=token)
        return True

    # -- secrets -----------------------------------------------------------------------------

    def secrets(self) -> list[str]:
        """Every credential the bridge holds: the config's secret settings and the token in
        use (which DB USE may have changed)."""
        values: list[str] = self.config.secret_values()
        values.append(self.upstream.token)
        values += self.databases.tokens()
        return [v for v in values if isinstance(v, str)]


def _configure_cost(cost: CostMeter, config: BridgeConfig) -> None:
    cost.configure(
        price_per_100k=config.price_per_100k_commands,
        budget_per_day=config.command_budget_per_day,
        budget_per_month=config.command_budget_per_month,
        enforce=config.budget_enforce,
    )


def _describe(name: str, old: BridgeConfig, new: BridgeConfig) -> str:
    field = BridgeConfig.__dataclass_fields__[name]
    if field.metadata.get("secret") or field.metadata.get("table"):
        return f"{name} (changed)"
    return f"{name} {getattr(old, name)!r} -> {getattr(new, name)!r}"
