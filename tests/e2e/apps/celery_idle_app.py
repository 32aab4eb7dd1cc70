"""A Celery app with the defaults a new user gets (heartbeats, gossip, mingle on), whose
broker and result backend are the bridge on port `$RESP_BRIDGE_APPS_PORT`: what an idle
worker costs upstream is measured on it (tests/e2e/test_upstream_cost.py)."""

from __future__ import annotations

import os

from celery import Celery

PORT_ENV = "RESP_BRIDGE_APPS_PORT"

app = Celery("resp_bridge_idle")
_url = f"redis://127.0.0.1:{os.environ.get(PORT_ENV, '6379')}/0"
app.conf.update(broker_url=_url, result_backend=_url, broker_connection_retry_on_startup=True)


@app.task
def add(a: int, b: int) -> int:
    return a + b
