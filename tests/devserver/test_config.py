"""CONFIG as Upstash serves it: only notify-keyspace-events is visible and changeable.

The changes go to the real (session) redis-server, so keyspace notifications work offline;
each test puts notify-keyspace-events back to empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from bridge.devserver import policy
from bridge.devserver.redis_process import RedisServerProcess
from bridge.devserver.rest_server import database_token
from tests.conftest import DevServerHandle
from tests.devserver.test_sse import SSE, events, next_event


@pytest.fixture
def events_off(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    redis_client.config_set("notify-keyspace-events", "")
    try:
        yield redis_client
    finally:
        redis_client.config_set("notify-keyspace-events", "")


@pytest.fixture
def client(devserver: DevServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=devserver.url, headers=devserver.headers, timeout=10) as c:
        yield c


NKE = "notify-keyspace-events"


@pytest.mark.parametrize(
    "patterns",
    [["*"], [NKE], ["NOTIFY-KEYSPACE-EVENTS"], ["notify*"], ["*events"], ["n?tify-[j-l]*"]],
)
def test_config_get_matching_patterns_give_only_that_pair(
    client: httpx.Client, events_off: redis.Redis, patterns: list[str]
) -> None:
    events_off.config_set(NKE, "KEA")
    response = client.post("/", json=["CONFIG", "GET", *patterns])
    assert response.status_code == 200
    assert response.json() == {"result": [NKE, "AKE"]}


@pytest.mark.parametrize(
    "patterns", [["maxmemory"], ["save"], ["databases"], ["*event"], ["[^n]*"], ["a", "b"]]
)
def test_config_get_other_patterns_give_an_empty_array(
    client: httpx.Client, patterns: list[str]
) -> None:
    response = client.post("/", json=["CONFIG", "GET", *patterns])
    assert response.status_code == 200
    assert response.json() == {"result": []}


def test_config_get_in_every_form(client: httpx.Client, events_off: redis.Redis) -> None:
    assert client.get("/config/get/notify-keyspace-events").json() == {"result": [NKE, ""]}
    assert client.get("/config/get/maxmemory").json() == {"result": []}
    resp2 = client.get("/config/get/*", headers={"Upstash-Response-Format": "resp2"})
    assert resp2.content == b"*2\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n"
    assert client.post(
        "/pipeline",
        json=[["CONFIG", "GET", "maxmemory"], ["CONFIG", "GET", "*"], ["PING"]],
    ).json() == [{"result": []}, {"result": [NKE, ""]}, {"result": "PONG"}]
    assert client.post(
        "/multi-exec",
        json=[["SET", "k", "1"], ["CONFIG", "GET", "save"], ["CONFIG", "GET", "*"], ["GET", "k"]],
    ).json() == [{"result": "OK"}, {"result": []}, {"result": [NKE, ""]}, {"result": "1"}]
    # Malformed calls get Redis' own errors.
    error = client.post("/", json=["CONFIG", "GET"]).json()["error"]
    assert "wrong number of arguments" in error


def test_config_set_notify_keyspace_events_reaches_redis(
    client: httpx.Client, events_off: redis.Redis
) -> None:
    assert client.post("/", json=["CONFIG", "SET", NKE, "KEA"]).json() == {"result": "OK"}
    assert events_off.config_get(NKE) == {NKE: "AKE"}
    assert client.get("/config/set/notify-keyspace-events/Kl").json() == {"result": "OK"}
    assert events_off.config_get(NKE) == {NKE: "lK"}
    assert client.post("/pipeline", json=[["CONFIG", "SET", NKE, "Ex"]]).json() == [
        {"result": "OK"}
    ]
    assert client.post("/multi-exec", json=[["CONFIG", "SET", NKE, "Kg$"]]).json() == [
        {"result": "OK"}
    ]
    assert events_off.config_get(NKE) == {NKE: "g$K"}
    # Redis judges the flags.
    bad = client.post("/", json=["CONFIG", "SET", NKE, "?!"])
    assert bad.status_code == 400 and "Invalid event class" in bad.json()["error"]


@pytest.mark.parametrize(
    "command",
    [
        ["CONFIG", "SET", "maxmemory", "1"],
        ["CONFIG", "SET", NKE, "KEA", "maxmemory", "1"],
        ["CONFIG", "SET", "maxmemory"],
        ["CONFIG", "REWRITE"],
        ["CONFIG", "RESETSTAT"],
    ],
)
def test_other_config_changes_are_refused_before_redis(
    client: httpx.Client, events_off: redis.Redis, command: list[str]
) -> None:
    before = events_off.config_get("maxmemory")
    response = client.post("/", json=command)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("ERR CONFIG ") and "is not allowed over REST" in error
    pipeline = client.post("/pipeline", json=[command, ["PING"]]).json()
    assert pipeline[0]["error"] == error and pipeline[1] == {"result": "PONG"}
    multi = client.post("/multi-exec", json=[["SET", "k", "x"], command])
    assert multi.status_code == 400
    assert multi.json()["error"].startswith("EXECABORT") and "Command 1: ERR CONFIG" in multi.text
    assert events_off.config_get("maxmemory") == before
    assert events_off.config_get(NKE) == {NKE: ""}


def test_readonly_token_reads_but_cannot_change(
    devserver: DevServerHandle, events_off: redis.Redis
) -> None:
    with httpx.Client(base_url=devserver.url, headers=devserver.readonly_headers) as ro:
        assert ro.post("/", json=["CONFIG", "GET", "*"]).json() == {"result": [NKE, ""]}
        assert ro.post("/", json=["CONFIG", "GET", "maxmemory"]).json() == {"result": []}
        refused = ro.post("/", json=["CONFIG", "SET", NKE, "KEA"])
        assert refused.status_code == 400 and refused.json()["error"].startswith("NOPERM")
    assert events_off.config_get(NKE) == {NKE: ""}


def test_policy_plan_units() -> None:
    assert policy.plan([b"GET", b"k"]) == ([b"GET", b"k"], 0.0)
    assert policy.plan([b"config", b"get", b"*"]) == ([b"CONFIG", b"GET", NKE.encode()], 0.0)
    assert policy.plan([b"CONFIG", b"GET", b"x"]) == (policy.EMPTY_ARRAY, 0.0)
    assert policy.plan([b"CONFIG", b"HELP"]) == ([b"CONFIG", b"HELP"], 0.0)
    with pytest.raises(policy.Refused, match="CONFIG SET save is not allowed"):
        policy.plan([b"CONFIG", b"SET", b"save", b""])
    assert policy.glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", b"a" * 40) is False


async def test_keyspace_events_reach_sse_streams_of_each_database(
    devserver_factory: Callable[..., DevServerHandle],
    redis_server: RedisServerProcess,
    events_off: redis.Redis,
) -> None:
    """CONFIG SET through REST, then a SET: a keyspace event on /psubscribe, per database."""
    server = devserver_factory(databases=2)
    db1 = {"Authorization": f"Bearer {database_token(server.token, 1)}"}
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        set_flags = await client.post("/", json=["CONFIG", "SET", NKE, "KEA"])
        assert set_flags.json() == {"result": "OK"}
        async with (
            client.stream("GET", "/psubscribe/__keyspace@0__:*", headers=SSE) as db0_events,
            client.stream("GET", "/psubscribe/__keyspace@1__:*", headers={**SSE, **db1}) as s1,
        ):
            stream0 = events(db0_events.aiter_lines())
            stream1 = events(s1.aiter_lines())
            assert await next_event(stream0) == "psubscribe,__keyspace@0__:*,1"
            assert await next_event(stream1) == "psubscribe,__keyspace@1__:*,1"
            assert (await client.post("/", json=["SET", "ks0", "v"])).json() == {"result": "OK"}
            assert await next_event(stream0) == "pmessage,__keyspace@0__:*,__keyspace@0__:ks0,set"
            one = await client.post("/", json=["LPUSH", "ks1", "v"], headers=db1)
            assert one.json() == {"result": 1}
            assert await next_event(stream1) == "pmessage,__keyspace@1__:*,__keyspace@1__:ks1,lpush"
        # /subscribe with database 1's token: pub/sub is global, any database's token works.
        async with client.stream(
            "GET", "/subscribe/__keyspace@0__:ks0", headers={**SSE, **db1}
        ) as s:
            stream = events(s.aiter_lines())
            assert await next_event(stream) == "subscribe,__keyspace@0__:ks0,1"
            await client.post("/", json=["DEL", "ks0"])
            assert await next_event(stream) == "message,__keyspace@0__:ks0,del"
