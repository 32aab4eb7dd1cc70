"""The daemon's life: readiness, status, watchdog, SIGHUP reload and the SIGTERM drain.

`Lifecycle` links the process (signals, systemd's environment) to one running bridge:

- start: socket-activation fds are taken (and the variables removed) before anything else;
- ready: `READY=1` once the listeners accept clients, then `STATUS=` whenever the client count
  or the upstream's health changes, and `WATCHDOG=1` at half of `WATCHDOG_USEC` from a trio
  task, so the pings stop when the event loop is stuck;
- SIGHUP: `RELOADING=1` (+ `MONOTONIC_USEC`), re-read the config, apply what can change
  without dropping clients (token, AUTH password, limits, log level), log the names of the
  changed keys (never their secret values), then `READY=1`;
- SIGTERM/SIGINT: stop accepting (the listeners are closed, new connections are refused),
  `STOPPING=1`, let every connection finish the commands it already sent under
  `shutdown_timeout_s`, then return so the process exits 0; a second signal closes at once.

The drain stops each connection's reading side (`shutdown(SHUT_RD)`): its reader sees EOF and
the connection's own close path flushes every reply it owes, then closes. Commands the client
sent after that are never read, hence never executed. What outlives the deadline is cancelled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from bridge import logs
from bridge.config import BridgeConfig
from bridge.core.parser import ParserLimits
from bridge.errors import ConfigError
from bridge.server.systemd import InheritedSocket, Notifier, listen_fds, watchdog_interval_s

if TYPE_CHECKING:
    from bridge.server.connection import Connection
    from bridge.server.runner import BridgeServer

log = logging.getLogger("bridge.lifecycle")

#: How often the STATUS= text is recomputed; it is sent only when it changed.
STATUS_INTERVAL_S = 1.0
#: How often the drain looks for connections whose reading side is still open (a handler
#: accepted just before the listeners closed registers itself a moment later).
DRAIN_POLL_S = 0.02
#: After the drain, how long handlers may take to close their sockets before being cancelled.
DRAIN_CLOSE_GRACE_S = 1.0
#: A watchdog tick later than this many intervals means the event loop was blocked.
LATE_TICK_FACTOR = 1.5

#: Settings a reload applies to the running bridge (`apply_config` below). Every other one
#: shapes something built once at start (listeners, the upstream client, the admin socket,
#: hubs) and is reported as needing a restart: a new setting is safe until added here.
LIVE_SETTINGS = frozenset({
    "token", "requirepass", "max_clients", "max_batch_commands", "max_batch_bytes",
    "max_request_bytes", "max_query_buffer_bytes", "max_bulk_bytes", "max_args",
    "max_inline_bytes", "max_pending_replies", "idle_timeout_s", "log_level",
    "shutdown_timeout_s", "read_only", "max_output_buffer_bytes",
})  # fmt: skip

ReloadConfig = Callable[[], BridgeConfig]


class Lifecycle:
    """Signals and systemd notifications for one `run_bridge` (see the module docstring)."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        notifier: Notifier | None = None,
        reload_config: ReloadConfig | None = None,
        watchdog_s: float | None = None,
        inherited: list[InheritedSocket] | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.reload_config = reload_config
        self.watchdog_s = watchdog_s
        self.inherited = inherited or []
        self.stop_requested = trio.Event()
        self.server: BridgeServer | None = None
        self.stopping = False
        self._attached = trio.Event()
        self._status = ""
        self._errors_seen = 0
        self._health = "ok"

    @classmethod
    def from_environ(cls, config: BridgeConfig, reload_config: ReloadConfig | None) -> Lifecycle:
        """Read (and remove) NOTIFY_SOCKET, WATCHDOG_*, LISTEN_* from the environment."""
        return cls(
            config,
            notifier=Notifier.from_environ(),
            reload_config=reload_config,
            watchdog_s=watchdog_interval_s(),
            inherited=listen_fds(),
        )

    # -- called by run_bridge ---------------------------------------------------------------

    def ready(self, server: BridgeServer) -> None:
        """The listeners accept clients: READY=1 with the first STATUS."""
        self.server = server
        self._errors_seen = sum(server.stats.errors.values())
        self._status = self.status_text()
        self.notifier.ready(self._status)
        self._attached.set()

    def status_text(self) -> str:
        server = self.server
        if server is None:
            return "Starting"
        n = len(server.connections)
        clients = f"{n} client{'' if n == 1 else 's'}"
        if self.stopping:
            return f"Stopping: draining {clients}"
        return f"Ready: {clients}, upstream {self._health} ({server.upstream.display_url})"

    def announce_stopping(self) -> None:
        self.stopping = True
        self.notifier.stopping(self.status_text())

    # -- tasks ------------------------------------------------------------------------------

    async def run(
        self,
        cancel_scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Signal handling, watchdog and status; started before run_bridge (so an early SIGHUP
        cannot kill the process) and cancelled after it returns."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._signals, cancel_scope)
            nursery.start_soon(self._watchdog)
            nursery.start_soon(self._status_loop)
            task_status.started()

    async def _signals(
        self,
        cancel_scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    self.reload()
                    continue
                if self.server is None or self.stop_requested.is_set():
                    why = "not ready yet" if self.server is None else "second signal"
                    log.warning("received %s (%s): closing every client now", name, why)
                    if not self.stopping:
                        self.announce_stopping()
                    cancel_scope.cancel()
                    return
                log.info(
                    "received %s: draining clients (at most %.1f s)",
                    name,
                    self.config.shutdown_timeout_s,
                )
                self.stop_requested.set()

    async def _watchdog(self) -> None:
        interval = self.watchdog_s
        if not interval:
            return
        log.debug("watchdog: pinging systemd every %.3f s", interval)
        while True:
            self.notifier.watchdog()
            before = trio.current_time()
            await trio.sleep(interval)
            late = trio.current_time() - before - interval
            if late > interval * (LATE_TICK_FACTOR - 1):
                log.warning("event loop was blocked for %.2f s (watchdog ping late)", late)

    async def _status_loop(self) -> None:
        await self._attached.wait()
        while True:
            await trio.sleep(STATUS_INTERVAL_S)
            server = self.server
            if server is None or self.stopping:
                continue
            errors = sum(server.stats.errors.values())
            fresh = errors - self._errors_seen
            self._errors_seen = errors
            self._health = "ok" if fresh == 0 else f"failing ({fresh} errors in the last second)"
            text = self.status_text()
            if text != self._status:
                self._status = text
                self.notifier.status(text)

    # -- reload -----------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the config and apply what can change without dropping clients."""
        server = self.server
        if server is None or self.stopping:
            log.info("SIGHUP ignored: %s", "still starting" if server is None else "stopping")
            return
        if self.reload_config is None:
            log.info("SIGHUP ignored: no configuration source to reload")
            return
        self.notifier.reloading("Reloading configuration")
        try:
            new = self.reload_config()
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
        else:
            self.config = apply_config(server, new)
        self._status = self.status_text()
        self.notifier.ready(self._status)


def apply_config(server: BridgeServer, new: BridgeConfig) -> BridgeConfig:
    """Apply `new` to a running server; returns the effective config (restart-only settings
    keep their running values). Logs what changed; secret values are never logged."""
    old = server.config
    changed = [
        f.name
        for f in dataclasses.fields(BridgeConfig)
        if getattr(old, f.name) != getattr(new, f.name)
    ]
    # Switching between the embedded upstream and a configured one replaces the upstream.
    embedded_switch = old.embedded != new.embedded
    deferred = [n for n in changed if n not in LIVE_SETTINGS or (n == "token" and embedded_switch)]
    applied = [n for n in changed if n not in deferred]
    effective = dataclasses.replace(new, **{n: getattr(old, n) for n in deferred})
    for f in dataclasses.fields(BridgeConfig):
        if f.metadata.get("secret"):
            logs.add_secret(getattr(effective, f.name))
    server.config = effective
    server.requirepass = effective.requirepass
    server.parser_limits = ParserLimits(
        max_inline_bytes=effective.max_inline_bytes,
        max_bulk_bytes=effective.max_bulk_bytes,
        max_args=effective.max_args,
        max_query_buffer_bytes=effective.max_query_buffer_bytes,
    )
    server.dispatcher.limits = dataclasses.replace(
        server.dispatcher.limits,
        max_batch_commands=effective.max_batch_commands,
        max_batch_bytes=effective.max_batch_bytes,
    )
    if "token" in applied and effective.token:
        server.upstream.set_token(effective.token)
    # A new token may allow writes again: read-only mode is re-learned from the upstream.
    if "token" in applied or "read_only" in applied:
        server.read_only = effective.read_only
    if "log_level" in applied:
        logs.set_level(effective.log_level)
    if applied:
        log.info(
            "reloaded configuration: %s", ", ".join(_describe(n, old, effective) for n in applied)
        )
    elif not changed:
        log.info("reloaded configuration: no changes")
    if deferred:
        log.warning("restart needed to apply: %s (running values kept)", ", ".join(deferred))
    return effective


def _describe(name: str, old: BridgeConfig, new: BridgeConfig) -> str:
    field = BridgeConfig.__dataclass_fields__[name]
    if field.metadata.get("secret"):
        return f"{name} (changed)"
    return f"{name} {getattr(old, name)!r} -> {getattr(new, name)!r}"


# -- listeners and the drain --------------------------------------------------------------


def inherited_listeners(inherited: list[InheritedSocket]) -> list[trio.SocketListener]:
    """trio listeners over sockets passed by systemd (TCP or unix, as the socket says)."""
    return [trio.SocketListener(trio.socket.from_stdlib_socket(s.sock)) for s in inherited]


def inherited_port(inherited: list[InheritedSocket]) -> int | None:
    """The TCP port of the first inherited inet socket, if any."""
    for s in inherited:
        if s.sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(s.sock.getsockname()[1])
    return None


async def serve_clients(
    server: BridgeServer,
    listeners: list[trio.SocketListener],
    lifecycle: Lifecycle | None,
    on_listening: Callable[[], None],
) -> None:
    """Accept clients on `listeners`; without a lifecycle until cancelled, with one until a
    stop is requested, then close the listeners and drain the connections."""
    async with trio.open_nursery() as clients:
        async with trio.open_nursery() as accepting:
            serve = functools.partial(
                trio.serve_listeners, server.handle_stream, listeners, handler_nursery=clients
            )
            await accepting.start(serve)
            on_listening()
            if lifecycle is None:
                await trio.sleep_forever()
            assert lifecycle is not None
            lifecycle.ready(server)
            await lifecycle.stop_requested.wait()
            accepting.cancel_scope.cancel()
        # The accept loops have closed the listeners: new connections are refused from here.
        lifecycle.announce_stopping()
        await drain(server, clients, server.config.shutdown_timeout_s)


async def drain(server: BridgeServer, clients: trio.Nursery, timeout_s: float) -> None:
    """Stop reading from every client and let each flush the replies it owes, until they are
    all gone or `timeout_s` passed (then the remaining handlers are cancelled)."""
    start = trio.current_time()
    deadline = start + timeout_s
    # Backstop for handlers still closing their sockets once the registry is empty.
    clients.cancel_scope.deadline = deadline + DRAIN_CLOSE_GRACE_S
    log.info("stopped accepting; draining %d client(s)", len(server.connections))
    stopped: set[int] = set()
    with trio.move_on_at(deadline):
        while server.connections:
            for conn in list(server.connections.values()):
                if conn.id not in stopped:
                    stopped.add(conn.id)
                    stop_reading(conn)
            await trio.sleep(DRAIN_POLL_S)
    left = len(server.connections)
    if left:
        log.warning(
            "drain deadline (%.1f s) reached: closing %d client(s) with replies still owed",
            timeout_s,
            left,
        )
        clients.cancel_scope.cancel()
    else:
        log.info("drained every client in %.2f s", trio.current_time() - start)


def stop_reading(conn: Connection) -> None:
    """EOF for the connection's reader; its writer still sends every reply owed."""
    sock = getattr(conn.stream, "socket", None)
    if sock is None:
        conn.kill()
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
