"""Response formats: JSON (UTF-8 with U+FFFD), Upstash-Encoding: base64, resp2, sync tokens."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import DevServerHandle

B64 = {"Upstash-Encoding": "base64"}
RESP2 = {"Upstash-Response-Format": "resp2"}


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.fixture
def client(devserver: DevServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=devserver.url, headers=devserver.headers, timeout=10) as c:
        yield c


def test_invalid_utf8_is_replaced_without_base64(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    flush_redis.set("bin", b"a\xffb\xc3")
    assert client.get("/get/bin").json() == {"result": "a\ufffdb\ufffd"}


def test_base64_strings_at_every_depth(client: httpx.Client, flush_redis: redis.Redis) -> None:
    flush_redis.set("bin", b"\x00\xff")
    flush_redis.rpush("list", b"x", b"OK")
    assert client.get("/set/foo/bar", headers=B64).json() == {"result": "OK"}
    assert client.get("/get/foo", headers=B64).json() == {"result": "YmFy"}
    assert client.get("/get/bin", headers=B64).json() == {"result": b64(b"\x00\xff")}
    assert client.get("/get/missing", headers=B64).json() == {"result": None}
    assert client.get("/incr/n", headers=B64).json() == {"result": 1}
    # Status replies other than OK are encoded: PONG, TYPE.
    assert client.get("/ping", headers=B64).json() == {"result": b64("PONG")}
    assert client.get("/type/foo", headers=B64).json() == {"result": b64("string")}
    # A bulk "OK" is a value, not the status reply: encoded.
    flush_redis.set("okvalue", "OK")
    assert client.get("/get/okvalue", headers=B64).json() == {"result": b64("OK")}
    # Arrays: each string encoded, nil kept, "OK" inside an array encoded.
    assert client.get("/lrange/list/0/-1", headers=B64).json() == {"result": [b64("x"), b64("OK")]}
    assert client.get("/mget/foo/missing", headers=B64).json() == {"result": [b64("bar"), None]}
    # Nested arrays (XRANGE) are encoded recursively.
    entry_id = flush_redis.xadd("s", {"f": "v"}).decode()
    assert client.get("/xrange/s/-/+", headers=B64).json() == {
        "result": [[b64(entry_id), [b64("f"), b64("v")]]]
    }
    # Errors stay plain text.
    response = client.get("/incr/foo", headers=B64)
    assert response.status_code == 400
    assert response.json() == {"error": "ERR value is not an integer or out of range"}


def test_base64_in_pipeline_and_multi_exec(client: httpx.Client, flush_redis: redis.Redis) -> None:
    commands = [["SET", "a", "x"], ["GET", "a"], ["PING"], ["INCR", "a"]]
    expected = [
        {"result": "OK"},
        {"result": b64("x")},
        {"result": b64("PONG")},
        {"error": "ERR value is not an integer or out of range"},
    ]
    assert client.post("/pipeline", json=commands, headers=B64).json() == expected
    assert client.post("/multi-exec", json=commands, headers=B64).json() == expected


def test_base64_header_value_is_case_insensitive(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    flush_redis.set("foo", "bar")
    assert client.get("/get/foo", headers={"Upstash-Encoding": "BASE64"}).json() == {
        "result": "YmFy"
    }


def test_resp2_exact_bytes(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.get("/set/foo/bar", headers=RESP2)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"+OK\r\n"
    assert client.get("/get/foo", headers=RESP2).content == b"$3\r\nbar\r\n"
    assert client.get("/get/missing", headers=RESP2).content == b"$-1\r\n"
    flush_redis.set("bin", b"\xff\r\n\x00")
    assert client.get("/get/bin", headers=RESP2).content == b"$4\r\n\xff\r\n\x00\r\n"
    assert client.get("/mget/foo/missing", headers=RESP2).content == b"*2\r\n$3\r\nbar\r\n$-1\r\n"
    assert client.get("/incr/n", headers=RESP2).content == b":1\r\n"


def test_resp2_command_error_is_200_with_error_frame(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = client.get("/get", headers=RESP2)
    assert response.status_code == 200
    assert response.content == b"-ERR wrong number of arguments for 'get' command\r\n"
    response = client.get("/select/1", headers=RESP2)
    assert response.status_code == 200
    assert response.content.startswith(b"-ERR SELECT is not supported over REST")


def test_resp2_pipeline_is_the_concatenation_of_replies(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = client.post(
        "/pipeline",
        json=[["SET", "a", "1"], ["INCR", "a"], ["GET", "zz"], ["HSET", "a", "f", "v"], ["PING"]],
        headers=RESP2,
    )
    assert response.status_code == 200
    assert response.content == (
        b"+OK\r\n:2\r\n$-1\r\n"
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+PONG\r\n"
    )


def test_resp2_header_errors(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.get("/ping", headers={**RESP2, **B64})
    assert response.status_code == 400
    assert "base64" in response.json()["error"]
    response = client.get("/ping", headers={"Upstash-Response-Format": "xml"})
    assert response.status_code == 400
    assert "Upstash-Response-Format" in response.json()["error"]
    # /multi-exec always answers in JSON.
    response = client.post("/multi-exec", json=[["SET", "a", "1"]], headers=RESP2)
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [{"result": "OK"}]


def test_resp2_with_binary_round_trip(client: httpx.Client, flush_redis: redis.Redis) -> None:
    value = bytes(range(256))
    assert client.post("/set/%00key%FF", content=value).json() == {"result": "OK"}
    response = client.get("/get/%00key%FF", headers=RESP2)
    assert response.content == b"$256\r\n" + value + b"\r\n"


def test_sync_token_fresh_on_every_response(client: httpx.Client) -> None:
    tokens = [
        client.get("/set/a/b").headers["upstash-sync-token"],
        client.get("/get/a", headers={"Upstash-Sync-Token": "whatever"}).headers[
            "upstash-sync-token"
        ],
        client.post("/pipeline", json=[["GET", "a"]]).headers["upstash-sync-token"],
        client.post("/multi-exec", json=[["GET", "a"]]).headers["upstash-sync-token"],
        client.get("/get").headers["upstash-sync-token"],  # error responses too
        client.post("/", json=["EVAL", "return 1", 0], headers={"Upstash-Sync-Token": ""}).headers[
            "upstash-sync-token"
        ],
        httpx.get(f"{str(client.base_url).rstrip('/')}/get/a").headers["upstash-sync-token"],  # 401
    ]
    assert all(tokens)
    assert len(set(tokens)) == len(tokens)


def test_eval_and_nested_replies(client: httpx.Client, flush_redis: redis.Redis) -> None:
    script = "return {1, 'two', {3, 'four'}, redis.call('SET', KEYS[1], 'v')}"
    response = client.post("/", json=["EVAL", script, 1, "k"])
    assert response.json() == {"result": [1, "two", [3, "four"], "OK"]}
    response = client.post("/", json=["EVAL", script, 1, "k"], headers=B64)
    # The nested status OK is encoded (only a top-level status OK stays raw).
    assert response.json() == {"result": [1, b64("two"), [3, b64("four")], b64("OK")]}
