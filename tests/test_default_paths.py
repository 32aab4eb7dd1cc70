"""Tests never touch the user's default paths (admin socket, home directory).

The suite's conftest points HOME and XDG_* at a temporary home; the e2e `start_bridge` helper
gives each bridge its own admin socket. Here a bridge is started through that helper with a
HOME and XDG_RUNTIME_DIR of its own: the default socket there must stay absent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bridge.config import default_admin_socket
from tests import conftest
from tests.e2e.conftest import start_bridge


def test_the_session_runs_in_a_temporary_home() -> None:
    home = os.environ["HOME"]
    assert home == conftest.TEST_HOME and home.startswith(tempfile.gettempdir() + "/")
    assert default_admin_socket().startswith(home + "/")
    assert "RUNTIME_DIRECTORY" not in os.environ and "RESP_BRIDGE_ADMIN_SOCKET" not in os.environ


def test_a_test_bridge_gets_its_own_admin_socket(
    tmp_path: Path, devserver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # As every e2e test calls it: no admin flag, the environment the suite gives it.
    bridge = start_bridge(str(tmp_path), devserver.url, devserver.token)
    try:
        assert bridge.client().ping()
        own = tmp_path / f"admin-{bridge.port}.sock"
        assert own.is_socket(), bridge.log()
        assert f"admin socket listening on {own}" in bridge.log()
        assert not (runtime / "resp-bridge" / "admin.sock").exists()
        assert list(home.iterdir()) == []
    finally:
        bridge.stop()
    if not conftest.USER_DEFAULT_ADMIN_SOCKET_EXISTED:
        assert not os.path.lexists(conftest.USER_DEFAULT_ADMIN_SOCKET)


def test_a_bridge_without_admin_socket_says_so_as_a_warning(tmp_path: Path, devserver: Any) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    env = {"RUNTIME_DIRECTORY": str(runtime)}  # both want the same default socket
    first = start_bridge(str(tmp_path), devserver.url, devserver.token, env=env)
    try:
        second = start_bridge(str(tmp_path), devserver.url, devserver.token, env=env)
        try:
            assert "WARNING bridge.admin: no admin socket: " in second.log(), second.log()
            assert "another process (a running bridge?) listens on" in second.log()
        finally:
            second.stop()
    finally:
        first.stop()
