"""Messages for bad settings: they quote the (masked) input and say what to do.

Unit tests of `load_config` for the wording, and `resp-bridge serve` / `check-config` as
subprocesses for what a user sees: a taken port or a foreign bind address is reported before
the embedded redis-server and devserver are started, every problem of a config file at once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError

CLI = [sys.executable, "-c", "from bridge.cli import main; main()"]


def _error(**cli: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(cli=cli, environ={})
    return str(info.value)


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSTASH_REDIS_REST")}
    env["TMPDIR"] = str(tmp_path)  # where an embedded redis-server would put its directory
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_a_host_without_scheme_gets_a_did_you_mean() -> None:
    text = _error(url="eu1-example-12345.upstash.io", token="tok-1234")
    assert text == (
        "url: 'eu1-example-12345.upstash.io' has no scheme: "
        "did you mean https://eu1-example-12345.upstash.io?"
    )


def test_a_url_without_host_says_the_host_is_missing() -> None:
    text = _error(url="http://", token="tok-1234")
    assert "has no host" in text and "'http://'" in text


def test_a_pasted_token_is_never_echoed() -> None:
    token = "AXfkASQgYjA3ZTA5ZDItNzQ4Yy00NjBlLWI4Y2EtZDk2OGU2ZDc0NmNm"
    text = _error(url=token, token="tok-1234")
    assert token not in text and "<not a URL>" in text


def test_a_redis_url_is_told_apart_from_the_rest_url() -> None:
    text = _error(url="rediss://eu1-example-12345.upstash.io:6379", token="tok-1234")
    assert "is a Redis URL" in text and "REST URL" in text


def test_every_problem_is_reported_at_once_with_did_you_mean(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('prot = 6380\nmax_clints = 3\nlog_level = "warn"\nport = 70000\n')
    with pytest.raises(ConfigError) as info:
        load_config(config_file=config, environ={})
    text = str(info.value)
    assert text.startswith("4 problems:")
    assert "unknown key 'prot'; did you mean 'port'?" in text
    assert "unknown key 'max_clints'; did you mean 'max_clients'?" in text
    assert "log_level: 'warn' is not one of debug, info, warning, error; did you mean" in text
    assert "port: 70000 is not between 0 and 65535" in text
    assert len(text) < 600, "no list of every known key"


def test_check_config_prints_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('url = "db.example.com"\ntoken = "tok-1234"\nidle_timeout = 3\n')
    done = _run("check-config", "--config", str(config), tmp_path=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "2 problems:" in done.stderr
    assert "did you mean 'idle_timeout_s'?" in done.stderr
    assert "did you mean https://db.example.com?" in done.stderr
    assert "tok-1234" not in done.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _redis_dirs(tmp_path: Path) -> list[Path]:
    return list(tmp_path.glob("resp-bridge-redis-*"))


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path, taken_port: int) -> None:
    done = _run("serve", "--port", str(taken_port), "--admin-socket", "off", tmp_path=tmp_path)
    assert done.returncode == 1
    assert f"127.0.0.1:{taken_port} is already in use" in done.stderr
    assert "embedded" not in done.stderr and "devserver" not in done.stderr
    assert _redis_dirs(tmp_path) == [], "no redis-server was started"


def test_a_bind_address_not_on_this_host_has_its_own_message(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation: on no host's interfaces.
    done = _run("serve", "--bind", "192.0.2.77", "--port", "6390", tmp_path=tmp_path)
    assert done.returncode == 1
    assert "bind '192.0.2.77': this address is not on this host" in done.stderr
    assert "in use" not in done.stderr
    assert _redis_dirs(tmp_path) == []


def test_metrics_bind_must_be_host_and_port() -> None:
    assert "metrics_bind: '9121' is not HOST:PORT" in _error(metrics_bind="9121")
    assert "put an IPv6 address in brackets" in _error(metrics_bind="::1:9121")
    assert load_config(cli={"metrics_bind": "[::1]:9121"}, environ={}).metrics_bind


def test_a_taken_metrics_port_is_named_before_anything_starts(
    tmp_path: Path, taken_port: int
) -> None:
    done = _run(
        "serve", "--port", "0", "--admin-socket", "off",
        "--metrics-bind", f"127.0.0.1:{taken_port}", tmp_path=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"127.0.0.1:{taken_port} is already in use" in done.stderr
    assert _redis_dirs(tmp_path) == []
