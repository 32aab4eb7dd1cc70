"""MONITOR lines the bridge writes for locally answered commands, as redis-server 7.0 writes
them (texts taken from a real redis-server's MONITOR output)."""

from __future__ import annotations

from bridge.core.commands import lookup
from bridge.core.monitor import monitor_line, shown


def test_line_format_and_quoting() -> None:
    line = monitor_line(1796161161.420941, 0, "127.0.0.1:58016", [b"ECHO", b"\x00\xff\t"])
    assert line == b'1796161161.420941 [0 127.0.0.1:58016] "ECHO" "\\x00\\xff\\t"'
    line = monitor_line(1.5, 3, "127.0.0.1:1", [b"ECHO", b'a"b\\c\nd\re\x07\x08'])
    assert line == b'1.500000 [3 127.0.0.1:1] "ECHO" "a\\"b\\\\c\\nd\\re\\a\\b"'


def test_credentials_are_redacted_as_redis() -> None:
    addr = "127.0.0.1:58016"
    hello = monitor_line(0.0, 0, addr, [b"HELLO", b"2", b"AUTH", b"default", b"pw"])
    assert hello.endswith(b'"HELLO" "2" "AUTH" "(redacted)" "(redacted)"')
    auth = monitor_line(0.0, 0, addr, [b"AUTH", b"u", b"p"])
    assert auth.endswith(b'"AUTH" "(redacted)" "(redacted)"')


def test_admin_commands_are_not_shown() -> None:
    for name, expected in (("ping", True), ("client|setname", True), ("client|list", False)):
        spec = lookup(name)
        assert spec is not None and shown(spec) is expected, name
