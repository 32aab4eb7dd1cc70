"""Bad input, refused commands, size limits and an unreachable Redis: clear JSON errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess, find_free_port
from tests.conftest import DevServerHandle


@pytest.fixture
def client(devserver: DevServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=devserver.url, headers=devserver.headers, timeout=10) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/", b'["SET", "a"', "invalid JSON"),
        ("/", b"", "no command"),
        ("/", b"not json", "invalid JSON"),
        ("/", b'{"cmd": "GET"}', "an object"),
        ("/", b"[]", "empty"),
        ("/", b'[123, "a"]', "command name"),
        ("/", b'[["GET"], "a"]', "command name"),
        ("/", b'["SET", "a", null]', "null"),
        ("/", b'["SET", "a", {"x": 1}]', "an object"),
        ("/", b'["SET", "a", ["x"]]', "an array"),
        ("/", b'["SET", "a", NaN]', "invalid JSON"),
        ("/", b'["SET", "a", "\\ud800"]', "surrogate"),
        ("/", b'["SET", "a", "\xff"]', "invalid JSON"),
        ("/pipeline", b'{"a": 1}', "JSON array of commands"),
        ("/pipeline", b'["GET", "a"]', "command 0"),
        ("/pipeline", b"[]", "empty pipeline"),
        ("/pipeline", b'[["GET","a"], []]', "command 1 is empty"),
        ("/pipeline", b"", "body is empty"),
        ("/multi-exec", b"[]", "empty transaction"),
        ("/multi-exec", b'[["GET","a"], "x"]', "command 1"),
    ],
)
def test_bad_bodies_are_400_json(
    client: httpx.Client, path: str, body: bytes, fragment: str
) -> None:
    response = client.post(path, content=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert fragment in response.json()["error"]


def test_get_root_without_command(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 400
    assert "no command" in response.json()["error"]


def test_redis_errors_are_400(client: httpx.Client) -> None:
    response = client.get("/get")
    assert response.status_code == 400
    assert response.json() == {"error": "ERR wrong number of arguments for 'get' command"}
    response = client.get("/nosuchcommand/x")
    assert response.status_code == 400
    assert response.json()["error"].startswith("ERR unknown command")


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (["SELECT", "1"], "SELECT is not supported"),
        (["MULTI"], "/multi-exec"),
        (["EXEC"], "/multi-exec"),
        (["WATCH", "k"], "WATCH"),
        (["SUBSCRIBE", "ch"], "/subscribe"),
        (["PSUBSCRIBE", "ch*"], "/psubscribe"),
        (["MONITOR"], "/monitor"),
        (["AUTH", "x"], "AUTH is not supported"),
        (["HELLO", "3"], "HELLO is not supported"),
        (["RESET"], "RESET is not supported"),
        (["QUIT"], "QUIT is not supported"),
        (["client", "reply", "off"], "CLIENT REPLY"),
        (["CLIENT", "SETNAME", "x"], "CLIENT SETNAME"),
        (["BLPOP", "list", "0"], "timeout 0"),
        (["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"], "timeout 0"),
        (["BZMPOP", "0", "1", "z", "MIN"], "timeout 0"),
        (["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], "timeout 0"),
        (["BLPOP", "list", "3600"], "at most"),
    ],
)
def test_connection_state_commands_are_refused(
    client: httpx.Client, command: list[str], fragment: str
) -> None:
    response = client.post("/", json=command)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("ERR ")
    assert fragment in error


def test_refused_command_inside_pipeline_is_a_per_item_error(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = client.post("/pipeline", json=[["SET", "a", "1"], ["SELECT", "2"], ["GET", "a"]])
    assert response.status_code == 200
    items = response.json()
    assert items[0] == {"result": "OK"}
    assert "SELECT is not supported" in items[1]["error"]
    assert items[2] == {"result": "1"}


def test_refused_command_discards_a_transaction(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = client.post("/multi-exec", json=[["SET", "a", "1"], ["MULTI"]])
    assert response.status_code == 400
    assert response.json()["error"].startswith("EXECABORT")
    assert flush_redis.exists("a") == 0


def test_blocking_command_with_timeout_runs(client: httpx.Client, flush_redis: redis.Redis) -> None:
    started = time.monotonic()
    assert client.get("/blpop/empty-list/0.2").json() == {"result": None}
    assert time.monotonic() - started >= 0.2
    flush_redis.rpush("full", "x")
    assert client.get("/blpop/full/1").json() == {"result": ["full", "x"]}


def test_client_info_commands_are_allowed(client: httpx.Client) -> None:
    assert isinstance(client.get("/client/id").json()["result"], int)


def test_oversize_body_is_413(devserver_factory: Callable[..., DevServerHandle]) -> None:
    server = devserver_factory(max_request_bytes=1000)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
        assert c.post("/set/k", content=b"x" * 1000).json() == {"result": "OK"}
        response = c.post("/set/k", content=b"x" * 1001)
        assert response.status_code == 413
        assert response.json()["error"].startswith("ERR max request size exceeded")
        # Chunked body without Content-Length: counted while reading.
        response = c.post("/set/k", content=iter([b"x" * 600, b"y" * 600]))
        assert response.status_code == 413
        assert "max request size" in response.json()["error"]
        # The server is still healthy afterwards.
        assert c.get("/get/k").json() == {"result": "x" * 1000}


def test_default_limit_is_10_mb(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.post("/set/big", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert "Limit: 10485760 bytes" in response.json()["error"]
    assert client.post("/set/big", content=b"x" * (1024 * 1024)).json() == {"result": "OK"}


def test_redis_unreachable_is_503_quickly(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory(redis_url=f"redis://127.0.0.1:{find_free_port()}")
    started = time.monotonic()
    response = httpx.get(f"{server.url}/get/k", headers=server.headers, timeout=10)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert "cannot connect to Redis" in response.json()["error"]
    response = httpx.post(f"{server.url}/pipeline", json=[["PING"]], headers=server.headers)
    assert response.status_code == 503
    assert response.json()["error"].startswith("ERR devserver")


def test_recovers_after_redis_restart(devserver_factory: Callable[..., DevServerHandle]) -> None:
    port = find_free_port()
    with RedisServerProcess(port):
        server = devserver_factory(redis_url=f"redis://127.0.0.1:{port}")
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c:
            assert c.get("/set/k/v").json() == {"result": "OK"}
    # Redis is down: a quick 503, no hang.
    response = httpx.get(f"{server.url}/get/k", headers=server.headers, timeout=10)
    assert response.status_code == 503
    # Pooled connections to the old process are stale: replaced transparently.
    with (
        RedisServerProcess(port),
        httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as c,
    ):
        assert c.get("/get/k").json() == {"result": None}
        ro_headers = server.readonly_headers
        assert c.get("/ping", headers=ro_headers).json() == {"result": "PONG"}


def test_unknown_devserver_endpoint(client: httpx.Client) -> None:
    assert client.get("/_devserver/nope").status_code == 404


def test_sse_endpoint_without_accept_header(client: httpx.Client) -> None:
    response = client.post("/subscribe/chat")
    assert response.status_code == 400
    assert "text/event-stream" in response.json()["error"]
