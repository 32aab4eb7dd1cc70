"""How the harness finds an older release to run side by side (`benchmarks.release`).

Building a release (a worktree plus a venv install) takes a minute, so it is not done here:
these cases cover finding the interpreter of a given executable and the clear errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import release


def fake_install(tmp_path: Path) -> Path:
    """A bin/ with a `resp-bridge` file and a `python` that is this interpreter."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "resp-bridge").write_text("#!/bin/sh\n")
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir / "resp-bridge"


def test_nothing_asked_means_no_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(release.RELEASE_ENV, raising=False)
    assert release.resolve(None, None) is None


def test_the_python_beside_the_executable_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executable = fake_install(tmp_path)
    monkeypatch.setenv(release.RELEASE_ENV, str(executable))
    found = release.resolve(None, None)
    assert found is not None
    label, python = found
    assert python == str(executable.parent / "python")
    assert label  # a commit when the install is an editable git tree, else the path


def test_missing_executable_or_python_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no release executable at"):
        release.python_beside(str(tmp_path / "nope" / "resp-bridge"))
    lonely = tmp_path / "resp-bridge"
    lonely.write_text("")
    with pytest.raises(FileNotFoundError, match="no python beside it"):
        release.python_beside(str(lonely))
