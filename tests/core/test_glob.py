"""Redis' glob rules (util.c stringmatchlen) as COMMAND LIST, PUBSUB CHANNELS and the
devserver's CONFIG GET apply them."""

from __future__ import annotations

import pytest

from bridge.core.glob import glob_match


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        (b"*", b"", True),
        (b"config*", b"config|get", True),
        (b"?et", b"get", True),
        (b"?et", b"getex", False),
        (b"[xz]add", b"zadd", True),
        (b"[xz]add", b"sadd", False),
        (b"[^xz]add", b"sadd", True),
        (b"[a-c]x", b"bx", True),
        (b"h\\*", b"h*", True),
        (b"h\\*", b"hx", False),
        (b"*a*a*a*a*a*a*a*a*a*a*a*a*b", b"a" * 60, False),  # no exponential blow-up
    ],
)
def test_glob(pattern: bytes, subject: bytes, expected: bool) -> None:
    assert glob_match(pattern, subject) is expected


def test_nocase() -> None:
    assert glob_match(b"CONFIG|*", b"config|get", nocase=True)
    assert not glob_match(b"CONFIG|*", b"config|get")
