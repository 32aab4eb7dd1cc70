"""Database numbers end to end: SELECT / redis://host/N through the bridge, against the embedded
default (databases 0-15 of its own redis-server) and against a configured second database (a
devserver with --databases 2 and a [databases.1] table, its token from RESP_BRIDGE_DB1_TOKEN).

Isolation is checked against the redis-server behind the bridge (each bridge database is one
of its logical databases); unmodified apps (Django + django-redis, RQ, Celery broker and
results) run on database 1; a client switching database keeps its command order (seen in the
redis-server's MONITOR). The two bridges are shared by the module's tests to keep it short.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from celery import Celery

from bridge.devserver.redis_process import RedisServerProcess
from bridge.devserver.rest_server import database_token
from tests.conftest import DevServerHandle, start_devserver
from tests.e2e.apps import celery_app, rq_jobs
from tests.e2e.conftest import BridgeProcess, start_bridge
from tests.e2e.test_apps import (  # noqa: F401 - fixtures
    JOB_TIMEOUT_S,
    WORKER_START_TIMEOUT_S,
    WorkerProcess,
    restore_signals,
    spawn,
    wait_until,
)


@dataclass
class Numbered:
    """A bridge serving numbered databases, and the redis-server whose logical database n is
    the bridge's database n."""

    name: str
    bridge: BridgeProcess
    redis_url: str

    def client(self, db: int, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("protocol", 2)
        kwargs.setdefault("socket_timeout", 10)
        client = redis.Redis(host="127.0.0.1", port=self.bridge.port, db=db, **kwargs)
        self.bridge.clients.append(client)
        return client

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.bridge.port}/{db}"

    def direct(self, db: int) -> redis.Redis:
        client = redis.Redis.from_url(self.redis_url, db=db, socket_timeout=10)
        self.bridge.clients.append(client)
        return client


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Numbered]:
    bridge = start_bridge(str(tmp_path_factory.mktemp("embedded-dbs")), None, None)
    try:
        match = re.search(r"local redis-server \((redis://127\.0\.0\.1:\d+)\)", bridge.log())
        assert match, bridge.log()
        yield Numbered("embedded", bridge, match.group(1))
    finally:
        bridge.stop()


def start_configured(
    tmp: Path, devserver: DevServerHandle, *extra: str, db1: DevServerHandle | None = None
) -> BridgeProcess:
    """A bridge whose database 0 is `devserver` and database 1 its `.db1` token (or `db1`'s
    main token): the table names the URL, the token comes from the environment."""
    other = db1 or devserver
    config = tmp / "bridge.toml"
    config.write_text(
        f'url = "{devserver.url}"\ntoken = "{devserver.token}"\n\n'
        f'[databases.1]\nurl = "{other.url}"\n'
    )
    token = other.token if db1 is not None else database_token(devserver.token, 1)
    return start_bridge(
        str(tmp), None, None, "--config", str(config), *extra,
        env={"RESP_BRIDGE_DB1_TOKEN": token},
    )  # fmt: skip


@pytest.fixture(scope="module")
def configured(
    redis_server: RedisServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Numbered]:
    devserver = start_devserver(redis_server.url, extra_args=("--databases", "2"))
    try:
        bridge = start_configured(tmp_path_factory.mktemp("configured-dbs"), devserver)
        try:
            yield Numbered("configured", bridge, redis_server.url)
        finally:
            bridge.stop()
    finally:
        devserver.stop()


@pytest.fixture(params=["embedded", "configured"])
def numbered(request: pytest.FixtureRequest) -> Numbered:
    """Each test runs against both kinds; both databases start empty."""
    target: Numbered = request.getfixturevalue(request.param)
    for db in (0, 1):
        target.direct(db).flushdb()
    return target


# -- isolation -----------------------------------------------------------------------------


def test_each_database_is_isolated_as_in_redis(numbered: Numbered) -> None:
    c0, c1 = numbered.client(0), numbered.client(1)
    c0.mset({"a": "zero", "only0": "x"})
    c1.mset({"a": "one", "only1": "y", "n": "1"})
    assert (c0.get("a"), c1.get("a")) == (b"zero", b"one")
    assert (c0.dbsize(), c1.dbsize()) == (2, 3)
    for db, client in ((0, c0), (1, c1)):
        direct = numbered.direct(db)
        assert sorted(client.keys("*")) == sorted(direct.keys("*"))
        assert sorted(client.scan_iter(count=2)) == sorted(direct.keys("*"))
        assert client.dbsize() == direct.dbsize()
    assert sorted(c1.keys("only*")) == [b"only1"]
    # redis-py's URL form sends SELECT on connect.
    from_url = redis.Redis.from_url(numbered.url(1), socket_timeout=10)
    numbered.bridge.clients.append(from_url)
    assert from_url.get("only1") == b"y" and from_url.get("only0") is None
    info = c1.client_info()
    assert str(info["db"]) == "1"
    # RESP3 with a name: redis-py sends HELLO 3 SETNAME ..., then SELECT 1.
    named = numbered.client(1, protocol=3, client_name="resp3-one")
    assert named.get("only1") == b"y"
    assert {str(c["db"]) for c in named.client_list() if c["name"] == "resp3-one"} == {"1"}
    assert {str(c["db"]) for c in c1.client_list()} >= {"0", "1"}

    assert c1.flushdb() is True
    assert (c0.dbsize(), c1.dbsize()) == (2, 0)
    assert numbered.direct(1).dbsize() == 0 and numbered.direct(0).get("a") == b"zero"
    # RESET goes back to database 0; SELECT moves again.
    assert c1.execute_command("RESET") in (b"RESET", "RESET")
    assert c1.get("a") == b"zero"
    c1.execute_command("SELECT", 1)
    assert c1.get("a") is None


def test_numbers_not_served_get_a_clear_error(
    embedded: Numbered, configured: Numbered, redis_client: redis.Redis
) -> None:
    with pytest.raises(redis.ResponseError) as direct_error:
        redis_client.execute_command("SELECT", 16)
    with pytest.raises(redis.ResponseError) as bridge_error:
        embedded.client(0).execute_command("SELECT", 16)
    assert str(bridge_error.value) == str(direct_error.value) == "DB index is out of range"
    with pytest.raises(redis.ResponseError, match=r"DB index 2 is not configured: add a "):
        configured.client(2).ping()
    client = configured.client(0)
    with pytest.raises(redis.ResponseError, match=r"\[databases\.5\] table \(url, token; or "):
        client.execute_command("SELECT", 5)
    assert client.ping() is True  # still on database 0, connected


def test_move_swapdb_copy_where_redis_guarantees_hold(numbered: Numbered) -> None:
    c0, c1 = numbered.client(0), numbered.client(1)
    c0.set("m", "moved")
    c0.set("c", "copied")
    if numbered.name == "embedded":  # one redis-server holds both: Redis does it, atomically
        assert c0.move("m", 1) is True
        assert c0.get("m") is None and c1.get("m") == b"moved"
        assert c0.copy("c", "c2", destination_db=1) is True
        assert c1.get("c2") == b"copied"
        with pytest.raises(redis.ResponseError, match="SWAPDB is not supported by the bridge"):
            c0.swapdb(0, 1)
        return
    for call in (lambda: c0.move("m", 1), lambda: c0.copy("c", "c2", destination_db=1)):
        with pytest.raises(redis.ResponseError, match="across databases is not supported by the"):
            call()
    with pytest.raises(redis.ResponseError, match="SWAPDB is not supported by the bridge"):
        c0.swapdb(0, 1)
    assert c0.get("m") == b"moved" and c1.get("m") is None and c1.get("c2") is None
    with pytest.raises(redis.ResponseError, match="source and destination objects are the same"):
        c0.move("m", 0)


def test_pubsub_is_global_whatever_database_was_selected(numbered: Numbered) -> None:
    subscriber = numbered.client(1).pubsub()
    subscriber.subscribe("db-news")
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    assert numbered.client(0).publish("db-news", "from 0") == 1
    assert numbered.client(1).publish("db-news", "from 1") == 1
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=1)
        if message and message["type"] == "message":
            got.append(message["data"])
    subscriber.close()
    assert got == [b"from 0", b"from 1"]


# -- order across databases -----------------------------------------------------------------


def test_a_client_switching_database_keeps_its_command_order(
    redis_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Database 0's commands travel alone (binary values) with 30 ms of upstream latency each;
    the SET on database 1 after them must still run after all of them (order as seen by the
    redis-server's MONITOR)."""
    devserver = start_devserver(
        redis_server.url, extra_args=("--databases", "2", "--latency-ms", "30")
    )
    bridge = start_configured(tmp_path, devserver)
    lines: list[str] = []
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    monitor = direct.monitor()
    monitor.connection.send_command("MONITOR")
    assert monitor.connection.read_response() in (b"OK", "OK")
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                lines.append(monitor.next_command()["command"])
            except (redis.TimeoutError, redis.ConnectionError):
                return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        client = redis.Redis(port=bridge.port, protocol=2, socket_timeout=10)
        pipe = client.pipeline(transaction=False)
        for i in range(5):
            pipe.set(f"order:{i}", b"\xff\xfe binary %d" % i)
        pipe.execute_command("SELECT", 1)
        pipe.set("order:after", "1")
        pipe.execute_command("SELECT", 0)
        pipe.get("order:4")
        replies = pipe.execute()
        assert replies[-1] == b"\xff\xfe binary 4" and replies[5:7] == [True, True]
        wait_until(lambda: any("GET order:4" in line for line in lines), 10, "MONITOR lines")
        client.close()
    finally:
        done.set()
        direct.close()
        bridge.stop()
        devserver.stop()
    sets = [i for i, line in enumerate(lines) if line.startswith("SET order:")]
    after = next(i for i, line in enumerate(lines) if line.startswith("SET order:after"))
    last_get = max(i for i, line in enumerate(lines) if line.startswith("GET order:4"))
    assert max(s for s in sets if s != after) < after < last_get, lines


def test_publish_in_a_transaction_on_database_1_reaches_database_0s_subscribers(
    devserver: DevServerHandle, tmp_path: Path
) -> None:
    """Database 1 on a REST database of its own (another redis-server): Celery's result backend
    sends MULTI SETEX PUBLISH EXEC there; the message must reach subscribers all the same."""
    with RedisServerProcess() as other_redis:
        other = start_devserver(other_redis.url)
        bridge = start_configured(tmp_path, devserver, db1=other)
        try:
            subscriber = redis.Redis(port=bridge.port, db=1, socket_timeout=10).pubsub()
            subscriber.subscribe("result")
            assert subscriber.get_message(timeout=5)["type"] == "subscribe"
            c1 = redis.Redis(port=bridge.port, db=1, socket_timeout=10)
            pipe = c1.pipeline(transaction=True)
            pipe.set("meta", "done", ex=60).publish("result", "done").get("meta")
            assert pipe.execute() == [True, 1, b"done"]
            assert c1.publish("result", "again") == 1
            got = []
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                message = subscriber.get_message(timeout=1)
                if message and message["type"] == "message":
                    got.append(message["data"])
            assert got == [b"done", b"again"]
            assert redis.Redis.from_url(other_redis.url).get("meta") == b"done"
            subscriber.close()
            c1.close()
        finally:
            bridge.stop()
            other.stop()


# -- unmodified apps on database 1 ----------------------------------------------------------


def test_django_redis_cache_on_database_1(numbered: Numbered) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_TZ=True)
    from django_redis.cache import RedisCache

    numbered.client(0).set("untouched", "yes")
    cache = RedisCache(numbered.url(1), {"TIMEOUT": 60})
    cache.set("greeting", {"hello": "world"})
    assert cache.get("greeting") == {"hello": "world"}
    assert cache.add("greeting", "other") is False
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b", "missing"]) == {"a": 1, "b": 2}
    assert cache.incr("a") == 2
    assert sorted(cache.keys("*")) == ["a", "b", "greeting"]
    assert 0 < cache.ttl("greeting") <= 60
    cache.delete_many(["a", "b"])
    assert cache.get("a") is None
    assert numbered.direct(1).get(":1:greeting") is not None  # Django's key format, database 1
    assert numbered.client(0).get(":1:greeting") is None
    cache.clear()  # FLUSHDB on database 1
    assert numbered.direct(1).dbsize() == 0
    assert numbered.client(0).get("untouched") == b"yes"
    cache.close()


def test_rq_on_database_1(numbered: Numbered, restore_signals: None) -> None:  # noqa: F811
    conn = redis.Redis.from_url(numbered.url(1), socket_timeout=10)
    numbered.bridge.clients.append(conn)
    queue = rq.Queue("default", connection=conn)
    jobs = [queue.enqueue(rq_jobs.add, i, i) for i in range(4)]
    after = queue.enqueue(rq_jobs.add, 40, 2, depends_on=jobs[0])
    bad = queue.enqueue(rq_jobs.fail, "kaput")
    worker = rq.Worker([queue], connection=conn, name=f"db1-{numbered.name}")
    assert worker.work(burst=True, logging_level="WARNING") is True
    assert [job.return_value() for job in jobs] == [0, 2, 4, 6]
    assert after.return_value() == 42
    assert bad.id in queue.failed_job_registry.get_job_ids()
    assert not numbered.client(0).keys("rq:*")
    assert numbered.direct(1).keys("rq:*")


def test_celery_broker_and_results_on_database_1(
    numbered: Numbered,
    spawn: Callable[..., WorkerProcess],  # noqa: F811
) -> None:
    name = f"db1-{numbered.name}"
    worker = spawn(
        f"celery-{name}",
        [
            sys.executable, "-m", "celery", "-A", "tests.e2e.apps.celery_app", "worker",
            "--pool=solo", "-c", "1", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "info", "-n", f"{name}@%h",
        ],
        env={celery_app.PORT_ENV: str(numbered.bridge.port), celery_app.DB_ENV: "1"},
    )  # fmt: skip
    app = Celery("db1-producer", broker=numbered.url(1), backend=numbered.url(1))
    app.conf.update(
        broker_transport_options=celery_app.app.conf.broker_transport_options,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    try:
        wait_until(
            lambda: " ready." in worker.log() or worker.proc.poll() is not None,
            WORKER_START_TIMEOUT_S,
            "the Celery worker on database 1",
            worker.log,
        )
        add = "tests.e2e.apps.celery_app.add"
        assert app.send_task(add, (2, 3)).get(timeout=JOB_TIMEOUT_S) == 5
        results = [app.send_task(add, (i, i)) for i in range(5)]
        assert [r.get(timeout=JOB_TIMEOUT_S) for r in results] == [0, 2, 4, 6, 8]
        failing = app.send_task("tests.e2e.apps.celery_app.fail", ("kaput",))
        with pytest.raises(Exception, match="kaput"):
            failing.get(timeout=JOB_TIMEOUT_S)
        assert numbered.direct(1).keys("celery-task-meta-*")
        assert not numbered.client(0).keys("celery*")
    finally:
        consumer = getattr(app.backend, "result_consumer", None)
        if consumer is not None:
            consumer.stop()
        app.close()
        worker.stop()


# -- operations: admin STATS / CLIENTS, RELOAD of the tables ------------------------------


def test_admin_shows_databases_and_reload_rereads_the_tables(
    redis_server: RedisServerProcess, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    devserver = start_devserver(redis_server.url, extra_args=("--databases", "3"))
    config = tmp_path / "bridge.toml"
    top = f'url = "{devserver.url}"\ntoken = "{devserver.token}"\n'

    def write(**tokens: str) -> None:
        tables = "".join(
            f'\n[databases.{n[2:]}]\nurl = "{devserver.url}"\ntoken = "{token}"\n'
            for n, token in tokens.items()
        )
        config.write_text(top + tables)

    def admin(*args: str) -> Any:
        result = CliRunner().invoke(main, ["admin", "--socket", sock, "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    tokens = {f"db{n}": database_token(devserver.token, n) for n in (1, 2)}
    write(db1=tokens["db1"])
    sock = str(tmp_path / "admin.sock")
    bridge = start_bridge(
        str(tmp_path), None, None, "--config", str(config), "--admin-socket", sock
    )
    try:
        c1 = redis.Redis(port=bridge.port, db=1, socket_timeout=10, client_name="on-one")
        assert c1.set("k", "one") is True
        with pytest.raises(redis.ResponseError, match=r"DB index 2 is not configured"):
            redis.Redis(port=bridge.port, db=2, socket_timeout=10).ping()
        stats = admin("STATS")["databases"]
        assert stats["1"]["clients"] == 1 and stats["1"]["commands"] >= 1
        assert stats["1"]["upstream"] == stats["0"]["upstream"]
        rows = admin("CLIENTS")
        assert [r["db"] for r in rows if r["name"] == "on-one"] == [1]

        write(db1=tokens["db1"], db2=tokens["db2"])  # a new number
        assert "databases" in admin("RELOAD")["applied"]
        c2 = redis.Redis(port=bridge.port, db=2, socket_timeout=10)
        assert c2.set("k", "two") is True
        assert redis.Redis.from_url(redis_server.url, db=2).get("k") == b"two"

        write(db1="a-token-the-devserver-refuses", db2=tokens["db2"])  # a changed table
        admin("RELOAD")
        with pytest.raises(redis.ResponseError, match="401"):
            c1.get("k")  # the same connection, now on the new table
        write(db1=tokens["db1"], db2=tokens["db2"])
        admin("RELOAD")
        assert c1.get("k") == b"one"
        for client in (c1, c2):
            client.close()
        shown = json.dumps(admin("STATS")) + json.dumps(admin("CONFIG")) + bridge.log()
        assert not any(token in shown for token in tokens.values())
    finally:
        bridge.stop()
        devserver.stop()


def test_blocking_commands_wait_on_their_own_database(numbered: Numbered) -> None:
    waiter, c0, c1 = numbered.client(1), numbered.client(0), numbered.client(1)
    c0.rpush("jobs", "for-zero")  # the same key on database 0 wakes nobody on database 1
    assert waiter.blpop(["jobs"], timeout=1) is None
    assert c0.lrange("jobs", 0, -1) == [b"for-zero"]
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(waiter.blpop(["jobs"], timeout=10)))
    thread.start()
    time.sleep(0.3)
    c1.rpush("jobs", "for-one")
    thread.join(15)
    assert got == [(b"jobs", b"for-one")]
    assert c0.llen("jobs") == 1 and c1.llen("jobs") == 0


def test_a_refused_token_of_a_table_stops_the_start_naming_it(
    devserver: DevServerHandle, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'url = "{devserver.url}"\ntoken = "{devserver.token}"\n\n'
        f'[databases.1]\nurl = "{devserver.url}"\ntoken = "not-the-token"\n'
    )
    with pytest.raises(RuntimeError) as caught:
        start_bridge(str(tmp_path), None, None, "--config", str(config))
    assert "databases.1: the upstream" in str(caught.value)
    assert "refused the token (HTTP 401): check the token of [databases.1]" in str(caught.value)
    assert "not-the-token" not in str(caught.value)


def test_client_pause_holds_writes_on_every_database(numbered: Numbered) -> None:
    c0, c1 = numbered.client(0), numbered.client(1)
    assert c1.set("before", "1") is True  # database 1 opened before the pause
    assert c0.execute_command("CLIENT", "PAUSE", 600, "WRITE") in (True, b"OK")
    started = time.monotonic()
    assert c1.get("before") == b"1"  # reads go on
    read_s = time.monotonic() - started
    assert c1.set("held", "1") is True
    write_s = time.monotonic() - started
    assert read_s < 0.4 <= write_s, (read_s, write_s)
    assert c0.execute_command("CLIENT", "UNPAUSE") in (True, b"OK")
