"""A Celery app whose broker and result backend are the bridge.

The worker subprocess finds the bridge's port in the environment (`PORT_ENV`); the test
process calls `configure(port)` instead, before the first task is sent.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

PORT_ENV = "RESP_BRIDGE_APPS_PORT"
#: Redis database number of the broker and the results (default 0).
DB_ENV = "RESP_BRIDGE_APPS_DB"
#: Seconds before an unacknowledged message (its worker died) is delivered again.
VISIBILITY_TIMEOUT_S = 3

app = Celery("resp_bridge_apps")
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        # Look for messages to restore every second, not every 10 * 10 s.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    worker_prefetch_multiplier=1,
    result_expires=600,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


def configure(port: int | str, db: int | str = 0) -> None:
    url = f"redis://127.0.0.1:{port}/{db}"
    app.conf.update(broker_url=url, result_backend=url)


if PORT_ENV in os.environ:
    configure(os.environ[PORT_ENV], os.environ.get(DB_ENV, "0"))


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def total(values: list[int]) -> int:
    return sum(values)


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(acks_late=True)
def once_hangs(counter_key: str) -> int:
    """The first attempt hangs (its worker is killed); the redelivered one returns 2."""
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        attempt = int(client.incr(counter_key))
    finally:
        client.close()
    if attempt == 1:
        time.sleep(120)
    return attempt
