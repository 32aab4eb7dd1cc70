"""Unit tests of the daemon side: sd_notify, watchdog, LISTEN_FDS, journald logging, reload.

Real sockets stand in for systemd: a datagram socket for NOTIFY_SOCKET and listening sockets
duplicated onto high fd numbers for LISTEN_FDS (the real fd 3 belongs to pytest). The
end-to-end behaviour of `resp-bridge serve` under these protocols is in tests/e2e/test_service.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import logging
import os
import socket
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from bridge import logs
from bridge.cli import main
from bridge.config import BridgeConfig
from bridge.errors import ConfigError
from bridge.server import systemd
from bridge.server.counters import Stats
from bridge.server.dispatcher import DispatchLimits
from bridge.server.lifecycle import Lifecycle
from bridge.server.state import BridgeState
from bridge.server.systemd import Notifier, listen_fds, watchdog_interval_s

# -- sd_notify ------------------------------------------------------------------------------


@pytest.fixture
def notify_receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_notify_to_a_path(notify_receiver: tuple[str, socket.socket]) -> None:
    path, sock = notify_receiver
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("Ready: 0 clients")
    assert sock.recv(4096) == b"READY=1\nSTATUS=Ready: 0 clients"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping("Stopping")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=Stopping"
    notifier.close()


def test_notify_to_an_abstract_name() -> None:
    name = f"resp-bridge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier("@" + name)
        before = systemd.monotonic_usec()
        assert notifier.reloading("Reloading")
        lines = sock.recv(4096).decode().split("\n")
        assert lines[0] == "RELOADING=1"
        assert lines[1].startswith("MONOTONIC_USEC=")
        assert before <= int(lines[1].split("=", 1)[1]) <= systemd.monotonic_usec()
        assert lines[2] == "STATUS=Reloading"
        notifier.close()


def test_status_is_one_short_line(notify_receiver: tuple[str, socket.socket]) -> None:
    path, sock = notify_receiver
    notifier = Notifier(path)
    notifier.status("two\nlines " + "x" * 500)
    data = sock.recv(4096).decode()
    assert "\n" not in data
    assert data.startswith("STATUS=two lines x")
    assert len(data) == len("STATUS=") + systemd.MAX_STATUS_CHARS


def test_notifier_without_socket_is_a_no_op() -> None:
    env: dict[str, str] = {}
    notifier = Notifier.from_environ(env)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert Notifier("vsock:2:1234").enabled is False  # unsupported: warned, ignored


def test_notifier_survives_a_vanished_receiver(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.send("READY=1") is False
    assert notifier.watchdog() is False  # still no exception


def test_from_environ_removes_notify_socket() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "OTHER": "x"}
    notifier = Notifier.from_environ(env)
    assert notifier.address == "/run/systemd/notify"
    assert env == {"OTHER": "x"}


# -- watchdog -------------------------------------------------------------------------------


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    env = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(env) == 15.0
    assert env == {}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "nonsense"},
        {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"},  # meant for another process
    ],
)
def test_watchdog_disabled(env: dict[str, str]) -> None:
    assert watchdog_interval_s(dict(env)) is None


# -- socket activation ----------------------------------------------------------------------


@pytest.fixture
def fd_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Pretend systemd's fds start at a free high number (fd 3 belongs to pytest here)."""
    base = 300
    for fd in range(base, base + 4):
        with pytest.raises(OSError):
            os.fstat(fd)
    monkeypatch.setattr(systemd, "SD_LISTEN_FDS_START", base)
    yield base
    for fd in range(base, base + 4):
        with contextlib.suppress(OSError):
            os.close(fd)


def _place(sock: socket.socket, fd: int) -> None:
    os.dup2(sock.fileno(), fd)  # inheritable, as systemd passes them
    sock.close()


def test_listen_fds_detects_tcp_and_unix(fd_base: int, tmp_path: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "s.sock"))
    unix.listen()
    _place(tcp, fd_base)
    _place(unix, fd_base + 1)
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "tcp:local"}
    inherited = listen_fds(env)
    assert env == {}, "the variables must be removed"
    assert [s.name for s in inherited] == ["tcp", "local"]
    assert inherited[0].sock.family == socket.AF_INET
    assert inherited[0].sock.getsockname()[1] == port
    assert inherited[1].sock.family == socket.AF_UNIX
    assert "s.sock" in inherited[1].describe()
    assert f"127.0.0.1:{port}" in inherited[0].describe()
    for s in inherited:
        assert not os.get_inheritable(s.sock.fileno()), "must be close-on-exec"
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        conn, _ = inherited[0].sock.accept()
        conn.close()
    for s in inherited:
        s.sock.detach()  # fd_base fixture closes the fds


def test_listen_fds_for_another_process_is_ignored(fd_base: int) -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
    assert listen_fds(env) == []
    assert env == {}


def test_listen_fds_absent() -> None:
    assert listen_fds({}) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_FDS": "x", "LISTEN_PID": "1"}, "LISTEN_FDS/LISTEN_PID: malformed"),
        ({"LISTEN_FDS": "100000"}, "not a plausible number"),
    ],
)
def test_listen_fds_malformed(env: dict[str, str], message: str) -> None:
    env = dict(env)
    env.setdefault("LISTEN_PID", str(os.getpid()))
    with pytest.raises(ConfigError, match=message):
        listen_fds(env)


def test_listen_fds_refuses_a_socket_that_does_not_listen(fd_base: int) -> None:
    sock = socket.socket()
    _place(sock, fd_base)
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    with pytest.raises(ConfigError, match=f"fd {fd_base} .* not a listening stream socket"):
        listen_fds(env)
    os.fstat(fd_base)  # left open: the fd is not ours to close


def test_listen_fds_refuses_a_non_socket(fd_base: int) -> None:
    read_end, write_end = os.pipe()
    os.dup2(read_end, fd_base)
    os.close(read_end)
    os.close(write_end)
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    with pytest.raises(ConfigError, match="not a usable socket"):
        listen_fds(env)


# -- logging --------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    secrets = set(logs._secrets)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    logs._secrets.clear()
    logs._secrets.update(secrets)


def _record(level: int, msg: str, *args: Any, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("bridge.test", level, __file__, 1, msg, args, exc_info)


def test_journal_format_has_priorities_and_no_timestamp() -> None:
    fmt = logs.BridgeFormatter(journal=True)
    assert fmt.format(_record(logging.INFO, "hello %s", "world")) == "<6>bridge.test: hello world"
    assert fmt.format(_record(logging.WARNING, "w")).startswith("<4>")
    assert fmt.format(_record(logging.ERROR, "e")).startswith("<3>")
    assert fmt.format(_record(logging.DEBUG, "d")).startswith("<7>")
    assert fmt.format(_record(logging.CRITICAL, "c")).startswith("<2>")


def test_text_format_has_timestamps() -> None:
    line = logs.BridgeFormatter(journal=False).format(_record(logging.INFO, "hello"))
    assert line.endswith(" INFO bridge.test: hello")
    assert line[:4].isdigit()


def test_one_line_per_event_and_traceback_lines_keep_the_priority() -> None:
    fmt = logs.BridgeFormatter(journal=True)
    line = fmt.format(_record(logging.INFO, "client name %r", "evil\n<3>forged"))
    assert "\n" not in line
    text = fmt.format(_record(logging.ERROR, "failed", exc=True))
    lines = text.split("\n")
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    assert "ValueError: boom" in lines[-1]


def test_secrets_are_masked(restore_logging: None) -> None:
    logs.add_secret("s3cr3t-token-value")
    logs.add_secret("ab")  # too short to mask by value
    fmt = logs.BridgeFormatter(journal=False)
    line = fmt.format(_record(logging.INFO, "token=%s", "s3cr3t-token-value"))
    assert "s3cr3t" not in line and logs.MASK in line
    line = fmt.format(_record(logging.INFO, "headers {'Authorization': 'Bearer abc.def'}"))
    assert "abc.def" not in line
    line = fmt.format(_record(logging.INFO, "GET https://h/get/k?_token=xyz123&x=1"))
    assert "xyz123" not in line and "x=1" in line
    assert "ab" in fmt.format(_record(logging.INFO, "ab"))


def test_secret_in_a_traceback_is_masked(restore_logging: None) -> None:
    logs.add_secret("tok-in-exception")
    try:
        raise RuntimeError("bad token tok-in-exception")
    except RuntimeError:
        record = logging.LogRecord("b", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    assert "tok-in-exception" not in logs.BridgeFormatter(journal=True).format(record)


def test_journal_detection(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logs.journal_stderr(env, stream)
        assert not logs.journal_stderr({"JOURNAL_STREAM": "1:2"}, stream)
        assert not logs.journal_stderr({}, stream)
        assert not logs.journal_stderr({"INVOCATION_ID": "abc"}, stream)  # a file: timestamps
    assert not logs.journal_stderr(env, io.StringIO())


def test_setup_logging(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.setup_logging("warning", log_format="journal", secrets=["the-token-1234"], stream=stream)
    logging.getLogger("bridge.x").info("hidden")
    logging.getLogger("bridge.x").warning("shown the-token-1234")
    assert stream.getvalue() == f"<4>bridge.x: shown {logs.MASK}\n"
    assert logging.getLogger("httpx").level == logging.WARNING
    logs.set_level("debug")
    logging.getLogger("bridge.x").debug("now shown")
    assert stream.getvalue().endswith("<7>bridge.x: now shown\n")


# -- reload ---------------------------------------------------------------------------------


class FakeUpstream:
    display_url = "https://db.example"

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def set_token(self, token: str) -> None:
        self.tokens.append(token)


def _fake_server(config: BridgeConfig) -> Any:
    return SimpleNamespace(
        config=config,
        upstream=FakeUpstream(),
        requirepass=config.requirepass,
        parser_limits=None,
        dispatcher=SimpleNamespace(limits=DispatchLimits()),
        connections={},
        stats=Stats(),
    )


def test_reconfigure_applies_live_settings_and_defers_the_rest(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    old = BridgeConfig(url="https://db.example", token="old-token-0001")
    server = BridgeState(old, FakeUpstream())  # type: ignore[arg-type]
    new = dataclasses.replace(
        old,
        token="new-token-0002",
        requirepass="pw-9999",
        max_batch_commands=10,
        max_inline_bytes=100,
        max_clients=5,
        port=6380,
        url="https://other.example",
    )
    with caplog.at_level(logging.INFO):
        effective = server.reconfigure(new)
    assert server.upstream.tokens == ["new-token-0002"]  # type: ignore[attr-defined]
    assert server.requirepass == "pw-9999"
    assert server.dispatcher.limits.max_batch_commands == 10
    assert server.parser_limits.max_inline_bytes == 100
    assert effective.max_clients == 5 and server.config is effective
    assert effective.port == 6379 and effective.url == "https://db.example"  # restart-only
    text = caplog.text
    assert "token (changed)" in text and "max_clients 10000 -> 5" in text
    assert "restart needed to apply: url, port" in text
    for secret in ("old-token-0001", "new-token-0002", "pw-9999"):
        assert secret not in text


def test_reconfigure_does_not_switch_away_from_the_embedded_upstream(
    restore_logging: None,
) -> None:
    server = BridgeState(BridgeConfig(), FakeUpstream())  # type: ignore[arg-type]
    effective = server.reconfigure(BridgeConfig(url="https://db.example", token="t-123456"))
    assert effective.embedded and server.upstream.tokens == []  # type: ignore[attr-defined]


def test_reload_failure_keeps_the_running_config(
    notify_receiver: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    path, sock = notify_receiver
    config = BridgeConfig(url="https://db.example", token="old-token-0001")

    def broken() -> BridgeConfig:
        raise ConfigError("port: must be between 0 and 65535")

    lifecycle = Lifecycle(config, notifier=Notifier(path), reload_config=broken)
    server = _fake_server(config)
    lifecycle.ready(server)
    assert sock.recv(4096).startswith(b"READY=1\nSTATUS=Ready: 0 clients, upstream ok")
    with caplog.at_level(logging.INFO):
        lifecycle.reload()
    assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert sock.recv(4096).startswith(b"READY=1\n")
    assert "reload failed, keeping the running configuration: port:" in caplog.text
    assert server.config is config


# -- check-config ---------------------------------------------------------------------------


def _check(args: list[str], env: dict[str, str] | None = None) -> Any:
    base = {"UPSTASH_REDIS_REST_URL": "", "UPSTASH_REDIS_REST_TOKEN": ""}
    return CliRunner().invoke(main, ["check-config", *args], env={**base, **(env or {})})


def test_check_config_prints_the_effective_config_redacted(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        'url = "https://db.example"\ntoken = "file-token-1234"\nport = 6380\n'
        'requirepass = "pw-5678"\nshutdown_timeout_s = 4.5\n'
    )
    result = _check(["--config", str(config), "--max-clients", "7"])
    assert result.exit_code == 0, result.output
    assert "file-token-1234" not in result.output and "pw-5678" not in result.output
    printed = tomllib.loads(result.stdout)
    assert printed["token"] == "<redacted>" and printed["requirepass"] == "<redacted>"
    assert printed["port"] == 6380 and printed["max_clients"] == 7
    assert printed["shutdown_timeout_s"] == 4.5 and printed["unixsocketperm"] == 0o600
    assert "configuration is valid" in result.stderr


def test_check_config_reads_the_environment() -> None:
    env = {"UPSTASH_REDIS_REST_URL": "https://db.example", "UPSTASH_REDIS_REST_TOKEN": "env-tok-1"}
    result = _check([], env)
    assert result.exit_code == 0, result.output
    assert "env-tok-1" not in result.output
    assert 'url = "https://db.example"' in result.stdout


def test_the_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "systemd" / "resp-bridge.toml.example"
    assert _check(["--config", str(example)]).exit_code == 0


@pytest.mark.parametrize(
    ("content", "extra", "key"),
    [
        ("port = 70000\n", [], "port:"),
        ('shutdown_timeout_s = "soon"\n', [], "shutdown_timeout_s:"),
        ("shutdown_timeout_s = -1\n", [], "shutdown_timeout_s:"),
        ('log_format = "xml"\n', [], "log_format:"),
        ("no_such_key = 1\n", [], "unknown key 'no_such_key'"),
        ('url = "https://db.example"\n', [], "token:"),
        ("port = [\n", [], "is not valid TOML"),
        ("", ["--max-clients", "0"], "max_clients:"),
    ],
)
def test_check_config_errors_name_the_key(
    tmp_path: Path, content: str, extra: list[str], key: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = _check(["--config", str(config), *extra])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "invalid configuration" in result.stderr and key in result.stderr


def test_check_config_missing_file(tmp_path: Path) -> None:
    result = _check(["--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# -- watchdog task --------------------------------------------------------------------------


async def test_watchdog_pings_stop_while_the_event_loop_is_blocked(
    notify_receiver: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    path, sock = notify_receiver
    arrivals: list[float] = []

    def receive() -> None:
        while sock.recv(100) == b"WATCHDOG=1":
            arrivals.append(time.monotonic())

    reader = threading.Thread(target=receive)
    reader.start()
    lifecycle = Lifecycle(BridgeConfig(), notifier=Notifier(path), watchdog_s=0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lifecycle._watchdog)
        await trio.sleep(0.3)
        time.sleep(0.6)  # a stuck event loop: the ping task cannot run
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    lifecycle.notifier.send("END=1")
    reader.join(5)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 8
    assert max(gaps) >= 0.55, gaps  # silence while blocked
    assert sorted(gaps)[-2] < 0.45, gaps  # otherwise every 0.05 s
    assert "event loop was blocked" in caplog.text


def test_serve_logging_masks_every_secret_setting(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import _setup_logging

    config = BridgeConfig(url="https://db.example", token="tok-abcdef-1", requirepass="pw-abcdef")
    _setup_logging(config)
    logging.getLogger("bridge.x").warning("leak %s %s", config.token, config.requirepass)
    err = capsys.readouterr().err
    assert "tok-abcdef-1" not in err and "pw-abcdef" not in err
    assert err.count(logs.MASK) == 2
