"""The daemon side of systemd, without libsystemd: sd_notify, the watchdog, socket activation.

Owns the three environment protocols systemd uses to talk to a service (all declared stable,
see `sd_notify(3)`, `sd_watchdog_enabled(3)`, `sd_listen_fds(3)`):

- `NOTIFY_SOCKET`: a unix datagram socket (a path, or `@name` in the abstract namespace) that
  receives newline-separated assignments (`READY=1`, `STATUS=...`, `WATCHDOG=1`, ...).
- `WATCHDOG_USEC` / `WATCHDOG_PID`: how often systemd wants a `WATCHDOG=1`.
- `LISTEN_FDS` / `LISTEN_PID` / `LISTEN_FDNAMES`: listening sockets passed from fd 3 on.

Everything here is best effort when systemd is absent: no variable, no effect. Notifications
never raise (a daemon must not die because its supervisor went away). The variables are removed
from `os.environ` once read, so child processes (the embedded redis-server) do not act on them.
This module does no trio I/O itself; the periodic watchdog task lives in `lifecycle`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

from bridge.errors import ConfigError

log = logging.getLogger("bridge.systemd")

#: First inherited file descriptor (`SD_LISTEN_FDS_START` in sd-daemon.h).
SD_LISTEN_FDS_START = 3
#: More inherited sockets than this is a misconfiguration, not a real unit (systemd's own
#: socket units rarely pass more than a handful).
MAX_LISTEN_FDS = 64
#: Longest STATUS= text sent; systemctl status shows one line, so keep it short.
MAX_STATUS_CHARS = 200


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as `RELOADING=1` wants in `MONOTONIC_USEC=`."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to `NOTIFY_SOCKET`; a no-op when there is none.

    One non-blocking datagram socket kept for the life of the process. A full or vanished
    receiver loses the message (sd_notify semantics), it never blocks or raises.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._target: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._warned = False
        if not address:
            return
        if address.startswith("@"):
            # Abstract namespace: a leading NUL, no trailing NUL (as sd_notify does it).
            self._target = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._target = address
        else:
            log.warning("NOTIFY_SOCKET=%r is not supported (only paths and @names)", address)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        self._sock = sock

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) if unset else env.get("NOTIFY_SOCKET")
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; True if it was handed to the kernel."""
        if self._sock is None or self._target is None or not assignments:
            return False
        data = "\n".join(assignments).encode()
        try:
            self._sock.sendto(data, self._target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    # -- the messages the bridge sends ------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    one_line = " ".join(text.split())[:MAX_STATUS_CHARS]
    return (f"STATUS={one_line}",)


def watchdog_interval_s(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or None when disabled.

    Like `sd_watchdog_enabled(3)`: the request counts only if `WATCHDOG_PID` is unset or names
    this process.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    pid_text = env.get("WATCHDOG_PID")
    if unset:
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
    if not usec_text:
        return None
    try:
        usec = int(usec_text)
        pid = int(pid_text) if pid_text else os.getpid()
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec_text, pid_text)
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2 / 1_000_000


@dataclass(frozen=True, slots=True)
class InheritedSocket:
    """A listening socket passed by the service manager, with its `FileDescriptorName=`."""

    sock: socket.socket
    name: str

    def describe(self) -> str:
        try:
            address = self.sock.getsockname()
        except OSError:
            address = "?"
        if self.sock.family == socket.AF_UNIX:
            where = address if isinstance(address, str) and address else "unix socket"
            if isinstance(address, bytes):
                where = "@" + address[1:].decode(errors="replace")
        elif self.sock.family == socket.AF_INET6:
            where = f"[{address[0]}]:{address[1]}"
        else:
            where = f"{address[0]}:{address[1]}"
        return f"{where} (fd {self.sock.fileno()}, {self.name})"


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[InheritedSocket]:
    """The listening sockets passed with `LISTEN_FDS`, as `sd_listen_fds(3)` finds them.

    Checks `LISTEN_PID` (the variables may have leaked from a parent), marks every fd
    close-on-exec, checks each is a listening stream socket (the family, TCP or unix, is read
    from the socket itself), and removes the variables. Raises ConfigError naming the
    variable when they are malformed or an fd is unusable.
    """
    env = os.environ if environ is None else environ
    fds_text = env.get("LISTEN_FDS")
    pid_text = env.get("LISTEN_PID")
    names_text = env.get("LISTEN_FDNAMES")
    if unset:
        for var in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(var, None)
    if not fds_text:
        return []
    try:
        count = int(fds_text)
        pid = int(pid_text) if pid_text else -1
    except ValueError:
        raise ConfigError(
            f"LISTEN_FDS/LISTEN_PID: malformed socket activation variables "
            f"(LISTEN_FDS={fds_text!r}, LISTEN_PID={pid_text!r})"
        ) from None
    if pid != os.getpid():
        log.info("LISTEN_FDS is meant for process %s, not this one; ignoring it", pid_text)
        return []
    if not 0 <= count <= MAX_LISTEN_FDS:
        raise ConfigError(f"LISTEN_FDS: {count} is not a plausible number of sockets")
    names = names_text.split(":") if names_text else []
    inherited: list[InheritedSocket] = []
    for index in range(count):
        fd = SD_LISTEN_FDS_START + index
        name = names[index] if index < len(names) and names[index] else "unknown"
        inherited.append(InheritedSocket(_adopt(fd, name), name))
    return inherited


def _adopt(fd: int, name: str) -> socket.socket:
    try:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)  # family, type and protocol read from the fd
    except OSError as exc:
        raise ConfigError(f"LISTEN_FDS: fd {fd} ({name}) is not a usable socket: {exc}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise ConfigError(
            f"LISTEN_FDS: fd {fd} ({name}) is not a listening stream socket; the socket "
            "unit needs ListenStream= (and Accept=no)"
        )
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        sock.detach()
        raise ConfigError(f"LISTEN_FDS: fd {fd} ({name}) has unsupported family {sock.family!r}")
    return sock
