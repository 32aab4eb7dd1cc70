"""Numbered databases (`--databases N`): one Redis logical database and two tokens each."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import click
import httpx
import pytest
import redis
import trio

from bridge.devserver.redis_process import RedisServerProcess
from bridge.devserver.rest_server import (
    DevServerConfig,
    DevServerInfo,
    database_token,
    run_devserver,
)
from tests.conftest import DevServerHandle

DATABASES = 3


@pytest.fixture
def numbered(
    devserver_factory: Callable[..., DevServerHandle], redis_server: RedisServerProcess
) -> Iterator[DevServerHandle]:
    """A devserver serving databases 0..2 of the test redis-server, all three emptied."""
    for db in range(DATABASES):
        with redis.Redis.from_url(redis_server.url, db=db) as client:
            client.flushdb()
    yield devserver_factory(databases=DATABASES)


def client_for(server: DevServerHandle, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_token_scheme() -> None:
    assert database_token("tok", 0) == "tok"
    assert database_token("tok", 3) == "tok.db3"
    info = DevServerInfo(
        url="http://x", port=1, redis_url="redis://x", token="t", readonly_token="r", databases=4
    )
    assert [info.database_token(n) for n in range(4)] == ["t", "t.db1", "t.db2", "t.db3"]
    assert info.database_readonly_token(2) == "r.db2"
    with pytest.raises(ValueError, match="not served"):
        info.database_token(4)


def test_each_database_is_isolated(
    numbered: DevServerHandle, redis_server: RedisServerProcess
) -> None:
    with (
        client_for(numbered, numbered.token) as db0,
        client_for(numbered, database_token(numbered.token, 1)) as db1,
        client_for(numbered, database_token(numbered.token, 2)) as db2,
    ):
        assert db1.post("/", json=["SET", "k", "one"]).json() == {"result": "OK"}
        assert db0.get("/get/k").json() == {"result": None}
        assert db2.get("/get/k").json() == {"result": None}
        assert db0.post("/set/k/zero").json() == {"result": "OK"}
        assert db1.get("/get/k").json() == {"result": "one"}
        # The same isolation through /pipeline and /multi-exec.
        assert db2.post("/pipeline", json=[["SET", "p", "2"], ["DBSIZE"]]).json() == [
            {"result": "OK"},
            {"result": 1},
        ]
        assert db1.post("/multi-exec", json=[["INCR", "n"], ["DBSIZE"]]).json() == [
            {"result": 1},
            {"result": 2},
        ]
        # FLUSHDB with database 1's token leaves the others.
        assert db1.post("/", json=["FLUSHDB"]).json() == {"result": "OK"}
        assert db1.get("/dbsize").json() == {"result": 0}
        assert db0.get("/get/k").json() == {"result": "zero"}
        assert db2.get("/get/p").json() == {"result": "2"}
    # Database n is Redis logical database n (the --redis-url has none).
    with redis.Redis.from_url(redis_server.url, db=2) as direct:
        assert direct.get("p") == b"2"


def test_readonly_token_of_each_database(numbered: DevServerHandle) -> None:
    with (
        client_for(numbered, database_token(numbered.token, 2)) as rw,
        client_for(numbered, database_token(numbered.readonly_token, 2)) as ro,
        client_for(numbered, numbered.readonly_token) as ro0,
    ):
        rw.post("/set/k/v")
        assert ro.get("/get/k").json() == {"result": "v"}
        assert ro0.get("/get/k").json() == {"result": None}  # database 0's
        refused = ro.post("/", json=["SET", "k", "x"])
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("NOPERM")
        assert ro.post("/pipeline", json=[["DEL", "k"]]).json()[0]["error"].startswith("NOPERM")
        assert rw.get("/get/k").json() == {"result": "v"}
        # The devserver's own endpoints stay with the main standard token.
        assert rw.get("/_devserver/stats").status_code == 403


@pytest.mark.parametrize(
    "token",
    [
        "devserver-test-token.db3",  # one past the last database
        "devserver-test-token.db0",  # database 0 has the main token only
        "devserver-test-token.db01",
        "devserver-test-token.",
    ],
)
def test_unknown_tokens_get_401(numbered: DevServerHandle, token: str) -> None:
    assert numbered.token == "devserver-test-token"
    with client_for(numbered, token) as client:
        response = client.get("/get/k")
    assert response.status_code == 401
    assert response.json() == {"error": "WRONGPASS invalid or missing auth token"}


def test_one_database_by_default(devserver: DevServerHandle) -> None:
    with client_for(devserver, database_token(devserver.token, 1)) as client:
        assert client.get("/ping").status_code == 401


def test_start_up_line_names_the_scheme_not_given_tokens(numbered: DevServerHandle) -> None:
    log = numbered.log_text()
    assert "token=<not shown> readonly-token=<not shown>" in log
    assert "databases=0-2 (database n: each token + .db<n>)" in log
    assert numbered.token not in log


def test_flag_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.devserver.command_line import devserver as command

    assert command.make_context("devserver", []).params["databases"] == 1
    assert command.make_context("devserver", ["--databases", "16"]).params["databases"] == 16
    monkeypatch.setenv("RESP_BRIDGE_DEVSERVER_DATABASES", "4")
    assert command.make_context("devserver", []).params["databases"] == 4
    with pytest.raises(click.BadParameter, match="range"):
        command.make_context("devserver", ["--databases", "0"])


def test_redis_with_too_few_databases_is_a_clear_start_up_error(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    with pytest.raises(RuntimeError, match=r"needs Redis logical databases 0\.\.99"):
        devserver_factory(databases=100)


def test_management_emulation_skips_the_numbered_databases(
    redis_server: RedisServerProcess,
) -> None:
    """In-process: the emulated databases get logical databases after the numbered ones."""

    async def main() -> list[int | None]:
        config = DevServerConfig(port=0, redis_url=redis_server.url, databases=4)
        from bridge.devserver.redis_conn import RedisAddress
        from bridge.devserver.rest_server import DevServerApp

        app = DevServerApp(config, "t", "r", RedisAddress.from_url(redis_server.url))
        try:
            first = app.free_db_index()
            with pytest.raises(ValueError, match="already in use"):
                app.add_database(2, "a", "b")
            with pytest.raises(ValueError, match="must differ"):
                app.add_database(4, "t.db1", "b")
            return [first]
        finally:
            await app.aclose(forget_readonly_password=False)

    assert trio.run(main) == [4]


async def test_in_process_info_gives_the_tokens(redis_server: RedisServerProcess) -> None:
    """What the bridge's embedded default uses: DevServerInfo.database_token(n)."""
    with redis.Redis.from_url(redis_server.url, db=1) as direct:
        direct.flushdb()
    config = DevServerConfig(port=0, redis_url=redis_server.url, databases=2, token="")
    async with trio.open_nursery() as nursery:
        info: DevServerInfo = await nursery.start(run_devserver, config)
        assert info.databases == 2 and info.token_generated
        assert info.startup_line().count(info.token) == 1  # generated: printed
        headers = {"Authorization": f"Bearer {info.database_token(1)}"}
        async with httpx.AsyncClient(base_url=info.url, headers=headers) as client:
            assert (await client.post("/", json=["SET", "x", "1"])).json() == {"result": "OK"}
        nursery.cancel_scope.cancel()
    with redis.Redis.from_url(redis_server.url, db=1) as direct:
        assert direct.get("x") == b"1"
