"""A `redis-server` child process on a free loopback port, for the devserver and for tests.

Owns the child's life cycle only: pick a port, start `redis-server` with persistence off, wait
until it answers PING, terminate it (and reap it) on stop. Usable as a sync context manager
(test fixtures, scripts) and as an async one from trio (the devserver's embedded default): the
async variant spawns in the calling thread and polls readiness without blocking the event loop.
Never daemonizes and never writes to the working directory (its `--dir` is a temporary one).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from types import TracebackType

import trio

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
_PR_SET_PDEATHSIG = 1


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


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGTERM the child when its parent dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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
        self._dir: tempfile.TemporaryDirectory[str] | None = None
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
        """Start the child and block until it answers PING."""
        for attempt in range(START_ATTEMPTS):
            self._spawn()
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
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if self._dir is not None:
            self._dir.cleanup()
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
        """Like start(), but waits for readiness without blocking the trio event loop."""
        for attempt in range(START_ATTEMPTS):
            self._spawn()
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

    def _spawn(self) -> None:
        path = redis_server_path(self._executable)
        self.port = self._requested_port or find_free_port(self.host)
        self._dir = tempfile.TemporaryDirectory(prefix="resp-bridge-redis-")
        self._log_path = os.path.join(self._dir.name, "redis.log")
        args = [
            path,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self._dir.name,
            "--logfile", self._log_path,
            *self._extra_args,
        ]  # fmt: skip
        # PDEATHSIG is tied to the forking *thread*; only safe from the main thread.
        on_linux_main = sys.platform == "linux" and threading.current_thread() is (
            threading.main_thread()
        )
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop the child
            preexec_fn=_die_with_parent if on_linux_main else None,
        )

    def _probe(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), PROBE_TIMEOUT_S) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def _failure_text(self) -> str:
        code = self._proc.poll() if self._proc else None
        log = ""
        with (
            contextlib.suppress(OSError),
            open(self._log_path, encoding="utf-8", errors="replace") as fh,
        ):
            log = fh.read()[-2000:]
        state = f"exited with code {code}" if code is not None else "did not answer PING"
        return f"redis-server on port {self.port} {state} within {self._startup_timeout_s} s" + (
            f"; its log ends with:\n{log}" if log else ""
        )
