"""The admin socket file: where it goes, the checks before creating it, and its removal.

A unix socket, mode 0600 (created under a umask, so it is never more open, even briefly).
Never created through a symlink, never over a file of another user, never over anything but
a socket; a socket of ours that nobody answers on (a crashed bridge's) is replaced, a live one
is left alone. The default location's directory is created 0700 and must be ours and not
writable by others. Peers are identified with SO_PEERCRED. Raises ConfigError naming
`admin_socket`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass

import trio

from bridge.config import BridgeConfig, default_admin_socket
from bridge.errors import ConfigError

log = logging.getLogger("bridge.admin")

#: Connecting to an existing socket to see whether a live bridge owns it.
STALE_CHECK_TIMEOUT_S = 0.5
#: Pending connections on the admin socket.
ADMIN_BACKLOG = 16
SOCKET_MODE = 0o600
#: admin_socket values that turn the console off.
DISABLED = frozenset({"off", "none", "no", "false", "disabled", ""})

_PEERCRED = struct.Struct("3i")

# -- the socket -------------------------------------------------------------------------------


def resolve_admin_socket(config: BridgeConfig) -> tuple[str | None, bool]:
    """(path or None when disabled, whether it was given explicitly)."""
    value = config.admin_socket
    if value is not None and value.strip().lower() in DISABLED:
        return None, True
    if value:
        return value, True
    return default_admin_socket(), False


@dataclass(slots=True)
class AdminSocket:
    path: str
    listener: trio.SocketListener
    identity: tuple[int, int]

    def remove(self) -> None:
        """Unlink the socket file if it is still ours (not replaced by another process)."""
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.identity:
                os.unlink(self.path)


class AdminSocketInUse(ConfigError):
    """A live process already answers on the admin socket path."""


def _check_private_dir(directory: str, create: bool) -> None:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise ConfigError(f"admin_socket: directory {directory} does not exist") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"admin_socket: {directory} is not a directory (or is a symlink)")
    if st.st_uid != os.getuid():
        raise ConfigError(f"admin_socket: {directory} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o022:
        raise ConfigError(
            f"admin_socket: {directory} is writable by other users "
            f"(mode {oct(st.st_mode & 0o777)}); refusing to put the admin socket there"
        )


def open_admin_socket(path: str, *, explicit: bool) -> AdminSocket:
    """Listen on `path` (mode 0600) after the safety checks of the module docstring.

    The default location's directory is created 0700 and must be ours and private; an explicit
    path's directory must exist. Raises ConfigError (AdminSocketInUse when a live bridge owns
    the path)."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if not explicit:
        _check_private_dir(directory, create=True)
    elif not os.path.isdir(directory):
        raise ConfigError(f"admin_socket: directory {directory} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISLNK(st.st_mode):
            raise ConfigError(f"admin_socket: {path} is a symbolic link; refusing to use it")
        if st.st_uid != os.getuid():
            raise ConfigError(
                f"admin_socket: {path} belongs to uid {st.st_uid}, not to us; refusing to use it"
            )
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"admin_socket: {path} exists and is not a socket; not touching it")
        if _answers(path):
            raise AdminSocketInUse(
                f"admin_socket: another process (a running bridge?) listens on {path}; "
                "give each bridge its own --admin-socket"
            )
        log.info("removing the stale admin socket %s", path)
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o777 & ~SOCKET_MODE)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, SOCKET_MODE)
        sock.listen(ADMIN_BACKLOG)
        st = os.lstat(path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"admin_socket: cannot listen on {path}: {exc.strerror}") from None
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    return AdminSocket(path, listener, (st.st_dev, st.st_ino))


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(STALE_CHECK_TIMEOUT_S)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def peer_uid(stream: trio.abc.Stream) -> int | None:
    """The uid of the process on the other end of a unix socket (Linux SO_PEERCRED)."""
    sock = getattr(stream, "socket", None)
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size)
    except OSError:
        return None
    return int(_PEERCRED.unpack(raw)[1])
