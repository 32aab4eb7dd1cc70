"""Per-command and per-database counts in /_devserver/stats (what the cost tests read)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bridge.devserver.request_counters import MAX_COMMAND_NAMES, OTHER_NAME, Stats
from bridge.devserver.rest_server import database_token
from tests.conftest import DevServerHandle
from tests.devserver.test_sse import SSE, events, next_event


async def test_every_form_is_counted_by_name_and_database(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory(databases=2)
    db1 = {"Authorization": f"Bearer {database_token(server.token, 1)}"}
    ro1 = {"Authorization": f"Bearer {database_token(server.readonly_token, 1)}"}
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        await client.get("/set/a/1")  # path form
        await client.post("/", json=["get", "a"])  # JSON form, any case
        await client.post("/lpush/q", content=b"x")  # raw body form
        await client.post(
            "/pipeline",
            json=[["LMPOP", "1", "q", "LEFT"], ["LMPOP", "1", "q", "LEFT"], ["SELECT", "1"]],
        )
        await client.post("/multi-exec", json=[["PUBLISH", "c", "m"], ["CONFIG", "GET", "x"]])
        await client.post("/pipeline", json=[["PUBLISH", "c", "m"]], headers=db1)
        await client.get("/get/a", headers=ro1)
        await client.get("/get/a", headers={"Authorization": "Bearer wrong"})  # not counted
        async with client.stream("GET", "/subscribe/c", headers=SSE) as sub:
            assert await next_event(events(sub.aiter_lines())) == "subscribe,c,1"
        async with client.stream("GET", "/psubscribe/c*", headers={**SSE, **db1}) as psub:
            assert await next_event(events(psub.aiter_lines())) == "psubscribe,c*,1"
        stats = server.stats()
        assert stats["commands_by_name"] == {
            "SET": 1,
            "GET": 2,
            "LPUSH": 1,
            "LMPOP": 2,
            "SELECT": 1,  # refused before Redis, but received (Upstash bills it)
            "PUBLISH": 2,
            "CONFIG": 1,
            "SUBSCRIBE": 1,
            "PSUBSCRIBE": 1,
        }
        assert stats["commands_by_db"] == {"0": 9, "1": 3}
        # `commands` counts the REST commands; the maps add one per SSE stream opened.
        assert stats["commands"] == 10
        by_name: dict[str, int] = stats["commands_by_name"]  # type: ignore[assignment]
        assert sum(by_name.values()) == stats["commands"] + 2
        server.reset_stats()
        assert server.stats()["commands_by_name"] == {}
        assert server.stats()["commands_by_db"] == {}
        await client.get("/ping")
        assert server.stats()["commands_by_name"] == {"PING": 1}


def test_refused_sse_streams_are_not_counted(devserver: DevServerHandle) -> None:
    devserver.reset_stats()
    with httpx.Client(base_url=devserver.url, headers=devserver.readonly_headers) as ro:
        assert ro.get("/monitor", headers=SSE).status_code == 400  # NOPERM
    assert devserver.stats()["commands_by_name"] == {}


def test_names_are_capped() -> None:
    stats = Stats()
    for i in range(MAX_COMMAND_NAMES + 5):
        stats.count_command(f"cmd{i}".encode(), "0")
    stats.count_command(b"cmd0", "0")
    assert len(stats.commands_by_name) == MAX_COMMAND_NAMES + 1
    assert stats.commands_by_name[OTHER_NAME] == 5
    assert stats.commands_by_name["CMD0"] == 2
    assert stats.commands_by_db == {"0": MAX_COMMAND_NAMES + 6}
    stats.reset()
    assert stats.as_dict()["commands_by_name"] == {}


@pytest.mark.parametrize("name", [b"\xff\xfe", b""])
def test_odd_names_are_counted_readably(name: bytes) -> None:
    stats = Stats()
    stats.count_command(name, "3")
    assert sum(stats.commands_by_name.values()) == 1
    assert stats.commands_by_db == {"3": 1}
