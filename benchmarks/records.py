"""The records of a run: what the harness measured, as plain JSON-able dataclasses.

The harness fills them; `report` reads them back (from memory or from the `.json` file written
next to the markdown) and derives every ratio and target from them, so a report can be
regenerated from the JSON alone. Raw counters are stored, derived figures are properties.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

REDIS_BENCHMARK = "redis-benchmark"
REDIS_PY = "redis-py"


@dataclass(slots=True)
class TestFigure:
    """One redis-benchmark test of a measurement."""

    test: str
    requests: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(slots=True)
class Measurement:
    """One contender, one workload, one (latency, clients, pipeline) point."""

    workload: str
    contender: str
    latency_ms: float
    clients: int
    pipeline: int
    #: Client commands in the window (every redis-benchmark test, PING included).
    commands: int
    seconds: float
    #: Summary throughput: the thread workload's, or redis-benchmark's forwarded tests (all
    #: but PING, which the bridge answers itself), as total requests / total time.
    ops_per_s: float
    #: Thread workload: over every operation. redis-benchmark: median over the same tests.
    p50_ms: float
    p99_ms: float
    errors: int = 0
    problems: list[str] = field(default_factory=list)
    tests: list[TestFigure] = field(default_factory=list)
    #: Devserver counters over the window (None when no REST server is involved).
    http_requests: int | None = None
    upstream_commands: int | None = None
    #: CPU seconds (utime + stime) over the window and peak RSS of the bridge / devserver.
    bridge_cpu_s: float | None = None
    bridge_hwm_kb: int | None = None
    devserver_cpu_s: float | None = None

    @property
    def http_per_command(self) -> float | None:
        if self.http_requests is None or not self.upstream_commands:
            return None
        return self.http_requests / self.upstream_commands

    @property
    def avg_batch(self) -> float | None:
        if not self.http_requests or self.upstream_commands is None:
            return None
        return self.upstream_commands / self.http_requests

    @property
    def bridge_cpu_us_per_command(self) -> float | None:
        if self.bridge_cpu_s is None or not self.commands:
            return None
        return self.bridge_cpu_s * 1e6 / self.commands

    @property
    def devserver_cpu_us_per_command(self) -> float | None:
        if self.devserver_cpu_s is None or not self.commands:
            return None
        return self.devserver_cpu_s * 1e6 / self.commands

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        data = dict(data)
        data["tests"] = [TestFigure(**t) for t in data.get("tests", [])]
        return cls(**data)


@dataclass(slots=True)
class IdleClientsResult:
    """A fresh bridge, before and with `idle_clients` connected idle clients."""

    latency_ms: float
    idle_clients: int
    rss_started_kb: int
    rss_with_idle_kb: int
    hwm_kb: int
    idle_window_s: float
    idle_cpu_s: float
    before: Measurement
    with_idle: Measurement

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdleClientsResult:
        data = dict(data)
        data["before"] = Measurement.from_dict(data["before"])
        data["with_idle"] = Measurement.from_dict(data["with_idle"])
        return cls(**data)


@dataclass(slots=True)
class ProbeFigures:
    """One client, 0 ms injected: p50 of a GET via the bridge, via /pipeline, via Redis, and
    of a PING the bridge answers itself (the extra hop alone, without the upstream half)."""

    iterations: int
    via_bridge_p50_ms: float
    direct_pipeline_p50_ms: float
    direct_redis_p50_ms: float
    #: 0.0 in reports written before it was measured.
    bridge_ping_p50_ms: float = 0.0

    @property
    def added_p50_us(self) -> float:
        return (self.via_bridge_p50_ms - self.direct_pipeline_p50_ms) * 1000


@dataclass(slots=True)
class ProfileFigures:
    """Where the bridge's CPU goes under one workload (py-spy samples; shares of all samples)."""

    workload: str
    samples: int
    sample_rate_hz: int
    by_package: list[tuple[str, float]]
    self_functions: list[tuple[str, float]]
    bridge_inclusive: list[tuple[str, float]]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileFigures:
        data = dict(data)
        for key in ("by_package", "self_functions", "bridge_inclusive"):
            data[key] = [(str(name), float(share)) for name, share in data[key]]
        return cls(**data)


@dataclass(slots=True)
class RunRecord:
    """Everything a run produced, in the order the report shows it."""

    meta: dict[str, Any]
    settings: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    idle: IdleClientsResult | None = None
    probe: ProbeFigures | None = None
    profile: ProfileFigures | None = None
    #: The same at one client, 0 ms injected (the per-command cost the latency target sees).
    profile_one_client: ProfileFigures | None = None
    #: Why there is no profile, when there is none.
    profile_note: str = ""
    #: Steps that failed (the run goes on; the report lists them).
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            meta=data["meta"],
            settings=data["settings"],
            measurements=[Measurement.from_dict(m) for m in data.get("measurements", [])],
            idle=IdleClientsResult.from_dict(data["idle"]) if data.get("idle") else None,
            probe=ProbeFigures(**data["probe"]) if data.get("probe") else None,
            profile=ProfileFigures.from_dict(data["profile"]) if data.get("profile") else None,
            profile_one_client=(
                ProfileFigures.from_dict(data["profile_one_client"])
                if data.get("profile_one_client")
                else None
            ),
            profile_note=str(data.get("profile_note", "")),
            failures=list(data.get("failures", [])),
        )

    def find(
        self, workload: str, contender: str, latency_ms: float, clients: int, pipeline: int = 1
    ) -> Measurement | None:
        for m in self.measurements:
            if (m.workload, m.contender, m.clients, m.pipeline) == (
                workload,
                contender,
                clients,
                pipeline,
            ) and m.latency_ms == latency_ms:
                return m
        return None
