"""A redis-server directory whose owner died is removed at the next start, and a redis-server
still running from it (an orphan) is stopped; directories of live owners are left alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bridge.child_process import process_start_time, spawn_child, stop_child
from bridge.devserver.redis_process import DIR_PREFIX, OWNER_FILE, remove_stale_dirs


def _dir(tmp_path: Path, name: str, owner: list[int | None], child: list[int | None]) -> Path:
    path = tmp_path / (DIR_PREFIX + name)
    path.mkdir()
    (path / OWNER_FILE).write_text(json.dumps({"owner": owner, "child": child}))
    return path


def test_stale_directories_go_and_their_orphan_is_stopped(tmp_path: Path) -> None:
    orphan = spawn_child(["sleep", "30"], die_with_parent=False)
    try:
        # A pid with another start time is another process: that owner is gone.
        me = os.getpid()
        dead_owner = [me, (process_start_time(me) or 0) + 1]
        stale = _dir(tmp_path, "stale", dead_owner, [orphan.pid, process_start_time(orphan.pid)])
        live = _dir(tmp_path, "live", [me, process_start_time(me)], [None, None])
        being_created = tmp_path / (DIR_PREFIX + "new")
        being_created.mkdir()  # no owner file yet: another start is writing it
        assert remove_stale_dirs(str(tmp_path)) == 1
        assert not stale.exists() and live.exists() and being_created.exists()
        assert orphan.wait(5) != 0, "the orphan was killed"
    finally:
        if orphan.poll() is None:
            stop_child(orphan)
