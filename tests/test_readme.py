"""The README's set-up commands are the ones CI runs, its command summary and settings table
are current, and every command it shows exists as shown."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.core.commands import Route, lookup
from bridge.upstream.management_ops import OPERATIONS

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


# -- every command the README shows ----------------------------------------------------------

#: A `resp-bridge ...` command (an optional path to the script first), up to a shell operator.
_RESP_BRIDGE = re.compile(r"(?:^|[\s(;])(?:\S*/bin/)?resp-bridge ([^|;&)#]+)")
#: Words that stand for something the reader fills in: such examples are not parsed.
_PLACEHOLDERS = ("...", "CMD", "<")


def _readme_text() -> str:
    return (ROOT / "README.md").read_text()


def _code_snippets(text: str) -> list[str]:
    """Inline code spans, lines of ```sh blocks and `$ ` prompt lines of other blocks (not
    the output lines of example sessions)."""
    snippets: list[str] = []
    prose: list[str] = []
    fence: str | None = None  # the language of the block we are in, None outside
    for line in text.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:] if fence is None else None
        elif fence is None:
            prose.append(line)
        elif fence == "sh" or stripped.startswith("$ "):
            snippets.append(stripped.removeprefix("$ "))
    snippets += re.findall(r"`([^`\n]+)`", "\n".join(prose))
    return snippets


def _resp_bridge_commands() -> list[list[str]]:
    found = []
    for snippet in _code_snippets(_readme_text()):
        for match in _RESP_BRIDGE.finditer(snippet):
            text = match.group(1).strip()
            if text and not text.startswith("-") and not any(p in text for p in _PLACEHOLDERS):
                found.append(shlex.split(text))
    return found


def test_the_readme_shows_many_resp_bridge_commands() -> None:
    commands = {args[0] for args in _resp_bridge_commands()}
    assert {"serve", "check-config", "devserver", "admin", "db", "kafka"} <= commands


@pytest.mark.parametrize("args", _resp_bridge_commands(), ids=" ".join)
def test_every_resp_bridge_command_in_the_readme_parses(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subcommand, flags and their values as the CLI takes them (not run: most need a
    database, root or systemd); management operations must be ones the CLI knows."""
    root = main.make_context("resp-bridge", list(args))
    name, command, rest = main.resolve_command(root, list(args))
    assert command is not None, args
    for param in command.params:  # example files (cert.pem) are the reader's, not ours
        if isinstance(param.type, click.Path):
            monkeypatch.setattr(param.type, "exists", False)
    try:
        ctx = command.make_context(name or "", rest, parent=root)
    except click.exceptions.Exit:  # --help, --version
        return
    except click.MissingParameter:  # a mention such as `resp-bridge admin`: words follow
        return
    except click.UsageError as exc:
        pytest.fail(f"resp-bridge {' '.join(args)}: {exc.format_message()}")
    operation = [w.lower() for w in ctx.params.get("operation", ())]
    words = [w for w in operation if not w.startswith("--")]
    if name in ("db", "team") and words:
        assert "--yes" not in operation, f"resp-bridge {name} takes --yes before the operation"
        known = {op.name.lower() for op in OPERATIONS if op.group == name.upper()}
        assert words[0] in known, f"resp-bridge {name} has no operation {words[0]!r}"


#: `redis-cli -p PORT CMD ...` shown to the reader: CMD must be one the bridge serves.
_REDIS_CLI = re.compile(r"redis-cli -p \d+ ([A-Za-z]+)")


def test_every_redis_command_the_readme_suggests_is_served() -> None:
    names = {m.group(1).lower() for m in _REDIS_CLI.finditer(_readme_text())}
    assert {"set", "get", "dbsize"} <= names
    for name in names:
        spec = lookup(name)
        assert spec is not None and spec.route is not Route.REFUSED, name


def test_the_readme_suggests_a_first_check_that_reaches_the_upstream() -> None:
    first = _REDIS_CLI.search(_readme_text())
    assert first is not None
    spec = lookup(first.group(1))
    assert spec is not None and spec.route is Route.FORWARD, "PING is answered locally"


def test_programs_the_readme_runs_from_the_venv_exist() -> None:
    for program in set(re.findall(r"\.venv/bin/([a-z][\w-]*)", _readme_text())):
        if program in ("pip", "python", "resp-bridge"):
            continue  # made by the set-up command itself
        spec = importlib.util.find_spec(program.replace("-", "_"))
        assert spec is not None or shutil.which(program, path=str(ROOT / ".venv" / "bin")), (
            f".venv/bin/{program}: not installed by the test extras"
        )


@pytest.mark.parametrize("group", ["db", "team"])
def test_management_help_shows_the_forms_the_cli_takes(group: str) -> None:
    result = CliRunner().invoke(main, [group, "--help"])
    assert result.exit_code == 0, result.output
    assert "CONFIRM" not in result.output and f"{group.upper()} LIST" not in result.output
    assert "\n    list " in result.output, "operations as the command line spells them"
    assert "--yes delete <" in result.output, "destructive operations show --yes first"
