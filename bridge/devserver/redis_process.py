"""A `redis-server` child process on a free loopback port, for the devserver and for tests.

Owns the child's life cycle only: pick a port, start `redis-server` with persistence off, wait
until it answers PING, terminate it (and reap it) on stop. Usable as a sync context manager
(test fixtures, scripts) and as an async one from trio (the devserver's embedded default): the
async variant spawns in the calling thread and polls readiness without blocking the event loop.
Never daemonizes and never writes to the working directory (its `--dir` is a temporary one).

The child dies with its parent however the parent dies (see `bridge.child_process`). Its
temporary directory records both pids; a directory whose owner is gone (a parent killed by
SIGKILL or the OOM killer has no chance to remove it) is removed at the next start, together
with its redis-server should that one still run.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from types import TracebackType

import trio

from bridge.child_process import log_tail, process_start_time, spawn_child, stop_child

#: How long redis-server may take to answer its first PING (a cold start is ~10 ms).
STARTUP_TIMEOUT_S = 10.0
#: How long SIGTERM may take before the child is killed (no persistence, so it is quick).
STOP_TIMEOUT_S = 5.0
#: Interval between readiness probes while starting.
PROBE_INTERVAL_S = 0.02
#: Socket timeout of one readiness probe.
PROBE_TIMEOUT_S = 0.5
#: Attempts when the picked free port is taken by someone else before redis binds it.
START_ATTEMPTS = 3

_INSTALL_HINT = (
    "redis-server was not found on PATH; install it with `apt-get install redis-server` "
    "(Debian/Ubuntu) or pass --redis-url to use an existing Redis"
)
#: Prefix of the child's temporary directory (in $TMPDIR), and the file naming its owners.
DIR_PREFIX = "resp-bridge-redis-"
OWNER_FILE = "owner.json"

log = logging.getLogger("bridge.devserver")


class RedisProcessError(RuntimeError):
    """redis-server is missing, failed to start, or did not become ready in time."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_server_path(executable: str = "redis-server") -> str:
    """Return the full path of `executable`, or raise RedisProcessError with install advice."""
    path = shutil.which(executable)
    if path is None:
        raise RedisProcessError(_INSTALL_HINT)
    return path


def _alive(pid_and_start: list[int | None] | None) -> bool:
    """Is this [pid, start time] process still running? Without /proc (start time None) the
    pid alone decides: a reused pid then keeps a stale directory, which is harmless."""
    if not pid_and_start:
        return False
    pid, start = pid_and_start
    if pid is None:
        return False
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return process_start_time(pid) == start


def remove_stale_dirs(tmp_dir: str | None = None) -> int:
    """Remove this user's redis-server temp directories whose owner process is gone (and stop
    their redis-server if it still runs). Returns how many were removed."""
    removed = 0
    for path in glob.glob(os.path.join(tmp_dir or tempfile.gettempdir(), DIR_PREFIX + "*")):
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as fh:
                owners = json.load(fh)
        except (OSError, ValueError):
            continue  # not ours, or being created right now: leave it alone
        if _alive(owners.get("owner")):
            continue
        child = owners.get("child")
        if child and child[1] is not None and _alive(child):
            log.warning("stopping redis-server pid %d left behind by a killed bridge", child[0])
            with contextlib.suppress(OSError):
                os.kill(child[0], signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


class RedisServerProcess:
    """One `redis-server` child bound to 127.0.0.1 on a free (or given) port.

    `start()`/`stop()` or `with RedisServerProcess() as redis:`; from trio,
    `async with RedisServerProcess() as redis:`. `url` is `redis://127.0.0.1:PORT`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str = "redis-server",
        extra_args: tuple[str, ...] = (),
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.host = "127.0.0.1"
        self._requested_port = port
        self.port = port or 0
        self._executable = executable
        self._extra_args = extra_args
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._log_path = ""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- sync API ---------------------------------------------------------------------------

    def start(self) -> RedisServerProcess:
        """Start the child and block until it answers PING.

        The child dies with this process only when started from the main thread (the kernel
        ties that to the forking thread); from another thread, use `start_async`."""
        for attempt in range(START_ATTEMPTS):
            self._spawn(die_with_parent=threading.current_thread() is threading.main_thread())
            deadline = time.monotonic() + self._startup_timeout_s
            while True:
                if self._probe():
                    return self
                if not self.running or time.monotonic() > deadline:
                    break
                time.sleep(PROBE_INTERVAL_S)
            failure = self._failure_text()
            self.stop()
            if self._requested_port is not None or attempt == START_ATTEMPTS - 1:
                raise RedisProcessError(failure)
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after STOP_TIMEOUT_S) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc, STOP_TIMEOUT_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- trio API ---------------------------------------------------------------------------

    async def start_async(self) -> RedisServerProcess:
        """Like start(), but waits for readiness without blocking the trio event loop.

        Spawns in the thread running the trio loop, which lives until the `async with` ends:
        the child dies with this process however it dies."""
        for attempt in range(START_ATTEMPTS):
            self._spawn(die_with_parent=True)
            with trio.move_on_after(self._startup_timeout_s):
                while self.running:
                    if await trio.to_thread.run_sync(self._probe):
                        return self
                    await trio.sleep(PROBE_INTERVAL_S)
            failure = self._failure_text()
            self.stop()
            if self._requested_port is not None or attempt == START_ATTEMPTS - 1:
                raise RedisProcessError(failure)
        raise AssertionError("unreachable")  # pragma: no cover

    async def __aenter__(self) -> RedisServerProcess:
        return await self.start_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Stopping is quick (no persistence); a blocking wait here is bounded by STOP_TIMEOUT_S.
        self.stop()

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, *, die_with_parent: bool) -> None:
        path = redis_server_path(self._executable)
        remove_stale_dirs()
        self.port = self._requested_port or find_free_port(self.host)
        self._dir = tempfile.mkdtemp(prefix=DIR_PREFIX)
        self._log_path = os.path.join(self._dir, "redis.log")
        args = [
            path,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self._dir,
            "--logfile", self._log_path,
            *self._extra_args,
        ]  # fmt: skip
        me = os.getpid()
        owner = [me, process_start_time(me)]
        self._write_owners({"owner": owner})  # before the child: a dead owner is then known
        self._proc = spawn_child(args, die_with_parent=die_with_parent)
        child = [self._proc.pid, process_start_time(self._proc.pid)]
        self._write_owners({"owner": owner, "child": child})

    def _write_owners(self, owners: dict[str, list[int | None]]) -> None:
        assert self._dir is not None
        path = os.path.join(self._dir, OWNER_FILE)
        with open(path + ".new", "w", encoding="utf-8") as fh:
            json.dump(owners, fh)
        os.replace(path + ".new", path)  # never a half-written file for remove_stale_dirs

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), PROBE_TIMEOUT_S) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def _failure_text(self) -> str:
        code = self._proc.poll() if self._proc else None
        log = log_tail(self._log_path)
        state = f"exited with code {code}" if code is not None else "did not answer PING"
        return f"redis-server on port {self.port} {state} within {self._startup_timeout_s} s" + (
            f"; its log ends with:\n{log}" if log else ""
        )
