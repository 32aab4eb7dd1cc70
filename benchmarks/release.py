"""An older release of resp-bridge to measure side by side with this tree (`--release`).

The issue's CPU targets are ratios to release 8208cb6 measured in the same run, so the harness
can start that release's bridge next to the current one. Either give its `resp-bridge`
executable (`--release-bridge PATH` or `RESP_BRIDGE_RELEASE_BIN`; the interpreter beside it
runs it), or let the harness build it: `--make-release REV` checks REV out in a git worktree
(`/tmp/resp-bridge-release-REV`) and installs it in its own venv next to it, once; later runs
reuse both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The release the issue's targets compare with.
DEFAULT_RELEASE = "8208cb6"
#: Environment variable naming an older release's `resp-bridge` executable.
RELEASE_ENV = "RESP_BRIDGE_RELEASE_BIN"
ROOT = Path(__file__).resolve().parent.parent
#: Longest time one setup command (worktree, venv, pip install) may take.
SETUP_TIMEOUT_S = 900


def python_beside(executable: str) -> str:
    """The interpreter of the venv that holds `executable` (…/bin/resp-bridge → …/bin/python)."""
    path = Path(executable)
    if not path.is_file():
        raise FileNotFoundError(f"no release executable at {executable}")
    python = path.parent / "python"
    if not python.exists():
        raise FileNotFoundError(f"{executable}: no python beside it (expected {python})")
    return str(python)


def make_release(rev: str, *, base: Path = Path("/tmp")) -> str:
    """Check `rev` out in a worktree and install it in a venv (once); its `resp-bridge`."""
    tree = base / f"resp-bridge-release-{rev}"
    venv = base / f"resp-bridge-release-{rev}-venv"
    executable = venv / "bin" / "resp-bridge"
    if executable.exists():
        return str(executable)
    if not tree.exists():
        _run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev])
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "-q", "-e", str(tree)])
    return str(executable)


def _run(args: list[str]) -> None:
    print(f"  release setup: {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-1500:]}")


def resolve(executable: str | None, make_rev: str | None) -> tuple[str, str] | None:
    """(label, interpreter) of the release to measure, or None when none was asked for."""
    if make_rev:
        return make_rev, python_beside(make_release(make_rev))
    executable = executable or os.environ.get(RELEASE_ENV) or None
    if executable is None:
        return None
    return _label(executable), python_beside(executable)


def _label(executable: str) -> str:
    """The short commit of the release's tree when it is an editable install, else its path."""
    python = python_beside(executable)
    probe = subprocess.run(
        [
            python,
            "-I",
            "-c",
            "import bridge, os; print(os.path.dirname(os.path.dirname(bridge.__file__)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    tree = probe.stdout.strip()
    if tree:
        rev = subprocess.run(
            ["git", "-C", tree, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        if rev:
            return rev
    return executable
