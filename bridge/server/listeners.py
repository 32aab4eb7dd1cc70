"""Where clients come in: the listeners, accepting, and the drain at shutdown.

Owns the listening sockets (TCP and unix from the config, or those inherited from systemd),
the accept loops, one `Connection` per accepted stream (registered with the state while it
lives, refused with Redis' error past `max_clients`), and the graceful stop: close the
listeners so new connections are refused, then stop each connection's reading side
(`shutdown(SHUT_RD)`): its reader sees EOF and the connection's own close path flushes every
reply it owes, then closes. Commands the client sent after that are never read, hence never
executed. What outlives `shutdown_timeout_s` is cancelled.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

import trio

from bridge.config import BridgeConfig
from bridge.core.resp import encode_error
from bridge.errors import MAX_CLIENTS, ConfigError
from bridge.server.connection import Connection
from bridge.server.lifecycle import Lifecycle
from bridge.server.read_poller import ReadPoller
from bridge.server.state import BridgeState
from bridge.server.systemd import InheritedSocket

log = logging.getLogger("bridge.listeners")

#: How often the drain looks for connections whose reading side is still open (a handler
#: accepted just before the listeners closed registers itself a moment later).
DRAIN_POLL_S = 0.02
#: After the drain, how long handlers may take to close their sockets before being cancelled.
DRAIN_CLOSE_GRACE_S = 1.0
#: How long a refused client (max_clients) may take to read its error before it is closed.
REFUSAL_SEND_S = 1.0


@dataclass(frozen=True, slots=True)
class Listening:
    """The listeners of one bridge and how to describe them."""

    listeners: list[trio.SocketListener]
    port: int | None
    unixsocket: str | None
    where: list[str]


async def open_listeners(config: BridgeConfig, inherited: list[InheritedSocket]) -> Listening:
    """Sockets inherited from systemd (LISTEN_FDS) when there are any, else the config's TCP
    port (unless negative) and unix socket."""
    if inherited:
        log.info("socket activation: %d listener(s) from systemd", len(inherited))
        return Listening(
            inherited_listeners(inherited),
            inherited_port(inherited),
            None,
            [s.describe() for s in inherited],
        )
    listeners: list[trio.SocketListener] = []
    port: int | None = None
    if config.port >= 0:
        tcp = await trio.open_tcp_listeners(config.port, host=config.bind)
        listeners += tcp
        port = tcp[0].socket.getsockname()[1]
    if config.unixsocket:
        listeners.append(await open_unix_listener(config.unixsocket, config.unixsocketperm))
    where = [f"{config.bind}:{port}"] if port is not None else []
    where += [config.unixsocket] if config.unixsocket else []
    return Listening(listeners, port, config.unixsocket, where)


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


def inherited_listeners(inherited: list[InheritedSocket]) -> list[trio.SocketListener]:
    """trio listeners over sockets passed by systemd (TCP or unix, as the socket says)."""
    return [trio.SocketListener(trio.socket.from_stdlib_socket(s.sock)) for s in inherited]


def inherited_port(inherited: list[InheritedSocket]) -> int | None:
    """The TCP port of the first inherited inet socket, if any."""
    for s in inherited:
        if s.sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(s.sock.getsockname()[1])
    return None


# -- accepting ------------------------------------------------------------------------------


async def handle_stream(
    state: BridgeState, stream: trio.abc.Stream, poller: ReadPoller | None = None
) -> None:
    """One accepted client: a registered `Connection` until it ends, or Redis' max-clients
    error when the bridge is full. With `poller`, its socket is read from there while it has
    nothing to await."""
    state.stats.connections_total += 1
    if not state.accepts_more_clients():
        state.stats.connections_rejected += 1
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            with trio.move_on_after(REFUSAL_SEND_S):
                await stream.send_all(encode_error(MAX_CLIENTS))
        await stream.aclose()
        return
    addr, laddr = _addresses(stream)
    conn = Connection(state, stream, state.next_client_id(), addr, laddr, poller)
    state.register(conn)
    try:
        await conn.run()
    finally:
        state.unregister(conn)


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


async def serve_clients(
    state: BridgeState,
    listeners: list[trio.SocketListener],
    lifecycle: Lifecycle | None,
    on_listening: Callable[[], None],
) -> None:
    """Accept clients on `listeners`; without a lifecycle until cancelled, with one until a
    stop is requested, then close the listeners and drain the connections. One read poller
    serves every client socket while it has nothing to await; it outlives the clients."""
    poller = ReadPoller()
    state.dispatcher.use_poller(poller)
    async with trio.open_nursery() as reading:
        reading.start_soon(poller.run)
        async with trio.open_nursery() as clients:
            async with trio.open_nursery() as accepting:
                serve = functools.partial(
                    trio.serve_listeners,
                    functools.partial(handle_stream, state, poller=poller),
                    listeners,
                    handler_nursery=clients,
                )
                await accepting.start(serve)
                on_listening()
                if lifecycle is None:
                    await trio.sleep_forever()
                assert lifecycle is not None
                lifecycle.ready(state)
                await lifecycle.stop_requested.wait()
                accepting.cancel_scope.cancel()
            # The accept loops have closed the listeners: new connections are refused here.
            lifecycle.announce_stopping()
            await drain(state, clients, state.config.shutdown_timeout_s)
        reading.cancel_scope.cancel()


async def drain(state: BridgeState, clients: trio.Nursery, timeout_s: float) -> None:
    """Stop reading from every client and let each flush the replies it owes, until they are
    all gone or `timeout_s` passed (then the remaining handlers are cancelled)."""
    start = trio.current_time()
    deadline = start + timeout_s
    # Backstop for handlers still closing their sockets once the registry is empty.
    clients.cancel_scope.deadline = deadline + DRAIN_CLOSE_GRACE_S
    log.info("stopped accepting; draining %d client(s)", len(state.connections))
    stopped: set[int] = set()
    with trio.move_on_at(deadline):
        while state.connections:
            for conn in list(state.connections.values()):
                if conn.id not in stopped:
                    stopped.add(conn.id)
                    conn.stop_reading()
            await trio.sleep(DRAIN_POLL_S)
    left = len(state.connections)
    if left:
        log.warning(
            "drain deadline (%.1f s) reached: closing %d client(s) with replies still owed",
            timeout_s,
            left,
        )
        clients.cancel_scope.cancel()
    else:
        log.info("drained every client in %.2f s", trio.current_time() - start)
