"""The admin socket of a real bridge process, driven by `resp-bridge admin` and `redis-cli -s`.

Every bridge here is `resp-bridge serve` in front of the session's devserver (real
redis-server behind it), started by the e2e `bridge_factory` fixture with `--admin-socket`.
Clients are redis-py, raw sockets and redis-cli. Each wait has a deadline.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from bridge.admin_cli import AdminClient
from bridge.cli import main
from tests.e2e.conftest import BridgeProcess, bridge_factory, start_bridge  # noqa: F401
from tests.upstream.test_management import API_KEY, EMAIL, start_threaded_emulator

#: Deadline of one redis-cli call.
CLI_TIMEOUT_S = 10.0
#: How long a held command must stay held before we believe PAUSE works.
HOLD_CHECK_S = 0.5
#: Deadline for a released command, a killed connection or an exiting bridge.
SETTLE_S = 10.0

Factory = Callable[..., BridgeProcess]


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory (unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="rb-admin-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def admin_bridge(
    devserver: Any,
    bridge_factory: Factory,  # noqa: F811
    sock_dir: str,
) -> tuple[BridgeProcess, str]:
    path = os.path.join(sock_dir, "admin.sock")
    bridge = bridge_factory(devserver.url, devserver.token, "--admin-socket", path)
    return bridge, path


def admin(path: str, *args: str, env: dict[str, str | None] | None = None) -> Any:
    """`resp-bridge admin --json ARGS` (in-process click); the parsed reply."""
    result = CliRunner(env=env).invoke(main, ["admin", "--socket", path, "--json", *args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def admin_text(path: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["admin", "--socket", path, *args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def redis_cli_run(path: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["redis-cli", "-s", path, *args], capture_output=True, timeout=CLI_TIMEOUT_S
    )


def redis_cli(path: str, *args: str) -> str:
    """redis-cli's output of a command that must succeed (it exits 1 on an error reply)."""
    done = redis_cli_run(path, *args)
    assert done.returncode == 0, done
    return done.stdout.decode()


def wait_until(predicate: Callable[[], bool], timeout_s: float = SETTLE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# -- STATS, CLIENTS, KILL ---------------------------------------------------------------------


def test_stats_move_after_traffic(admin_bridge: tuple[BridgeProcess, str]) -> None:
    bridge, path = admin_bridge
    before = admin(path, "STATS")
    client = bridge.client()
    for i in range(10):
        client.set(f"admin:stats:{i}", i)
        assert client.get(f"admin:stats:{i}") == str(i).encode()
    pipe = client.pipeline(transaction=False)
    for _ in range(50):
        pipe.incr("admin:stats:counter")
    pipe.execute()
    after = admin(path, "STATS")

    assert after["commands"] >= before["commands"] + 70
    assert after["commands_forwarded"] >= before["commands_forwarded"] + 70
    assert after["http_requests"] > before["http_requests"]
    assert after["batches"] > before["batches"]
    assert after["commands_per_batch"] >= 1
    assert after["bytes_in"] > before["bytes_in"] and after["bytes_out"] > before["bytes_out"]
    latency = after["upstream_latency_ms"]
    assert latency["count"] > before["upstream_latency_ms"]["count"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert after["clients"] == 1 and after["errors_total"] == 0
    assert after["uptime_s"] >= before["uptime_s"]

    # The same through redis-cli (RESP2: the map is a flat array of name, value).
    lines = redis_cli(path, "STATS").splitlines()
    stats = dict(zip(lines[::2], lines[1::2], strict=False))
    assert int(stats["commands"]) >= after["commands"]
    assert "upstream_latency_ms" in stats
    # And as a table for people.
    table = admin_text(path, "STATS")
    assert re.search(r"^upstream_latency_ms\.p99\s+\d", table, re.M), table


def test_clients_lists_a_named_client_and_kill_disconnects_it(
    admin_bridge: tuple[BridgeProcess, str],
) -> None:
    bridge, path = admin_bridge
    named = bridge.client(client_name="billing-worker-7")
    assert named.ping()
    raw = socket.create_connection(("127.0.0.1", bridge.port), timeout=SETTLE_S)
    raw.sendall(b"CLIENT SETNAME raw-victim\r\n")
    assert raw.recv(64) == b"+OK\r\n"

    rows = {row["name"]: row for row in admin(path, "CLIENTS")}
    assert set(rows) == {"billing-worker-7", "raw-victim"}
    worker = rows["billing-worker-7"]
    assert worker["addr"].startswith("127.0.0.1:") and worker["state"] == "idle"
    assert worker["age_s"] >= 0 and worker["idle_s"] >= 0 and worker["pending"] == 0
    assert worker["lib"].startswith("redis-py")
    assert "billing-worker-7" in redis_cli(path, "CLIENTS")
    assert "raw-victim" in admin_text(path, "CLIENTS")

    victim = rows["raw-victim"]["id"]
    assert redis_cli(path, "KILL", str(victim)).strip() == "OK"
    raw.settimeout(SETTLE_S)
    assert raw.recv(64) == b"", "the killed client must see its connection closed"
    raw.close()
    wait_until(lambda: [r["name"] for r in admin(path, "CLIENTS")] == ["billing-worker-7"])

    result = CliRunner().invoke(main, ["admin", "--socket", path, "kill", str(victim)])
    assert result.exit_code == 1 and f"no such client {victim}" in result.stderr


# -- PAUSE / RESUME ---------------------------------------------------------------------------


def test_pause_holds_a_command_until_resume(
    admin_bridge: tuple[BridgeProcess, str], redis_client: redis.Redis
) -> None:
    bridge, path = admin_bridge
    redis_client.delete("admin:held")
    client = bridge.client(client_name="held")
    assert client.ping()
    assert redis_cli(path, "PAUSE").strip() == "OK"

    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(client.set("admin:held", "1")))
    worker.start()
    time.sleep(HOLD_CHECK_S)
    assert worker.is_alive() and not outcome, "PAUSE must hold new commands"
    assert redis_client.get("admin:held") is None, "a held command must not reach Redis"
    (row,) = admin(path, "CLIENTS")
    assert row["state"] == "paused" and row["pending"] == 1
    assert admin(path, "STATS")["paused"] is True
    assert "resp_bridge_paused 1" in admin_text(path, "METRICS")

    assert admin(path, "RESUME") == "OK"
    worker.join(SETTLE_S)
    assert not worker.is_alive() and outcome == [True]
    assert redis_client.get("admin:held") == b"1"
    assert admin(path, "STATS")["paused"] is False


def test_pause_under_load_loses_and_fails_nothing(
    admin_bridge: tuple[BridgeProcess, str], redis_client: redis.Redis
) -> None:
    bridge, path = admin_bridge
    redis_client.delete("admin:load")
    workers, per_worker = 4, 150
    errors: list[BaseException] = []

    def work() -> None:
        client = bridge.client()
        try:
            for _ in range(per_worker):
                client.incr("admin:load")
        except BaseException as exc:  # recorded, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    with AdminClient(path, timeout_s=SETTLE_S) as control:
        for _ in range(5):
            assert control.call("PAUSE", "5") == "OK"
            assert control.call("STATS")["requests_in_flight"] == 0
            time.sleep(0.1)
            assert control.call("RESUME") == "OK"
            time.sleep(0.05)
    for t in threads:
        t.join(SETTLE_S * 3)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert redis_client.get("admin:load") == str(workers * per_worker).encode()


# -- METRICS, UPSTREAM, CONFIG ----------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)\}})? "
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf)|NaN)$"
)


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text exposition format: every sample belongs to a family
    declared with HELP and TYPE before it; histograms are cumulative up to le="+Inf"."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line:
            continue  # empty lines are ignored (redis-cli adds one)
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name) and name not in samples
            samples[name] = []
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in samples and name not in types
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match["name"]
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            family = family if types.get(family) == "histogram" else name
            assert family in types, f"sample before its TYPE: {line!r}"
            labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
            value = float(match["value"])
            if types[family] == "counter":
                assert name.endswith("_total") and value >= 0
            samples[family].append(({"__name__": name, **labels}, value))
    for family, kind in types.items():
        if kind == "histogram":
            buckets = [(s, v) for s, v in samples[family] if s["__name__"].endswith("_bucket")]
            bounds = [float(s["le"]) for s, _ in buckets]
            counts = [v for _, v in buckets]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf
            assert counts == sorted(counts)
            (count,) = [v for s, v in samples[family] if s["__name__"] == family + "_count"]
            assert counts[-1] == count
    return samples


def test_metrics_parse_as_prometheus_text(admin_bridge: tuple[BridgeProcess, str]) -> None:
    bridge, path = admin_bridge
    client = bridge.client()
    for i in range(5):
        client.set(f"admin:metrics:{i}", "x")
    metrics = parse_prometheus(admin(path, "METRICS"))
    assert redis_cli(path, "METRICS").splitlines()[:2] == admin(path, "METRICS").splitlines()[:2]
    parse_prometheus(redis_cli(path, "METRICS"))

    def value(family: str, **labels: str) -> float:
        for sample, v in metrics[family]:
            if all(sample.get(k) == want for k, want in labels.items()):
                return v
        raise AssertionError(f"no {family} {labels}")

    assert value("resp_bridge_commands_total", where="forwarded") >= 5
    assert value("resp_bridge_http_requests_total") >= 1
    assert value("resp_bridge_clients") == 1
    assert value("resp_bridge_paused") == 0
    assert value("resp_bridge_upstream_latency_seconds", __name__=(
        "resp_bridge_upstream_latency_seconds_count"
    )) >= 1  # fmt: skip
    (info,) = metrics["resp_bridge_info"]
    assert info[0]["upstream"] == bridge_upstream(path)


def bridge_upstream(path: str) -> str:
    return str(admin(path, "UPSTREAM")["url"])


def test_upstream_reports_health_and_probe(
    admin_bridge: tuple[BridgeProcess, str], devserver: Any
) -> None:
    bridge, path = admin_bridge
    bridge.client().set("admin:upstream", "1")
    report = admin(path, "UPSTREAM")
    assert report["url"] == devserver.url
    assert report["health"] == "ok"
    assert report["response_format"] == "resp2"
    assert report["requests_in_flight"] == 0 and report["max_in_flight"] == 8
    assert report["sync_token"] == "present" and 0 <= report["sync_token_age_s"] < 60
    assert "none since start" in report["last_probe"]

    probed = admin(path, "UPSTREAM", "PROBE")["last_probe"]
    assert probed["ok"] is True and probed["detail"] == "resp2 supported"
    assert probed["latency_ms"] >= 0


def test_config_redacts_secrets_and_no_output_ever_has_them(
    devserver: Any,
    bridge_factory: Factory,  # noqa: F811
    sock_dir: str,
) -> None:
    path = os.path.join(sock_dir, "admin.sock")
    password = "admin-test-requirepass"
    enterprise_password = "enterprise-secret-4242"
    served = start_threaded_emulator()
    try:
        bridge = bridge_factory(
            devserver.url, devserver.token, "--admin-socket", path, "--requirepass", password,
            "--upstash-api-url", served.url, "--enterprise-url", "https://re.example:9443",
            env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": API_KEY,
                 "REDIS_ENTERPRISE_PASSWORD": enterprise_password},
        )  # fmt: skip
        client = bridge.client(password=password, client_name="secretive")
        client.set("admin:secret", "v")

        config = admin(path, "CONFIG")
        assert config["token"] == "<redacted>" and config["requirepass"] == "<redacted>"
        assert config["upstash_api_key"] == "<redacted>"
        assert config["enterprise_password"] == "<redacted>"
        assert config["url"] == devserver.url and config["admin_socket"] == path
        assert config["upstash_email"] == EMAIL
        assert admin(path, "CONFIG", "token", "port") == {
            "token": "<redacted>",
            "port": bridge.port,
        }

        created = admin(path, "DB", "CREATE", "from-admin", "eu-west-1")
        info = admin(path, "DB", "INFO", created["database_id"])
        assert info["database_name"] == "from-admin" and info["password"] == "<redacted>"
        assert info["db_request_limit"] == str(2**63), "bigger than RESP's 64-bit integers"
        assert "from-admin" in redis_cli(path, "DB", "LIST")
        commands = [
            ["HELP"], ["STATS"], ["CLIENTS"], ["UPSTREAM"], ["UPSTREAM", "PROBE"], ["METRICS"],
            ["CONFIG"], ["CONFIG", "token"], ["CONFIG", "upstash_api_key", "requirepass"],
            ["DB", "HELP"], ["TEAM", "HELP"], ["DB", "LIST"],
            ["DB", "INFO", created["database_id"]],
            ["DB", "RESET-PASSWORD", created["database_id"], "CONFIRM"],
            ["DB", "ENTERPRISE", "LIST"], ["TEAM", "LIST"], ["KILL", "999999"], ["PAUSE", "1"],
            ["RESUME"], ["RELOAD"], ["PING"], ["NOSUCHCOMMAND", devserver.token],
        ]  # fmt: skip
        secrets = [devserver.token, password, API_KEY, enterprise_password]
        db_secrets = served.emulator.model.databases[created["database_id"]]
        secrets += [db_secrets["password"], db_secrets["rest_token"]]
        for command in commands:
            done = redis_cli_run(path, *command)
            outputs = [done.stdout.decode(), done.stderr.decode()]
            for extra in ([], ["--json"]):
                result = CliRunner().invoke(main, ["admin", "--socket", path, *extra, *command])
                outputs += [result.stdout, result.stderr]
            for output in outputs:
                for secret in secrets:
                    assert secret not in output, f"{command}: a secret leaked"
        assert created["password"] == "<redacted>"
        assert bridge.client(password=password).get("admin:secret") == b"v"
    finally:
        served.stop()
    bridge.stop()
    log = bridge.log()
    assert "admin: RELOAD" in log
    for secret in secrets:
        assert secret not in log


def test_reload_rereads_the_token_without_dropping_clients(
    devserver: Any,
    bridge_factory: Factory,  # noqa: F811
    sock_dir: str,
) -> None:
    path = os.path.join(sock_dir, "admin.sock")
    config_file = Path(sock_dir, "bridge.toml")

    def write(token: str) -> None:
        config_file.write_text(f'url = "{devserver.url}"\ntoken = "{token}"\n')

    write(devserver.token)
    bridge = bridge_factory(None, None, "--config", str(config_file), "--admin-socket", path)
    client = bridge.client(client_name="long-lived")
    client_id = client.client_id()
    assert client.set("admin:reload", "1")
    connections = admin(path, "STATS")["connections_total"]

    write("a-rotated-token-the-devserver-refuses")
    reloaded = admin(path, "RELOAD")
    assert reloaded["result"] == "reloaded" and reloaded["applied"] == ["token"]
    with pytest.raises(redis.ResponseError, match="401"):
        client.get("admin:reload")

    write(devserver.token)
    assert admin(path, "RELOAD")["applied"] == ["token"]
    assert client.get("admin:reload") == b"1"
    assert client.client_id() == client_id, "the client must keep its connection"
    assert admin(path, "STATS")["connections_total"] == connections

    config_file.write_text(f'url = "{devserver.url}"\nno_such_setting = 1\n')
    result = CliRunner().invoke(main, ["admin", "--socket", path, "reload"])
    assert result.exit_code == 1 and "reload failed" in result.stderr
    assert devserver.token not in result.stderr + result.stdout


def test_reset_password_of_the_database_in_use_switches_the_token(
    devserver: Any,
    bridge_factory: Factory,  # noqa: F811
    sock_dir: str,
) -> None:
    """The emulated database's endpoint is the devserver's host, so it is the one in use."""
    path = os.path.join(sock_dir, "admin.sock")
    config_file = Path(sock_dir, "bridge.toml")
    config_file.write_text(f'url = "{devserver.url}"\ntoken = "{devserver.token}"\n')
    served = start_threaded_emulator(endpoint="127.0.0.1")
    try:
        bridge = bridge_factory(
            None, None, "--config", str(config_file), "--admin-socket", path,
            "--upstash-api-url", served.url,
            env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": API_KEY},
        )  # fmt: skip
        client = bridge.client()
        assert client.set("admin:rotate", "1")
        db_id = admin(path, "DB", "CREATE", "in-use", "eu-west-1")["database_id"]
        other = admin(path, "DB", "CREATE", "elsewhere", "eu-west-1")
        served.emulator.model.databases[other["database_id"]]["endpoint"] = "other.upstash.io"
        assert "bridge" not in admin(path, "DB", "RESET-PASSWORD", other["database_id"], "CONFIRM")

        reset = admin(path, "DB", "RESET-PASSWORD", db_id, "CONFIRM")
        new_token = served.emulator.model.databases[db_id]["rest_token"]
        assert reset["bridge"].startswith("switched to the new REST token")
        assert reset["rest_token"] == "<redacted>" and new_token not in json.dumps(reset)
        # The devserver knows only its own token: the refusal proves the switch happened.
        with pytest.raises(redis.ResponseError, match="401"):
            client.get("admin:rotate")
        assert new_token not in redis_cli(path, "CONFIG") + json.dumps(admin(path, "CONFIG"))

        assert admin(path, "RELOAD")["applied"] == ["token"]
        assert client.get("admin:rotate") == b"1"
    finally:
        served.stop()
    bridge.stop()
    assert "this bridge now uses the new one" in bridge.log()
    assert new_token not in bridge.log()


# -- SHUTDOWN ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["GRACEFUL", "NOW"])
def test_shutdown(admin_bridge: tuple[BridgeProcess, str], mode: str) -> None:
    bridge, path = admin_bridge
    client = bridge.client()
    assert client.set("admin:shutdown", mode)
    assert redis_cli(path, "SHUTDOWN", mode).strip() == "OK"
    assert bridge.proc.wait(SETTLE_S) == 0
    assert not os.path.exists(path), "the admin socket must be removed on exit"
    assert f"admin: SHUTDOWN {mode}" in bridge.log()


# -- the socket itself ------------------------------------------------------------------------


def test_socket_is_0600_and_ours(admin_bridge: tuple[BridgeProcess, str]) -> None:
    _, path = admin_bridge
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()


def test_symlink_is_refused(devserver: Any, sock_dir: str) -> None:
    target = os.path.join(sock_dir, "elsewhere.sock")
    path = os.path.join(sock_dir, "admin.sock")
    os.symlink(target, path)
    with pytest.raises(RuntimeError, match="symbolic link"):
        start_bridge(sock_dir, devserver.url, devserver.token, "--admin-socket", path)
    assert os.path.islink(path) and not os.path.exists(target)


def _dead_socket(path: str) -> None:
    """A socket file nobody listens on (what a crashed bridge leaves behind)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_socket_of_another_user_is_refused(devserver: Any, sock_dir: str) -> None:
    path = os.path.join(sock_dir, "admin.sock")
    _dead_socket(path)
    os.chown(path, 65534, 65534)
    with pytest.raises(RuntimeError, match="belongs to uid 65534"):
        start_bridge(sock_dir, devserver.url, devserver.token, "--admin-socket", path)
    assert os.lstat(path).st_uid == 65534, "someone else's file must be left alone"


def test_stale_socket_is_replaced_and_a_live_one_is_not(
    devserver: Any,
    bridge_factory: Factory,  # noqa: F811
    sock_dir: str,
) -> None:
    path = os.path.join(sock_dir, "admin.sock")
    _dead_socket(path)
    bridge_factory(devserver.url, devserver.token, "--admin-socket", path)
    assert admin(path, "PING") == "PONG"
    with pytest.raises(RuntimeError, match="another process"):
        start_bridge(sock_dir, devserver.url, devserver.token, "--admin-socket", path)
    assert admin(path, "PING") == "PONG"


def test_default_socket_under_the_runtime_directory(
    devserver: Any,
    bridge_factory: Factory,  # noqa: F811
    sock_dir: str,
) -> None:
    bridge_factory(devserver.url, devserver.token, env={"RUNTIME_DIRECTORY": sock_dir})
    path = os.path.join(sock_dir, "admin.sock")
    wait_until(lambda: os.path.exists(path))
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    # `resp-bridge admin` finds it the same way, without --socket.
    result = CliRunner(env={"RUNTIME_DIRECTORY": sock_dir}).invoke(main, ["admin", "ping"])
    assert result.exit_code == 0 and result.stdout.strip() == "PONG"


def test_clear_error_when_no_bridge_listens(sock_dir: str) -> None:
    missing = os.path.join(sock_dir, "nothing.sock")
    result = CliRunner().invoke(main, ["admin", "--socket", missing, "stats"])
    assert result.exit_code == 2
    assert "no bridge is listening on the admin socket" in result.stderr
    assert "no such socket" in result.stderr

    stale = os.path.join(sock_dir, "stale.sock")
    _dead_socket(stale)
    result = CliRunner().invoke(main, ["admin", "--socket", stale, "stats"])
    assert result.exit_code == 2 and "stale socket" in result.stderr


def test_admin_protocol_details(admin_bridge: tuple[BridgeProcess, str]) -> None:
    _, path = admin_bridge
    # Inline commands work (nc/socat), errors are RESP errors, HELLO switches to RESP3.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SETTLE_S)
        sock.connect(path)
        sock.sendall(b"PING\r\nFROB\r\nHELLO 3\r\nKILL x\r\n")
        data = b""
        while (
            data.count(b"\r\n") < 4 or not data.endswith(b"\r\n") or b"-ERR client id" not in data
        ):
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
        assert data.startswith(b"+PONG\r\n-ERR unknown admin command 'FROB'; try HELP\r\n%4\r\n")
        assert data.endswith(b"-ERR client id must be a number, got 'x'\r\n")
    # redis-cli keeps HELP for itself; COMMANDS is the admin list under another name.
    assert "KILL <id>" in redis_cli(path, "COMMANDS")
    assert "KILL <id>" in admin_text(path, "HELP")
