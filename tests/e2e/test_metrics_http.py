"""`--metrics-bind`: /metrics for Prometheus, /healthz and /readyz for load balancers; and the
start-up probe that is repeated until the upstream answers.

A real bridge in front of its own devserver, whose fault switches stand in for an outage
(every REST request answered HTTP 500). /metrics is read with curl and parsed by
prometheus_client's own text parser.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import load_config
from tests.e2e.conftest import free_port
from tests.reliability.helpers import set_faults

#: Upper bound for the bridge to notice an outage / a recovery (the window below + a PING).
NOTICE_S = 10.0


def _wait_status(url: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + NOTICE_S
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_metrics_healthz_readyz(devserver_factory: Callable[..., Any], bridge_factory: Any) -> None:
    dev = devserver_factory()
    port = free_port()
    bridge = bridge_factory(
        dev.url, dev.token, "--metrics-bind", f"127.0.0.1:{port}",
        "--metrics-ready-upstream-s", "1",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    client = bridge.client()
    for i in range(5):
        client.set(f"m{i}", "v")
    assert client.get("m0") == b"v"

    response = httpx.get(f"{base}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    # As the README shows it: curl -s 127.0.0.1:PORT/metrics.
    scraped = subprocess.run(
        ["curl", "-s", f"127.0.0.1:{port}/metrics"], capture_output=True, text=True, timeout=10
    )
    assert scraped.returncode == 0 and scraped.stdout.startswith("# HELP")
    families = {f.name: f for f in text_string_to_metric_families(scraped.stdout)}
    commands = {s.labels["where"]: s.value for s in families["resp_bridge_commands"].samples}
    assert commands["forwarded"] >= 6
    assert families["resp_bridge_clients"].samples[0].value >= 1
    latency = families["resp_bridge_upstream_latency_seconds"]
    assert latency.type == "histogram"
    count = [s for s in latency.samples if s.name.endswith("_count")]
    assert count and count[0].value >= 1
    assert "process_resident_memory_bytes" in families  # the library's standard collector

    health = httpx.get(f"{base}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.headers["server"].startswith("resp-bridge/"), "the bridge, not the devserver"
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    assert httpx.get(f"{base}/nope", timeout=5).status_code == 404

    set_faults(dev, error_rate=1.0)
    down = _wait_status(f"{base}/readyz", 503)
    assert down.status_code == 503 and "upstream" in down.text
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, "liveness stays up"

    set_faults(dev, error_rate=0.0)
    back = _wait_status(f"{base}/readyz", 200)
    assert back.status_code == 200, back.text
    assert client.get("m0") == b"v"


def test_probe_repeats_until_the_upstream_answers(
    devserver_factory: Callable[..., Any], bridge_factory: Any, tmp_path: Path
) -> None:
    dev = devserver_factory(fault_error_rate=1.0)  # down when the bridge starts
    bridge = bridge_factory(dev.url, dev.token)
    assert "not reachable yet" in bridge.log()
    info = bridge.client().execute_command("INFO", "bridge")
    assert info["upstream_response_format"] == "json"

    set_faults(dev, error_rate=0.0)
    deadline = time.monotonic() + NOTICE_S
    while "upstream reachable" not in bridge.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "upstream reachable" in bridge.log()
    info = bridge.client().execute_command("INFO", "bridge")
    assert info["upstream_response_format"] == "resp2", "the faster format is adopted"


def test_the_systemd_drop_in_enables_the_listener_on_loopback() -> None:
    drop_in = Path(__file__).resolve().parents[2] / "systemd/resp-bridge.service.d/metrics.conf"
    lines = [ln for ln in drop_in.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "[Service]"
    [setting] = [ln.split("=", 1)[1] for ln in lines if ln.startswith("Environment=")]
    name, value = setting.split("=", 1)
    config = load_config(environ={name: value})
    assert config.metrics_bind == "127.0.0.1:9121"


def test_readyz_pings_in_the_json_reply_format_too(devserver: Any, bridge_factory: Any) -> None:
    port = free_port()
    bridge_factory(
        devserver.url, devserver.token, "--response-format", "json",
        "--metrics-bind", f"127.0.0.1:{port}",
    )  # fmt: skip
    # No command yet: readiness is decided by one PING (a bulk string in the JSON format).
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
