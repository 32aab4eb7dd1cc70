"""RQ job functions, imported by the test process and by `rq worker` subprocesses."""

from __future__ import annotations

from rq import get_current_job


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


def flaky(counter_key: str, failures: int) -> int:
    """Fail the first `failures` attempts (counted in Redis), then return the attempt number."""
    job = get_current_job()
    assert job is not None
    attempt = int(job.connection.incr(counter_key))
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt
