"""The command table (bridge/core/commands.py): against a real redis-server 7.0, and its policy.

`RealRedis`/`real_redis` here start a private redis-server on a free loopback port; test_resp3.py
reuses them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from bridge.core import commands
from bridge.core.commands import (
    RESP3_SAME_AS_RESP2,
    RESP3_SHAPES,
    CommandSpec,
    Route,
    all_commands,
    check_arity,
    command_docs_reply,
    command_info_reply,
    get_keys,
    help_reply,
    key_positions,
    lookup,
    resolve,
    walk_commands,
)
from bridge.core.resp import FrameReader, Status, encode_command, encode_resp2, parse_frame

REDIS_SERVER = shutil.which("redis-server")

#: Subcommands/commands the table adds beyond redis-server 7.0 (from Valkey's JSON).
EXTRAS = frozenset({"client|setinfo", "client|no-touch", "waitaof"})


# --- a private redis-server ----------------------------------------------------------------------


class RawConnection:
    """A blocking RESP connection that returns each reply's exact bytes."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._reader = FrameReader()
        if protocol == 3:
            reply = self.call("HELLO", "3")
            assert reply.startswith(b"%"), reply

    def send(self, *args: str | bytes) -> None:
        self._sock.sendall(encode_command(args))

    def read(self) -> bytes:
        while (frame := self._reader.next_frame()) is None:
            data = self._sock.recv(1 << 16)
            if not data:
                raise ConnectionError("redis-server closed the connection")
            self._reader.feed(data)
        return frame

    def call(self, *args: str | bytes) -> bytes:
        self.send(*args)
        return self.read()

    def close(self) -> None:
        self._sock.close()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealRedis:
    """A redis-server process on a free loopback port, in its own temporary directory."""

    def __init__(self, *extra_args: str) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed")
        self.dir = tempfile.mkdtemp(prefix="resp-bridge-test-")
        self.port = free_port()
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--logfile", "redis.log", *extra_args]
        self.proc = subprocess.Popen(
            argv, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                RawConnection(self.port).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = self._log_tail()
                    self.stop()
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            with open(f"{self.dir}/redis.log", errors="replace") as log:
                return "".join(log.readlines()[-10:])
        except OSError:
            return ""

    def connect(self, protocol: int = 2) -> RawConnection:
        return RawConnection(self.port, protocol)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def real_redis() -> Iterator[RealRedis]:
    server = RealRedis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def conn(real_redis: RealRedis) -> Iterator[RawConnection]:
    connection = real_redis.connect()
    yield connection
    connection.close()


# --- the table against the server ----------------------------------------------------------------


def _without_extras(entry: list[Any]) -> list[Any]:
    return [*entry[:9], sorted(s for s in entry[9] if s[0].decode() not in EXTRAS)]


def test_every_server_command_has_a_spec_with_the_servers_metadata(conn: RawConnection) -> None:
    real = parse_frame(conn.call("COMMAND"))
    assert isinstance(real, list) and len(real) > 200
    names = set()
    for entry in real:
        spec = lookup(entry[0])
        assert spec is not None, entry[0]
        names.add(spec.name)
        assert (spec.arity, spec.first_key, spec.last_key, spec.step) == tuple(
            entry[1:2] + entry[3:6]
        )
        assert spec.flags == {bytes(f).decode() for f in entry[2]}
        for sub in entry[9]:
            sub_spec = lookup(sub[0])
            assert sub_spec is not None and sub_spec.arity == sub[1], sub[0]
    assert names | {"waitaof"} == {s.name for s in all_commands()}


def test_command_info_reply_rebuilds_the_servers_reply(conn: RawConnection) -> None:
    real = parse_frame(conn.call("COMMAND"))
    assert isinstance(real, list)
    for entry in real:
        spec = lookup(entry[0])
        assert spec is not None
        mine = command_info_reply(spec)
        # Exact bytes, simple-string flags included; subcommands come in hash order: sort.
        assert encode_resp2(_without_extras(mine)) == encode_resp2(_without_extras(entry))


def test_command_docs_reply_rebuilds_the_servers_reply(conn: RawConnection) -> None:
    for name in ("get", "set", "georadius", "client", "xadd", "migrate", "zadd", "config"):
        spec = lookup(name)
        assert spec is not None
        real = parse_frame(conn.call("COMMAND", "DOCS", name))
        assert isinstance(real, list) and real[0] == name.encode() and len(real) == 2
        mine = command_docs_reply(spec)
        assert encode_resp2(_sorted_docs(mine)) == encode_resp2(_sorted_docs(real[1]))


def _sorted_docs(body: list[Any]) -> list[Any]:
    if b"subcommands" not in body[0::2]:
        return body
    i = body.index(b"subcommands") + 1
    subs = body[i]
    pairs = sorted(
        (name, _sorted_docs(doc))
        for name, doc in zip(subs[0::2], subs[1::2], strict=True)
        if name.decode() not in EXTRAS
    )
    return [*body[:i], [part for pair in pairs for part in pair], *body[i + 1 :]]


def test_docs_flags_are_simple_strings() -> None:
    spec = lookup("georadius")
    assert spec is not None
    body = command_docs_reply(spec)
    doc_flags = body[body.index(b"doc_flags") + 1]
    assert doc_flags == [b"deprecated"] and isinstance(doc_flags[0], Status)
    encoded = encode_resp2(command_info_reply(spec))
    assert b"+write\r\n" in encoded and b"+@geo\r\n" in encoded


# Command lines whose keys COMMAND GETKEYS reports; key_positions must agree.
GETKEYS_CASES: list[list[str]] = [
    ["GET", "a"],
    ["SET", "a", "b", "EX", "10"],
    ["MSET", "a", "1", "b", "2", "c", "3"],
    ["MGET", "a", "b", "c"],
    ["DEL", "a", "b"],
    ["BLPOP", "a", "b", "0"],
    ["BRPOPLPUSH", "a", "b", "0"],
    ["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"],
    ["BLMPOP", "0", "2", "a", "b", "LEFT", "COUNT", "2"],
    ["BZMPOP", "1", "2", "a", "b", "MIN"],
    ["ZUNION", "2", "a", "b", "WEIGHTS", "1", "2"],
    ["ZUNIONSTORE", "d", "2", "a", "b"],
    ["ZINTERCARD", "2", "a", "b", "LIMIT", "1"],
    ["EVAL", "return 1", "2", "a", "b", "x"],
    ["FCALL", "f", "1", "a", "x"],
    ["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"],
    ["XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "s1", "0"],
    ["SORT", "a", "BY", "w_*", "LIMIT", "0", "2", "GET", "o_*", "STORE", "d"],
    ["SORT", "a"],
    ["MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"],
    ["MIGRATE", "h", "6379", "a", "0", "5000"],
    ["GEORADIUS", "g", "1", "2", "3", "km", "STORE", "d"],
    ["GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km"],
    ["OBJECT", "ENCODING", "a"],
    ["XINFO", "STREAM", "s"],
    ["MEMORY", "USAGE", "a"],
    ["LMOVE", "a", "b", "LEFT", "LEFT"],
    ["RENAME", "a", "b"],
    ["COPY", "a", "b"],
    ["SINTERCARD", "3", "a", "b", "c"],
    ["SMOVE", "a", "b", "m"],
    ["WATCH", "a", "b"],
    ["BITOP", "AND", "d", "a", "b"],
    ["PFMERGE", "d", "a", "b"],
    ["LCS", "a", "b"],
]


@pytest.mark.parametrize("line", GETKEYS_CASES, ids=lambda line: " ".join(line[:2]))
def test_key_positions_match_command_getkeys(conn: RawConnection, line: list[str]) -> None:
    real = parse_frame(conn.call("COMMAND", "GETKEYS", *line))
    args = [a.encode() for a in line]
    spec = resolve(args)
    assert spec is not None
    assert isinstance(real, list), real
    assert get_keys(spec, args) == real


def test_key_positions_for_bad_arguments_are_empty() -> None:
    for line in (["EVAL", "x", "5", "a"], ["EVAL", "x", "nan"], ["ZUNION", "-1", "a"]):
        args = [a.encode() for a in line]
        spec = resolve(args)
        assert spec is not None
        assert key_positions(spec, args) == []
    spec = lookup("ping")
    assert spec is not None and key_positions(spec, [b"PING"]) == []


# --- lookup, resolve, arity ----------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_takes_bytes_or_str() -> None:
    spec = lookup("GET")
    assert spec is not None and spec.name == "get"
    assert lookup(b"gEt") is spec
    assert lookup("nosuchcommand") is None
    sub = lookup("CLIENT|SetName")
    assert sub is not None and sub.name == "client|setname"
    assert lookup("client|nosuch") is None and lookup("nosuch|x") is None


def test_resolve_picks_subcommands() -> None:
    sub = resolve([b"CLIENT", b"SETNAME", b"x"])
    assert sub is not None and sub.name == "client|setname"
    container = resolve([b"client", b"nosuch"])
    assert container is not None and container.name == "client"
    only = resolve([b"CONFIG"])
    assert only is not None and only.name == "config"
    plain = resolve([b"get", b"client"])
    assert plain is not None and plain.name == "get"
    assert resolve([]) is None
    assert resolve([b"nosuch", b"x"]) is None


def test_check_arity() -> None:
    get, setc, setname = lookup("get"), lookup("set"), lookup("client|setname")
    assert get is not None and setc is not None and setname is not None
    assert check_arity(get, 2) and not check_arity(get, 1) and not check_arity(get, 3)
    assert check_arity(setc, 3) and check_arity(setc, 7) and not check_arity(setc, 2)
    assert check_arity(setname, 3) and not check_arity(setname, 4)


def test_write_and_readonly_flags() -> None:
    def spec(name: str) -> CommandSpec:
        found = lookup(name)
        assert found is not None
        return found

    assert spec("set").is_write() and not spec("set").is_readonly()
    assert spec("get").is_readonly() and not spec("get").is_write()
    assert not spec("eval").is_write() and not spec("eval").is_readonly()
    assert spec("xinfo|stream").is_readonly()


def test_table_has_subcommands_sorted_and_named_redis7_style() -> None:
    client = lookup("client")
    assert client is not None
    assert list(client.subcommands) == sorted(client.subcommands)
    assert all(s.name == f"client|{k}" for k, s in client.subcommands.items())
    assert {"setinfo", "no-touch"} <= set(client.subcommands)


# --- routing policy ------------------------------------------------------------------------------

ROUTES: dict[Route, list[str]] = {
    Route.LOCAL: [
        "ping",
        "echo",
        "quit",
        "reset",
        "select",
        "move",
        "swapdb",
        "auth",
        "hello",
        "info",
        "client",
        "client|setname",
        "client|getname",
        "client|setinfo",
        "client|id",
        "client|info",
        "client|list",
        "client|no-evict",
        "client|no-touch",
        "client|reply",
        "client|kill",
        "client|unblock",
        "client|getredir",
        "client|trackinginfo",
        "command",
        "command|docs",
        "command|info",
        "command|count",
        "command|list",
        "command|getkeys",
        "config|get",
        "client|pause",
        "client|unpause",
        "wait",
        "pubsub|numsub",
        "pubsub|numpat",
        "pubsub|channels",
    ],
    Route.FORWARD: [
        "get",
        "set",
        "time",
        "publish",
        "spublish",
        "xread",
        "xreadgroup",
        "eval",
        "script|load",
        "object|freq",
        "pubsub|shardnumsub",
        "config|set",
        "config|rewrite",
        "config|resetstat",
        "flushall",
        "role",
        "memory|stats",
        "acl|getuser",
        "module|list",
    ],
    Route.TRANSACTION: ["multi", "exec", "discard", "watch", "unwatch"],
    Route.PUBSUB: ["subscribe", "psubscribe", "unsubscribe", "punsubscribe", "monitor"],
    Route.BLOCKING: [
        "blpop",
        "brpop",
        "brpoplpush",
        "blmove",
        "blmpop",
        "bzpopmin",
        "bzpopmax",
        "bzmpop",
    ],
    Route.REFUSED: [
        "cluster",
        "cluster|info",
        "readonly",
        "readwrite",
        "replicaof",
        "slaveof",
        "sync",
        "psync",
        "replconf",
        "shutdown",
        "debug",
        "failover",
        "migrate",
        "module|load",
        "waitaof",
        "ssubscribe",
        "sunsubscribe",
        "save",
        "bgsave",
        "bgrewriteaof",
        "client|tracking",
        "client|caching",
        "script|debug",
    ],
}


@pytest.mark.parametrize("route", list(Route), ids=lambda r: r.name)
def test_routes(route: Route) -> None:
    for name in ROUTES[route]:
        spec = lookup(name)
        assert spec is not None, name
        assert spec.route is route, name


def test_refused_commands_say_why() -> None:
    for spec in walk_commands():
        if spec.route is Route.REFUSED:
            assert spec.reason and not spec.reason.endswith("."), spec.name
        else:
            assert spec.reason == "", spec.name

    def reason(name: str) -> str:
        spec = lookup(name)
        assert spec is not None
        return spec.reason

    assert reason("client|tracking") == "client-side caching is not supported by the bridge"
    assert lookup("move").route is lookup("swapdb").route is Route.LOCAL  # type: ignore[union-attr]
    assert reason("cluster|nodes") == "cluster commands are not supported by the REST API"
    assert reason("replicaof") == "replication is not available over the REST API"
    assert reason("shutdown") == "would shut down the upstream server"


def test_blocking_flagged_commands_are_all_decided() -> None:
    blocking = {s.name: s.route for s in walk_commands() if "blocking" in s.flags}
    assert blocking == {
        **dict.fromkeys(ROUTES[Route.BLOCKING], Route.BLOCKING),
        "xread": Route.FORWARD,  # the session spots BLOCK and emulates it
        "xreadgroup": Route.FORWARD,
        "waitaof": Route.REFUSED,
    }
    wait = lookup("wait")
    assert wait is not None and wait.route is Route.LOCAL  # a standalone Redis: 0 replicas


def test_pubsub_flagged_commands_are_routed_to_pubsub_or_forwarded() -> None:
    for spec in walk_commands():
        if "pubsub" in spec.flags and spec.route is not Route.PUBSUB:
            assert spec.name in {"publish", "spublish", "ssubscribe", "sunsubscribe"} or (
                spec.name.startswith("pubsub|")
            ), spec.name


def test_policy_tables_name_real_commands() -> None:
    policy = [
        *commands._LOCAL,
        *commands._TRANSACTION,
        *commands._PUBSUB,
        *commands._BLOCKING,
        *commands._REFUSED,
        *RESP3_SHAPES,
        *RESP3_SAME_AS_RESP2,
    ]
    missing = [name for name in policy if lookup(name) is None]
    assert missing == []


def test_every_command_whose_schema_differs_in_resp3_has_a_shape() -> None:
    """Valkey's reply_schema says where RESP3 may differ: each such command must be decided."""
    undecided = []
    for spec in walk_commands():
        hints = spec.reply_hints & {"map", "double", "unique", "bool", "tuple"}
        if hints and not spec.resp3 and spec.name not in RESP3_SAME_AS_RESP2:
            undecided.append((spec.name, sorted(hints)))
    assert undecided == []
    both = set(RESP3_SHAPES) & set(RESP3_SAME_AS_RESP2)
    assert both == set()


def test_shape_ids_reach_specs() -> None:
    for name, shape in RESP3_SHAPES.items():
        spec = lookup(name)
        assert spec is not None and spec.resp3 == shape


def test_help_reply_lists_subcommands() -> None:
    spec = lookup("client")
    assert spec is not None
    lines = [bytes(line).decode() for line in help_reply(spec)]
    assert lines[0] == "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert "SETNAME" in lines and lines[lines.index("SETNAME") + 1].startswith("    ")
    assert lines[-2:] == ["HELP", "    Print this help."]
    assert all(isinstance(line, Status) for line in help_reply(spec))


def test_core_modules_do_no_io() -> None:
    code = (
        "import sys; import bridge.core.commands, bridge.core.resp3;"
        "bad = {'trio', 'httpx', 'socket', 'asyncio'} & set(sys.modules);"
        "print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _docs_arguments(spec: CommandSpec) -> Sequence[Any]:
    return spec.docs.get("arguments", ())


def test_docs_keep_arguments_for_cli_hints() -> None:
    spec = lookup("set")
    assert spec is not None
    names = [a["name"] for a in _docs_arguments(spec)]
    assert names[:2] == ["key", "value"]
    assert spec.complexity == "O(1)" and spec.group == "string" and spec.since == "1.0.0"
