"""Tokens: 401 for missing/wrong ones, `_token`, and the read-only token enforced by Redis ACLs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import DevServerHandle

UNAUTHORIZED = {"error": "WRONGPASS invalid or missing auth token"}


@pytest.fixture
def ro(devserver: DevServerHandle) -> Iterator[httpx.Client]:
    """A client with the read-only token."""
    with httpx.Client(
        base_url=devserver.url, headers=devserver.readonly_headers, timeout=10
    ) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic devserver-test-token"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_wrong_token_is_401(devserver: DevServerHandle, headers: dict) -> None:
    response = httpx.get(f"{devserver.url}/ping", headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_token_in_query_string(devserver: DevServerHandle) -> None:
    assert httpx.get(f"{devserver.url}/ping?_token={devserver.token}").json() == {"result": "PONG"}
    assert httpx.get(f"{devserver.url}/ping?_token=nope").status_code == 401


def test_bearer_scheme_is_case_insensitive(devserver: DevServerHandle) -> None:
    headers = {"Authorization": f"bearer {devserver.token}"}
    assert httpx.get(f"{devserver.url}/ping", headers=headers).json() == {"result": "PONG"}


def test_authorization_header_wins_over_query(devserver: DevServerHandle) -> None:
    url = f"{devserver.url}/ping?_token={devserver.token}"
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(devserver: DevServerHandle, method: str) -> None:
    response = httpx.request(method, f"{devserver.url}/get/foo", headers=devserver.headers)
    assert response.status_code == 405
    assert "not allowed" in response.json()["error"]
    assert response.headers["allow"] == "GET, HEAD, POST, PUT"


def test_readonly_token_reads(ro: httpx.Client, flush_redis: redis.Redis) -> None:
    flush_redis.set("k", "v")
    flush_redis.hset("h", "f", "x")
    assert ro.get("/get/k").json() == {"result": "v"}
    assert ro.get("/hgetall/h").json() == {"result": ["f", "x"]}
    assert ro.get("/ping").json() == {"result": "PONG"}
    assert ro.get("/echo/hi").json() == {"result": "hi"}
    assert ro.post("/pipeline", json=[["GET", "k"], ["EXISTS", "k"]]).json() == [
        {"result": "v"},
        {"result": 1},
    ]
    assert ro.post("/multi-exec", json=[["GET", "k"], ["STRLEN", "k"]]).json() == [
        {"result": "v"},
        {"result": 1},
    ]
    assert ro.post("/", json=["EVAL_RO", "return redis.call('GET', KEYS[1])", 1, "k"]).json() == {
        "result": "v"
    }


@pytest.mark.parametrize(
    "command",
    [
        ["SET", "k", "x"],
        ["DEL", "k"],
        ["FLUSHALL"],
        ["KEYS", "*"],
        ["SCAN", "0"],
        ["PUBLISH", "ch", "msg"],
        ["EVAL", "return 1", "0"],
        ["CONFIG", "SET", "notify-keyspace-events", "KEA"],
    ],
)
def test_readonly_token_refusals_are_redis_noperm(
    ro: httpx.Client, flush_redis: redis.Redis, command: list[str]
) -> None:
    flush_redis.set("k", "v")
    response = ro.post("/", json=command)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("NOPERM"), error
    assert flush_redis.get("k") == b"v"


def test_readonly_write_inside_scripts_and_batches(
    ro: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = ro.post("/", json=["EVAL_RO", "return redis.call('SET', KEYS[1], 'x')", 1, "k"])
    assert response.status_code == 400
    response = ro.post("/pipeline", json=[["SET", "k", "x"], ["GET", "k"]])
    assert response.status_code == 200
    first, second = response.json()
    assert first["error"].startswith("NOPERM")
    assert second == {"result": None}
    response = ro.post("/multi-exec", json=[["GET", "k"], ["SET", "k", "x"]])
    assert response.status_code == 400
    assert response.json()["error"].startswith("EXECABORT")
    assert "NOPERM" in response.json()["error"]
    assert flush_redis.exists("k") == 0


def test_readonly_token_path_form_with_body(ro: httpx.Client, flush_redis: redis.Redis) -> None:
    response = ro.post("/set/k", content=b"value")
    assert response.status_code == 400
    assert response.json()["error"].startswith("NOPERM")


def test_readonly_token_cannot_read_stats(ro: httpx.Client) -> None:
    assert ro.get("/_devserver/stats").status_code == 403


def test_readonly_user_survives_redis_acl_loss(
    devserver: DevServerHandle, ro: httpx.Client, flush_redis: redis.Redis
) -> None:
    # A Redis restart loses ACL users; simulate it and drop the pooled read-only connections.
    flush_redis.acl_deluser("devserver_ro")
    flush_redis.set("k", "v")
    assert ro.get("/get/k").json() == {"result": "v"}
    assert ro.get("/set/k/x").json()["error"].startswith("NOPERM")
