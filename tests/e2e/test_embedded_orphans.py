"""The embedded redis-server dies with the bridge however the bridge dies.

`resp-bridge serve` with no upstream starts a redis-server child; SIGKILL of the bridge (what
the OOM killer does) gives it no chance to stop it, so the kernel must (PR_SET_PDEATHSIG, set
from the thread that lives as long as the bridge). The child's temporary directory survives a
SIGKILL and is removed by the next start.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bridge.child_process import process_start_time
from tests.e2e.conftest import start_bridge

#: The issue's bar: no redis-server left "within a second or two".
ORPHAN_DEADLINE_S = 2.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _redis_child(pid: int) -> int:
    for child in _children(pid):
        if "redis-server" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
            return child
    raise AssertionError(f"bridge {pid} has no redis-server child: {_children(pid)}")


def test_sigkill_of_the_bridge_leaves_no_redis_server(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    bridge = start_bridge(str(tmp_path), None, None, env=env)
    try:
        redis_pid = _redis_child(bridge.proc.pid)
        [first_dir] = tmp.glob("resp-bridge-redis-*")
        os.kill(bridge.proc.pid, signal.SIGKILL)
        bridge.proc.wait(5)
        deadline = time.monotonic() + ORPHAN_DEADLINE_S
        while process_start_time(redis_pid) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process_start_time(redis_pid) is None, "redis-server outlived the killed bridge"
        assert first_dir.exists(), "a killed bridge cannot remove its directory"
    finally:
        bridge.stop()

    again = start_bridge(str(tmp_path), None, None, env=env)
    try:
        assert not first_dir.exists(), "the next start removes the dead bridge's directory"
        assert len(list(tmp.glob("resp-bridge-redis-*"))) == 1
        assert again.client().set("k", "v") and again.client().get("k") == b"v"
    finally:
        again.stop()
    assert list(tmp.glob("resp-bridge-redis-*")) == [], "a clean stop removes its directory"
