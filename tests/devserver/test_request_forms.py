"""Request forms of the REST API: path form, raw body + query, JSON array, pipeline, multi-exec."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import DevServerHandle


@pytest.fixture
def client(devserver: DevServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=devserver.url, headers=devserver.headers, timeout=10) as c:
        yield c


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_path_form_methods(client: httpx.Client, flush_redis: redis.Redis, method: str) -> None:
    response = client.request(method, "/set/foo/bar/EX/100")
    assert response.status_code == 200
    assert response.json() == {"result": "OK"}
    assert response.headers["content-type"] == "application/json"
    assert flush_redis.get("foo") == b"bar"
    assert 0 < flush_redis.ttl("foo") <= 100


def test_head_runs_the_command_without_body(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.head("/incr/counter")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(b'{"result":1}')
    assert flush_redis.get("counter") == b"1"


@pytest.mark.parametrize("name", ["set", "SET", "Set"])
def test_command_name_any_case(client: httpx.Client, flush_redis: redis.Redis, name: str) -> None:
    assert client.get(f"/{name}/k/v").json() == {"result": "OK"}
    assert flush_redis.get("k") == b"v"


def test_percent_encoded_path_segments_are_exact_bytes(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    # %2F stays inside the argument, %FF is the raw byte 0xFF, %20 a space, + a plus sign.
    response = client.get("/set/a%2Fb%20c+d/%FF%00%C3%A9%0D%0A")
    assert response.json() == {"result": "OK"}
    assert flush_redis.get(b"a/b c+d") == b"\xff\x00\xc3\xa9\r\n"
    response = client.get("/get/a%2Fb%20c+d", headers={"Upstash-Encoding": "base64"})
    assert response.json() == {"result": "/wDDqQ0K"}


def test_empty_segment_is_an_empty_argument(client: httpx.Client, flush_redis: redis.Redis) -> None:
    assert client.get("/set/empty/").json() == {"result": "OK"}
    assert flush_redis.get("empty") == b""


def test_raw_body_is_the_last_argument(client: httpx.Client, flush_redis: redis.Redis) -> None:
    value = bytes(range(256)) + b'{"json": [1, 2]}'
    response = client.post("/set/bin?EX=100", content=value)
    assert response.json() == {"result": "OK"}
    assert flush_redis.get("bin") == value
    assert 0 < flush_redis.ttl("bin") <= 100


def test_raw_body_with_value_less_query_key_and_token(
    devserver: DevServerHandle, flush_redis: redis.Redis
) -> None:
    # `NX` has no value: one argument. `_token` authenticates and is not an argument.
    url = f"{devserver.url}/set/k?NX&_token={devserver.token}"
    assert httpx.post(url, content=b"first").json() == {"result": "OK"}
    assert httpx.post(url, content=b"second").json() == {"result": None}
    assert flush_redis.get("k") == b"first"


def test_query_arguments_are_percent_decoded_in_order(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = client.post("/zadd/z?1=a%26b&2=%FF", content=b"ignored-not")
    # ZADD z <body> 1 a&b 2 \xff -> body is the first score: invalid float.
    assert response.status_code == 400
    response = client.post("/hset/h/f1?f2=v%262&f3=%FF", content=b"v1")
    assert response.json() == {"result": 3}
    assert flush_redis.hgetall("h") == {b"f1": b"v1", b"f2": b"v&2", b"f3": b"\xff"}


def test_json_array_form(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.post("/", json=["SET", "foo", "bar", "EX", 100])
    assert response.json() == {"result": "OK"}
    assert 0 < flush_redis.ttl("foo") <= 100
    # Content-Type is irrelevant.
    response = client.post("/", content=b'["GET","foo"]', headers={"Content-Type": "text/plain"})
    assert response.json() == {"result": "bar"}


def test_json_numbers_keep_their_literal_text(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    body = b'[["SET","f",1.50],["SET","e",1e21],["SET","big",123456789012345678901234567890],'
    body += b'["SET","neg",-7],["SET","t",true],["SET","n",false]]'
    response = client.post("/pipeline", content=body)
    assert response.json() == [{"result": "OK"}] * 6
    assert flush_redis.mget("f", "e", "big", "neg", "t", "n") == [
        b"1.50",
        b"1e21",
        b"123456789012345678901234567890",
        b"-7",
        b"true",
        b"false",
    ]
    response = client.post("/", content=b'["ZADD","z",11,"a",2.5,"b"]')
    assert response.json() == {"result": 2}
    assert flush_redis.zrange("z", 0, -1, withscores=True) == [(b"b", 2.5), (b"a", 11.0)]


def test_pipeline(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.post(
        "/pipeline",
        json=[
            ["SET", "key1", "valuex"],
            ["SETEX", "key2", 13, "valuez"],
            ["INCR", "key1"],
            ["ZADD", "myset", 11, "item1", 22, "item2"],
            ["HGETALL", "missing"],
            ["MGET", "key1", "nope"],
        ],
    )
    assert response.status_code == 200
    assert response.json() == [
        {"result": "OK"},
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": 2},
        {"result": []},
        {"result": ["valuex", None]},
    ]


def test_pipeline_goes_to_redis_in_order(client: httpx.Client, flush_redis: redis.Redis) -> None:
    commands = [["RPUSH", "list", str(i)] for i in range(200)]
    response = client.post("/pipeline", json=commands)
    assert [item["result"] for item in response.json()] == list(range(1, 201))
    assert flush_redis.lrange("list", 0, -1) == [str(i).encode() for i in range(200)]


def test_multi_exec(client: httpx.Client, flush_redis: redis.Redis) -> None:
    response = client.post(
        "/multi-exec",
        json=[["SET", "key1", "valuex"], ["INCR", "key1"], ["SET", "n", 1], ["INCR", "n"]],
    )
    assert response.status_code == 200
    assert response.json() == [
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": "OK"},
        {"result": 2},
    ]


def test_multi_exec_queue_error_discards_everything(
    client: httpx.Client, flush_redis: redis.Redis
) -> None:
    response = client.post("/multi-exec", json=[["SET", "a", "1"], ["NOSUCHCOMMAND", "x"], ["GET"]])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("EXECABORT Transaction discarded because of previous errors.")
    assert "unknown command" in error
    assert flush_redis.exists("a") == 0
    # The connection was not left inside MULTI: the next transaction works.
    response = client.post("/multi-exec", json=[["SET", "a", "1"], ["GET", "a"]])
    assert response.json() == [{"result": "OK"}, {"result": "1"}]


def test_put_with_body_is_like_post(client: httpx.Client, flush_redis: redis.Redis) -> None:
    assert client.put("/set/p", content=b"body").json() == {"result": "OK"}
    assert flush_redis.get("p") == b"body"
    assert client.put("/", json=["GET", "p"]).json() == {"result": "body"}


def test_query_arguments_apply_to_get_too(client: httpx.Client, flush_redis: redis.Redis) -> None:
    assert client.get("/set/k/v?EX=50").json() == {"result": "OK"}
    assert 0 < flush_redis.ttl("k") <= 50


def test_long_binary_key_in_the_path(client: httpx.Client, flush_redis: redis.Redis) -> None:
    key = bytes(range(256)) * 80  # 20,480 bytes -> ~61 KB percent-encoded (httpx max: 64 KB)
    path = "/set/" + "".join(f"%{b:02X}" for b in key)
    assert client.post(path, content=b"v").json() == {"result": "OK"}
    assert flush_redis.get(key) == b"v"


def test_oversize_request_head_is_431(devserver: DevServerHandle) -> None:
    url = httpx.URL(devserver.url)
    request = b"GET /get/" + b"k" * (2 * 1024 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = b""
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        # The server answers once the head exceeds its limit and closes; the rest of our
        # request may then be refused with a reset.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert b"bad HTTP request" in reply
