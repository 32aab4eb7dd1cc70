"""`resp-bridge serve` as a systemd service, with systemd played by the test.

The real daemon runs as a subprocess in front of the real devserver and redis-server. A
datagram socket stands in for NOTIFY_SOCKET and records READY, STATUS, WATCHDOG, RELOADING
and STOPPING; listening sockets are passed as fds 3.. with LISTEN_FDS/LISTEN_PID (a small
wrapper sets LISTEN_PID to the daemon's own pid, as systemd does, then execs it); signals
are sent as systemctl would (SIGHUP for reload, SIGTERM for stop). The unit files are checked
with `systemd-analyze verify` when it is installed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, ReadOnlyError
from redis.retry import Retry

from tests.conftest import DevServerHandle, start_devserver
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
#: Start-up of the daemon (embedded nothing: the devserver is already running).
START_TIMEOUT_S = 20.0
#: Latency of the slow devserver: long enough to SIGTERM while a command is in flight.
SLOW_LATENCY_MS = 1000
#: WATCHDOG_USEC given to the daemon: a ping every 0.1 s.
WATCHDOG_USEC = 200_000

SERVE = [sys.executable, "-c", "from bridge.cli import main; main()", "serve"]
#: Plays systemd's part between fork and exec: fds to 3.., LISTEN_PID = the daemon's pid.
ACTIVATE = (
    "import fcntl, os, sys\n"
    "n = int(sys.argv[1])\n"
    "high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 100) for fd in sys.argv[2:2 + n]]\n"
    "for i, fd in enumerate(high):\n"
    "    os.dup2(fd, 3 + i)\n"
    "    os.close(fd)\n"
    "os.environ['LISTEN_FDS'] = str(n)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2 + n:]])\n"
)


class NotifyListener:
    """The NOTIFY_SOCKET end of systemd: records each datagram's assignments in order."""

    def __init__(self) -> None:
        self.name = f"resp-bridge-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _run(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(self, key: str, *, after: int = 0, timeout: float = 10.0, match: str = "") -> int:
        """Index of the first message from `after` on that sets `key` (containing `match`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(after, len(self.messages)):
                    value = self.messages[i][1].get(key)
                    if value is not None and match in value:
                        return i
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {key} ({match!r}) after #{after}: {self.messages}")
                self._cond.wait(remaining)

    def indices(self, key: str) -> list[int]:
        with self._cond:
            return [i for i, (_, fields) in enumerate(self.messages) if key in fields]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(2)


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    log_path: Path
    notify: NotifyListener
    port: int | None
    ready_index: int = 0
    clients: list[redis.Redis] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> redis.Redis:
        if "unix_socket_path" not in kwargs:
            kwargs.setdefault("host", "127.0.0.1")
            kwargs.setdefault("port", self.port)
        kwargs.setdefault("protocol", 2)
        kwargs.setdefault("socket_timeout", 10)
        # No silent reconnects: a dropped connection must show as an error in these tests.
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        client = redis.Redis(single_connection_client=True, **kwargs)
        self.clients.append(client)
        return client

    def signal(self, signum: int) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout} s:\n{self.log()}") from None

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()


def start_service(
    tmp_path: Path,
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    activate_fds: tuple[int, ...] = (),
) -> Service:
    """Run `resp-bridge serve ARGS` like systemd would and wait for READY=1."""
    notify = NotifyListener()
    log_path = tmp_path / f"serve-{uuid.uuid4().hex[:8]}.log"
    run_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPSTASH_REDIS_REST", "LISTEN_", "WATCHDOG_", "JOURNAL_"))
        and k not in ("NOTIFY_SOCKET", "INVOCATION_ID")
    }
    run_env.update({"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    run_env.update(env or {})
    command = [*SERVE, *args]
    if activate_fds:
        fds = [str(fd) for fd in activate_fds]
        command = [sys.executable, "-c", ACTIVATE, str(len(fds)), *fds, *command[1:]]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=log_file, env=run_env, pass_fds=activate_fds
        )
    service = Service(proc, log_path, notify, port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            service.ready_index = notify.wait_for("READY", timeout=0.2)
            return service
        except AssertionError:
            continue
    service.stop()
    raise RuntimeError(f"no READY=1 (exit code {proc.returncode}):\n{log_path.read_text()}")


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def slow_devserver(redis_server: Any) -> Iterator[DevServerHandle]:
    """A devserver answering every request after SLOW_LATENCY_MS."""
    handle = start_devserver(redis_server.url, extra_args=("--latency-ms", str(SLOW_LATENCY_MS)))
    yield handle
    handle.stop()


def _config(tmp_path: Path, dev: DevServerHandle, token: str, port: int, **extra: Any) -> Path:
    path = tmp_path / "bridge.toml"
    lines = [f'url = "{dev.url}"', f'token = "{token}"', f"port = {port}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# -- READY, STATUS, WATCHDOG, RELOADING, STOPPING -----------------------------------------


def test_notifications_in_order_and_journal_log_lines(
    tmp_path: Path, devserver: DevServerHandle, services: list[Service]
) -> None:
    port = free_port()
    config = _config(tmp_path, devserver, devserver.token, port)
    service = start_service(tmp_path, "--config", str(config), port=port)
    services.append(service)
    notify = service.notify
    ready = service.ready_index
    assert notify.messages[ready][1]["STATUS"].startswith("Ready: 0 clients, upstream ok")

    client = service.client()
    assert client.set("svc:notify", "1") is True
    status = notify.wait_for("STATUS", after=ready + 1, match="1 client,", timeout=5)
    watchdog = notify.wait_for("WATCHDOG", after=ready + 1, timeout=2)

    service.signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", after=ready + 1)
    assert int(notify.messages[reloading][1]["MONOTONIC_USEC"]) > 0
    ready_again = notify.wait_for("READY", after=reloading + 1)
    assert client.get("svc:notify") == b"1"

    service.signal(signal.SIGTERM)
    stopping = notify.wait_for("STOPPING", after=ready_again + 1)
    assert service.wait(10) == 0

    assert ready < status < reloading < ready_again < stopping
    assert ready < watchdog < stopping
    pings = [notify.messages[i][0] for i in notify.indices("WATCHDOG")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 5 and max(gaps) < 1.0, gaps  # every WATCHDOG_USEC/2 = 0.1 s
    assert notify.indices("READY") == [ready, ready_again]
    log = service.log()
    assert "reloaded configuration: no changes" in log
    assert devserver.token not in log


def test_journal_stream_gets_priority_prefixes(
    tmp_path: Path, devserver: DevServerHandle, services: list[Service]
) -> None:
    port = free_port()
    # JOURNAL_STREAM names the file stderr goes to, as systemd names its journal socket.
    log_path = tmp_path / "journal.log"
    log_path.touch()
    st = os.stat(log_path)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "INVOCATION_ID": uuid.uuid4().hex}
    config = _config(tmp_path, devserver, devserver.token, port)
    notify = NotifyListener()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("UPSTASH_REDIS_REST")}
    run_env.update(env, NOTIFY_SOCKET=notify.address)
    with open(log_path, "ab") as stderr:
        proc = subprocess.Popen([*SERVE, "--config", str(config)], stderr=stderr, env=run_env)
    service = Service(proc, log_path, notify, port)
    services.append(service)
    service.ready_index = notify.wait_for("READY", timeout=START_TIMEOUT_S)
    service.signal(signal.SIGTERM)
    assert service.wait(10) == 0
    lines = service.log().splitlines()
    assert lines, "no log lines"
    assert all(re.match(r"<[0-7]>bridge[.\w]*: ", line) for line in lines), lines
    assert any(line.startswith("<6>bridge: ready: accepting Redis clients") for line in lines)
    assert not any(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line) for line in lines)


# -- socket activation ----------------------------------------------------------------------


def test_socket_activation_tcp_and_unix(
    tmp_path: Path, devserver: DevServerHandle, services: list[Service]
) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    unix_path = str(tmp_path / "clients.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)
    unix.listen()
    unused_port = free_port()  # the config's port: must be ignored under socket activation
    config = _config(tmp_path, devserver, devserver.token, unused_port)
    service = start_service(
        tmp_path,
        "--config",
        str(config),
        port=port,
        env={"LISTEN_FDNAMES": "tcp:local"},
        activate_fds=(tcp.fileno(), unix.fileno()),
    )
    services.append(service)
    # systemd keeps its copies; the test closes its own so that only the daemon listens.
    tcp.close()
    unix.close()
    over_tcp = service.client()
    assert over_tcp.set("svc:activated", "yes") is True
    over_unix = service.client(unix_socket_path=unix_path)
    assert over_unix.get("svc:activated") == b"yes"
    assert _refused(unused_port)
    log = service.log()
    assert "socket activation: 2 listener(s) from systemd" in log
    assert f"127.0.0.1:{port} (fd 3, tcp)" in log and "clients.sock (fd 4, local)" in log

    service.signal(signal.SIGTERM)
    assert service.wait(10) == 0
    assert os.path.exists(unix_path), "an inherited unix socket belongs to systemd"


def test_socket_activation_for_another_pid_is_ignored(
    tmp_path: Path, devserver: DevServerHandle, services: list[Service]
) -> None:
    port = free_port()
    config = _config(tmp_path, devserver, devserver.token, port)
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}  # leaked from some parent
    service = start_service(tmp_path, "--config", str(config), port=port, env=env)
    services.append(service)
    assert service.client().ping() is True
    assert "LISTEN_FDS is meant for process 1" in service.log()


def test_bad_socket_activation_exits_with_a_config_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSTASH_REDIS_REST")}
    wrapper = (
        "import os, sys\n"
        "os.environ['LISTEN_FDS'] = 'two'\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *SERVE[1:]], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 2, result.stderr
    assert b"LISTEN_FDS/LISTEN_PID: malformed" in result.stderr


# -- SIGHUP: reload without dropping clients ------------------------------------------------


def test_sighup_rotates_the_token_and_keeps_clients(
    tmp_path: Path, devserver: DevServerHandle, services: list[Service], redis_server: Any
) -> None:
    port = free_port()
    config = _config(tmp_path, devserver, devserver.token, port, max_clients=100)
    service = start_service(tmp_path, "--config", str(config), "--log-level", "debug", port=port)
    services.append(service)
    notify = service.notify
    client = service.client()
    assert client.set("svc:rotate", "v1") is True
    client_id = client.client_id()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"*2\r\n$3\r\nGET\r\n$10\r\nsvc:rotate\r\n")
    assert raw.recv(100) == b"$2\r\nv1\r\n"

    def reload(after: int) -> int:
        service.signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING", after=after)
        return notify.wait_for("READY", after=reloading + 1)

    # The read-only token of the same database: reads work, writes get NOPERM from now on.
    _config(tmp_path, devserver, devserver.readonly_token, port, max_clients=50)
    mark = reload(service.ready_index + 1)
    assert client.get("svc:rotate") == b"v1"
    with pytest.raises(NoPermissionError):
        client.set("svc:rotate", "v2")
    assert client.client_id() == client_id, "the client was reconnected"
    raw.sendall(b"*3\r\n$3\r\nSET\r\n$10\r\nsvc:rotate\r\n$2\r\nv3\r\n")
    # The bridge learned the token is read-only: later writes are refused locally.
    assert raw.recv(200).startswith(b"-READONLY")

    # A broken file: the running configuration (and token) stay.
    config.write_text("port = [\n")
    mark = reload(mark + 1)
    with pytest.raises(ReadOnlyError):  # still the read-only token, now known locally
        client.set("svc:rotate", "v4")

    _config(tmp_path, devserver, devserver.token, port, max_clients=50)
    reload(mark + 1)
    assert client.set("svc:rotate", "v5") is True
    assert client.client_id() == client_id
    raw.sendall(b"*2\r\n$3\r\nGET\r\n$10\r\nsvc:rotate\r\n")
    assert raw.recv(100) == b"$2\r\nv5\r\n"
    raw.close()

    service.signal(signal.SIGTERM)
    assert service.wait(10) == 0
    log = service.log()
    assert "reloaded configuration: token (changed), max_clients 100 -> 50" in log
    assert "reload failed, keeping the running configuration" in log
    assert "reloaded configuration: token (changed)" in log.rsplit("reload failed", 1)[1]
    for secret in (devserver.token, devserver.readonly_token):
        assert secret not in log, "a token reached the log"


# -- SIGTERM: drain under a deadline --------------------------------------------------------


def _in_flight(client: redis.Redis, n: int, results: list[Any], errors: list[Any]) -> None:
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(n):
            pipe.incr("svc:drain")
        results.append(pipe.execute())
    except Exception as exc:
        errors.append(exc)


def test_sigterm_answers_in_flight_commands_then_exits_0(
    tmp_path: Path,
    slow_devserver: DevServerHandle,
    services: list[Service],
    redis_server: Any,
) -> None:
    direct = redis.Redis.from_url(redis_server.url)
    direct.delete("svc:drain")
    port = free_port()
    config = _config(tmp_path, slow_devserver, slow_devserver.token, port)
    service = start_service(tmp_path, "--config", str(config), port=port)
    services.append(service)
    clients = [service.client() for _ in range(6)]
    for c in clients:
        assert c.ping() is True  # connected (PING is answered locally, no latency)
    results: list[Any] = []
    errors: list[Any] = []
    threads = [threading.Thread(target=_in_flight, args=(c, 20, results, errors)) for c in clients]
    sent = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.3)  # the commands are with the upstream now (1 s latency)
    signalled = service.signal(signal.SIGTERM)
    stopping = service.notify.wait_for("STOPPING", after=service.ready_index + 1, timeout=5)
    draining = re.match(
        r"Stopping: draining (\d+) clients", service.notify.messages[stopping][1]["STATUS"]
    )
    assert draining and int(draining[1]) >= 6  # (redis-py pipelines take their own connection)
    assert _refused(port), "a new connection was accepted after STOPPING"
    assert service.wait(10) == 0
    exited = time.monotonic()
    for t in threads:
        t.join(5)
    assert errors == []
    assert sorted(r[-1] for r in results)[-1] == 120
    assert all(len(r) == 20 for r in results) and len(results) == 6
    assert int(direct.get("svc:drain") or 0) == 120  # every accepted command ran exactly once
    direct.close()
    drain_s = exited - signalled
    # The replies were owed ~0.7 s after the signal; nothing waits for the 10 s deadline.
    assert exited - sent > SLOW_LATENCY_MS / 1000 - 0.5 and drain_s < 5, drain_s
    assert "drained every client in" in service.log()


def test_drain_deadline_then_second_signal(
    tmp_path: Path, slow_devserver: DevServerHandle, services: list[Service]
) -> None:
    port = free_port()
    config = _config(tmp_path, slow_devserver, slow_devserver.token, port, shutdown_timeout_s=0.2)
    service = start_service(tmp_path, "--config", str(config), port=port)
    services.append(service)
    client = service.client()
    results: list[Any] = []
    errors: list[Any] = []
    thread = threading.Thread(target=_in_flight, args=(client, 1, results, errors))
    thread.start()
    time.sleep(0.2)
    signalled = service.signal(signal.SIGTERM)
    assert service.wait(5) == 0
    elapsed = time.monotonic() - signalled
    thread.join(5)
    assert elapsed < SLOW_LATENCY_MS / 1000, "the 0.2 s deadline was not enforced"
    assert results == [] and len(errors) == 1
    assert isinstance(errors[0], redis.ConnectionError)
    assert "drain deadline (0.2 s) reached: closing 1 client(s)" in service.log()

    # Default deadline (10 s), but a second SIGTERM closes at once.
    port = free_port()
    config = _config(tmp_path, slow_devserver, slow_devserver.token, port)
    service = start_service(tmp_path, "--config", str(config), port=port)
    services.append(service)
    client = service.client()
    thread = threading.Thread(target=_in_flight, args=(client, 1, [], []))
    thread.start()
    time.sleep(0.2)
    service.signal(signal.SIGTERM)
    service.notify.wait_for("STOPPING", after=service.ready_index + 1)
    signalled = service.signal(signal.SIGTERM)
    assert service.wait(5) == 0
    assert time.monotonic() - signalled < 0.5
    thread.join(5)
    assert "second signal" in service.log()


# -- unit files -----------------------------------------------------------------------------


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("unit", ["resp-bridge.service", "resp-bridge@.service"])
def test_service_units_have_the_required_settings(unit: str) -> None:
    d = _directives(UNITS / unit)
    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "SystemCallArchitectures": "native",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
    }.items():
        assert d.get(key) == [value], (key, d.get(key))
    assert "@system-service" in d["SystemCallFilter"]
    assert d["ExecStart"][0].startswith("/opt/resp-bridge/bin/resp-bridge serve --config ")
    assert d["EnvironmentFile"][0].startswith("-/etc/resp-bridge/")
    assert d["RuntimeDirectory"][0].startswith("resp-bridge")
    stop_s = int(d["TimeoutStopSec"][0].rstrip("s"))
    assert stop_s > 10 + 2, "TimeoutStopSec must exceed the default drain deadline"
    assert int(d["WatchdogSec"][0].rstrip("s")) >= 10
    if "@" in unit:
        assert "%i" in d["ExecStart"][0] and "%i" in d["EnvironmentFile"][0]


def test_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd to run this)")
    # verify checks that ExecStart= exists: point it at this checkout's entry point.
    executable = shutil.which("resp-bridge") or str(Path(sys.executable).parent / "resp-bridge")
    assert os.access(executable, os.X_OK), executable
    names = {
        "resp-bridge.service": "resp-bridge.service",
        "resp-bridge.socket": "resp-bridge.socket",
        "resp-bridge@.service": "resp-bridge@db1.service",  # templates are verified as
        "resp-bridge@.socket": "resp-bridge@db1.socket",  # an instance
    }
    for source, target in names.items():
        text = (UNITS / source).read_text().replace("/opt/resp-bridge/bin/resp-bridge", executable)
        (tmp_path / target).write_text(text)
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice")
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / t) for t in names.values())],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # verify only warns (exit 0) about unknown keys or bad values: there must be none.
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr
