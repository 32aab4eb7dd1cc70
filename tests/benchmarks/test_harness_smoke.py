"""Smoke test of the benchmark harness: a seconds-long run produces a well-formed report.

Runs `python -m benchmarks.harness` as a user does (a subprocess, real redis-server, devserver,
bridges, redis-benchmark, redis-py and the Upstash SDK) with tiny request counts, then checks
the structure of the JSON and markdown it writes and that every figure is positive. It asserts
no speed: the targets are reported by the harness, never tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.records import REDIS_BENCHMARK, REDIS_PY, RunRecord

ROOT = Path(__file__).resolve().parents[2]
LATENCIES = (0.0, 1.0)
CLIENTS = (1, 2)
PIPELINES = (1, 16)
#: Far above the ~10 s the run takes, for a loaded CI machine.
RUN_TIMEOUT_S = 180

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
    reason="redis-server and redis-benchmark are needed (apt-get install redis-server)",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench")
    args = [
        sys.executable, "-m", "benchmarks.harness", "--quick",
        "--latency-ms", ",".join(f"{x:g}" for x in LATENCIES),
        "--clients", ",".join(map(str, CLIENTS)),
        "--pipelines", ",".join(map(str, PIPELINES)),
        "--tests", "ping,get,set", "--requests", "50", "--duration", "0.2",
        "--idle-clients", "20", "--probe-iterations", "30", "--out", str(out), "--https",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPSTASH_REDIS_REST")}
    done = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env
    )
    return out, done


def _record(out: Path) -> RunRecord:
    [path] = out.glob("*.json")
    return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))


def test_run_succeeds_and_writes_the_report(
    run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, done = run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Targets:" in done.stdout
    assert len(list(out.glob("*.md"))) == 1
    md = next(out.glob("*.md")).read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out.glob("*.png"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "No plot: matplotlib is not installed" in md
    else:
        assert len(pngs) == 2
        assert all(f"]({name})" in md for name in pngs)
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in out.glob("*.png"))


def test_markdown_has_every_section(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    md = next(run[0].glob("*.md")).read_text(encoding="utf-8")
    for heading in (
        "## Targets",
        "## Contenders",
        "## Plots",
        "## redis-benchmark (unmodified)",
        "## redis-py threads and the upstash-redis SDK",
        "## The bridge with idle clients",
        "## Per-command overhead",
        "## Where the bridge's CPU goes (py-spy)",
        "## redis-benchmark per test",
    ):
        assert heading in md, heading
    for lat in LATENCIES:
        assert md.count(f"### {lat:g} ms injected round trip") == 2
    assert "| target | measured | result |" in md
    assert md.count("| clients | -P | direct ops/s | bridge ops/s |") == len(LATENCIES)
    assert "## Failed steps" not in md
    assert "Machine:" in md and "redis-benchmark 7" in md


def test_every_point_is_measured_with_positive_figures(
    run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    record = _record(run[0])
    assert not record.failures
    expected = {
        (REDIS_BENCHMARK, contender, lat, clients, pipeline)
        for contender in ("direct", "bridge", "bridge-nobatch", "bridge-https")
        for lat in LATENCIES
        for clients in CLIENTS
        for pipeline in PIPELINES
    } | {
        (REDIS_PY, contender, lat, clients, 1)
        for contender in ("direct", "bridge", "bridge-nobatch", "upstash-sdk")
        for lat in LATENCIES
        for clients in CLIENTS
    }
    got = {
        (m.workload, m.contender, m.latency_ms, m.clients, m.pipeline) for m in record.measurements
    }
    assert got == expected
    for m in record.measurements:
        where = (m.workload, m.contender, m.latency_ms, m.clients, m.pipeline)
        assert m.errors == 0 and not m.problems, (where, m.problems)
        assert m.commands > 0 and m.seconds > 0 and m.ops_per_s > 0, where
        assert 0 < m.p50_ms <= m.p99_ms, where
        if m.workload == REDIS_BENCHMARK:
            assert {t.test for t in m.tests} >= {"PING_INLINE", "GET", "SET"}, where
            assert all(t.ops_per_s > 0 for t in m.tests), where
        if m.contender in ("bridge", "bridge-nobatch", "bridge-https", "upstash-sdk"):
            assert m.http_requests and m.upstream_commands, where
            assert m.http_per_command is not None and m.http_per_command > 0, where
            assert m.devserver_cpu_s is not None and m.devserver_cpu_s >= 0, where
        if m.contender in ("bridge", "bridge-nobatch", "bridge-https"):
            assert m.bridge_cpu_s is not None and m.bridge_cpu_s >= 0, where
            assert m.bridge_hwm_kb and m.bridge_hwm_kb > 0, where
        if m.contender == "bridge-nobatch":
            assert m.http_per_command == 1.0, where
        if m.contender == "direct":
            assert m.http_requests is None and m.bridge_cpu_s is None, where


def test_idle_clients_and_probe_are_recorded(
    run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    record = _record(run[0])
    idle = record.idle
    assert idle is not None and idle.idle_clients == 20
    assert 0 < idle.rss_started_kb <= idle.hwm_kb and idle.rss_with_idle_kb > 0
    assert idle.before.ops_per_s > 0 and idle.with_idle.ops_per_s > 0
    probe = record.probe
    assert probe is not None and probe.iterations == 30
    assert probe.via_bridge_p50_ms > 0 and probe.direct_pipeline_p50_ms > 0
    assert probe.direct_redis_p50_ms > 0
    assert probe.bridge_ping_p50_ms > 0
