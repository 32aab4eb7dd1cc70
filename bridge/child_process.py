"""Child processes that must never outlive their parent: the one start/stop implementation.

Used by the embedded redis-server (`bridge.devserver.redis_process`) and the benchmark harness.
A child runs in its own session (a terminal's Ctrl-C reaches only the parent, which then stops
its children in order) and, on Linux, gets SIGTERM from the kernel when its parent dies in any
way, SIGKILL and the OOM killer included (PR_SET_PDEATHSIG).

The kernel sends that signal when the *thread* that forked the child exits, not the process:
spawn from a thread that lives as long as the child (the main thread, or the thread running
the trio loop that owns the child), never from a short-lived worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

#: How long a child may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


# Resolved in the parent: the forked child only calls a function pointer (no dlopen after fork).
_PRCTL = _load_prctl()


def _pdeathsig(parent_pid: int) -> Callable[[], None]:
    def in_child() -> None:  # pragma: no cover - runs in the forked child
        assert _PRCTL is not None
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before the setting took effect
            os._exit(1)

    return in_child


def spawn_child(
    args: Sequence[str],
    *,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `args` in its own session; with `die_with_parent` (and on Linux) it is sent
    SIGTERM when this process dies. Call it from a thread that outlives the child."""
    preexec = _pdeathsig(os.getpid()) if die_with_parent and _PRCTL is not None else None
    return subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=preexec,
    )


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; always reaps the child and closes its
    stdout pipe. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def read_ready_line(proc: subprocess.Popen[bytes], timeout_s: float, prefix: str = "READY ") -> str:
    """The rest of the first stdout line starting with `prefix` (the devserver prints
    `READY <url>`), or "" when the child exits or stays silent for `timeout_s`."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline().decode("utf-8", "replace") if ready else ""
    return line[len(prefix) :].strip() if line.startswith(prefix) else ""


def log_tail(path: str, chars: int = 2000) -> str:
    """The end of a child's log file, for an error message ("" if unreadable)."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()[-chars:]
    return ""


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of `pid`, from /proc; None if it is gone.

    A pid plus its start time names a process unambiguously (pids are reused)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left
        return None
    return int(fields[19])
