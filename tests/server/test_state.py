"""The shared state has one owner: its changes are its methods, and nothing else assigns it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from bridge.core import commands
from bridge.core.actions import QueuedCommand, Transaction
from bridge.server.state import BridgeState
from bridge.upstream.rest import RestClient

ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = ROOT / "bridge" / "server" / "state.py"
#: Names the rest of the tree gives a BridgeState (`state`, `self.state`, `lifecycle.state`).
STATE_NAMES = {"state", "server"}


def _owned_attributes() -> set[str]:
    """The attributes BridgeState.__init__ sets (`self.x = ...`)."""
    tree = ast.parse(STATE_FILE.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BridgeState")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    owned = set()
    for node in ast.walk(init):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            if isinstance(t, ast.Attribute) and getattr(t.value, "id", "") == "self":
                owned.add(t.attr)
    return owned


def _assignments_to_state(source: str, owned: set[str]) -> list[str]:
    """`<state>.<owned attribute> = / += ...` statements in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for t in targets:
            if not (isinstance(t, ast.Attribute) and t.attr in owned):
                continue
            owner = t.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in STATE_NAMES:
                found.append(f"line {node.lineno}: {ast.unparse(t)}")
    return found


def test_nothing_outside_the_state_assigns_its_attributes() -> None:
    owned = _owned_attributes()
    assert {"config", "requirepass", "read_only", "server_version", "upstream"} <= owned
    offenders = []
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        if path != STATE_FILE:
            for where in _assignments_to_state(path.read_text(encoding="utf-8"), owned):
                offenders.append(f"{path.relative_to(ROOT)} {where}")
    assert offenders == []


def test_the_assignment_check_finds_one() -> None:
    owned = _owned_attributes()
    source = "def f(self, state):\n    self.state.read_only = True\n    state.config = 1\n"
    assert _assignments_to_state(source, owned) == [
        "line 2: self.state.read_only",
        "line 3: state.config",
    ]


@pytest.fixture
def state() -> BridgeState:
    config = BridgeConfig(url="https://db.example", token="configured-token-1")
    upstream = RestClient(config.url or "", config.token or "", timeout_s=1, connect_timeout_s=1)
    return BridgeState(config, upstream)


def test_noperm_on_a_write_turns_read_only_mode_on(state: BridgeState) -> None:
    get, set_ = commands.lookup(b"get"), commands.lookup(b"set")
    state.on_reply(get, [b"GET", b"k"], b"-NOPERM this user has no permissions\r\n")
    assert not state.read_only
    state.on_reply(set_, [b"SET", b"k", b"v"], b"-NOPERM this user has no permissions\r\n")
    assert state.read_only
    assert "bridge_read_only:1" in state.bridge_info()


def test_switch_upstream_changes_database_and_relearns_read_only(state: BridgeState) -> None:
    state.noticed_noperm_write(commands.lookup(b"set"))
    assert state.read_only
    assert state.switch_upstream("https://other.example", "other-token-22", "db-2") == 0
    assert state.upstream.url == "https://other.example"
    assert state.database_in_use == "db-2" and not state.read_only
    assert state.config.token == "configured-token-1"  # the configuration is unchanged
    assert "other-token-22" in state.secrets()


def test_rotate_token_follows_in_the_config_unless_db_use_chose_another(
    state: BridgeState,
) -> None:
    assert state.rotate_token("rotated-token-33")
    assert state.config.token == "rotated-token-33" and state.upstream.token == "rotated-token-33"
    state.switch_upstream("https://other.example", "other-token-22", "db-2")
    assert not state.rotate_token("rotated-token-44")
    assert state.upstream.token == "rotated-token-44"
    assert state.config.token == "rotated-token-33"


def test_exec_reply_wakes_only_when_the_transaction_ran(state: BridgeState) -> None:
    woken: list[list[bytes]] = []
    state.blocking.notify_write = lambda spec, args: woken.append(args)  # type: ignore[method-assign]
    state.blocking.has_waiters = lambda: True  # type: ignore[method-assign]
    push = [b"LPUSH", b"q", b"x"]
    action = Transaction(
        [QueuedCommand(push, commands.lookup(b"lpush"), None), QueuedCommand([b"PING"], None, b"")],
        [],
    )
    state.on_exec_reply(action, b"*-1\r\n")  # a watched key changed: nothing ran
    assert woken == []
    state.on_exec_reply(action, b"*1\r\n:1\r\n")
    assert woken == [push]
