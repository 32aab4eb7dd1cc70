"""`[databases.N]` tables: parsed into the typed config, validated at load with every problem
naming its key, tokens from the environment, and never shown by check-config."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.config import DatabaseTarget, config_markdown, load_config
from bridge.errors import ConfigError

TOP = 'url = "https://main.example.upstash.io"\ntoken = "main-token-1234"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_tables_become_targets_with_tokens_from_the_file_or_the_environment(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        TOP + '[databases.2]\nurl = "https://two.example.upstash.io"\ntoken = "two-token-5678"\n'
        '[databases.1]\nurl = "https://one.example.upstash.io"\n',
    )
    config = load_config(config_file=path, environ={"RESP_BRIDGE_DB1_TOKEN": "one-token-9999"})
    assert config.databases == (
        DatabaseTarget(1, "https://one.example.upstash.io", "one-token-9999"),
        DatabaseTarget(2, "https://two.example.upstash.io", "two-token-5678"),
    )
    assert "one-token-9999" in config.secret_values()
    assert "one-token-9999" not in repr(config)  # tokens stay out of reprs (reload logs)
    assert config.redacted()["databases"]["1"] == {
        "url": "https://one.example.upstash.io",
        "token": "<redacted>",
    }


def test_every_problem_of_the_tables_is_named_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TOP
        + '[databases.0]\nurl = "https://zero.example"\ntoken = "t"\n'
        + '[databases.x]\nurl = "https://x.example"\ntoken = "t"\n'
        + '[databases.3]\ntoken = "t"\n'
        + '[databases.4]\nurl = "https://four.example.upstash.io"\n'
        + '[databases.5]\nurl = "redis://five.example:6379"\ntoken = "t"\nport = 1\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=path, environ={})
    text = str(caught.value)
    assert text.startswith("6 problems:")
    assert "databases.0: database 0 is the main upstream" in text
    assert "databases.x: 'x' is not a database number" in text
    assert "databases.3.url: missing" in text
    assert (
        "databases.4.token: missing (give token in the table or set RESP_BRIDGE_DB4_TOKEN)" in text
    )
    assert "databases.5: unknown key 'port'" in text
    assert "databases.5.url: 'redis://five.example:6379' is a Redis URL" in text


def test_tables_need_a_configured_upstream(tmp_path: Path) -> None:
    path = write(tmp_path, '[databases.1]\nurl = "https://one.example.upstash.io"\ntoken = "t"\n')
    with pytest.raises(ConfigError, match="the embedded default already serves databases 0-15"):
        load_config(config_file=path, environ={})


def test_check_config_prints_the_tables_without_their_tokens(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TOP + '[databases.1]\nurl = "https://one.example.upstash.io"\ntoken = "secret-one"\n',
    )
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)], env={})
    assert result.exit_code == 0, result.output
    assert '[databases.1]\nurl = "https://one.example.upstash.io"\ntoken = "<redacted>"' in (
        result.output
    )
    assert "secret-one" not in result.output and "main-token-1234" not in result.output


def test_the_tables_are_a_file_setting_only() -> None:
    assert "| `[databases.N]` (file only) | `RESP_BRIDGE_DB<N>_TOKEN` |" in config_markdown()
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "--databases" not in help_text
