"""The running bridge: listeners, the shared dispatcher, the client registry, start-up.

`run_bridge(config)` wires the pieces in one nursery: the upstream (configured, or the
embedded redis-server + devserver when no credentials are given), the dispatcher and the
TCP/unix listeners. `BridgeServer` is also the `ServerContext` sessions consult (CLIENT
LIST, INFO's bridge section, AUTH).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from bridge import __version__
from bridge.config import BridgeConfig
from bridge.core.commands import CommandSpec
from bridge.core.parser import ParserLimits
from bridge.core.resp import encode_error
from bridge.core.session import Session
from bridge.errors import MAX_CLIENTS, ConfigError, UpstreamAuthError
from bridge.server.admin import serve_admin
from bridge.server.blocking_hub import BlockingHub
from bridge.server.breaker import CircuitBreaker
from bridge.server.connection import Connection
from bridge.server.counters import Stats
from bridge.server.dispatcher import Dispatcher, DispatchLimits
from bridge.server.lifecycle import (
    Lifecycle,
    inherited_listeners,
    inherited_port,
    serve_clients,
)
from bridge.server.pubsub import PubSubHub
from bridge.upstream.rest import RestClient

log = logging.getLogger("bridge")


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """What `run_bridge` reports once it accepts clients."""

    port: int | None
    unixsocket: str | None
    upstream_url: str


class PubSubHubLike(Protocol):
    """What connections need from the pub/sub hub (bridge/server/pubsub.py implements it).

    `done(error)` is called once per subscribe/monitor request: error "" when the upstream
    stream is live (then the confirmation is sent), else the error text for the client.
    """

    def subscribe(
        self, conn: Connection, kind: str, name: bytes, done: Callable[[str], None]
    ) -> None: ...

    def unsubscribe(self, conn: Connection, kind: str, name: bytes) -> None: ...

    def monitor(self, conn: Connection, done: Callable[[str], None]) -> None: ...

    def drop(self, conn: Connection) -> None: ...


class UnavailableHub:
    """Stand-in before the pub/sub hub is wired in (tests, early start-up): every subscription
    fails with a clear error."""

    REASON = "ERR pub/sub and MONITOR are not available in this build of resp-bridge"

    def subscribe(
        self, conn: Connection, kind: str, name: bytes, done: Callable[[str], None]
    ) -> None:
        done(self.REASON)

    def unsubscribe(self, conn: Connection, kind: str, name: bytes) -> None:
        pass

    def monitor(self, conn: Connection, done: Callable[[str], None]) -> None:
        done(self.REASON)

    def drop(self, conn: Connection) -> None:
        pass


class BridgeServer:
    """Client registry and shared services; implements `ServerContext` for sessions."""

    def __init__(self, config: BridgeConfig, upstream: RestClient, stats: Stats) -> None:
        self.config = config
        self.upstream = upstream
        self.stats = stats
        self.requirepass = config.requirepass
        self.server_version = "7.2.0"
        self.parser_limits = ParserLimits(
            max_inline_bytes=config.max_inline_bytes,
            max_bulk_bytes=config.max_bulk_bytes,
            max_args=config.max_args,
            max_query_buffer_bytes=config.max_query_buffer_bytes,
        )
        self.dispatcher = Dispatcher(
            upstream,
            DispatchLimits(
                max_batch_commands=config.max_batch_commands,
                max_batch_bytes=config.max_batch_bytes,
                max_in_flight=config.max_in_flight,
                timeout_s=config.upstream_timeout_s,
            ),
            stats,
            CircuitBreaker(config.breaker_failures, config.breaker_open_s),
        )
        self.read_only = config.read_only
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self.pubsub: PubSubHubLike = UnavailableHub()
        self.blocking = BlockingHub(
            self.dispatcher,
            stats,
            min_interval_s=config.blocking_poll_min_ms / 1000,
            max_interval_s=config.blocking_poll_max_ms / 1000,
        )

    # -- ServerContext ---------------------------------------------------------------------

    def sessions(self) -> Iterable[Session]:
        return [c.session for c in self.connections.values()]

    def kill_client(self, client_id: int) -> bool:
        conn = self.connections.get(client_id)
        if conn is None:
            return False
        conn.kill()
        return True

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

    # -- connections -----------------------------------------------------------------------

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        self.stats.connections_total += 1
        if len(self.connections) >= self.config.max_clients:
            self.stats.connections_rejected += 1
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                with trio.move_on_after(1):
                    await stream.send_all(encode_error(MAX_CLIENTS))
            await stream.aclose()
            return
        addr, laddr = _addresses(stream)
        conn = Connection(self, stream, next(self._ids), addr, laddr)
        self.connections[conn.id] = conn
        try:
            await conn.run()
        finally:
            del self.connections[conn.id]


def _addresses(stream: trio.abc.Stream) -> tuple[str, str]:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "?:0", "?:0"
    try:
        if sock.family == socket.AF_UNIX:
            return f"{sock.getsockname() or '/unix'}:0", f"{sock.getsockname() or '/unix'}:0"
        peer = sock.getpeername()
        local = sock.getsockname()
        return _fmt(peer), _fmt(local)
    except OSError:
        return "?:0", "?:0"


def _fmt(address: tuple) -> str:  # type: ignore[type-arg]
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_unix_listener(path: str, mode: int) -> trio.SocketListener:
    """A listening unix socket with `mode` permissions (trio has no helper for this)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
        else:
            raise ConfigError(
                f"unixsocket: {path} exists and is not a socket; refusing to remove it"
            )
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        await sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(socket.SOMAXCONN)
    return trio.SocketListener(sock)


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
    stats = Stats()
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
        try:
            server = BridgeServer(config, upstream, stats)
            await _probe(config, upstream, server)
            await nursery.start(server.dispatcher.run)
            server.pubsub = hub = PubSubHub.for_rest(upstream, config)
            await nursery.start(hub.run)
            await nursery.start(serve_admin, server, lifecycle, nursery.cancel_scope.cancel)
            listeners: list[trio.SocketListener] = []
            port: int | None = None
            if inherited:
                listeners = inherited_listeners(inherited)
                port = inherited_port(inherited)
                where = [s.describe() for s in inherited]
                log.info("socket activation: %d listener(s) from systemd", len(listeners))
            elif config.port >= 0:
                tcp = await trio.open_tcp_listeners(config.port, host=config.bind)
                listeners += tcp
                port = tcp[0].socket.getsockname()[1]
            if config.unixsocket and not inherited:
                listeners.append(await open_unix_listener(config.unixsocket, config.unixsocketperm))
            if not inherited:
                where = [f"{config.bind}:{port}"] if port is not None else []
                where += [config.unixsocket] if config.unixsocket else []

            def listening() -> None:
                log.info(
                    "ready: accepting Redis clients on %s, upstream %s",
                    " and ".join(where),
                    upstream.display_url,
                )
                unixsocket = None if inherited else config.unixsocket
                task_status.started(BridgeInfo(port, unixsocket, upstream.display_url))

            await serve_clients(server, listeners, lifecycle, listening)
            nursery.cancel_scope.cancel()  # drained: stop the dispatcher and the hub
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await upstream.aclose()
            if config.unixsocket and not inherited:
                with contextlib.suppress(OSError):
                    os.unlink(config.unixsocket)


async def _probe(config: BridgeConfig, upstream: RestClient, server: BridgeServer) -> None:
    try:
        result = await upstream.probe()
    except UpstreamAuthError:
        raise ConfigError(
            f"the upstream {upstream.display_url} refused the token (HTTP 401): check "
            "UPSTASH_REDIS_REST_TOKEN / --token"
        ) from None
    if result.server_version:
        server.server_version = result.server_version
    if config.response_format == "resp2":
        upstream.resp2 = True
    elif config.response_format == "json":
        upstream.resp2 = False
    else:
        upstream.resp2 = result.resp2
    if not result.reachable:
        log.warning(
            "upstream %s is not reachable yet (%s); starting anyway, commands will get errors "
            "until it is",
            upstream.display_url,
            result.detail,
        )
    log.info(
        "upstream %s: response format %s (%s)",
        upstream.display_url,
        "resp2" if upstream.resp2 else "json+base64",
        result.detail,
    )


async def serve_forever(
    config: BridgeConfig, reload_config: Callable[[], BridgeConfig] | None = None
) -> None:
    """CLI entry: run the bridge as a daemon until SIGTERM/SIGINT, then drain and return.

    SIGHUP re-reads the configuration with `reload_config`; systemd's NOTIFY_SOCKET,
    WATCHDOG_USEC and LISTEN_FDS are honoured (see `bridge.server.lifecycle`).
    """
    lifecycle = Lifecycle.from_environ(config, reload_config)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(lifecycle.run, nursery.cancel_scope)
            await run_bridge(config, lifecycle=lifecycle)
            nursery.cancel_scope.cancel()
    finally:
        lifecycle.notifier.close()
