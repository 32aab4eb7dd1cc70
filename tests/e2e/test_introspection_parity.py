"""Introspection and server commands through the bridge compared with redis-server 7.0 directly.

COMMAND LIST/COUNT/INFO/DOCS, PUBSUB NUMSUB/NUMPAT/CHANNELS, WAIT, CLIENT PAUSE/UNPAUSE, CONFIG
GET/SET and MONITOR run on the same redis-server twice: straight and through devserver +
bridge; replies (or redis-py's parsed values) must be equal, except where the README lists a
difference (the table's three post-7.0 extras; CONFIG as the REST provider allows it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bridge.admin_cli import AdminClient
from bridge.core.resp import parse_frame
from bridge.devserver.redis_process import RedisServerProcess
from tests.conftest import DevServerHandle
from tests.core.test_commands import EXTRAS, RawConnection
from tests.e2e.conftest import BridgeProcess

#: Top-level commands of the table that redis-server 7.0 lacks (7.2's, clients send them).
TOP_LEVEL_EXTRAS = frozenset(n for n in EXTRAS if "|" not in n)


@pytest.fixture
def direct(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def _call(client: redis.Redis, *args: str) -> Any:
    """One command on a raw connection to `client`'s server, parsed without redis-py's
    callbacks (which reshape COMMAND and CONFIG replies)."""
    conn = RawConnection(client.connection_pool.connection_kwargs["port"])
    try:
        return parse_frame(conn.call(*args))
    finally:
        conn.close()


def _names(client: redis.Redis, *args: str) -> set[str]:
    return {n.decode() for n in _call(client, "COMMAND", "LIST", *args)}


# -- COMMAND ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        (),
        ("FILTERBY", "ACLCAT", "hyperloglog"),
        ("FILTERBY", "ACLCAT", "PubSub"),
        ("FILTERBY", "ACLCAT", "dangerous"),
        ("FILTERBY", "ACLCAT", "connection"),
        ("FILTERBY", "ACLCAT", "nosuchcategory"),
        ("FILTERBY", "PATTERN", "config*"),
        ("FILTERBY", "PATTERN", "CLIENT|*"),
        ("FILTERBY", "PATTERN", "?et"),
        ("FILTERBY", "PATTERN", "[xz]add"),
        ("FILTERBY", "MODULE", "json"),
    ],
)
def test_command_list_equals_redis(
    r: redis.Redis, direct: redis.Redis, filters: tuple[str, ...]
) -> None:
    mine, theirs = _names(r, *filters), _names(direct, *filters)
    assert mine - EXTRAS == theirs
    if not filters:
        assert {"config|get", "acl|cat", "client|list", "xinfo|stream"} <= mine


@pytest.mark.parametrize(
    "args",
    [
        ("FILTERBY",),
        ("FILTERBY", "PATTERN"),
        ("FILTERBY", "NOSUCH", "x"),
        ("foo",),
        ("FILTERBY", "PATTERN", "a", "extra"),
    ],
)
def test_command_list_syntax_errors_equal_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess, args: tuple[str, ...]
) -> None:
    replies = []
    for port in (redis_server.port, bridge.port):
        conn = RawConnection(port)
        replies.append(conn.call("COMMAND", "LIST", *args))
        conn.close()
    assert replies[1] == replies[0] == b"-ERR syntax error\r\n"


def test_command_count_is_consistent_with_list_and_info(
    r: redis.Redis, direct: redis.Redis
) -> None:
    count = _call(r, "COMMAND", "COUNT")
    top_level = {n for n in _names(r) if "|" not in n}
    entries = _call(r, "COMMAND")
    assert count == len(top_level) == len(entries)
    assert count == _call(direct, "COMMAND", "COUNT") + len(TOP_LEVEL_EXTRAS)


@pytest.mark.parametrize("sub", ["INFO", "DOCS"])
def test_command_info_and_docs_of_subcommands_equal_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess, sub: str
) -> None:
    replies = []
    for port in (redis_server.port, bridge.port):
        conn = RawConnection(port)
        replies.append(parse_frame(conn.call("COMMAND", sub, "config|get", "acl|cat", "get")))
        conn.close()
    assert replies[1] == replies[0]


# -- PUBSUB -------------------------------------------------------------------------------------


def _subscribers(port: int, prefix: str) -> list[redis.client.PubSub]:
    """<prefix>foo: 1 subscriber, bar: 2, baz: 3; patterns a* (twice) and b*."""
    subs = []
    layout = [(["foo", "bar", "baz"], ["a*"]), (["bar", "baz"], ["a*", "b*"]), (["baz"], [])]
    layout = [([prefix + c for c in chs], [prefix + p for p in pats]) for chs, pats in layout]
    for channels, patterns in layout:
        p = redis.Redis(port=port).pubsub()
        p.subscribe(*channels)
        if patterns:
            p.psubscribe(*patterns)
        for _ in range(len(channels) + len(patterns)):
            assert p.get_message(timeout=5) is not None  # the confirmations
        subs.append(p)
    return subs


def test_pubsub_counts_equal_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess, direct: redis.Redis
) -> None:
    results = []
    for port in (redis_server.port, bridge.port):
        subs = _subscribers(port, "counts-")
        client = redis.Redis(port=port)
        results.append(
            (
                client.pubsub_numsub("counts-foo", "counts-bar", "counts-baz", "none"),
                client.pubsub_numpat(),
                sorted(c for c in client.pubsub_channels() if c.startswith(b"counts-")),
                sorted(client.pubsub_channels("counts-ba*")),
            )
        )
        for p in subs:
            p.close()
        client.close()
    assert results[1] == results[0]
    assert results[1][0] == [
        (b"counts-foo", 1), (b"counts-bar", 2), (b"counts-baz", 3), (b"none", 0)
    ]  # fmt: skip


def test_pubsub_numsub_resp3_equals_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess
) -> None:
    replies = []
    for port in (redis_server.port, bridge.port):
        subs = _subscribers(port, "resp3-")
        conn = RawConnection(port, protocol=3)
        replies.append(conn.call("PUBSUB", "NUMSUB", "resp3-foo", "resp3-baz"))
        conn.close()
        for p in subs:
            p.close()
    assert replies[1] == replies[0]


# -- WAIT, CLIENT PAUSE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("0", "0"), ("-1", "0"), ("x", "0"), ("0", "-1"), ("0", "x"), ("1", "10")]
)
def test_wait_equals_a_standalone_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess, args: tuple[str, ...]
) -> None:
    replies = []
    for port in (redis_server.port, bridge.port):
        conn = RawConnection(port)
        conn.call("SET", "w", "1")
        replies.append(conn.call("WAIT", *args))
        conn.close()
    assert replies[1] == replies[0]


@pytest.mark.parametrize(
    "args",
    [("abc",), ("-1",), ("10", "FOO"), ("10", "WRITE", "ALL"), ("0", "write"), ("0",)],
)
def test_client_pause_arguments_equal_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess, args: tuple[str, ...]
) -> None:
    replies = []
    for port in (redis_server.port, bridge.port):
        conn = RawConnection(port)
        replies.append((conn.call("CLIENT", "PAUSE", *args), conn.call("CLIENT", "UNPAUSE")))
        conn.close()
    assert replies[1] == replies[0]


def _timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


@pytest.fixture
def own_bridge(
    bridge_factory: Callable[..., BridgeProcess], devserver: DevServerHandle
) -> BridgeProcess:
    """A bridge of the test's own: CLIENT PAUSE holds every client of its bridge."""
    return bridge_factory(devserver.url, devserver.token)


def test_client_pause_write_holds_writes_of_all_clients_not_reads(
    own_bridge: BridgeProcess, tmp_path: Path
) -> None:
    pauser, worker = own_bridge.client(), own_bridge.client()
    worker.set("k", "v")
    assert pauser.client_pause(800, all=False)
    with AdminClient(str(tmp_path / f"admin-{own_bridge.port}.sock")) as admin:
        assert admin.call("STATS")["client_pause"] == "write"
    assert worker.get("k") == b"v"  # reads go on
    held = _timed(lambda: worker.set("k", "w"))
    assert held > 0.3  # the write waited for the pause to end
    assert worker.get("k") == b"w"


def test_client_unpause_releases_held_commands(own_bridge: BridgeProcess) -> None:
    pauser, worker = own_bridge.client(), own_bridge.client()
    assert pauser.client_pause(30_000)  # ALL
    done = threading.Event()

    def write() -> None:
        worker.set("k2", "v")
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert not done.wait(0.3)  # held
    other = own_bridge.client()
    assert other.client_unpause()
    assert done.wait(10)
    thread.join()
    assert other.get("k2") == b"v"


# -- CONFIG -------------------------------------------------------------------------------------


def test_config_get_several_parameters_and_plausible_defaults(r: redis.Redis) -> None:
    got = r.config_get("save")
    assert got == {"save": ""}
    both = _call(r, "CONFIG", "GET", "appendonly", "databases")
    assert set(both[0::2]) == {b"appendonly", b"databases"}
    assert "notify-keyspace-events" in r.config_get("notify*")


def test_config_set_is_decided_by_the_upstream(
    r: redis.Redis, direct: redis.Redis, devserver: DevServerHandle
) -> None:
    before = direct.config_get("maxmemory")
    with pytest.raises(redis.ResponseError) as info:
        r.config_set("maxmemory", "12345")
    assert str(info.value) == (
        "CONFIG SET maxmemory is not allowed over REST: only notify-keyspace-events can be "
        "changed (nothing was changed)"
    )
    assert direct.config_get("maxmemory") == before
    try:
        assert r.config_set("notify-keyspace-events", "Kl")
        # The devserver's redis-server itself changed, and the bridge reads it back.
        assert direct.config_get("notify-keyspace-events") == {"notify-keyspace-events": "lK"}
        assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": "lK"}
    finally:
        direct.config_set("notify-keyspace-events", "")


def test_config_get_inside_multi_runs_at_exec(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.config_get("save")
    pipe.set("m", "1")
    assert pipe.execute() == [{"save": ""}, True]


# -- MONITOR ------------------------------------------------------------------------------------


def _monitored(
    port: int, work: Callable[[redis.Redis], None], last: str, protocol: int
) -> list[dict[str, Any]]:
    """MONITOR entries (parsed by redis-py) up to the one whose command is `last`."""
    client = redis.Redis(port=port, protocol=protocol)
    seen: list[dict[str, Any]] = []
    with client.monitor() as monitor:
        worker = redis.Redis(port=port)
        work(worker)
        deadline = time.monotonic() + 10
        while (not seen or seen[-1]["command"] != last) and time.monotonic() < deadline:
            seen.append(monitor.next_command())
        worker.close()
    client.close()
    return seen


@pytest.mark.parametrize("protocol", [2, 3])
def test_monitor_lines_are_read_by_redis_py(
    bridge: BridgeProcess, redis_server: RedisServerProcess, protocol: int
) -> None:
    def work(client: redis.Redis) -> None:
        client.set("mk", 'a "quoted" value')
        client.get("mk")

    results = []
    for port in (redis_server.port, bridge.port):
        seen = _monitored(port, work, "GET mk", protocol)
        results.append(
            [(e["command"], e["db"], e["client_type"]) for e in seen if "mk" in e["command"]]
        )
        assert all(isinstance(e["time"], float) and e["time"] > 1.6e9 for e in seen)
    assert results[1] == results[0]
    assert results[0] == [('SET mk a "quoted" value', 0, "tcp"), ("GET mk", 0, "tcp")]


def test_monitor_shows_locally_answered_commands_as_redis(
    bridge: BridgeProcess, redis_server: RedisServerProcess
) -> None:
    """PING, ECHO, SELECT never reach the upstream: the bridge writes their lines, quoted as
    Redis does; admin commands (CONFIG GET, CLIENT LIST) stay hidden, as in Redis."""

    def work(client: redis.Redis) -> None:
        client.ping()
        client.echo('a\nb"c')
        client.execute_command("CONFIG", "GET", "save")
        client.execute_command("CLIENT", "LIST")
        client.execute_command("SELECT", "0")
        client.get("mon-end")

    results = []
    for port in (redis_server.port, bridge.port):
        seen = _monitored(port, work, "GET mon-end", 2)
        commands = [e["command"] for e in seen]
        start = commands.index("PING")
        results.append(commands[start:])
        ports = {e["client_port"] for e in seen[start:-1]}
        assert len(ports) == 1  # the client's own address, one per connection
    assert results[1] == results[0]
    assert results[0] == ["PING", 'ECHO a\\nb"c', "SELECT 0", "GET mon-end"]


# -- refusals -----------------------------------------------------------------------------------


def test_refusals_are_counted_by_reason_and_logged_once_per_client(
    own_bridge: BridgeProcess, tmp_path: Path
) -> None:
    client = own_bridge.client()
    for _ in range(5):
        with pytest.raises(redis.ResponseError, match="not supported by resp-bridge"):
            client.execute_command("CLUSTER", "INFO")
    with pytest.raises(redis.ResponseError, match="sharded pub/sub"):
        client.execute_command("SSUBSCRIBE", "x")
    with AdminClient(str(tmp_path / f"admin-{own_bridge.port}.sock")) as admin:
        stats = admin.call("STATS")
        metrics = admin.call("METRICS")
    if isinstance(stats, str):
        stats = json.loads(stats)
    assert stats["refused_total"] == 6
    reason = "cluster commands are not supported by the REST API"
    assert stats["refused"][f"cluster|info: {reason}"] == 5
    text = metrics if isinstance(metrics, str) else json.dumps(metrics)
    assert f'resp_bridge_refused_commands_total{{command="cluster|info",reason="{reason}"}} 5' in (
        text
    )
    log = own_bridge.log()
    assert log.count("sent CLUSTER INFO: refused") == 1
    assert log.count("sent SSUBSCRIBE: refused") == 1


def test_devserver_config_get_is_upstash_like(devserver: DevServerHandle) -> None:
    """What the bridge merges with: the REST API answers notify-keyspace-events only."""
    response = httpx.post(
        devserver.url, json=["CONFIG", "GET", "save"], headers=devserver.headers, timeout=10
    )
    assert response.json() == {"result": []}


def test_monitor_shows_watch_and_unwatch(bridge: BridgeProcess) -> None:
    """The upstream runs WATCH as a script and never sees UNWATCH: the bridge shows both as
    Redis would (redis-py's pipeline reset test waits for UNWATCH in MONITOR)."""

    def work(client: redis.Redis) -> None:
        client.execute_command("WATCH", "mon-w")
        client.execute_command("UNWATCH")
        client.get("mon-w-end")

    seen = [e["command"] for e in _monitored(bridge.port, work, "GET mon-w-end", 2)]
    assert "WATCH mon-w" in seen and "UNWATCH" in seen
    assert seen.index("WATCH mon-w") < seen.index("UNWATCH")
