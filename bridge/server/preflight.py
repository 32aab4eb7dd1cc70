"""Checks `serve` makes before it starts anything, and messages for listen errors.

A port that is taken, or a bind address that is not on this host, must be reported before the
embedded redis-server and devserver are started (and not as a bare `[Errno 98]`): the check
binds a throwaway socket to each address the real listener would use, exactly as
`trio.open_tcp_listeners` does, and closes it. The real listener can still lose a race for
the port; `listen_error_text` words that failure the same way.
"""

from __future__ import annotations

import contextlib
import errno
import socket

from bridge.errors import ConfigError


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_error_text(exc: OSError, host: str, port: int, *, what: str = "bind") -> str:
    """What went wrong listening on host:port, naming the address and what to do."""
    where = _where(host, port)
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where} is already in use (another Redis or bridge?): stop it, or choose another "
            "port with --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{what} {host!r}: this address is not on this host; give one of its addresses, "
            "127.0.0.1 (this host only) or 0.0.0.0 (all interfaces)"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges): use --port"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def check_tcp_listen(host: str, port: int, *, what: str = "bind") -> None:
    """Raise ConfigError if a TCP listener on host:port cannot be opened right now.

    Port 0 (a free one) is always available and not checked."""
    if port <= 0:
        return
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
        )
    except socket.gaierror as exc:
        raise ConfigError(
            f"{what} {host!r}: not an address of this host and not a name that resolves "
            f"({exc.strerror}); give an IP address such as 127.0.0.1"
        ) from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            # As trio does: TIME_WAIT leftovers of a previous run do not count as "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ConfigError(listen_error_text(exc, host, port, what=what)) from None
