"""Real applications, unmodified, pointed at the bridge: RQ and Celery workers run jobs.

Each test runs the apps' own code paths end to end: RQ's worker (BLMOVE with one queue, BLPOP
with several, a pubsub thread for commands, MULTI/EXEC pipelines, WATCH for dependencies, the
scheduler's locks) and Celery's worker (BRPOP over the priority queue keys, results over
SUBSCRIBE, pidbox over PUBLISH, a Lua-released lock and a WATCH transaction to redeliver the
task of a dead worker). Workers run as subprocesses exactly as users start them, and every wait
has a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from celery import chain, chord, group
from rq.command import send_shutdown_command
from rq.job import Job, JobStatus
from rq.queue import IntermediateQueue
from rq.results import Result

from tests.e2e.apps import celery_app, rq_jobs

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Longest wait for a worker subprocess to start (imports included) or to stop.
WORKER_START_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 20.0
#: Longest wait for jobs that a running worker should finish at once.
JOB_TIMEOUT_S = 20.0


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, log: Callable[[], str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            details = f"\n--- log ---\n{log()[-6000:]}" if log is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{details}")
        time.sleep(0.05)


@dataclass
class WorkerProcess:
    """A worker subprocess whose output goes to a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig`, wait for the exit (SIGKILL past the deadline); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"worker {self.name} did not exit within {WORKER_STOP_TIMEOUT_S} s of "
                    f"signal {sig}; its log:\n{self.log()[-6000:]}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """`spawn(name, argv, env)`: start a worker subprocess in the repository; killed at the end."""
    started: list[WorkerProcess] = []

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> WorkerProcess:
        log_path = tmp_path / f"{name}.log"
        run_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        run_env.update(env or {})
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=run_env,
            )
        worker = WorkerProcess(name, proc, log_path)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


# --- RQ --------------------------------------------------------------------------------------


def job_status(job: Job) -> JobStatus | None:
    return job.get_status(refresh=True)


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """An in-process RQ worker installs SIGINT/SIGTERM handlers; put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("protocol", [None, 2], ids=["default-protocol", "resp2"])
def test_rq_burst_worker_runs_every_job(
    bridge: Any, r: redis.Redis, restore_signals: None, protocol: int | None
) -> None:
    conn = bridge.client(protocol=protocol)
    queue = rq.Queue("default", connection=conn)
    sums = [queue.enqueue(rq_jobs.add, i, 10 * i) for i in range(8)]
    bad = queue.enqueue(rq_jobs.fail, "kaput")
    after_ok = queue.enqueue(rq_jobs.add, 100, 1, depends_on=sums[0])
    after_bad = queue.enqueue(rq_jobs.add, 1, 1, depends_on=bad)
    flaky = queue.enqueue(rq_jobs.flaky, "flaky:attempts", 1, retry=rq.Retry(max=2))
    assert job_status(after_ok) == JobStatus.DEFERRED
    assert queue.count == 10

    worker = rq.Worker([queue], connection=conn, name=f"burst-{protocol}")
    assert worker.work(burst=True, logging_level="WARNING") is True

    for i, job in enumerate(sums):
        assert job_status(job) == JobStatus.FINISHED, job.id
        assert job.return_value() == 11 * i
    assert job_status(after_ok) == JobStatus.FINISHED
    assert after_ok.return_value() == 101
    assert job_status(flaky) == JobStatus.FINISHED
    assert flaky.return_value() == 2
    assert r.get("flaky:attempts") == b"2"

    assert job_status(bad) == JobStatus.FAILED
    assert bad.id in queue.failed_job_registry.get_job_ids()
    result = bad.latest_result()
    assert result is not None and result.type == Result.Type.FAILED
    assert "ValueError: kaput" in (result.exc_string or "")
    # A job depending on a failed one is never run.
    assert job_status(after_bad) == JobStatus.DEFERRED
    assert after_bad.id in queue.deferred_job_registry.get_job_ids()

    assert queue.count == 0
    assert sorted(queue.finished_job_registry.get_job_ids()) == sorted(
        job.id for job in [*sums, after_ok, flaky]
    )


RQ_WORKER_CASES = {
    # One queue: RQ waits in BLMOVE (to its intermediate queue); stopped by a pubsub command.
    "blmove-default-protocol-shutdown-command": (["default"], None, "command"),
    # Several queues: RQ waits in BLPOP; RESP2 connections; stopped by SIGTERM.
    "blpop-resp2-sigterm": (["high", "low"], 2, "sigterm"),
}


@pytest.mark.parametrize("case", list(RQ_WORKER_CASES))
def test_rq_worker_process_waits_for_jobs(
    bridge: Any, r: redis.Redis, spawn: Callable[..., WorkerProcess], case: str
) -> None:
    queue_names, protocol, stop = RQ_WORKER_CASES[case]
    url = f"redis://127.0.0.1:{bridge.port}/0" + (f"?protocol={protocol}" if protocol else "")
    conn = bridge.client(protocol=protocol)
    queues = [rq.Queue(name, connection=conn) for name in queue_names]
    name = f"rq-{case}"
    worker = spawn(
        name,
        [
            sys.executable, "-m", "rq.cli", "worker", "--url", url, "--name", name,
            "--with-scheduler", "--path", str(REPO_ROOT), *queue_names,
        ],
    )  # fmt: skip

    worker_key = rq.Worker.redis_worker_namespace_prefix + name

    def idle() -> bool:
        found = rq.Worker.find_by_key(worker_key, connection=conn)
        return found is not None and found.get_state() == "idle"

    wait_until(idle, WORKER_START_TIMEOUT_S, f"RQ worker {name} to register", worker.log)
    time.sleep(0.3)  # let it settle in its blocking pop

    # Jobs enqueued while the worker is blocked: local wake-ups hand them over.
    started = time.monotonic()
    jobs = [queues[i % len(queues)].enqueue(rq_jobs.add, i, i) for i in range(6)]
    bad = queues[-1].enqueue(rq_jobs.fail, "broken")
    wait_until(
        lambda: (
            all(job_status(j) == JobStatus.FINISHED for j in jobs)
            and job_status(bad) == JobStatus.FAILED
        ),
        JOB_TIMEOUT_S,
        "the RQ worker to run the jobs",
        worker.log,
    )
    elapsed = time.monotonic() - started
    assert [job.return_value() for job in jobs] == [2 * i for i in range(6)]
    assert bad.id in queues[-1].failed_job_registry.get_job_ids()
    result = bad.latest_result()
    assert result is not None and "ValueError: broken" in (result.exc_string or "")
    assert elapsed < JOB_TIMEOUT_S

    # The scheduler (a process forked by the worker, holding a lock) enqueues it when due (RQ
    # compares whole seconds, so it may run a little early, with redis-server too).
    later = queues[0].enqueue_in(timedelta(seconds=1), rq_jobs.add, 20, 22)
    assert job_status(later) == JobStatus.SCHEDULED
    wait_until(
        lambda: job_status(later) == JobStatus.FINISHED,
        JOB_TIMEOUT_S,
        "the scheduled RQ job",
        worker.log,
    )
    assert later.return_value() == 42

    # Stop the worker while it is blocked again.
    time.sleep(0.3)
    if stop == "command":
        send_shutdown_command(conn, name)
        try:
            worker.proc.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"RQ worker ignored the shutdown command:\n{worker.log()[-6000:]}"
            ) from None
        code = worker.proc.returncode
    else:
        code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.log()[-6000:]
    assert name not in [w.name for w in rq.Worker.all(connection=conn)]  # deregistered
    assert "warm shut down requested" in worker.log().lower()

    # The worker's abandoned blocking pop must not take jobs enqueued after it left.
    orphan = queues[0].enqueue(rq_jobs.add, 1, 2)
    time.sleep(1.5)  # longer than the bridge's longest poll interval
    assert job_status(orphan) == JobStatus.QUEUED
    assert queues[0].get_job_ids() == [orphan.id]
    if len(queues) == 1:
        assert IntermediateQueue(queues[0].key, conn).get_job_ids() == []


# --- Celery ----------------------------------------------------------------------------------


@pytest.fixture
def celery(bridge: Any, r: redis.Redis) -> Iterator[Any]:
    """The Celery app of `tests.e2e.apps.celery_app`, configured for the session's bridge."""
    celery_app.configure(bridge.port)
    app = celery_app.app
    try:
        yield app
    finally:
        consumer = getattr(app.backend, "result_consumer", None)
        if consumer is not None:
            consumer.stop()
        app.backend.client.connection_pool.disconnect()
        app.close()


@pytest.fixture
def celery_worker(
    bridge: Any, celery: Any, spawn: Callable[..., WorkerProcess]
) -> Callable[[str], WorkerProcess]:
    """`celery_worker(name)`: `celery worker` subprocess on the bridge, waited until ready."""

    def start(name: str) -> WorkerProcess:
        worker = spawn(
            f"celery-{name}",
            [
                sys.executable, "-m", "celery", "-A", "tests.e2e.apps.celery_app", "worker",
                "--pool=solo", "-c", "1", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-l", "info", "-n", f"{name}@%h",
            ],
            env={celery_app.PORT_ENV: str(bridge.port)},
        )  # fmt: skip
        wait_until(
            lambda: " ready." in worker.log() or worker.proc.poll() is not None,
            WORKER_START_TIMEOUT_S,
            f"Celery worker {name} to be ready",
            worker.log,
        )
        assert worker.proc.poll() is None, worker.log()[-6000:]
        return worker

    return start


def test_celery_worker_runs_tasks_and_returns_results(
    celery: Any, celery_worker: Callable[[str], WorkerProcess]
) -> None:
    worker = celery_worker("apps")
    add, fail, total = celery_app.add, celery_app.fail, celery_app.total

    assert add.delay(2, 3).get(timeout=JOB_TIMEOUT_S) == 5
    results = [add.delay(i, i) for i in range(20)]
    assert [res.get(timeout=JOB_TIMEOUT_S) for res in results] == [2 * i for i in range(20)]
    # Priorities go to their own list; the worker's BRPOP covers every priority key.
    assert add.apply_async((40, 2), priority=9).get(timeout=JOB_TIMEOUT_S) == 42

    failing = fail.delay("kaput")
    with pytest.raises(ValueError, match="kaput"):
        failing.get(timeout=JOB_TIMEOUT_S)
    assert failing.state == "FAILURE"
    assert isinstance(failing.result, ValueError)

    assert chain(add.s(1, 2), add.s(3), add.s(4))().get(timeout=JOB_TIMEOUT_S) == 10
    assert group(add.s(i, 1) for i in range(5))().get(timeout=JOB_TIMEOUT_S) == [1, 2, 3, 4, 5]
    assert chord(add.s(i, i) for i in range(5))(total.s()).get(timeout=JOB_TIMEOUT_S) == 20

    # Remote control: a broadcast over PUBLISH, the reply through the worker's reply queue.
    node = f"apps@{socket.gethostname()}"
    assert celery.control.ping(destination=[node], timeout=10) == [{node: {"ok": "pong"}}]

    assert worker.stop(signal.SIGTERM) == 0
    assert "Warm shutdown" in worker.log()


def test_celery_task_of_a_killed_worker_is_delivered_again(
    celery: Any, r: redis.Redis, celery_worker: Callable[[str], WorkerProcess]
) -> None:
    first = celery_worker("doomed")
    result = celery_app.once_hangs.delay("hang:attempts")
    wait_until(
        lambda: r.get("hang:attempts") == b"1",
        JOB_TIMEOUT_S,
        "the first worker to start the task",
        first.log,
    )
    delivered_at = time.monotonic()
    first.kill()  # SIGKILL mid-task: the message stays unacknowledged in Redis
    assert r.hlen("unacked") == 1

    # Once the visibility timeout has passed, the next worker restores the message (under a
    # lock released by a Lua script, in a WATCH transaction) and runs it. Started after the
    # timeout so that every kombu version restores at start, not only the periodic sweeps.
    time.sleep(max(0.0, delivered_at + celery_app.VISIBILITY_TIMEOUT_S + 0.5 - time.monotonic()))
    second = celery_worker("heir")
    assert result.get(timeout=JOB_TIMEOUT_S) == 2
    assert r.get("hang:attempts") == b"2"
    wait_until(lambda: r.hlen("unacked") == 0, JOB_TIMEOUT_S, "the ack", second.log)
    assert second.stop(signal.SIGTERM) == 0
