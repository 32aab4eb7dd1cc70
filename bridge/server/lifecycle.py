"""The daemon's life: readiness, status, watchdog, SIGHUP reload and the SIGTERM drain.

`Lifecycle` links the process (signals, systemd's environment) to one running bridge:

- start: socket-activation fds are taken (and the variables removed) before anything else;
- ready: `READY=1` once the listeners accept clients, then `STATUS=` whenever the client count
  or the upstream's health changes, and `WATCHDOG=1` at half of `WATCHDOG_USEC` from a trio
  task, so the pings stop when the event loop is stuck;
- SIGHUP: `RELOADING=1` (+ `MONOTONIC_USEC`), re-read the config and hand it to
  `BridgeState.reconfigure` (which applies what can change without dropping clients and logs
  the names of the changed keys, never their secret values), then `READY=1`;
- SIGTERM/SIGINT: ask `run_bridge` to stop (`stop_requested`): the listeners close and the
  connections drain (`bridge.server.listeners`), under `shutdown_timeout_s`, then the process
  exits 0; a second signal closes at once.

It holds no configuration of its own: before the bridge is attached it reads the one it was
started with, then the state's.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

from bridge.config import BridgeConfig
from bridge.errors import ConfigError
from bridge.server.state import BridgeState
from bridge.server.systemd import InheritedSocket, Notifier, listen_fds, watchdog_interval_s

log = logging.getLogger("bridge.lifecycle")

#: How often the STATUS= text is recomputed; it is sent only when it changed.
STATUS_INTERVAL_S = 1.0
#: A watchdog tick later than this many intervals means the event loop was blocked.
LATE_TICK_FACTOR = 1.5

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
        self._start_config = config
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.reload_config = reload_config
        self.watchdog_s = watchdog_s
        self.inherited = inherited or []
        self.stop_requested = trio.Event()
        self.state: BridgeState | None = None
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

    @property
    def config(self) -> BridgeConfig:
        """The running configuration: the state's once attached."""
        return self.state.config if self.state is not None else self._start_config

    # -- called by run_bridge ---------------------------------------------------------------

    def ready(self, state: BridgeState) -> None:
        """The listeners accept clients: READY=1 with the first STATUS."""
        self.state = state
        self._errors_seen = sum(state.stats.errors.values())
        self._status = self.status_text()
        self.notifier.ready(self._status)
        self._attached.set()

    def status_text(self) -> str:
        state = self.state
        if state is None:
            return "Starting"
        n = len(state.connections)
        clients = f"{n} client{'' if n == 1 else 's'}"
        if self.stopping:
            return f"Stopping: draining {clients}"
        text = f"Ready: {clients}, upstream {self._health} ({state.upstream.display_url})"
        budget = state.stats.cost.status_note()  # a command budget at 80% or exhausted
        return f"{text}; {budget}" if budget else text

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
                if self.state is None or self.stop_requested.is_set():
                    why = "not ready yet" if self.state is None else "second signal"
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
            state = self.state
            if state is None or self.stopping:
                continue
            errors = sum(state.stats.errors.values())
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
        state = self.state
        if state is None or self.stopping:
            log.info("SIGHUP ignored: %s", "still starting" if state is None else "stopping")
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
            state.reconfigure(new)
        self._status = self.status_text()
        self.notifier.ready(self._status)
