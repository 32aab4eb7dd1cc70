"""The typed part of the tree stays typed: mypy is clean on the core and the shared state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What must type-check (the modules these import are checked with them).
TYPED = ["bridge/core", "bridge/server/state.py", "bridge/upstream", "bridge/redaction.py"]


def test_mypy_is_clean_on_the_core_and_the_state() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", *TYPED], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
