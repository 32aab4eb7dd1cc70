"""Session state machine without any I/O: handshake, MULTI, AUTH, subscribed mode."""

from __future__ import annotations

import pytest

from bridge.core import commands, local
from bridge.core.actions import Block, Forward, PubSub, Transaction
from bridge.core.commands import Route
from bridge.core.session import Session
from tests.core.fake_server import FakeServer, make_session, reply


def make(requirepass: str | None = None) -> Session:
    return make_session(FakeServer(requirepass))


def test_every_local_command_has_a_handler() -> None:
    for spec in commands.all_commands():
        for s in [spec, *spec.subcommands.values()]:
            if s.route is Route.LOCAL and not s.subcommands:
                assert s.name in local._HANDLERS, s.name


def test_ping_echo_select() -> None:
    s = make()
    assert reply(s, b"PING") == b"+PONG\r\n"
    assert reply(s, b"ping", b"hi") == b"$2\r\nhi\r\n"
    assert reply(s, b"ECHO", b"x") == b"$1\r\nx\r\n"
    assert reply(s, b"SELECT", b"0") == b"+OK\r\n"
    assert reply(s, b"SELECT", b"3") == (
        b"-ERR DB index 3 is not configured: add a [databases.3] table\r\n"
    )
    assert reply(s, b"GET").startswith(b"-ERR wrong number of arguments for 'get'")


def test_forwarding_and_unknown_commands() -> None:
    s = make()
    action = s.handle([b"get", b"k"])
    assert isinstance(action, Forward) and action.spec is not None and action.spec.name == "get"
    action = s.handle([b"JSON.GET", b"k"])
    assert isinstance(action, Forward) and action.spec is None  # the upstream decides


def test_hello_switches_protocol_and_rejects_unknown_versions() -> None:
    s = make()
    assert reply(s, b"HELLO", b"4").startswith(b"-NOPROTO")
    data = reply(s, b"HELLO", b"3", b"SETNAME", b"app")
    assert data.startswith(b"%7\r\n") and b"proto\r\n:3\r\n" in data and b"7.2.4" in data
    assert s.protocol == 3 and s.name == b"app"
    assert reply(s, b"CLIENT", b"GETNAME") == b"$3\r\napp\r\n"


def test_auth_flow() -> None:
    s = make("pw")
    assert reply(s, b"GET", b"k").startswith(b"-NOAUTH")
    assert reply(s, b"HELLO", b"3").startswith(b"-NOAUTH")
    assert reply(s, b"AUTH", b"bad").startswith(b"-WRONGPASS")
    assert reply(s, b"AUTH", b"other", b"pw").startswith(b"-WRONGPASS")
    assert reply(s, b"AUTH", b"default", b"pw") == b"+OK\r\n"
    assert isinstance(s.handle([b"GET", b"k"]), Forward)
    open_session = make()
    assert reply(open_session, b"AUTH", b"x").startswith(b"-ERR AUTH <password> called without")
    assert reply(open_session, b"AUTH", b"default", b"anything") == b"+OK\r\n"  # nopass user
    assert reply(open_session, b"AUTH", b"bob", b"x").startswith(b"-WRONGPASS")
    assert reply(open_session, b"HELLO", b"3", b"AUTH", b"default", b"pw").startswith(b"%7")


def test_multi_queue_and_execabort() -> None:
    s = make()
    assert reply(s, b"MULTI") == b"+OK\r\n"
    assert reply(s, b"MULTI").startswith(b"-ERR MULTI calls can not be nested")
    assert reply(s, b"SET", b"a", b"1") == b"+QUEUED\r\n"
    assert reply(s, b"PING") == b"+QUEUED\r\n"
    action = s.handle([b"EXEC"])
    assert isinstance(action, Transaction)
    assert [q.local for q in action.commands] == [None, b"+PONG\r\n"]
    assert reply(s, b"MULTI") == b"+OK\r\n"
    # Redis' queue-time error for an unknown command; a module command (a dot) is queued.
    assert reply(s, b"NOSUCH", b"x") == (
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"
    )
    assert reply(s, b"JSON.GET", b"k") == b"+QUEUED\r\n"
    assert reply(s, b"GET").startswith(b"-ERR wrong number")
    assert reply(s, b"EXEC").startswith(b"-EXECABORT")
    assert reply(s, b"EXEC") == b"-ERR EXEC without MULTI\r\n"
    assert reply(s, b"DISCARD") == b"-ERR DISCARD without MULTI\r\n"


def test_subscribed_mode_rules_resp2() -> None:
    s = make()
    action = s.handle([b"SUBSCRIBE", b"a", b"b"])
    assert isinstance(action, PubSub)
    assert action.replies[1] == b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
    assert reply(s, b"GET", b"k").startswith(b"-ERR Can't execute 'get'")
    assert reply(s, b"PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    action = s.handle([b"UNSUBSCRIBE"])
    assert isinstance(action, PubSub) and sorted(action.names) == [b"a", b"b"]
    assert action.replies[-1].endswith(b":0\r\n")
    action = s.handle([b"PUNSUBSCRIBE"])
    assert isinstance(action, PubSub)
    assert action.replies == [b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"]
    assert isinstance(s.handle([b"GET", b"k"]), Forward)


def test_client_reply_modes() -> None:
    s = make()
    assert s.handle([b"CLIENT", b"REPLY", b"SKIP"]).data == b""  # type: ignore[union-attr]
    assert s.handle([b"GET", b"k"]).silent is True
    assert s.handle([b"GET", b"k"]).silent is False
    s.handle([b"CLIENT", b"REPLY", b"OFF"])
    assert s.handle([b"PING"]).silent is True
    assert s.handle([b"CLIENT", b"REPLY", b"ON"]).silent is False


@pytest.mark.parametrize("name", [b"SSUBSCRIBE", b"CLUSTER", b"SHUTDOWN"])
def test_refusals_name_the_command(name: bytes) -> None:
    s = make()
    args = {b"SSUBSCRIBE": [b"SSUBSCRIBE", b"c"], b"CLUSTER": [b"CLUSTER", b"INFO"]}.get(
        name, [name]
    )
    data = reply(s, *args)
    assert data.startswith(b"-ERR '") and b"not supported by resp-bridge" in data


def test_blocking_commands_become_plans() -> None:
    s = make()
    action = s.handle([b"BLPOP", b"a", b"b", b"1.5"])
    assert isinstance(action, Block)
    assert action.plan.poll == (b"LMPOP", b"2", b"a", b"b", b"LEFT")
    assert action.plan.timeout_s == 1.5
    assert reply(s, b"BLPOP", b"a", b"-1") == b"-ERR timeout is negative\r\n"
    assert reply(s, b"BLPOP", b"a", b"x").startswith(b"-ERR timeout is not a float")
    action = s.handle([b"XREAD", b"COUNT", b"2", b"BLOCK", b"0", b"STREAMS", b"s", b"$"])
    assert isinstance(action, Block) and action.plan.timeout_s is None
    assert action.plan.poll == (b"XREAD", b"COUNT", b"2", b"STREAMS", b"s", b"$")
    assert isinstance(s.handle([b"XREAD", b"STREAMS", b"s", b"0"]), Forward)


def test_watch_records_fingerprints_and_exec_carries_them() -> None:
    s = make()
    action = s.handle([b"WATCH", b"k1", b"k2"])
    # The server layer registers the group before it reads the fingerprints (a Block).
    assert isinstance(action, Block) and action.plan.kind == "watch"
    assert action.plan.poll[0] == b"EVAL" and action.plan.keys == (b"k1", b"k2")
    assert s.finish(action, b"*2\r\n$3\r\nfp1\r\n$0\r\n\r\n") == b"+OK\r\n"
    assert reply(s, b"MULTI") == b"+OK\r\n"
    assert reply(s, b"WATCH", b"x").startswith(b"-ERR WATCH inside MULTI")
    reply(s, b"INCR", b"k1")
    tx = s.handle([b"EXEC"])
    assert isinstance(tx, Transaction)
    assert tx.watched() == [(b"k1", b"fp1"), (b"k2", b"")]
    assert s.watches == []
    s.handle([b"WATCH", b"k"])
    assert reply(s, b"UNWATCH") == b"+OK\r\n" and s.watches == []


@pytest.mark.parametrize(("protocol", "null"), [(2, b"*-1\r\n"), (3, b"_\r\n")])
def test_a_dirty_watch_makes_exec_answer_the_protocols_null(protocol: int, null: bytes) -> None:
    s = make()
    s.protocol = protocol
    action = s.handle([b"WATCH", b"k"])
    assert isinstance(action, Block)
    s.finish(action, b"*1\r\n$3\r\nfp1\r\n")
    action.plan.group.dirty = True  # what the server layer does when a write to k is seen
    reply(s, b"MULTI")
    reply(s, b"SET", b"k", b"1")
    assert reply(s, b"EXEC") == null  # answered here: the queued SET is never sent
    assert s.watches == [] and s.multi is None
    # A conflict found by the script's fingerprint check is the same null.
    s.handle([b"WATCH", b"k"])
    reply(s, b"MULTI")
    reply(s, b"SET", b"k", b"1")
    tx = s.handle([b"EXEC"])
    assert isinstance(tx, Transaction)
    assert s.finish(tx, b"*-1\r\n") == null


@pytest.mark.parametrize(
    "url",
    [
        "https://h.upstash.io/?_token=SECRET",
        "https://user:SECRET@h.upstash.io",
        "ftp://user:SECRET@host",
    ],
)
def test_urls_with_credentials_are_refused_without_echoing_them(url: str) -> None:
    from bridge.config import load_config
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(cli={"url": url, "token": "t"}, environ={})
    assert "SECRET" not in str(info.value)


def test_a_refusal_inside_multi_is_answered_at_queue_time_and_counted() -> None:
    s = make()
    assert reply(s, b"MULTI") == b"+OK\r\n"
    assert reply(s, b"SELECT", b"1").startswith(b"-ERR SELECT inside MULTI is not supported")
    assert reply(s, b"CLUSTER", b"INFO").startswith(b"-ERR 'cluster|info' is not supported")
    assert reply(s, b"EXEC").startswith(b"-EXECABORT")
    assert [c for c, _ in s.context.refusals] == ["select", "cluster|info"]  # type: ignore[attr-defined]


def test_select_of_an_unconfigured_database_is_counted_as_a_refusal() -> None:
    s = make()
    assert reply(s, b"SELECT", b"3").startswith(b"-ERR DB index 3 is not configured")
    assert s.context.refusals == [("select", "DB index 3 is not configured")]  # type: ignore[attr-defined]


def test_pubsub_counts_only_subscriptions_that_are_live_upstream() -> None:
    """A publisher that sees NUMSUB 1 must be able to rely on delivery: a subscription counts
    once the hub has confirmed its stream, never before (and never after a failure)."""
    subscriber, publisher = make(), make()
    publisher.context.all.append(subscriber)  # type: ignore[attr-defined]
    action = subscriber.handle([b"SUBSCRIBE", b"ch"])
    assert isinstance(action, PubSub)
    numsub = [b"PUBSUB", b"NUMSUB", b"ch"]
    assert reply(publisher, *numsub) == b"*2\r\n$2\r\nch\r\n:0\r\n"
    subscriber.confirm("channel", b"ch", action.replies[0], "")
    assert reply(publisher, *numsub) == b"*2\r\n$2\r\nch\r\n:1\r\n"
    failed = subscriber.handle([b"PSUBSCRIBE", b"p*"])
    assert isinstance(failed, PubSub)
    assert reply(publisher, b"PUBSUB", b"NUMPAT") == b":0\r\n"
    subscriber.confirm("pattern", b"p*", failed.replies[0], "ERR stream unavailable")
    assert reply(publisher, b"PUBSUB", b"NUMPAT") == b":0\r\n"
