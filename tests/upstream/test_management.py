"""Database management against the emulation of both APIs (devserver/management_emulation.py).

Each Upstash developer API operation goes through `run_management` (the code behind the admin
socket's DB/TEAM and `resp-bridge db|team`), and the emulation records the request it got:
method, path, JSON body and Basic user are asserted here, and the emulation itself refuses
unknown fields, wrong types, wrong methods and wrong credentials. Redis Enterprise runs over
real TLS with a throw-away CA: verified with the CA file, refused without it, and accepted
with --insecure only with a warning. The CLI (`resp-bridge db`, `team`) is run too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from bridge.cli import main
from bridge.config import BridgeConfig
from bridge.devserver.management_emulation import EmulatorInfo, ManagementEmulator, serve_management
from bridge.upstream.management_ops import (
    MASK,
    ManagementError,
    ManagementUsageError,
    redact_secrets,
    run_management,
)

EMAIL = "ops@example.com"
API_KEY = "upstash-api-key-0123456789"
RE_USER = "admin@cluster.local"
RE_PASSWORD = "enterprise-password-98765"
#: Deadline of each test's management calls (all local).
CALL_TIMEOUT_S = 10.0


def _emulator(endpoint: str | None = None) -> ManagementEmulator:
    return ManagementEmulator(
        upstash_email=EMAIL,
        upstash_api_key=API_KEY,
        enterprise_user=RE_USER,
        enterprise_password=RE_PASSWORD,
        endpoint=endpoint,
    )


def upstash_config(url: str, **overrides: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "upstash_email": EMAIL,
        "upstash_api_key": API_KEY,
        "upstash_api_url": url,
    }
    values.update(overrides)
    return BridgeConfig(**values)


def enterprise_config(url: str, **overrides: Any) -> BridgeConfig:
    values: dict[str, Any] = {
        "enterprise_url": url,
        "enterprise_user": RE_USER,
        "enterprise_password": RE_PASSWORD,
    }
    values.update(overrides)
    return BridgeConfig(**values)


@pytest.fixture
async def upstash(nursery: trio.Nursery) -> tuple[ManagementEmulator, BridgeConfig]:
    emulator = _emulator()
    info: EmulatorInfo = await nursery.start(serve_management, emulator)
    return emulator, upstash_config(info.url)


async def run(config: BridgeConfig, *words: str, **kwargs: Any) -> Any:
    with trio.fail_after(CALL_TIMEOUT_S):
        return await run_management(config, list(words), **kwargs)


# -- Upstash developer API --------------------------------------------------------------------


async def test_create_regional_database(upstash: tuple[ManagementEmulator, BridgeConfig]) -> None:
    emulator, config = upstash
    result = await run(config, "DB", "CREATE", "myredis", "eu-west-1")
    request = emulator.last()
    assert (request.method, request.path, request.user) == (
        "POST",
        "/v2/redis/database",
        EMAIL,
    )
    assert request.body == {"name": "myredis", "region": "eu-west-1", "tls": True}
    assert request.content_type == "application/json"
    db = emulator.model.databases[result["database_id"]]
    assert result["database_name"] == "myredis" and result["region"] == "eu-west-1"
    # Credentials of the new database are masked by default...
    assert result["password"] == MASK and result["rest_token"] == MASK
    assert result["read_only_rest_token"] == MASK
    assert db["password"] not in repr(result) and db["rest_token"] not in repr(result)
    # ...and given only on explicit request.
    shown = await run(config, "DB", "INFO", result["database_id"], show_secrets=True)
    assert shown["rest_token"] == db["rest_token"]

    await run(config, "DB", "CREATE", "plain", "us-east-1", "notls")
    assert emulator.last().body == {"name": "plain", "region": "us-east-1", "tls": False}


async def test_create_global_database_and_update_regions(
    upstash: tuple[ManagementEmulator, BridgeConfig],
) -> None:
    emulator, config = upstash
    result = await run(config, "DB", "CREATE-GLOBAL", "glob", "us-east-1", "us-west-1", "us-west-2")
    assert emulator.last().body == {
        "name": "glob",
        "region": "global",
        "primary_region": "us-east-1",
        "read_regions": ["us-west-1", "us-west-2"],
        "tls": True,
    }
    assert result["region"] == "global"
    db_id = result["database_id"]

    assert await run(config, "DB", "READ-REGIONS", db_id, "eu-west-1") == "OK"
    request = emulator.last()
    assert (request.method, request.path) == ("POST", f"/v2/redis/update-regions/{db_id}")
    assert request.body == {"read_regions": ["eu-west-1"]}
    assert emulator.model.databases[db_id]["read_regions"] == ["eu-west-1"]

    with pytest.raises(ManagementUsageError, match="CREATE-GLOBAL"):
        await run(config, "DB", "CREATE", "bad", "global")


async def test_list_get_stats(upstash: tuple[ManagementEmulator, BridgeConfig]) -> None:
    emulator, config = upstash
    first = await run(config, "DB", "CREATE", "one", "eu-west-1")
    await run(config, "DB", "CREATE", "two", "us-west-1")

    rows = await run(config, "DB", "LIST")
    assert emulator.last().method == "GET" and emulator.last().path == "/v2/redis/databases"
    assert emulator.last().body is None
    assert [r["database_name"] for r in rows] == ["one", "two"]
    assert all("password" not in r and "rest_token" not in r for r in rows)

    info = await run(config, "db", "info", first["database_id"])
    assert emulator.last().path == f"/v2/redis/database/{first['database_id']}"
    assert info["db_max_clients"] == 1000 and info["password"] == MASK

    stats = await run(config, "DB", "STATS", first["database_id"])
    assert (emulator.last().method, emulator.last().path) == (
        "GET",
        f"/v2/redis/stats/{first['database_id']}",
    )
    # The latest point of each series, scalars kept.
    assert stats["keyspace"] == 12 and stats["total_monthly_requests"] == 220
    assert "produce_throughput" not in stats


async def test_rename_tls_eviction_autoupgrade(
    upstash: tuple[ManagementEmulator, BridgeConfig],
) -> None:
    emulator, config = upstash
    db_id = (await run(config, "DB", "CREATE", "old", "eu-west-1", "notls"))["database_id"]

    renamed = await run(config, "DB", "RENAME", db_id, "new-name")
    assert emulator.last().path == f"/v2/redis/rename/{db_id}"
    assert emulator.last().body == {"name": "new-name"}
    assert renamed["database_name"] == "new-name"

    enabled = await run(config, "DB", "ENABLE-TLS", db_id)
    assert (emulator.last().method, emulator.last().path) == (
        "POST",
        f"/v2/redis/enable-tls/{db_id}",
    )
    assert emulator.last().body is None and enabled["tls"] is True

    for words, path, state in (
        (("EVICTION", db_id, "on"), f"/v2/redis/enable-eviction/{db_id}", True),
        (("EVICTION", db_id, "off"), f"/v2/redis/disable-eviction/{db_id}", False),
        (("AUTO-UPGRADE", db_id, "ON"), f"/v2/redis/enable-autoupgrade/{db_id}", True),
        (("AUTO-UPGRADE", db_id, "OFF"), f"/v2/redis/disable-autoupgrade/{db_id}", False),
    ):
        assert await run(config, "DB", *words) == "OK"
        assert (emulator.last().method, emulator.last().path) == ("POST", path)
        table = emulator.model.eviction if words[0] == "EVICTION" else emulator.model.auto_upgrade
        assert table[db_id] is state

    with pytest.raises(ManagementUsageError, match="on or off"):
        await run(config, "DB", "EVICTION", db_id, "maybe")


async def test_reset_password_and_delete_need_confirmation(
    upstash: tuple[ManagementEmulator, BridgeConfig],
) -> None:
    emulator, config = upstash
    db_id = (await run(config, "DB", "CREATE", "victim", "eu-west-1"))["database_id"]
    old_token = emulator.model.databases[db_id]["rest_token"]
    sent = len(emulator.requests)

    with pytest.raises(ManagementUsageError, match="CONFIRM"):
        await run(config, "DB", "RESET-PASSWORD", db_id)
    with pytest.raises(ManagementUsageError, match="CONFIRM"):
        await run(config, "DB", "DELETE", db_id)
    assert len(emulator.requests) == sent, "nothing may be sent without confirmation"

    result = await run(config, "DB", "RESET-PASSWORD", db_id, "CONFIRM")
    assert (emulator.last().method, emulator.last().path) == (
        "POST",
        f"/v2/redis/reset-password/{db_id}",
    )
    assert emulator.model.databases[db_id]["rest_token"] != old_token
    assert result["rest_token"] == MASK

    assert await run(config, "DB", "DELETE", db_id, confirmed=True) == "OK"
    assert (emulator.last().method, emulator.last().path) == (
        "DELETE",
        f"/v2/redis/database/{db_id}",
    )
    assert db_id not in emulator.model.databases


async def test_teams_members_and_move(upstash: tuple[ManagementEmulator, BridgeConfig]) -> None:
    emulator, config = upstash
    team = await run(config, "TEAM", "CREATE", "platform", "on")
    assert (emulator.last().method, emulator.last().path) == ("POST", "/v2/team")
    assert emulator.last().body == {"team_name": "platform", "copy_cc": True}
    team_id = team["team_id"]

    teams = await run(config, "TEAM", "LIST")
    assert emulator.last().path == "/v2/teams"
    assert [t["team_name"] for t in teams] == ["platform"]

    added = await run(config, "TEAM", "ADD-MEMBER", team_id, "dev@example.com", "dev")
    assert (emulator.last().method, emulator.last().path) == ("POST", "/v2/teams/member")
    assert emulator.last().body == {
        "team_id": team_id,
        "member_email": "dev@example.com",
        "member_role": "dev",
    }
    assert added["member_role"] == "dev"
    with pytest.raises(ManagementUsageError, match="admin, dev or finance"):
        await run(config, "TEAM", "ADD-MEMBER", team_id, "x@example.com", "owner")

    members = await run(config, "TEAM", "MEMBERS", team_id)
    assert emulator.last().path == f"/v2/teams/{team_id}"
    assert {m["member_email"]: m["member_role"] for m in members} == {
        EMAIL: "owner",
        "dev@example.com": "dev",
    }

    db_id = (await run(config, "DB", "CREATE", "moving", "eu-west-1"))["database_id"]
    assert await run(config, "DB", "MOVE", db_id, team_id) == "OK"
    assert (emulator.last().method, emulator.last().path) == ("POST", "/v2/redis/move-to-team")
    assert emulator.last().body == {"team_id": team_id, "database_id": db_id}

    await run(config, "TEAM", "REMOVE-MEMBER", team_id, "dev@example.com", "CONFIRM")
    assert (emulator.last().method, emulator.last().path) == ("DELETE", "/v2/teams/member")
    assert emulator.last().body == {"team_id": team_id, "member_email": "dev@example.com"}

    await run(config, "TEAM", "DELETE", team_id, "CONFIRM")
    assert (emulator.last().method, emulator.last().path) == ("DELETE", f"/v2/team/{team_id}")
    assert team_id not in emulator.model.teams


async def test_errors_are_clear_and_carry_no_credentials(
    upstash: tuple[ManagementEmulator, BridgeConfig],
) -> None:
    emulator, config = upstash

    wrong = dataclasses.replace(config, upstash_api_key="not-the-key-at-all")
    with pytest.raises(ManagementError) as caught:
        await run(wrong, "DB", "LIST")
    assert caught.value.status == 401
    assert "HTTP 401 unauthorized" in str(caught.value) and "UPSTASH_API_KEY" in str(caught.value)
    assert "not-the-key-at-all" not in str(caught.value)

    with pytest.raises(ManagementError) as caught:
        await run(config, "DB", "INFO", "no-such-id")
    assert caught.value.status == 404
    assert "HTTP 404 not found" in str(caught.value) and "database not found" in str(caught.value)

    for status, said, meaning in (
        (429, "Too many requests, slow down", "rate limited"),
        (500, "internal failure", "retry later"),
        (403, "not allowed for your plan", "forbidden"),
        (400, "invalid region", "bad request"),
    ):
        emulator.fail_next(status, said)
        with pytest.raises(ManagementError) as caught:
            await run(config, "DB", "LIST")
        message = str(caught.value)
        assert caught.value.status == status
        assert f"HTTP {status}" in message and meaning in message and said in message
        assert API_KEY not in message

    # The emulation itself enforces the documented shapes.
    emulator.fail_next(400, {"error": "bad things"})
    with pytest.raises(ManagementError, match="bad things"):
        await run(config, "TEAM", "LIST")

    unreachable = dataclasses.replace(config, upstash_api_url="http://127.0.0.1:9")
    with pytest.raises(ManagementError) as caught:
        await run(unreachable, "DB", "LIST")
    assert caught.value.kind == "unavailable" and "cannot reach" in str(caught.value)


async def test_usage_errors(upstash: tuple[ManagementEmulator, BridgeConfig]) -> None:
    emulator, config = upstash
    sent = len(emulator.requests)
    for words, pattern in (
        (("DB", "FROB"), "unknown operation DB FROB"),
        (("DB", "RENAME", "only-id"), "name missing"),
        (("DB", "INFO", "a", "b"), "unexpected argument"),
        (("DB", "CLUSTER"), "not available for upstash"),
        (("DB", "ENTERPRISE", "LIST"), "enterprise_url"),
    ):
        with pytest.raises(ManagementUsageError, match=pattern):
            await run(config, *words)
    with pytest.raises(ManagementUsageError, match="no management API is configured"):
        await run(BridgeConfig(), "DB", "LIST")
    assert len(emulator.requests) == sent


def test_redaction_by_key() -> None:
    value = {
        "password": "p",
        "nested": [{"rest_token": "t", "authentication_redis_pass": "x", "name": "keep"}],
        "api_key": None,
    }
    assert redact_secrets(value) == {
        "password": MASK,
        "nested": [{"rest_token": MASK, "authentication_redis_pass": MASK, "name": "keep"}],
        "api_key": None,
    }


# -- Redis Enterprise REST API over TLS -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it (openssl CLI)."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=resp-bridge test CA")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "ext.cnf")  # fmt: skip
    return TlsFiles(str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key"))


@pytest.fixture
async def enterprise(nursery: trio.Nursery, tls_files: TlsFiles) -> tuple[ManagementEmulator, str]:
    emulator = _emulator()
    info: EmulatorInfo = await nursery.start(
        functools.partial(serve_management, emulator, ssl_context=tls_files.server_context())
    )
    assert info.url.startswith("https://")
    return emulator, info.url


async def test_enterprise_list_get_with_ca_file(
    enterprise: tuple[ManagementEmulator, str], tls_files: TlsFiles
) -> None:
    emulator, url = enterprise
    config = enterprise_config(url, enterprise_ca_file=tls_files.ca)

    rows = await run(config, "DB", "LIST")
    request = emulator.last()
    assert (request.method, request.path, request.user) == ("GET", "/v1/bdbs", RE_USER)
    assert rows == [
        {"uid": 1, "name": "db1", "type": "redis", "status": "active",
         "memory_size": 1024**3, "port": 12001, "shards_count": 1, "version": "7.2.4"},
    ]  # fmt: skip

    picked = await run(config, "DB", "LIST", "uid,name")
    assert emulator.last().query == {"fields": "uid,name"}
    assert picked == [{"uid": 1, "name": "db1"}]

    info = await run(config, "DB", "INFO", "1")
    assert emulator.last().path == "/v1/bdbs/1"
    assert info["name"] == "db1" and info["authentication_redis_pass"] == MASK
    assert await run(config, "DB", "INFO", "1", "name,port") == {"name": "db1", "port": 12001}

    with pytest.raises(ManagementError) as caught:
        await run(config, "DB", "INFO", "42")
    assert caught.value.status == 404 and "db_not_exist" in str(caught.value)


async def test_enterprise_create_stats_cluster_delete(
    enterprise: tuple[ManagementEmulator, str], tls_files: TlsFiles
) -> None:
    emulator, url = enterprise
    config = enterprise_config(url, enterprise_ca_file=tls_files.ca)
    # The provider is chosen explicitly here (it is also the default: no Upstash credentials).
    created = await run(config, "DB", "ENTERPRISE", "CREATE", "cache", "256M")
    assert (emulator.last().method, emulator.last().path) == ("POST", "/v1/bdbs")
    assert emulator.last().body == {"name": "cache", "type": "redis", "memory_size": 256 * 2**20}
    assert emulator.last().content_type == "application/json"
    uid = str(created["uid"])

    stats = await run(config, "DB", "STATS", uid)
    assert emulator.last().path == f"/v1/bdbs/stats/{uid}"
    assert stats["uid"] == uid and stats["no_of_keys"] == 10

    cluster = await run(config, "DB", "CLUSTER")
    assert emulator.last().path == "/v1/cluster" and cluster["name"] == "cluster.local"
    nodes = await run(config, "DB", "NODES")
    assert emulator.last().path == "/v1/nodes" and nodes[0]["status"] == "active"

    with pytest.raises(ManagementError) as caught:
        await run(config, "DB", "CREATE", "cache", "1G")
    assert caught.value.status == 409 and "name_conflict" in str(caught.value)

    assert await run(config, "DB", "DELETE", uid, "CONFIRM") == "OK"
    assert (emulator.last().method, emulator.last().path) == ("DELETE", f"/v1/bdbs/{uid}")
    assert int(uid) not in emulator.model.bdbs

    with pytest.raises(ManagementUsageError, match="not available for enterprise"):
        await run(config, "DB", "RENAME", "1", "x")


async def test_enterprise_versioned_create(
    enterprise: tuple[ManagementEmulator, str], tls_files: TlsFiles
) -> None:
    from bridge.upstream.enterprise_api import EnterpriseAPI

    emulator, url = enterprise
    async with EnterpriseAPI(
        url, RE_USER, RE_PASSWORD, ca_file=tls_files.ca, api_version="v2"
    ) as client:
        with trio.fail_after(CALL_TIMEOUT_S):
            created = await client.create_database("v2db", 1024)
    assert (emulator.last().method, emulator.last().path) == ("POST", "/v2/bdbs")
    assert emulator.last().body == {"bdb": {"name": "v2db", "type": "redis", "memory_size": 1024}}
    assert created["name"] == "v2db"

    emulator.fail_next(505, {"error_code": "unsupported_version", "description": "v9"})
    config = enterprise_config(url, enterprise_ca_file=tls_files.ca)
    with pytest.raises(ManagementError, match="HTTP 505 HTTP version not supported"):
        await run(config, "DB", "LIST")


async def test_enterprise_tls_verification(
    enterprise: tuple[ManagementEmulator, str],
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, url = enterprise

    # No CA given: the self-signed chain is refused, with what to do about it.
    with pytest.raises(ManagementError) as caught:
        await run(enterprise_config(url), "DB", "LIST")
    assert caught.value.kind == "tls"
    assert "--ca-file" in str(caught.value) and "--insecure" in str(caught.value)

    # --insecure works, and says loudly that it is insecure.
    caplog.set_level(logging.WARNING, logger="bridge.management")
    rows = await run(enterprise_config(url, enterprise_insecure=True), "DB", "LIST")
    assert rows[0]["name"] == "db1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("verification" in w and "OFF" in w for w in warnings), warnings

    # Wrong password: 401 with the setting to check, never the password itself.
    wrong = enterprise_config(url, enterprise_ca_file=tls_files.ca, enterprise_password="nope-nope")
    with pytest.raises(ManagementError) as caught:
        await run(wrong, "DB", "LIST")
    assert caught.value.status == 401 and "enterprise_password" in str(caught.value)
    assert "nope-nope" not in str(caught.value)

    with pytest.raises(ManagementError, match="cannot load"):
        await run(enterprise_config(url, enterprise_ca_file=__file__), "DB", "LIST")


# -- the CLI: resp-bridge db / team -----------------------------------------------------------


@dataclasses.dataclass
class ThreadedEmulator:
    """The emulation served by trio in a thread, for synchronous callers (CLI, subprocesses)."""

    emulator: ManagementEmulator
    url: str
    _stop: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._stop()
        self._thread.join(10)


def start_threaded_emulator(
    ssl_context: ssl.SSLContext | None = None, endpoint: str | None = None
) -> ThreadedEmulator:
    emulator = _emulator(endpoint)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            box["info"] = await nursery.start(
                functools.partial(serve_management, emulator, ssl_context=ssl_context)
            )
            box["scope"] = nursery.cancel_scope
            box["token"] = trio.lowlevel.current_trio_token()
            ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(10), "the emulation did not start"

    def stop() -> None:
        trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])

    return ThreadedEmulator(emulator, box["info"].url, stop, thread)


@pytest.fixture
def threaded_emulator() -> Iterator[ThreadedEmulator]:
    served = start_threaded_emulator()
    try:
        yield served
    finally:
        served.stop()


def test_cli_db_and_team(threaded_emulator: ThreadedEmulator, tmp_path: Path) -> None:
    env = {"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": API_KEY}
    runner = CliRunner(env=env)
    base = ["--upstash-api-url", threaded_emulator.url]

    created = runner.invoke(main, ["db", *base, "--json", "create", "cli-db", "eu-west-1"])
    assert created.exit_code == 0, created.output
    assert API_KEY not in created.output and MASK in created.output
    db_id = json.loads(created.stdout)["database_id"]
    assert db_id in threaded_emulator.emulator.model.databases

    listed = runner.invoke(main, ["db", *base, "list"])
    assert listed.exit_code == 0, listed.output
    header = listed.stdout.splitlines()[0]
    assert header.split()[:3] == ["DATABASE_ID", "DATABASE_NAME", "REGION"]
    assert "cli-db" in listed.stdout

    refused = runner.invoke(main, ["db", *base, "delete", db_id])
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    deleted = runner.invoke(main, ["db", *base, "--yes", "delete", db_id])
    assert deleted.exit_code == 0 and deleted.stdout.strip() == "OK"

    missing = runner.invoke(main, ["db", *base, "info", db_id])
    assert missing.exit_code == 1 and "HTTP 404" in missing.stderr

    team = runner.invoke(main, ["team", *base, "--json", "create", "cli-team"])
    assert team.exit_code == 0, team.output
    assert threaded_emulator.emulator.last().body == {"team_name": "cli-team", "copy_cc": False}

    no_key = CliRunner(env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": ""})
    result = no_key.invoke(main, ["db", *base, "list"])
    assert result.exit_code == 2 and "upstash_api_key not set" in result.stderr

    helped = runner.invoke(main, ["db", "help"])
    assert helped.exit_code == 0 and "DB RESET-PASSWORD <id> CONFIRM" in helped.stdout


def test_cli_enterprise_ca_file_and_insecure(tls_files: TlsFiles) -> None:
    served = start_threaded_emulator(tls_files.server_context())
    try:
        runner = CliRunner(
            env={
                "REDIS_ENTERPRISE_PASSWORD": RE_PASSWORD,
                "UPSTASH_EMAIL": None,
                "UPSTASH_API_KEY": None,
            }
        )
        base = ["db", "--enterprise-url", served.url, "--enterprise-user", RE_USER]

        verified = runner.invoke(main, [*base, "--ca-file", tls_files.ca, "list"])
        assert verified.exit_code == 0, verified.output
        assert "db1" in verified.stdout and "warning" not in verified.stderr.lower()

        refused = runner.invoke(main, [*base, "info", "1"])
        assert refused.exit_code == 1
        assert "not trusted" in refused.stderr and "--ca-file" in refused.stderr

        insecure = runner.invoke(main, [*base, "--insecure", "--json", "info", "1"])
        assert insecure.exit_code == 0, insecure.output
        assert json.loads(insecure.stdout)["name"] == "db1"
        assert "WARNING" in insecure.stderr and "OFF (--insecure)" in insecure.stderr
        assert RE_PASSWORD not in insecure.output
    finally:
        served.stop()
