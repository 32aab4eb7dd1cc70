"""Sampling profile of the bridge under load, with py-spy (optional: `pip install py-spy`).

Owns attaching `py-spy record --format raw` to a running bridge for the length of a block and
reducing the collapsed stacks to where the CPU goes: self time by package (trio, httpx, ...,
the bridge's own modules) and by function, and the bridge functions with the most inclusive
time. Sampling slows the process it samples, so the harness profiles a repeat of a workload,
never a measured run. Needs permission to ptrace the bridge (the harness's own child: fine
as root or with ptrace_scope 0); any failure gives a note instead of a profile.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from benchmarks.records import ProfileFigures

#: Samples per second (py-spy's default is 100; more is finer and costs the bridge more).
SAMPLE_RATE_HZ = 200
#: How long py-spy may take to write its output after SIGINT.
PY_SPY_STOP_TIMEOUT_S = 20.0
#: Rows kept in each list of the summary.
TOP_ROWS = 12
#: Path prefixes (as py-spy prints them) grouped under one name, first match wins.
PACKAGES = (
    "bridge/core", "bridge/server", "bridge/upstream", "httpx", "httpcore", "h11", "h2",
    "trio", "outcome", "hiredis", "orjson", "contextlib", "logging",
)  # fmt: skip

#: The bridge's own layers (its CLI and start-up frames would only say "everything").
BRIDGE_LAYERS = ("bridge/core/", "bridge/server/", "bridge/upstream/")

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def py_spy_path() -> str | None:
    """py-spy next to this interpreter (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, out_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Sample `pid` until the block ends (SIGINT makes py-spy write `out_path`)."""
    exe = py_spy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed")
    proc = subprocess.Popen(
        [exe, "record", "--format", "raw", "--nonblocking", "-r", str(SAMPLE_RATE_HZ),
         "-p", str(pid), "-o", str(out_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=PY_SPY_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if not out_path.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-300:]}")


def _package(path: str) -> str:
    for prefix in PACKAGES:
        if path.startswith(prefix) or f"/{prefix}/" in path or path == f"{prefix}.py":
            return prefix
    return path.rsplit("/", 1)[0] if "/" in path else path.removesuffix(".py")


def _function(frame: str) -> tuple[str, str]:
    """('func (path)', path) without the line number."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return f"{match['func']} ({match['path']})", match["path"]


def summarize(raw: str, *, workload: str) -> ProfileFigures:
    """Reduce py-spy's collapsed stacks ('f1;f2;f3 COUNT' lines)."""
    total = 0
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        leaf, leaf_path = frames[-1]
        by_function[leaf] += count
        by_package[_package(leaf_path)] += count
        for name in {n for n, path in frames if path.startswith(BRIDGE_LAYERS)}:
            inclusive[name] += count

    def top(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / total) for name, n in counter.most_common(TOP_ROWS)] if total else []

    return ProfileFigures(
        workload=workload,
        samples=total,
        sample_rate_hz=SAMPLE_RATE_HZ,
        by_package=top(by_package),
        self_functions=top(by_function),
        bridge_inclusive=top(inclusive),
    )
