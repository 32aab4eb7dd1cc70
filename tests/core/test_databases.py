"""Database numbers in the session, without I/O: SELECT, RESET, CLIENT LIST db=, MOVE and
COPY ... DB forwarded only where one Redis server holds both numbers, SWAPDB refused."""

from __future__ import annotations

from bridge.core.actions import Forward
from bridge.core.session import Session
from tests.core.fake_server import FakeServer, make_session, reply


def make(count: int = 3, shared: bool = False) -> Session:
    return make_session(FakeServer(databases=count, shared=shared))


def test_select_changes_the_database_and_reset_goes_back_to_0() -> None:
    s = make()
    assert reply(s, b"SELECT", b"2") == b"+OK\r\n" and s.db == 2
    assert b" db=2 " in reply(s, b"CLIENT", b"INFO")
    assert b" db=2 " in reply(s, b"CLIENT", b"LIST")
    assert reply(s, b"SELECT", b"x") == b"-ERR value is not an integer or out of range\r\n"
    assert reply(s, b"SELECT", b"7").startswith(b"-ERR DB index 7 is not configured")
    assert s.db == 2  # a refused SELECT leaves the database as it was
    assert reply(s, b"RESET") == b"+RESET\r\n" and s.db == 0


def test_select_inside_multi_or_with_watches_is_refused_with_the_reason() -> None:
    s = make()
    assert reply(s, b"MULTI") == b"+OK\r\n"
    s.handle([b"SELECT", b"1"])
    assert s.db == 0 and s.multi_dirty  # EXEC will abort: nothing runs on either database
    assert reply(s, b"EXEC").startswith(b"-EXECABORT")
    s.handle([b"WATCH", b"k"])
    assert reply(s, b"SELECT", b"1").startswith(b"-ERR SELECT with WATCHed keys")
    assert reply(s, b"SELECT", b"0") == b"+OK\r\n"  # the same database is fine
    assert reply(s, b"UNWATCH") == b"+OK\r\n"
    assert reply(s, b"SELECT", b"1") == b"+OK\r\n"


def test_move_swapdb_copy_refused_across_separate_rest_databases() -> None:
    s = make(shared=False)
    assert reply(s, b"MOVE", b"k", b"1").startswith(b"-ERR MOVE across databases is not supp")
    assert reply(s, b"MOVE", b"k", b"0") == b"-ERR source and destination objects are the same\r\n"
    assert reply(s, b"MOVE", b"k", b"9").startswith(b"-ERR DB index 9 is not configured")
    assert reply(s, b"SWAPDB", b"0", b"1").startswith(b"-ERR SWAPDB is not supported")
    assert reply(s, b"SWAPDB", b"0", b"0") == b"+OK\r\n"
    assert reply(s, b"SWAPDB", b"a", b"0") == b"-ERR invalid first DB index\r\n"
    assert reply(s, b"COPY", b"a", b"b", b"DB", b"1").startswith(b"-ERR COPY ... DB across")
    same = s.handle([b"COPY", b"a", b"b", b"DB", b"0", b"REPLACE"])
    assert isinstance(same, Forward)


def test_move_swapdb_copy_forwarded_when_one_server_holds_every_number() -> None:
    s = make(shared=True)
    assert reply(s, b"SELECT", b"1") == b"+OK\r\n"
    for args in ([b"MOVE", b"k", b"2"], [b"COPY", b"a", b"b", b"DB", b"2"]):
        action = s.handle(args)
        assert isinstance(action, Forward) and action.args == args, args
    # The REST API binds each token to its logical database: SWAPDB stays refused.
    assert reply(s, b"SWAPDB", b"0", b"2").startswith(b"-ERR SWAPDB is not supported")
    assert reply(s, b"MOVE", b"k", b"5").startswith(b"-ERR DB index 5 is not configured")


def test_config_get_databases_reports_the_numbers_served() -> None:
    action = make(count=16).handle([b"CONFIG", b"GET", b"databases"])
    assert isinstance(action, Forward) and action.post is not None
    # Upstash shows only notify-keyspace-events: the count comes from the bridge.
    assert action.post(b"*0\r\n") == b"*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n"
