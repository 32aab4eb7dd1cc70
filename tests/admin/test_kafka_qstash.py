"""Kafka and QStash management end to end: `resp-bridge kafka|qstash` and the admin socket's
`KAFKA` / `QSTASH` against the devserver's management emulation.

One emulation (served by trio in a thread, so the requests it got can be asserted: method,
path, exact JSON body) and one real bridge process with an admin socket pointed at it serve the
whole module. Every endpoint is driven twice, through the command line (in-process click) and
through the admin socket (the bridge process calls the API), with the same scenario; then
the error cases (bad credentials, unknown ids, missing or bad arguments, refused fields,
unconfirmed destructive operations) and the redaction. The devserver's own
`--management-port` is checked to serve the same endpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bridge.admin_cli import AdminClient, AdminCommandError
from bridge.cli import main
from bridge.upstream.management_ops import (
    MASK,
    OPERATIONS,
    ManagementUsageError,
    parse_command,
    redact_secrets,
)
from tests.admin.test_db_use import management_url
from tests.e2e.conftest import BridgeProcess, start_bridge
from tests.upstream.test_management import (
    API_KEY,
    EMAIL,
    ThreadedEmulator,
    start_threaded_emulator,
)

ENV = {"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": API_KEY}
#: A connector credential that must never be printed unless asked for.
MONGO_PASSWORD = "mongo-pass-4711-secret"


class Refused(Exception):
    """The command failed: the CLI's exit code (1 API, 2 usage) or 1 for an error reply."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Setup:
    served: ThreadedEmulator
    bridge: BridgeProcess
    socket: str

    @property
    def emulator(self) -> Any:
        return self.served.emulator

    @property
    def model(self) -> Any:
        return self.served.emulator.kafka_qstash.model


@pytest.fixture(scope="module")
def setup(devserver: Any) -> Iterator[Setup]:
    served = start_threaded_emulator()
    tmp = tempfile.mkdtemp(prefix="rb-kq-", dir="/tmp")  # unix socket paths are short
    path = os.path.join(tmp, "admin.sock")
    try:
        bridge = start_bridge(
            tmp, devserver.url, devserver.token, "--admin-socket", path,
            "--upstash-api-url", served.url, env=ENV,
        )  # fmt: skip
        try:
            yield Setup(served, bridge, path)
        finally:
            bridge.stop()
    finally:
        served.stop()
        shutil.rmtree(tmp, ignore_errors=True)


Driver = Callable[..., Any]


def cli_driver(setup: Setup, env: dict[str, str] = ENV) -> Driver:
    def run(group: str, *words: str, yes: bool = False, show_secrets: bool = False) -> Any:
        args = [group.lower(), "--upstash-api-url", setup.served.url, "--json"]
        args += ["--yes"] * yes + ["--show-secrets"] * show_secrets
        result = CliRunner(env=env).invoke(main, [*args, *words])
        if result.exit_code != 0:
            raise Refused(result.stderr, result.exit_code)
        return json.loads(result.stdout)

    return run


def admin_driver(setup: Setup) -> Driver:
    def run(group: str, *words: str, yes: bool = False) -> Any:
        with AdminClient(setup.socket) as client:
            try:
                return client.call(group, *words, *(["CONFIRM"] if yes else []))
            except AdminCommandError as exc:
                raise Refused(str(exc), 1) from None

    return run


@pytest.fixture(params=["cli", "admin"])
def drive(request: pytest.FixtureRequest, setup: Setup) -> Driver:
    return cli_driver(setup) if request.param == "cli" else admin_driver(setup)


def sent(setup: Setup) -> tuple[str, str, Any]:
    request = setup.emulator.last()
    assert request.user == EMAIL
    return request.method, request.path, request.body


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- every endpoint, through both doors -------------------------------------------------------


def test_clusters(setup: Setup, drive: Driver) -> None:
    name = unique("events")
    created = drive("KAFKA", "cluster", "create", name, "eu-west-1", "multizone")
    assert sent(setup) == (
        "POST", "/v2/kafka/cluster", {"name": name, "region": "eu-west-1", "multizone": True}
    )  # fmt: skip
    cluster_id = created["cluster_id"]
    record = setup.model.clusters[cluster_id]
    assert created["name"] == name and created["tcp_endpoint"] == record["tcp_endpoint"]
    assert created["password"] == MASK and record["password"] not in json.dumps(created)

    listed = drive("KAFKA", "CLUSTER", "LIST")
    assert sent(setup) == ("GET", "/v2/kafka/clusters", None)
    row = next(r for r in listed if r["cluster_id"] == cluster_id)
    assert row["region"] == "eu-west-1" and row["multizone"] is True and "password" not in row

    info = drive("KAFKA", "cluster", "info", cluster_id)
    assert sent(setup) == ("GET", f"/v2/kafka/cluster/{cluster_id}", None)
    assert info["max_partitions"] == 100 and info["password"] == MASK

    renamed = drive("KAFKA", "cluster", "rename", cluster_id, name + "-2")
    assert sent(setup) == ("POST", f"/v2/kafka/rename-cluster/{cluster_id}", {"name": name + "-2"})
    assert renamed["name"] == name + "-2" == record["name"]

    old_password = record["password"]
    before = len(setup.emulator.requests)
    with pytest.raises(Refused) as refused:
        drive("KAFKA", "cluster", "reset-password", cluster_id)
    assert "destructive" in refused.value.message and len(setup.emulator.requests) == before
    reset = drive("KAFKA", "cluster", "reset-password", cluster_id, yes=True)
    assert sent(setup) == ("POST", f"/v2/kafka/reset-password/{cluster_id}", None)
    assert record["password"] != old_password and reset["password"] == MASK

    single = drive("KAFKA", "cluster", "create", unique("single"), "us-east-1")
    assert sent(setup)[2]["multizone"] is False and single["region"] == "us-east-1"

    with pytest.raises(Refused):
        drive("KAFKA", "cluster", "delete", cluster_id)
    assert cluster_id in setup.model.clusters
    assert drive("KAFKA", "cluster", "delete", cluster_id, yes=True) == "OK"
    assert sent(setup) == ("DELETE", f"/v2/kafka/cluster/{cluster_id}", None)
    assert cluster_id not in setup.model.clusters


def new_cluster(drive: Driver) -> str:
    return str(drive("KAFKA", "cluster", "create", unique("c"), "eu-west-1")["cluster_id"])


def test_topics_and_stats(setup: Setup, drive: Driver) -> None:
    cluster_id = new_cluster(drive)
    created = drive(
        "KAFKA", "topic", "create", cluster_id, "orders", "2", "retention_time=7d",
        "cleanup_policy=compact",
    )  # fmt: skip
    # Every field of the reference's body, the omitted settings as -1 (highest possible).
    assert sent(setup) == ("POST", "/v2/kafka/topic", {
        "name": "orders", "partitions": 2, "retention_time": 7 * 86_400_000,
        "retention_size": -1, "max_message_size": -1, "cleanup_policy": "compact",
        "cluster_id": cluster_id,
    })  # fmt: skip
    topic_id = created["topic_id"]
    assert created["topic_name"] == "orders" and created["cleanup_policy"] == "compact"
    assert created["retention_size"] == 1073741824000  # -1: the cluster's maximum
    assert created["password"] == MASK  # topics answer with the cluster's credentials

    drive("KAFKA", "topic", "create", cluster_id, "audit", "1", "retention_size=512M",
          "max_message_size=1048576", "retention_time=-1")  # fmt: skip
    assert sent(setup)[2] == {
        "name": "audit", "partitions": 1, "retention_time": -1, "retention_size": 512 * 2**20,
        "max_message_size": 1048576, "cleanup_policy": "delete", "cluster_id": cluster_id,
    }  # fmt: skip

    topics = drive("KAFKA", "topic", "list", cluster_id)
    assert sent(setup) == ("GET", f"/v2/kafka/topics/{cluster_id}", None)
    assert [t["topic_name"] for t in topics] == ["orders", "audit"]

    info = drive("KAFKA", "topic", "info", topic_id)
    assert sent(setup) == ("GET", f"/v2/kafka/topic/{topic_id}", None)
    assert info["cluster_id"] == cluster_id and info["partitions"] == 2

    changed = drive("KAFKA", "topic", "reconfigure", topic_id, "retention_size=10M")
    assert sent(setup) == (
        "POST", f"/v2/kafka/update-topic/{topic_id}", {"retention_size": 10 * 2**20}
    )  # fmt: skip
    assert changed["retention_size"] == 10 * 2**20 and changed["retention_time"] == 604800000

    stats = drive("KAFKA", "stats", "cluster", cluster_id)
    assert sent(setup) == ("GET", f"/v2/kafka/stats/cluster/{cluster_id}", None)
    assert stats["total_monthly_billing"] == 0 and stats["throughput"] == 0
    assert len(stats["days"].split(", ")) == 5
    topic_stats = drive("KAFKA", "stats", "topic", topic_id)
    assert sent(setup) == ("GET", f"/v2/kafka/stats/topic/{topic_id}", None)
    assert set(topic_stats) == {
        "throughput", "produce_throughput", "consume_throughput", "diskusage",
        "total_monthly_storage", "total_monthly_produce", "total_monthly_consume",
    }  # fmt: skip

    assert drive("KAFKA", "topic", "delete", topic_id, yes=True) == "OK"
    assert sent(setup) == ("DELETE", f"/v2/kafka/topic/{topic_id}", None)
    assert topic_id not in setup.model.topics


def test_credentials(setup: Setup, drive: Driver) -> None:
    cluster_id = new_cluster(drive)
    name = unique("cred")
    created = drive("KAFKA", "credential", "create", cluster_id, name, "orders", "produce")
    assert sent(setup) == ("POST", "/v2/kafka/credential", {
        "credential_name": name, "cluster_id": cluster_id, "topic": "orders",
        "permissions": "PRODUCE",
    })  # fmt: skip
    credential_id = created["credential_id"]
    password = setup.model.credentials[credential_id]["password"]
    assert created["password"] == MASK and password not in json.dumps(created)
    assert created["permissions"] == "PRODUCE" and created["state"] == "active"

    listed = drive("KAFKA", "credential", "list")
    assert sent(setup) == ("GET", "/v2/kafka/credentials", None)
    row = next(r for r in listed if r["credential_id"] == credential_id)
    assert row["credential_name"] == name and "password" not in row

    assert drive("KAFKA", "credential", "delete", credential_id, yes=True) == "OK"
    assert sent(setup) == ("DELETE", f"/v2/kafka/credential/{credential_id}", None)
    assert credential_id not in setup.model.credentials


def test_connectors(setup: Setup, drive: Driver) -> None:
    cluster_id = new_cluster(drive)
    uri = f"mongodb://app:{MONGO_PASSWORD}@mongo.example:27017"
    created = drive(
        "KAFKA", "connector", "create", cluster_id, "mongo",
        "connector.class=com.mongodb.kafka.connect.MongoSourceConnector",
        f"connection.uri={uri}", "topics=orders,audit",
    )  # fmt: skip
    assert sent(setup) == ("POST", "/v2/kafka/connector", {
        "name": "mongo", "cluster_id": cluster_id, "properties": {
            "connector.class": "com.mongodb.kafka.connect.MongoSourceConnector",
            "connection.uri": uri, "topics": "orders,audit",
        },
    })  # fmt: skip
    connector_id = created["connector_id"]
    assert created["state"] == "pending" and created["topics"] == ["orders", "audit"]
    assert "TTL" in created and "properties" not in created  # the reference's create answer

    listed = drive("KAFKA", "connector", "list", cluster_id)
    assert sent(setup) == ("GET", f"/v2/kafka/connectors/{cluster_id}", None)
    assert [c["name"] for c in listed] == ["mongo"] and listed[0]["state"] == "running"

    info = drive("KAFKA", "connector", "info", connector_id)
    assert sent(setup) == ("GET", f"/v2/kafka/connector/{connector_id}", None)
    # The credential inside the connection string is masked, the rest of it kept.
    assert info["properties"]["connection.uri"] == f"mongodb://app:{MASK}@mongo.example:27017"
    assert MONGO_PASSWORD not in json.dumps(info)

    changed = drive(
        "KAFKA", "connector", "reconfigure", connector_id,
        '{"connection.password": "rotated-password-1", "batch.size": 100}',
    )  # fmt: skip
    # The properties are the body itself, as in the reference's example.
    assert sent(setup) == (
        "POST", f"/v2/kafka/update-connector/{connector_id}",
        {"connection.password": "rotated-password-1", "batch.size": 100},
    )  # fmt: skip
    assert changed["connector_id"] == connector_id
    stored = setup.model.connectors[connector_id]["properties"]
    assert stored["connection.password"] == "rotated-password-1" and stored["batch.size"] == 100

    for action, state in (("pause", "paused"), ("start", "running"), ("restart", "running")):
        assert drive("KAFKA", "connector", action, connector_id) == "OK"
        assert sent(setup) == ("POST", f"/v2/kafka/connector/{connector_id}/{action}", None)
        assert setup.model.connectors[connector_id]["state"] == state

    again = drive("KAFKA", "connector", "info", connector_id)
    assert again["properties"]["connection.password"] == MASK
    assert "rotated-password-1" not in json.dumps(again)

    assert drive("KAFKA", "connector", "delete", connector_id, yes=True) == "OK"
    assert sent(setup) == ("DELETE", f"/v2/kafka/connector/{connector_id}", None)
    assert connector_id not in setup.model.connectors


def test_qstash(setup: Setup, drive: Driver) -> None:
    user = drive("QSTASH", "user")
    assert sent(setup) == ("GET", "/v2/qstash/user", None)
    record = setup.model.qstash_user
    assert user["customer_id"] == EMAIL and user["max_topics"] == 20
    assert user["token"] == MASK and user["password"] == MASK
    assert record["token"] not in json.dumps(user)

    old = record["token"]
    before = len(setup.emulator.requests)
    with pytest.raises(Refused) as refused:
        drive("QSTASH", "rotate-token")
    assert "CONFIRM" in refused.value.message and len(setup.emulator.requests) == before
    rotated = drive("QSTASH", "ROTATE-TOKEN", yes=True)
    assert sent(setup) == ("POST", "/v2/qstash/rotate-token", None)
    assert record["token"] != old and rotated["token"] == MASK


# -- errors -----------------------------------------------------------------------------------


def test_unknown_ids_and_refused_values(setup: Setup, drive: Driver) -> None:
    missing = str(uuid.uuid4())
    for words, text in (
        (("cluster", "info", missing), "kafka cluster not found"),
        (("topic", "reconfigure", missing, "retention_time=1s"), "kafka topic not found"),
        (("connector", "pause", missing), "kafka connector not found"),
        (("topic", "create", missing, "t", "1"), "kafka cluster not found"),
    ):
        with pytest.raises(Refused) as refused:
            drive("KAFKA", *words)
        message = refused.value.message
        assert "HTTP 404 not found" in message and text in message, message
        assert refused.value.code == 1
    # Enums the API checks: the emulation answers 400 with its reason.
    with pytest.raises(Refused) as refused:
        drive("KAFKA", "cluster", "create", unique("x"), "ap-south-1")
    assert "HTTP 400 bad request" in refused.value.message
    assert "invalid region" in refused.value.message


def test_usage_errors_send_nothing(setup: Setup, drive: Driver) -> None:
    cluster_id = new_cluster(drive)
    before = len(setup.emulator.requests)
    for words, text in (
        (("cluster",), "which operation"),
        (("queue", "list"), "unknown KAFKA object QUEUE"),
        (("cluster", "frob"), "unknown operation KAFKA CLUSTER FROB"),
        (("topic", "create", cluster_id, "t"), "partitions missing"),
        (("topic", "create", cluster_id, "t", "0"), "partitions: expected a positive number"),
        (("topic", "create", cluster_id, "t", "1", "cleanup_policy=forever"), "compact"),
        (("topic", "create", cluster_id, "t", "1", "retention_time=soon"), "retention_time"),
        (("topic", "reconfigure", str(uuid.uuid4())), "nothing to change"),
        (("credential", "create", cluster_id, "n", "t", "write"), "ALL or PRODUCE or CONSUME"),
        (("connector", "create", cluster_id, "n"), "property=value missing"),
        (("connector", "create", cluster_id, "n", "no-equals-sign"), "expected key=value"),
        (("cluster", "info", "a", "b"), "unexpected argument"),
    ):
        with pytest.raises(Refused) as refused:
            drive("KAFKA", *words)
        assert text in refused.value.message, (words, refused.value.message)
    assert len(setup.emulator.requests) == before, "a usage error must not reach the API"


def test_api_errors_are_explained(setup: Setup, drive: Driver) -> None:
    for status, said, meaning in (
        (401, "Unauthorized", "UPSTASH_API_KEY"),
        (403, "not allowed for your plan", "forbidden"),
        (429, "slow down", "rate limited"),
        (500, "internal failure", "retry later"),
        (503, "maintenance", "retry later"),
    ):
        setup.emulator.fail_next(status, said)
        with pytest.raises(Refused) as refused:
            drive("QSTASH", "user")
        message = refused.value.message
        assert f"HTTP {status}" in message and meaning in message and said in message
        assert API_KEY not in message


def test_cli_bad_credentials_and_show_secrets(setup: Setup) -> None:
    wrong = cli_driver(setup, env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": "wrong-key-123"})
    with pytest.raises(Refused) as refused:
        wrong("KAFKA", "cluster", "list")
    assert refused.value.code == 1 and "HTTP 401 unauthorized" in refused.value.message
    assert "UPSTASH_API_KEY" in refused.value.message
    assert "wrong-key-123" not in refused.value.message

    no_key = cli_driver(setup, env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": ""})
    with pytest.raises(Refused) as refused:
        no_key("QSTASH", "user")
    assert refused.value.code == 2 and "upstash_api_key not set" in refused.value.message

    drive = cli_driver(setup)
    cluster_id = new_cluster(drive)
    shown = drive("KAFKA", "cluster", "info", cluster_id, show_secrets=True)
    assert shown["password"] == setup.model.clusters[cluster_id]["password"] != MASK
    user = drive("QSTASH", "user", show_secrets=True)
    assert user["token"] == setup.model.qstash_user["token"]

    # Confirmation also as the trailing words the help shows for the admin socket.
    result = CliRunner(env=ENV).invoke(main, [
        "kafka", "--upstash-api-url", setup.served.url, "cluster", "delete", cluster_id,
        "--yes",
    ])  # fmt: skip
    assert result.exit_code == 0 and result.stdout.strip() == "OK", result.output


def test_admin_socket_bad_credentials_and_no_secret_in_the_log(
    setup: Setup, devserver: Any, tmp_path: Any
) -> None:
    drive = admin_driver(setup)
    cluster_id = new_cluster(drive)
    drive("KAFKA", "cluster", "reset-password", cluster_id, yes=True)
    drive("QSTASH", "rotate-token", yes=True)
    secrets = [setup.model.clusters[cluster_id]["password"], setup.model.qstash_user["token"]]
    log = setup.bridge.log()
    assert "admin: KAFKA" in log and all(secret not in log for secret in secrets)

    path = os.path.join(tempfile.mkdtemp(prefix="rb-kq-", dir="/tmp"), "admin.sock")
    wrong = start_bridge(
        str(tmp_path), devserver.url, devserver.token, "--admin-socket", path,
        "--upstash-api-url", setup.served.url,
        env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": "wrong-key-456"},
    )  # fmt: skip
    try:
        with AdminClient(path) as client, pytest.raises(AdminCommandError) as refused:
            client.call("KAFKA", "CLUSTER", "LIST")
    finally:
        wrong.stop()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    message = str(refused.value)
    assert "HTTP 401 unauthorized" in message and "UPSTASH_API_KEY" in message
    assert "wrong-key-456" not in message + wrong.log()


def test_tables_for_people(setup: Setup) -> None:
    drive = cli_driver(setup)
    cluster_id = new_cluster(drive)
    drive("KAFKA", "topic", "create", cluster_id, "people", "3")
    runner = CliRunner(env=ENV)
    base = ["kafka", "--upstash-api-url", setup.served.url]
    listed = runner.invoke(main, [*base, "topic", "list", cluster_id])
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["TOPIC_ID", "TOPIC_NAME", "PARTITIONS", "CLEANUP_POLICY"]
    assert row.split()[1:4] == ["people", "3", "delete"]
    info = runner.invoke(main, [*base, "cluster", "info", cluster_id])
    lines = dict(line.split(None, 1) for line in info.stdout.splitlines())
    assert lines["password"] == MASK and lines["cluster_id"] == cluster_id


# -- the emulation's own strictness (what a client bug would hit) ----------------------------


def test_emulation_validates_the_documented_shapes(setup: Setup) -> None:
    client = httpx.Client(base_url=setup.served.url, auth=(EMAIL, API_KEY), timeout=10)
    with client:
        cluster_id = client.post(
            "/v2/kafka/cluster", json={"name": unique("v"), "region": "us-east-1"}
        ).json()["cluster_id"]
        topic = {
            "name": "t", "partitions": 1, "retention_time": 1234, "retention_size": 4567,
            "max_message_size": 8912, "cleanup_policy": "delete", "cluster_id": cluster_id,
        }  # fmt: skip
        for body, reason in (
            (
                {k: v for k, v in topic.items() if k != "cleanup_policy"},
                "cleanup_policy is required",
            ),
            ({**topic, "cleanup_policy": "keep"}, "compact or delete"),
            ({**topic, "partitions": "1"}, "partitions must be an integer"),
            ({**topic, "replicas": 3}, "unknown field(s): replicas"),
            ({**topic, "retention_time": 10**15}, "retention_time must be -1 or between"),
        ):
            response = client.post("/v2/kafka/topic", json=body)
            assert response.status_code == 400 and reason in response.json(), body
        assert client.post("/v2/kafka/topic", json=topic).status_code == 200
        assert client.post("/v2/kafka/topic", json=topic).json() == (
            "topic t already exists in this cluster"
        )
        assert client.put(f"/v2/kafka/cluster/{cluster_id}").status_code == 405
        assert client.get("/v2/kafka/nothing-here").status_code == 404
        bad_credential = {"credential_name": "c", "cluster_id": cluster_id, "topic": "t",
                          "permissions": "READ"}  # fmt: skip
        response = client.post("/v2/kafka/credential", json=bad_credential)
        assert response.status_code == 400 and "ALL, PRODUCE or CONSUME" in response.json()
        nested = {"name": "n", "cluster_id": cluster_id,
                  "properties": {"connector.class": "x", "nested": {"a": 1}}}  # fmt: skip
        assert client.post("/v2/kafka/connector", json=nested).status_code == 400
        no_class = {"name": "n", "cluster_id": cluster_id, "properties": {"a": "b"}}
        assert client.post("/v2/kafka/connector", json=no_class).json() == (
            "properties must name the connector.class"
        )
        connector = client.post(
            "/v2/kafka/connector",
            json={"name": "n", "cluster_id": cluster_id, "properties": {"connector.class": "x"}},
        ).json()
        wrapped = client.post(
            f"/v2/kafka/update-connector/{connector['connector_id']}",
            json={"properties": {"connection.uri": "u"}},
        )
        assert wrapped.status_code == 400 and "themselves as the body" in wrapped.json()
        assert client.get("/v2/qstash/user", auth=(EMAIL, "nope")).status_code == 401


# -- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["KAFKA", "QSTASH"])
def test_help_lists_every_operation_as_the_cli_spells_it(setup: Setup, group: str) -> None:
    result = CliRunner().invoke(main, [group.lower(), "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # click may wrap long lines
    ops = [op for op in OPERATIONS if op.group == group]
    assert ops
    for op in ops:
        assert op.upstash is not None
        spelled = f"{'--yes ' if op.destructive else ''}{op.name.lower()} {op.upstash.usage}"
        assert spelled.strip() in text, spelled
        assert op.summary in text
    helped = CliRunner().invoke(main, [group.lower(), *(["cluster"] * (group == "KAFKA")), "help"])
    assert helped.exit_code == 0 and ops[0].summary in helped.stdout
    # The admin socket's HELP spells them in its own words (CONFIRM at the end).
    with AdminClient(setup.socket) as client:
        lines = client.call(group, "HELP")
    assert len(lines) == len(ops)
    assert any(line.startswith(f"{group} {ops[-1].name} ") for line in lines), lines


# -- the devserver serves the same emulation --------------------------------------------------


def test_devserver_management_port_serves_kafka_and_qstash(
    devserver_factory: Callable[..., Any],
) -> None:
    handle = devserver_factory(
        management_port=0, management_email=EMAIL, management_api_key=API_KEY
    )
    url = management_url(handle)
    runner = CliRunner(env=ENV)
    created = runner.invoke(main, ["kafka", "--upstash-api-url", url, "--json", "cluster",
                                   "create", "local", "eu-west-1"])  # fmt: skip
    assert created.exit_code == 0, created.output
    cluster = json.loads(created.stdout)
    listed = runner.invoke(main, ["kafka", "--upstash-api-url", url, "--json", "cluster", "list"])
    assert [c["cluster_id"] for c in json.loads(listed.stdout)] == [cluster["cluster_id"]]
    user = runner.invoke(main, ["qstash", "--upstash-api-url", url, "--json", "user"])
    assert user.exit_code == 0 and json.loads(user.stdout)["customer_id"] == EMAIL


# -- units: argument binding and masking inside strings ---------------------------------------


def test_arguments_bind_by_name_and_kafka_never_defaults_to_enterprise() -> None:
    request = parse_command(
        ["KAFKA", "topic", "create", "cid", "orders", "3", "max_message_size=1M",
         "RETENTION_TIME=12h"],
        default_provider="enterprise",
    )  # fmt: skip
    assert request.provider == "upstash" and request.call.method == "create_kafka_topic"
    assert request.values == ["cid", "orders", 3, None, 12 * 3_600_000, None, 2**20]
    with pytest.raises(ManagementUsageError, match="given twice"):
        parse_command(
            ["KAFKA", "TOPIC", "RECONFIGURE", "t", "retention_time=1", "retention_time=2"],
            default_provider="upstash",
        )
    with pytest.raises(ManagementUsageError, match="not available for enterprise"):
        parse_command(["KAFKA", "ENTERPRISE", "CLUSTER", "LIST"], default_provider="upstash")
    connector = parse_command(
        ["KAFKA", "CONNECTOR", "CREATE", "cid", "n", '{"a": 1}', "b=x=y"],
        default_provider="upstash",
    )
    assert connector.values == ["cid", "n", {"a": 1, "b": "x=y"}]
    zone = parse_command(["KAFKA", "CLUSTER", "CREATE", "n", "us-east-1", "single-zone"],
                         default_provider=None)  # fmt: skip
    assert zone.values == ["n", "us-east-1", False]


def test_credentials_inside_strings_are_masked() -> None:
    secret = "hunter2-is-long-enough"
    value = {
        "properties": {
            "connection.password": secret,
            "sasl.jaas.config": 'PlainLoginModule required username="u" password="pw-9";',
            "connection.uri": "postgres://app:pw-1@db.example:5432/shop",
            "connection.url": "jdbc:postgresql://db/shop?user=app&password=pw-2",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        },
        "state_error_message": f"login failed for app with {secret}",
        "endpoint": "https://example.upstash.io:443/path",
    }
    masked = redact_secrets(value)
    text = json.dumps(masked)
    for leaked in (secret, "pw-9", "pw-1", "pw-2"):
        assert leaked not in text, leaked
    assert masked["properties"]["connection.uri"] == f"postgres://app:{MASK}@db.example:5432/shop"
    assert masked["properties"]["connection.url"].endswith(f"user=app&password={MASK}")
    assert masked["properties"]["connector.class"] == value["properties"]["connector.class"]
    assert masked["state_error_message"] == f"login failed for app with {MASK}"
    assert masked["endpoint"] == value["endpoint"]
