"""The README's set-up commands are the ones CI runs, and its command summary is current."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from bridge.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    test_command = next(b for b in _code_blocks(readme) if "pytest" in b)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_readme_command_summary_is_generated_from_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- commands:start -->\n", 1)[1].split("<!-- commands:end -->", 1)[0]
    result = CliRunner().invoke(main, ["commands", "--markdown"])
    assert result.exit_code == 0, result.output
    assert section == result.output, "run: resp-bridge commands --markdown, paste into README"


def test_readme_settings_table_is_generated_from_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- options:start -->\n", 1)[1].split("<!-- options:end -->", 1)[0]
    result = CliRunner().invoke(main, ["config-reference"])
    assert result.exit_code == 0, result.output
    assert section == result.output, "run: resp-bridge config-reference, paste into README"
