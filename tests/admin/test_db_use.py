"""`DB USE` end to end: the devserver's management emulation backs every database it creates
with a Redis logical database of its redis-server and REST tokens of its own; a running bridge
is switched to one through its admin socket, keeps its clients, and follows a password reset.

A devserver with `--management-port 0` (on the session's redis-server), a real bridge process
in front of it, redis-py clients of the bridge that stay connected, and direct redis-py clients
of redis-server to see where writes landed. Each wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner

from bridge.cli import main
from bridge.devserver.redis_process import RedisServerProcess
from tests.admin.test_admin_socket import Factory, admin, redis_cli
from tests.e2e.conftest import bridge_factory  # noqa: F401

EMAIL = "dbuse@example.com"
API_KEY = "dbuse-api-key"
#: Deadline for the devserver to log its management URL and for a pub/sub message.
SETTLE_S = 10.0


def management_url(handle: Any) -> str:
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        found = re.search(r"emulation .* listening on (http://\S+)", handle.log_text())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no management URL in the devserver log:\n{handle.log_text()}")


def dbs_holding(redis_server: RedisServerProcess, key: str) -> list[int]:
    """The Redis logical databases (0..15) where `key` exists."""
    found = []
    for index in range(16):
        direct = redis.Redis.from_url(redis_server.url, db=index)
        try:
            if direct.exists(key):
                found.append(index)
        finally:
            direct.close()
    return found


def rest_status(url: str, token: str) -> int:
    response = httpx.post(
        f"{url}/pipeline", json=[["PING"]], headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


def test_db_use_switches_the_running_bridge_and_follows_a_password_reset(
    redis_server: RedisServerProcess,
    devserver_factory: Callable[..., Any],
    bridge_factory: Factory,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    devserver = devserver_factory(
        management_port=0, management_email=EMAIL, management_api_key=API_KEY
    )
    api_url = management_url(devserver)
    sock_dir = str(tmp_path_factory.mktemp("dbuse"))
    path = os.path.join(sock_dir, "admin.sock")
    bridge = bridge_factory(
        devserver.url, devserver.token, "--admin-socket", path, "--upstash-api-url", api_url,
        env={"UPSTASH_EMAIL": EMAIL, "UPSTASH_API_KEY": API_KEY},
    )  # fmt: skip
    client = bridge.client(client_name="stays-connected")
    client_id = client.client_id()
    subscriber = bridge.client().pubsub()
    subscriber.subscribe("dbuse:news")
    assert subscriber.get_message(timeout=SETTLE_S)["type"] == "subscribe"
    assert client.set("dbuse:configured", "0")
    assert dbs_holding(redis_server, "dbuse:configured") == [0]
    outputs: list[str] = []

    created = admin(path, "DB", "CREATE", "dbuse-first", "eu-west-1")
    outputs.append(json.dumps(created))
    first_id = created["database_id"]
    assert created["rest_token"] == "<redacted>"
    assert created["endpoint"] == devserver.url.split("://", 1)[1]  # http or https

    used = admin(path, "DB", "USE", first_id)
    outputs.append(json.dumps(used))
    assert used["result"] == "switched" and used["database_id"] == first_id
    assert used["url"] == devserver.url and used["pubsub_streams_reconnected"] == 1

    # The same connection now writes into the new database's own Redis logical database.
    assert client.set("dbuse:key", "1")
    assert client.get("dbuse:configured") is None, "the new database starts empty"
    (index,) = dbs_holding(redis_server, "dbuse:key")
    assert index != 0
    assert client.client_id() == client_id, "the client must keep its connection"
    upstream = admin(path, "UPSTREAM")
    outputs.append(json.dumps(upstream))
    assert upstream["url"] == devserver.url

    # Pub/sub streams reconnected to the new upstream and still deliver.
    deadline = time.monotonic() + SETTLE_S
    message = None
    while message is None and time.monotonic() < deadline:
        client.publish("dbuse:news", "hello")
        message = subscriber.get_message(timeout=0.5)
    assert message is not None and message["data"] == b"hello"

    # A password reset of the database in use: the bridge follows the new token by itself
    # (the devserver refuses the old one from now on).
    info_before = admin(path, "DB", "INFO", first_id)
    reset = admin(path, "DB", "RESET-PASSWORD", first_id, "CONFIRM")
    outputs += [json.dumps(info_before), json.dumps(reset)]
    assert reset["bridge"].startswith("switched to the new REST token")
    assert client.get("dbuse:key") == b"1"
    assert client.set("dbuse:after-reset", "2")
    assert dbs_holding(redis_server, "dbuse:after-reset") == [index]
    assert client.client_id() == client_id

    # A second database is isolated from the first; redis-cli -s drives DB USE as well.
    second = admin(path, "DB", "CREATE", "dbuse-second", "eu-west-1")
    outputs.append(json.dumps(second))
    text = redis_cli(path, "DB", "USE", second["database_id"])
    outputs.append(text)
    assert "switched" in text
    assert client.get("dbuse:key") is None
    assert client.set("dbuse:second", "3")
    (second_index,) = dbs_holding(redis_server, "dbuse:second")
    assert second_index not in (0, index)

    # Deleting the first database empties its Redis logical database.
    deleted = admin(path, "DB", "DELETE", first_id, "CONFIRM")
    outputs.append(json.dumps(deleted))
    assert dbs_holding(redis_server, "dbuse:key") == []
    assert client.get("dbuse:second") == b"3"
    assert client.client_id() == client_id

    # Usage errors are clear; no output, and not the log, ever shows a token or the API key.
    usage = CliRunner().invoke(main, ["admin", "--socket", path, "db", "use"])
    assert usage.exit_code == 1 and "usage: DB USE <id>" in usage.stderr
    subscriber.close()
    client.close()
    bridge.stop()
    log = bridge.log()
    assert "DB USE: this bridge now uses database" in log
    for secret in (API_KEY, devserver.token):
        for output in [*outputs, log]:
            assert secret not in output
    for output in [*outputs, log]:
        assert not re.search(r"\bA[Xn][A-Za-z0-9_-]{20,}", output), output


def test_devserver_databases_have_their_own_tokens(
    redis_server: RedisServerProcess, devserver_factory: Callable[..., Any]
) -> None:
    """The emulation alone: create, use with REST, rotate, delete; the default token keeps
    db 0."""
    devserver = devserver_factory(
        management_port=0, management_email=EMAIL, management_api_key=API_KEY
    )
    api_url = management_url(devserver)
    auth = (EMAIL, API_KEY)
    db = httpx.post(
        f"{api_url}/v2/redis/database", json={"name": "own", "region": "eu-west-1"}, auth=auth
    ).json()
    token, readonly = db["rest_token"], db["read_only_rest_token"]
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{devserver.url}/pipeline", json=[["SET", "own:k", "v"]], headers=headers)
    assert answer.json() == [{"result": "OK"}]
    (index,) = dbs_holding(redis_server, "own:k")
    assert index != 0
    refused = httpx.post(
        f"{devserver.url}/pipeline",
        json=[["SET", "own:k", "w"]],
        headers={"Authorization": f"Bearer {readonly}"},
    ).json()
    assert "NOPERM" in refused[0]["error"]
    ro_get = httpx.get(
        f"{devserver.url}/get/own:k", headers={"Authorization": f"Bearer {readonly}"}
    )
    assert ro_get.json() == {"result": "v"}
    default = httpx.get(f"{devserver.url}/get/own:k", headers=devserver.headers)
    assert default.json() == {"result": None}
    # The devserver's own endpoints stay for its own token.
    assert httpx.get(f"{devserver.url}/_devserver/stats", headers=headers).status_code == 403

    rotated = httpx.post(f"{api_url}/v2/redis/reset-password/{db['database_id']}", auth=auth)
    new_token = rotated.json()["rest_token"]
    assert rest_status(devserver.url, token) == 401
    assert rest_status(devserver.url, readonly) == 401
    assert rest_status(devserver.url, new_token) == 200

    gone = httpx.delete(f"{api_url}/v2/redis/database/{db['database_id']}", auth=auth)
    assert gone.status_code == 200
    assert rest_status(devserver.url, new_token) == 401
    assert dbs_holding(redis_server, "own:k") == []
    assert rest_status(devserver.url, devserver.token) == 200
