"""Connection commands, MULTI semantics, refusals and malformed input, over real sockets."""

from __future__ import annotations

import socket
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def raw_exchange(port: int, payload: bytes, *, expect_close: bool = False) -> bytes:
    """Send raw bytes, read until the reply stops coming (or the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        sock.settimeout(1.0 if not expect_close else 5)
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_handshake_commands(r: redis.Redis) -> None:
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.client_setname("worker-1") is True
    assert r.client_getname() in (b"worker-1", "worker-1")  # redis-py 8 decodes it
    assert isinstance(r.client_id(), int)
    assert r.execute_command("CLIENT SETINFO", "LIB-NAME", "redis-py") in (True, b"OK")
    info = r.client_info()
    assert info["name"] == "worker-1" and str(info["db"]) == "0"
    listed = r.client_list()
    assert any(c["name"] == "worker-1" and ":" in c["addr"] for c in listed)
    assert r.execute_command("SELECT", 0) in (True, b"OK")
    assert r.config_get("save") == {"save": ""}
    assert r.config_get("appendonly") == {"appendonly": "no"}
    assert r.execute_command("CLIENT NO-EVICT", "on") in (True, b"OK")


def test_select_of_an_unconfigured_db_names_the_setting(r: redis.Redis) -> None:
    with pytest.raises(
        redis.ResponseError, match=r"DB index 1 is not configured: add a \[databases\.1\]"
    ):
        r.execute_command("SELECT", 1)


def test_redis_py_with_an_unconfigured_db_fails_clearly(bridge) -> None:
    client = bridge.client(db=1)
    with pytest.raises(redis.ResponseError, match=r"add a \[databases\.1\] table"):
        client.ping()


def test_hello(bridge, r: redis.Redis) -> None:
    reply = r.execute_command("HELLO", 2)
    flat = dict(zip(reply[::2], reply[1::2], strict=True))
    assert flat[b"proto"] == 2 and flat[b"server"] == b"redis"
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        r.execute_command("HELLO", 4)


def test_info_has_upstream_and_bridge_sections(r: redis.Redis) -> None:
    info = r.info()
    assert "redis_version" in info
    assert "bridge_version" in info
    assert info["bridge_commands_processed"] >= 1
    server = r.info("server")
    assert "redis_version" in server and "bridge_version" not in server


def test_command_introspection(r: redis.Redis) -> None:
    count = r.command_count()
    assert count > 200
    info = r.command()  # redis-py parses every entry of COMMAND (no arguments)
    assert info["get"]["arity"] == 2 and "readonly" in info["get"]["flags"]
    assert info["set"]["first_key_pos"] == 1
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("COMMAND", "INFO", "get", "nosuchcmd")
        raw = conn.read_response()
        conn.send_command("COMMAND", "DOCS", "get")
        docs = conn.read_response()
        conn.send_command("COMMAND", "LIST")
        names = conn.read_response()
    finally:
        r.connection_pool.release(conn)
    assert raw[0][0] == b"get" and raw[0][1] == 2 and raw[1] is None
    assert docs[0] == b"get" and b"summary" in docs[1]
    assert b"hset" in names


def test_unknown_command_and_arity(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCOMMAND", "a")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.set("str", "x")
        r.lpush("str", "y")


@pytest.mark.parametrize(
    "command",
    [
        ("SSUBSCRIBE", "q"),
        ("CLUSTER", "INFO"),
        ("REPLICAOF", "NO", "ONE"),
        ("SHUTDOWN",),
        ("DEBUG", "SLEEP", "0"),
    ],
)
def test_refused_commands_name_the_command_and_reason(r: redis.Redis, command: tuple) -> None:
    started = time.monotonic()
    with pytest.raises(redis.ResponseError) as info:
        r.execute_command(*command)
    assert time.monotonic() - started < 2  # an immediate error, never a hang
    text = str(info.value).lower()
    assert command[0].lower() in text and "not supported" in text


def test_multi_exec_semantics(r: redis.Redis) -> None:
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() == b"OK"
        conn.send_command("SET", "a", "1")
        assert conn.read_response() == b"QUEUED"
        conn.send_command("PING")
        assert conn.read_response() == b"QUEUED"
        conn.send_command("INCR", "a")
        assert conn.read_response() == b"QUEUED"
        conn.send_command("EXEC")
        assert conn.read_response() == [b"OK", b"PONG", 2]
        # queue-time errors abort the transaction like Redis
        conn.send_command("MULTI")
        conn.read_response()
        conn.send_command("SET", "a")
        with pytest.raises(redis.ResponseError, match="wrong number"):
            conn.read_response()
        conn.send_command("INCR", "a")
        assert conn.read_response() == b"QUEUED"
        conn.send_command("EXEC")
        with pytest.raises(redis.exceptions.ExecAbortError, match="discarded"):
            conn.read_response()
        conn.send_command("EXEC")
        with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
            conn.read_response()
        conn.send_command("MULTI")
        conn.read_response()
        conn.send_command("INCR", "a")
        conn.read_response()
        conn.send_command("DISCARD")
        assert conn.read_response() == b"OK"
    finally:
        r.connection_pool.release(conn)
    assert r.get("a") == b"2"


def test_inline_commands(bridge, r: redis.Redis) -> None:
    out = raw_exchange(bridge.port, b'PING\r\nSET inl "hello world"\r\nGET inl\r\n')
    assert out == b"+PONG\r\n+OK\r\n$11\r\nhello world\r\n"


def test_malformed_resp_gets_protocol_error_and_close(bridge, r: redis.Redis) -> None:
    out = raw_exchange(bridge.port, b"*2\r\n$3\r\nGET\r\n:12\r\n", expect_close=True)
    assert out.startswith(b"-ERR Protocol error")
    out = raw_exchange(bridge.port, b"*1\r\n$-5\r\n", expect_close=True)
    assert out.startswith(b"-ERR Protocol error")
    # the bridge is still serving everyone else
    assert r.ping() is True


def test_huge_bulk_header_refused_at_once(bridge, r: redis.Redis) -> None:
    started = time.monotonic()
    out = raw_exchange(
        bridge.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\nabc", expect_close=True
    )
    assert out == b"-ERR Protocol error: invalid bulk length\r\n"
    assert time.monotonic() - started < 3
    assert r.ping() is True


def test_oversized_command_is_refused_without_losing_the_connection(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="max request size"):
        r.set("huge", b"x" * (11 * 1024 * 1024))
    assert r.get("huge") is None
    assert r.ping() is True


def test_quit_replies_then_closes(bridge, r: redis.Redis) -> None:
    out = raw_exchange(bridge.port, b"PING\r\nQUIT\r\nPING\r\n", expect_close=True)
    assert out == b"+PONG\r\n+OK\r\n"


def test_client_reply_off_and_skip(bridge, r: redis.Redis) -> None:
    out = raw_exchange(
        bridge.port,
        b"CLIENT REPLY SKIP\r\nSET a 1\r\nGET a\r\nCLIENT REPLY OFF\r\nGET a\r\n"
        b"CLIENT REPLY ON\r\nGET a\r\n",
    )
    assert out == b"$1\r\n1\r\n+OK\r\n$1\r\n1\r\n"


def test_requirepass(bridge_factory, devserver) -> None:
    bridge = bridge_factory(devserver.url, devserver.token, "--requirepass", "s3cret")
    # redis-py retries a refused AUTH three times with backoff (3 s each): once is enough
    once = Retry(NoBackoff(), 0)
    anonymous = bridge.client(retry=once)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("x")
    with pytest.raises(redis.AuthenticationError):
        bridge.client(password="wrong", retry=once).ping()
    good = bridge.client(password="s3cret")
    assert good.ping() is True
    assert bridge.client(username="default", password="s3cret").ping() is True
    assert "s3cret" not in bridge.log()


def test_redis_py_8_defaults_connect_with_resp3(bridge, r: redis.Redis) -> None:
    """redis-py 8 sends HELLO 3 (no fallback) and CLIENT MAINT_NOTIFICATIONS on connect."""
    client = redis.Redis(host="127.0.0.1", port=bridge.port, client_name="app", socket_timeout=10)
    try:
        assert client.ping() is True
        assert client.hset("h", mapping={"a": "1"}) == 1
        assert client.hgetall("h") == {b"a": b"1"}
        assert client.client_getname() in ("app", b"app")
        info = client.client_info()
        assert str(info["resp"]) == "3"
    finally:
        client.close()


def test_client_kill_by_id_and_skipme(bridge, r: redis.Redis) -> None:
    victim = bridge.client()
    victim.ping()
    victim_id = victim.client_id()
    assert r.execute_command("CLIENT", "KILL", "ID", victim_id) == 1
    # gone from CLIENT LIST at once, as in Redis (redis-py's test_client_kill asks at once)
    assert victim_id not in [int(c["id"]) for c in r.client_list()]
    assert r.execute_command("CLIENT", "KILL", "ID", r.client_id(), "SKIPME", "yes") == 0
    assert r.execute_command("CLIENT", "KILL", "ID", victim_id) == 0  # killed already


@pytest.mark.parametrize("form", ["old", "addr"])
def test_a_killed_client_leaves_client_list_at_once(bridge, r: redis.Redis, form: str) -> None:
    for _ in range(10):
        victim = bridge.client()
        victim.client_setname("victim")
        addr = next(c["addr"] for c in r.client_list() if c["name"] == "victim")
        if form == "old":
            assert r.execute_command("CLIENT", "KILL", addr) in (True, b"OK", "OK")
        else:
            assert r.execute_command("CLIENT", "KILL", "ADDR", addr) == 1
        assert "victim" not in [c["name"] for c in r.client_list()]
        victim.close()
