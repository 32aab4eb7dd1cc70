"""What the bridge costs upstream, counted by the devserver: idle Celery and RQ workers with
keyspace events on and off, a BLPOP woken by a producer writing straight to the REST API,
WATCH aborted by same-value writes from anywhere, the COST counters and an enforced budget.

These tests run on a redis-server and devserver of their own: keyspace notifications are a
setting of the whole Redis server, and the session's server must not get them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import rq

from bridge.admin_cli import AdminClient
from bridge.devserver.redis_process import RedisServerProcess
from tests.conftest import DevServerHandle, start_devserver
from tests.e2e.conftest import BridgeProcess, start_bridge

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Idle time measured (extrapolated to a minute): short, to keep the suite fast.
WINDOW_S = 10.0
#: A worker's start (imports included) and its first blocking call.
WORKER_START_TIMEOUT_S = 40.0
SETTLE_S = 2.0


@pytest.fixture(scope="module")
def own_devserver() -> Iterator[DevServerHandle]:
    with RedisServerProcess() as server:
        handle = start_devserver(server.url)
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cost")


@pytest.fixture(scope="module")
def bridges(own_devserver: DevServerHandle, module_dir: Path) -> Iterator[dict[str, BridgeProcess]]:
    """One bridge per keyspace_events mode, started when first asked for, shared by the
    module (starting bridges is most of these tests' time); stopped at its end."""
    started: dict[str, BridgeProcess] = {}
    yield started
    for bridge in started.values():
        bridge.stop()


@pytest.fixture
def make_bridge(
    own_devserver: DevServerHandle, module_dir: Path, bridges: dict[str, BridgeProcess]
) -> Callable[..., BridgeProcess]:
    """`make_bridge("--keyspace-events", mode, *more)`: the module's bridge of that mode
    (without more flags), or a new one."""

    def start(*flags: str) -> BridgeProcess:
        shared = len(flags) == 2 and flags[0] == "--keyspace-events"
        if shared and flags[1] in bridges:
            return bridges[flags[1]]
        bridge = start_bridge(str(module_dir), own_devserver.url, own_devserver.token, *flags)
        bridges[flags[1] if shared else f"extra-{len(bridges)}"] = bridge
        return bridge

    return start


@pytest.fixture(scope="module", autouse=True)
def no_keyspace_events_after(own_devserver: DevServerHandle) -> Iterator[None]:
    """Leave the server as a fresh one is: no keyspace notifications."""
    yield
    rest(own_devserver, "CONFIG", "SET", "notify-keyspace-events", "")


def rest(dev: DevServerHandle, *command: str) -> Any:
    """One command straight to the REST API (not through the bridge); its result."""
    response = httpx.post(dev.url, json=list(command), headers=dev.headers, timeout=10)
    response.raise_for_status()
    return response.json()["result"]


def admin(bridge: BridgeProcess, *command: str) -> Any:
    with AdminClient(str(Path(bridge.log_path).parent / f"admin-{bridge.port}.sock")) as client:
        return client.call(*command)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_keyspace_ready(bridge: BridgeProcess) -> None:
    """The bridge has read (or set) notify-keyspace-events."""
    wait_for(lambda: "notify-keyspace-events is" in bridge.log(), 10, "keyspace flags")


def measure(dev: DevServerHandle) -> tuple[dict[str, int], float]:
    """(commands by name the devserver ran over WINDOW_S of idle time, seconds measured)."""
    dev.reset_stats()
    started = time.monotonic()
    time.sleep(WINDOW_S)
    counts = dev.stats()["commands_by_name"]
    return dict(counts), time.monotonic() - started


def per_minute(n: int, seconds: float) -> float:
    return n * 60.0 / seconds


def spawn(tmp_path: Path, name: str, argv: list[str], port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    env["RESP_BRIDGE_APPS_PORT"] = str(port)
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- idle workers ------------------------------------------------------------------------------


@pytest.mark.parametrize("events", ["on", "off"])
def test_an_idle_celery_worker_costs_few_upstream_commands(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle, tmp_path: Path,
    events: str,
) -> None:  # fmt: skip
    bridge = make_bridge("--keyspace-events", events)
    if events == "on":
        wait_keyspace_ready(bridge)
    argv = [
        sys.executable, "-m", "celery", "-A", "tests.e2e.apps.celery_idle_app", "worker",
        "--pool=solo", "-l", "info", "-n", f"idle-{events}@%h",
    ]  # fmt: skip
    worker = spawn(tmp_path, f"celery-{events}", argv, bridge.port)
    log = tmp_path / f"celery-{events}.log"
    try:
        wait_for(lambda: " ready." in log.read_text(errors="replace"), WORKER_START_TIMEOUT_S,
                 "the Celery worker")  # fmt: skip
        time.sleep(SETTLE_S)
        counts, seconds = measure(own_devserver)
    finally:
        stop(worker)
    # The worker's own heartbeats (PUBLISH every 2 s) go upstream as they would to Redis.
    publishes = counts.pop("PUBLISH", 0)
    assert per_minute(publishes, seconds) <= 35, counts
    bridge_made = sum(counts.values())
    rate = per_minute(bridge_made, seconds)
    print(f"celery idle, keyspace events {events}: {counts} + {publishes} PUBLISH in "
          f"{seconds:.1f} s = {rate:.0f}/min besides heartbeats")  # fmt: skip
    if events == "on":
        # No poll at all: the keys' streams are live and the next fallback poll is due 30 s
        # after the first one.
        assert rate <= 10, counts
    else:
        # BRPOP ... 1 every second: one poll a second, not two (150 a minute before).
        assert 0 < rate <= 70, counts


def test_an_idle_rq_worker_costs_almost_nothing_with_keyspace_events(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle, tmp_path: Path
) -> None:
    bridge = make_bridge("--keyspace-events", "on")
    wait_keyspace_ready(bridge)
    url = f"redis://127.0.0.1:{bridge.port}/0"
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", url, "--name", "idle", "default"]
    worker = spawn(tmp_path, "rq", argv, bridge.port)
    conn = bridge.client()
    try:
        key = rq.Worker.redis_worker_namespace_prefix + "idle"
        wait_for(lambda: conn.exists(key), WORKER_START_TIMEOUT_S, "the RQ worker")
        time.sleep(SETTLE_S)
        counts, seconds = measure(own_devserver)
    finally:
        stop(worker)
    total = sum(counts.values())
    print(f"rq idle, keyspace events on: {counts} in {seconds:.1f} s")
    assert per_minute(total, seconds) <= 2, counts  # 60 LMOVE a minute before


# -- wake-up from outside the bridge -------------------------------------------------------


def test_a_producer_writing_straight_to_rest_wakes_a_blpop_waiter_at_once(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle
) -> None:
    # auto: the database already notifies keyspace events (set through REST, as a user would).
    assert rest(own_devserver, "CONFIG", "SET", "notify-keyspace-events", "KEA") == "OK"
    bridge = make_bridge("--keyspace-events", "auto")
    wait_keyspace_ready(bridge)
    assert "keyspace wake-ups for lists" in bridge.log()
    client = bridge.client()
    client.delete("jobs")
    http = httpx.Client(headers=own_devserver.headers, timeout=10)
    extra: list[float] = []
    for i in range(20):
        got: list[Any] = []
        waiter = threading.Thread(target=lambda box=got: box.append(client.blpop(["jobs"], 10)))
        waiter.start()
        time.sleep(0.25)  # blocked (stream live, first poll done)
        started = time.monotonic()
        http.post(own_devserver.url, json=["LPUSH", "jobs", f"job-{i}"]).raise_for_status()
        round_trip = time.monotonic() - started
        waiter.join(10)
        woken = time.monotonic() - started
        assert got == [(b"jobs", f"job-{i}".encode())]
        extra.append(woken - round_trip)
    http.close()
    p50 = statistics.median(extra)
    print(f"wake-up after the producer's round trip: p50 {p50 * 1000:.1f} ms, "
          f"max {max(extra) * 1000:.1f} ms")  # fmt: skip
    # Within one round trip (the poll the event triggers) plus 50 ms; up to 1 s before.
    assert p50 <= round_trip + 0.05, extra


# -- WATCH --------------------------------------------------------------------------------------


def _same_value_write(
    writer: str, bridge_client: redis.Redis, dev: DevServerHandle, write: str
) -> None:
    command = ["SET", "counter", "5"] if write == "set-same" else ["APPEND", "counter", ""]
    if writer == "bridge":
        bridge_client.execute_command(*command)
    else:
        rest(dev, *command)


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize(
    ("writer", "write", "events"),
    [
        ("bridge", "set-same", "off"),  # exact without events: the bridge saw the write
        ("bridge", "append-empty", "off"),
        ("rest", "set-same", "on"),  # from outside: the keyspace event
        ("rest", "append-empty", "on"),
    ],
)
def test_a_same_value_write_aborts_exec_and_transaction_retries(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle,
    protocol: int, writer: str, write: str, events: str,
) -> None:  # fmt: skip
    bridge = make_bridge("--keyspace-events", events)
    if events == "on":
        wait_keyspace_ready(bridge)
    client = bridge.client(protocol=protocol)
    other = bridge.client(protocol=2)
    client.set("counter", 5)
    attempts: list[int] = []

    def increment(pipe: redis.client.Pipeline) -> None:
        value = int(pipe.get("counter"))
        attempts.append(value)
        if len(attempts) == 1:
            _same_value_write(writer, other, own_devserver, write)
        pipe.multi()
        pipe.set("counter", value + 1)

    # redis-py's check-and-set helper: WatchError (the null EXEC reply) makes it retry.
    client.transaction(increment, "counter")
    assert attempts == [5, 5]
    assert client.get("counter") == b"6"


@pytest.mark.parametrize("protocol", [2, 3])
def test_exec_runs_when_no_write_touched_the_watched_key(
    make_bridge: Callable[..., BridgeProcess], protocol: int
) -> None:
    bridge = make_bridge("--keyspace-events", "on")
    wait_keyspace_ready(bridge)
    client = bridge.client(protocol=protocol)
    other = bridge.client()
    client.set("counter", 1)
    pipe = client.pipeline()
    pipe.watch("counter")
    other.set("elsewhere", 1)  # another key
    other.delete("never-there")  # a write that changed nothing
    pipe.multi()
    pipe.incr("counter")
    assert pipe.execute() == [2]


def test_a_write_just_before_watch_does_not_abort_exec(
    make_bridge: Callable[..., BridgeProcess],
) -> None:
    """SET k, then WATCH k at once, while k's keyspace stream is open from an earlier WATCH:
    the SET's event may arrive after the WATCH; it is a write from before the WATCH, so EXEC
    runs (it used to abort now and then: WatchError in
    test_exec_runs_when_no_write_touched_the_watched_key[3], once in a full suite run)."""
    bridge = make_bridge("--keyspace-events", "on")
    wait_keyspace_ready(bridge)
    client = bridge.client()
    aborted = 0
    for i in range(60):
        client.set("loop-counter", i)
        pipe = client.pipeline()
        pipe.watch("loop-counter")
        pipe.multi()
        pipe.incr("loop-counter")
        try:
            assert pipe.execute() == [i + 1]
        except redis.WatchError:
            aborted += 1
    assert aborted == 0, f"{aborted} of 60 EXECs aborted by a write made before their WATCH"


# -- counting -----------------------------------------------------------------------------------


def test_cost_counts_what_the_devserver_ran_by_cause(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle, tmp_path: Path
) -> None:
    bridge = make_bridge("--keyspace-events", "off")
    client = bridge.client()
    client.get("warm-up")
    before = admin(bridge, "COST")
    own_devserver.reset_stats()
    client.set("a", 1)
    pipe = client.pipeline(transaction=True)
    pipe.incr("a").incr("a")
    pipe.execute()
    with client.pipeline() as watched:
        watched.watch("a")
        watched.multi()
        watched.incr("a")
        watched.execute()
    assert client.blpop(["empty-list"], 1) is None
    pubsub = client.pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    pubsub.close()
    after = admin(bridge, "COST")
    ran = sum(own_devserver.stats()["commands_by_name"].values())
    delta = {s: after["by_source"][s] - before["by_source"][s] for s in after["by_source"]}
    assert after["commands_total"] - before["commands_total"] == ran, (delta, ran)
    assert delta["client"] == 3  # SET, the two INCRs of MULTI/EXEC
    assert delta["watch"] == 2  # the fingerprints, the EXEC script
    assert delta["pubsub"] == 1
    # BLPOP ... 1 polls at 0, 50, 150, 350 and 750 ms (the interval doubles), not at 1 s.
    assert 1 <= delta["blocking"] <= 5
    assert after["price_per_100k_commands"] == 0.2
    assert after["estimate"]["since_start"] == round(after["commands_total"] * 0.2 / 1e5, 4)
    stats = admin(bridge, "STATS")
    assert stats["upstream_commands"] >= after["commands_total"]
    metrics = admin(bridge, "METRICS")
    assert 'resp_bridge_upstream_commands_total{source="watch"}' in metrics


def test_an_enforced_budget_refuses_commands_and_says_they_did_not_run(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle, tmp_path: Path
) -> None:
    bridge = make_bridge(
        "--keyspace-events", "off", "--command-budget-per-day", "20", "--budget-enforce"
    )
    client = bridge.client()
    client.delete("spent")
    for _ in range(30):
        try:
            client.incr("spent")
        except redis.ResponseError as exc:
            assert "command budget exhausted" in str(exc)
            assert "command not executed" in str(exc)
            break
    else:
        raise AssertionError("30 commands ran on a budget of 20")
    # Nothing past the budget ran upstream: the counter stopped where the refusal began.
    spent = int(rest(own_devserver, "GET", "spent"))
    assert spent < 20
    # A blocked client's polls stop first.
    with pytest.raises(redis.ResponseError, match="budget exhausted"):
        client.blpop(["empty"], 1)
    cost = admin(bridge, "COST")
    assert cost["budgets"]["day"]["budget"] == 20
    assert cost["refused"]
    wait_for(lambda: "day budget exhausted" in bridge.log(), 5, "the budget warning")
    assert "day budget 80% used" in bridge.log()


def test_auto_uses_keyspace_events_enabled_later_after_a_reload(
    make_bridge: Callable[..., BridgeProcess], own_devserver: DevServerHandle
) -> None:
    assert rest(own_devserver, "CONFIG", "SET", "notify-keyspace-events", "") == "OK"
    try:
        bridge = make_bridge("--keyspace-events", "auto", "--keyspace-max-streams", "8")
        wait_for(lambda: "blocked clients poll" in bridge.log() or "is ''" in bridge.log(), 10,
                 "the bridge to read the flags")  # fmt: skip
        assert admin(bridge, "STATS")["blocking"]["keyspace_flags"] == ""
        # Enabled elsewhere (the console, the SDK), then a reload: auto uses them.
        assert rest(own_devserver, "CONFIG", "SET", "notify-keyspace-events", "KEA") == "OK"
        admin(bridge, "RELOAD")
        wait_for(lambda: "WATCH from any writer" in bridge.log(), 10, "the flags to be re-read")
        client = bridge.client()
        client.delete("later")
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(client.blpop(["later"], 10)))
        waiter.start()
        wait_for(lambda: admin(bridge, "STATS")["blocking"]["keyspace_streams_live"] == 1, 10,
                 "the waiter's key stream")  # fmt: skip
        wait_for(lambda: admin(bridge, "STATS")["blocking"]["polls"] >= 1, 10, "its first poll")
        time.sleep(0.2)  # that poll's (empty) reply is back: only the event can wake it now
        rest(own_devserver, "RPUSH", "later", "x")
        waiter.join(10)
        assert got == [(b"later", b"x")]
        assert admin(bridge, "STATS")["blocking"]["wakeups_keyspace"] >= 1
    finally:
        rest(own_devserver, "CONFIG", "SET", "notify-keyspace-events", "KEA")
