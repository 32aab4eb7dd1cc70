"""Wiring only: start a bridge's parts in one nursery, in order, and stop them.

`run_bridge(config)` builds the upstream client (configured, or the embedded redis-server +
devserver when no credentials are given), the shared state (`bridge.server.state`), starts the
dispatcher, the pub/sub hub, the admin console and the listeners (`bridge.server.listeners`),
and on the way out closes the upstream and says "stopped". `serve_forever` adds the daemon's
life (`bridge.server.lifecycle`). Nothing in `bridge.server` imports this module; only the CLI
does.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import trio

from bridge.config import BridgeConfig
from bridge.gc_tuning import tune_for_serving
from bridge.server.admin import serve_admin
from bridge.server.cost import PROBE
from bridge.server.lifecycle import Lifecycle
from bridge.server.listeners import open_listeners, serve_clients
from bridge.server.metrics_http import metrics_sources, serve_metrics
from bridge.server.probe import probe_until_reachable
from bridge.server.pubsub import PubSubHub
from bridge.server.state import BridgeState
from bridge.upstream.rest import ProbeResult, RestClient

log = logging.getLogger("bridge")


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """What `run_bridge` reports once it accepts clients."""

    port: int | None
    unixsocket: str | None
    upstream_url: str


@contextlib.asynccontextmanager
async def upstream_for(
    config: BridgeConfig, nursery: trio.Nursery
) -> AsyncIterator[tuple[str, str]]:
    """(url, token) of the configured upstream, or of the embedded default started here."""
    if not config.embedded:
        assert config.url and config.token
        yield config.url, config.token
        return
    from bridge.server.embedded import start_embedded

    async with start_embedded(config, nursery) as (url, token):
        yield url, token


def _embedded_tokens(config: BridgeConfig) -> Callable[[str, int], str] | None:
    """The embedded devserver's token scheme for databases 1..15 (None when configured)."""
    if not config.embedded:
        return None
    from bridge.server.embedded import embedded_database_token

    return embedded_database_token


async def run_bridge(
    config: BridgeConfig,
    *,
    lifecycle: Lifecycle | None = None,
    task_status: trio.TaskStatus[BridgeInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled, or with a `lifecycle` until it asks to stop, then drain clients.

    With a lifecycle, sockets inherited from systemd (LISTEN_FDS) replace the TCP/unix
    listeners of the config, and readiness/stopping are announced to systemd.
    """
    inherited = lifecycle.inherited if lifecycle is not None else []
    async with trio.open_nursery() as nursery, upstream_for(config, nursery) as (url, token):
        upstream = RestClient(
            url,
            token,
            timeout_s=config.upstream_timeout_s,
            connect_timeout_s=config.connect_timeout_s,
            http2=config.http2,
            max_connections=config.max_in_flight + 2,
            ca_file=config.ca_file,
        )
        listening = None
        try:
            hub = PubSubHub.for_rest(upstream, config)
            state = BridgeState(config, upstream, pubsub=hub)
            await nursery.start(probe_until_reachable, upstream, _adopt_probe(state))
            await nursery.start(state.dispatcher.run)
            await nursery.start(state.databases.run, _embedded_tokens(config))
            await nursery.start(hub.run)
            nursery.start_soon(state.keyspace.run)  # reads notify-keyspace-events meanwhile
            await nursery.start(serve_admin, state, lifecycle, nursery.cancel_scope.cancel)
            metrics = None
            if config.metrics_bind:
                sources = metrics_sources(state, lifecycle)
                metrics = await nursery.start(serve_metrics, config, sources)
            listening = await open_listeners(config, inherited)

            def ready() -> None:
                assert listening is not None
                log.info(
                    "ready: accepting Redis clients on %s, upstream %s",
                    " and ".join(listening.where),
                    upstream.display_url,
                )
                if metrics is not None:
                    metrics.readiness.listening = True
                task_status.started(
                    BridgeInfo(listening.port, listening.unixsocket, upstream.display_url)
                )

            await serve_clients(state, listening.listeners, lifecycle, ready)
            nursery.cancel_scope.cancel()  # drained: stop the dispatcher and the hub
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await upstream.aclose()
            if listening is not None and listening.unixsocket:
                with contextlib.suppress(OSError):
                    os.unlink(listening.unixsocket)


def _adopt_probe(state: BridgeState) -> Callable[[ProbeResult], None]:
    """What a probe result changes: the server version and the reply format."""

    def adopt(result: ProbeResult) -> None:
        if result.reachable:
            state.stats.cost.add(PROBE, 2)  # PING + INFO server
        state.note_server_version(result.server_version)
        state.choose_response_format(result.resp2)
        log.info(
            "upstream %s: response format %s (%s)",
            state.upstream.display_url,
            "resp2" if state.upstream.resp2 else "json+base64",
            result.detail,
        )

    return adopt


async def serve_forever(
    config: BridgeConfig, reload_config: Callable[[], BridgeConfig] | None = None
) -> None:
    """CLI entry: run the bridge as a daemon until SIGTERM/SIGINT, then drain and return.

    SIGHUP re-reads the configuration with `reload_config`; systemd's NOTIFY_SOCKET,
    WATCHDOG_USEC and LISTEN_FDS are honoured (see `bridge.server.lifecycle`).
    """
    lifecycle = Lifecycle.from_environ(config, reload_config)
    tune_for_serving()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(lifecycle.run, nursery.cancel_scope)
            await run_bridge(config, lifecycle=lifecycle)
            nursery.cancel_scope.cancel()
        log.info("stopped")
    finally:
        lifecycle.notifier.close()
