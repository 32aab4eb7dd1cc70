"""The benchmark harness: one command that compares the bridge with direct Redis and the
alternatives on loopback, and writes a report.

    python -m benchmarks.harness                 # full run (several minutes on 2 cores)
    python -m benchmarks.harness --quick         # CI-sized run (seconds)
    python -m benchmarks.harness --latency-ms 2 --clients 1,50 --requests 2000 --out /tmp/b

It starts a redis-server, then for each injected round trip a devserver (`--latency-ms`) with
two bridges in front of it (auto-batching, and `--max-batch-commands 1`), runs the workloads of
`benchmarks.workloads` against every contender of `benchmarks.contenders` (direct Redis is
measured again in each latency block, so every ratio compares neighbours in time), measures
the bridge with idle clients connected and the per-command overhead at 0 ms, tears everything
down (Ctrl-C and SIGTERM included) and writes `<out>/<date>.md`, `.json` and PNG plots.

Only local servers are used. There is deliberately no option to point it at a real Upstash
database: Upstash bills every command, and a full run sends millions of them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as `python benchmarks/harness.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks import profile as profiling
from benchmarks import release as releases
from benchmarks import report
from benchmarks.contenders import (
    BRIDGE,
    DIRECT,
    NOBATCH,
    SDK,
    Contender,
    LatencyStack,
    redis_py_factory,
    sdk_factory,
)
from benchmarks.processes import Bridge, DevServer, ProcSample, make_log_dir
from benchmarks.records import (
    REDIS_BENCHMARK,
    REDIS_PY,
    IdleClientsResult,
    Measurement,
    RunRecord,
    TestFigure,
)
from benchmarks.workloads import (
    KEYSPACE,
    REDIS_BENCHMARK_TESTS,
    key_name,
    open_idle_clients,
    probe_overhead,
    run_redis_benchmark,
    run_threads,
    value_for,
)
from bridge.config import BridgeConfig
from bridge.devserver.redis_process import RedisServerProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Quick runs go here by default (ignored by git), so they never replace a committed result.
QUICK_RESULTS_DIR = RESULTS_DIR / "quick"
#: The latency and client count of the issue's headline targets.
TARGET_LATENCY_MS = 2.0
TARGET_CLIENTS = 50
#: Assumed cost of one pass through bridge + devserver on loopback, to size -n (not a result).
ASSUMED_STACK_RTT_S = 0.002
#: Assumed ceilings of the bridge contenders' throughput, to size -n (not results).
ASSUMED_BRIDGE_CAP_OPS = 8_000.0
ASSUMED_NOBATCH_CAP_OPS = 1_500.0
#: Most requests per redis-benchmark test against direct Redis (-n scales with -P there).
DIRECT_MAX_REQUESTS = 100_000
#: Packages whose versions a report records.
VERSIONED_PACKAGES = (
    "resp-bridge", "redis", "hiredis", "upstash-redis", "httpx", "h11", "trio", "orjson",
    "matplotlib",
)  # fmt: skip
#: The profiled workload: forwarded commands only, long enough for a few thousand samples.
PROFILE_TESTS = "set,get"
#: The 1-client profile (0 ms injected): what the bridge spends per command there.
PROFILE_ONE_CLIENT_TESTS = "get"
PROFILE_MIN_REQUESTS = 20_000
#: redis-benchmark runs that gave no result at all are retried (it rarely aborts on tiny -n).
REDIS_BENCHMARK_ATTEMPTS = 2
#: redis-benchmark is stopped after 20x its expected time, and never sooner than this.
REDIS_BENCHMARK_MIN_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Settings:
    latencies_ms: tuple[float, ...]
    clients: tuple[int, ...]
    pipelines: tuple[int, ...]
    #: Most requests per redis-benchmark test (-n); fewer when the contender is slow.
    requests: int
    #: Fewest requests per test, and the time one test should take (to size -n).
    min_requests: int
    test_budget_s: float
    tests: str
    #: Timed window of each thread-workload point.
    duration_s: float
    idle_clients: int
    #: Seconds the idle clients sit connected before memory is read, then idle CPU is measured.
    idle_settle_s: float
    idle_window_s: float
    probe_iterations: int
    #: Profile the bridge with py-spy (when installed) in a repeat of the headline workload.
    profile: bool
    quick: bool
    out: str
    #: Also run the bridge over HTTPS (a TLS devserver) on the redis-benchmark points.
    https: bool = False
    #: An older release's bridge on the redis-benchmark points: its label and interpreter.
    release: str | None = None
    release_python: str | None = None


FULL = Settings(
    latencies_ms=(0.0, 2.0, 10.0),
    clients=(1, 10, 50, 200),
    pipelines=(1, 16),
    requests=5000,
    min_requests=100,
    test_budget_s=0.3,
    tests=REDIS_BENCHMARK_TESTS,
    duration_s=1.5,
    idle_clients=1000,
    idle_settle_s=1.0,
    idle_window_s=2.0,
    probe_iterations=2000,
    profile=True,
    quick=False,
    out=str(RESULTS_DIR),
    https=True,
)
QUICK = replace(
    FULL,
    latencies_ms=(0.0, 2.0),
    clients=(1, 10),
    requests=300,
    min_requests=20,
    test_budget_s=0.05,
    duration_s=0.3,
    idle_clients=100,
    idle_settle_s=0.2,
    idle_window_s=0.5,
    probe_iterations=100,
    profile=False,
    quick=True,
    out=str(QUICK_RESULTS_DIR),
    https=False,
)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive integers, comma-separated")
    return values


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description=(
            "Benchmark resp-bridge against direct redis-server, the bridge without batching, "
            "the upstash-redis SDK and the ideal, on loopback only (never a paid database). "
            "Writes OUT/<date>.md, .json and PNG plots."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI-sized run (seconds); output to results/quick/"
    )
    parser.add_argument(
        "--latency-ms",
        type=_floats,
        metavar="MS,...",
        help="injected round trips, ms (full: 0,2,10; quick: 0,2)",
    )
    parser.add_argument(
        "--clients",
        type=_ints,
        metavar="N,...",
        help="client counts (full: 1,10,50,200; quick: 1,10)",
    )
    parser.add_argument(
        "--pipelines", type=_ints, metavar="P,...", help="redis-benchmark -P values (1,16)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        metavar="N",
        help="most requests per redis-benchmark test (full 5000)",
    )
    parser.add_argument(
        "--tests",
        metavar="T,...",
        help=f"redis-benchmark -t list (default {REDIS_BENCHMARK_TESTS})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="seconds per redis-py / SDK point (full 1.5, quick 0.3)",
    )
    parser.add_argument(
        "--idle-clients", type=int, metavar="N", help="idle connections for the memory test (1000)"
    )
    parser.add_argument(
        "--probe-iterations",
        type=int,
        metavar="N",
        help="requests of the 0 ms overhead probe (2000)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        help="py-spy profile of the bridge at the headline point (full: on if py-spy is "
        "installed; quick: off)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output directory (default benchmarks/results/)"
    )
    parser.add_argument(
        "--https",
        action=argparse.BooleanOptionalAction,
        help="also run the bridge against a devserver over HTTPS (full: on; quick: off)",
    )
    parser.add_argument(
        "--release-bridge",
        metavar="PATH",
        help="resp-bridge executable of an older release to run side by side (its venv's "
        f"python runs it; default ${releases.RELEASE_ENV})",
    )
    parser.add_argument(
        "--make-release",
        nargs="?",
        const=releases.DEFAULT_RELEASE,
        metavar="REV",
        help="check REV out in a git worktree, install it in its own venv (once, under /tmp) "
        f"and run its bridge side by side (default REV {releases.DEFAULT_RELEASE})",
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    settings = replace(
        base,
        latencies_ms=args.latency_ms or base.latencies_ms,
        clients=args.clients or base.clients,
        pipelines=args.pipelines or base.pipelines,
        requests=args.requests or base.requests,
        tests=args.tests or base.tests,
        duration_s=args.duration or base.duration_s,
        idle_clients=args.idle_clients if args.idle_clients is not None else base.idle_clients,
        probe_iterations=args.probe_iterations or base.probe_iterations,
        profile=base.profile if args.profile is None else args.profile,
        out=args.out or base.out,
        https=base.https if args.https is None else args.https,
    )
    try:
        found = releases.resolve(args.release_bridge, args.make_release)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        parser.error(f"release bridge: {exc}")
    if found is not None:
        settings = replace(settings, release=found[0], release_python=found[1])
    if settings.requests < 1 or settings.duration_s <= 0 or min(settings.latencies_ms) < 0:
        parser.error("--requests and --duration must be positive, latencies >= 0")
    return settings


# -- progress ---------------------------------------------------------------------------------


class Progress:
    """One line per step on stderr: counter, elapsed time, a rough time left."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()

    @staticmethod
    def _clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    def note(self, text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    def begin(self, label: str) -> None:
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        eta = f", ~{self._clock(left)} left" if self.done else ""
        print(
            f"[{self.done + 1:>3}/{self.total} {self._clock(elapsed)}{eta}] {label} ...",
            end=" ",
            file=sys.stderr,
            flush=True,
        )

    def end(self, summary: str) -> None:
        self.done += 1
        print(summary, file=sys.stderr, flush=True)


def describe(m: Measurement) -> str:
    parts = [f"{m.ops_per_s:,.0f} ops/s", f"p50 {m.p50_ms:.2f} ms", f"p99 {m.p99_ms:.2f} ms"]
    if m.http_per_command is not None:
        parts.append(f"{m.http_per_command:.3f} HTTP/cmd")
    if m.bridge_cpu_us_per_command is not None:
        parts.append(f"{m.bridge_cpu_us_per_command:.0f} us CPU/cmd")
    if m.errors or m.problems:
        parts.append(f"{m.errors} errors, {len(m.problems)} problems")
    return ", ".join(parts)


# -- the run ----------------------------------------------------------------------------------


class Window:
    """Counters of the servers over one timed window: devserver stats, bridge CPU and memory."""

    def __init__(self, devserver: DevServer | None, bridge: Bridge | None) -> None:
        self.devserver = devserver
        self.bridge = bridge
        self._bridge0: ProcSample | None = None
        self._dev0: ProcSample | None = None
        self.fields: dict[str, object] = {}

    def begin(self) -> None:
        if self.devserver is not None:
            self.devserver.reset_stats()
            self._dev0 = ProcSample.read(self.devserver.pid)
        if self.bridge is not None:
            self._bridge0 = self.bridge.sample()

    def end(self) -> None:
        if self.bridge is not None and self._bridge0 is not None:
            after = self.bridge.sample()
            self.fields["bridge_cpu_s"] = after.cpu_s - self._bridge0.cpu_s
            self.fields["bridge_hwm_kb"] = after.hwm_kb
        if self.devserver is not None and self._dev0 is not None:
            dev1 = ProcSample.read(self.devserver.pid)
            stats = self.devserver.stats()
            self.fields["devserver_cpu_s"] = dev1.cpu_s - self._dev0.cpu_s
            self.fields["http_requests"] = stats["http_requests"]
            self.fields["upstream_commands"] = stats["commands"]


class Runner:
    def __init__(self, settings: Settings, record: RunRecord, log_dir: str) -> None:
        self.settings = settings
        self.record = record
        self.log_dir = log_dir
        self.redis: RedisServerProcess | None = None
        self.progress = Progress(self.count_steps())

    @property
    def idle_latency(self) -> float:
        lats = self.settings.latencies_ms
        return TARGET_LATENCY_MS if TARGET_LATENCY_MS in lats else lats[0]

    def count_steps(self) -> int:
        s = self.settings
        bridges = 2 + (1 if s.https else 0) + (1 if s.release_python else 0)
        per_latency = len(s.clients) * (len(s.pipelines) * (1 + bridges) + 4)
        extra = (1 if s.idle_clients > 0 else 0) + (1 if 0.0 in s.latencies_ms else 0)
        extra += (1 + (1 if 0.0 in s.latencies_ms else 0)) if s.profile else 0
        return per_latency * len(s.latencies_ms) + extra

    def run(self) -> None:
        with RedisServerProcess() as redis_proc:
            self.redis = redis_proc
            for latency in self.settings.latencies_ms:
                self.progress.note(f"latency {latency:g} ms: starting devserver and bridges")
                with LatencyStack(
                    redis_proc.url,
                    latency,
                    self.log_dir,
                    release_python=self.settings.release_python,
                    https=self.settings.https,
                ) as stack:
                    self.latency_block(stack)

    def latency_block(self, stack: LatencyStack) -> None:
        s = self.settings
        for clients in s.clients:
            for pipeline in s.pipelines:
                for contender in (DIRECT, *stack.contenders):
                    self.step(
                        f"{stack.latency_ms:g} ms | {contender.key} | redis-benchmark "
                        f"-c {clients} -P {pipeline}",
                        lambda c=contender, n=clients, p=pipeline: self.redis_benchmark(
                            stack, c, n, p
                        ),
                    )
        for clients in s.clients:
            for contender in (DIRECT, BRIDGE, NOBATCH, SDK):
                self.step(
                    f"{stack.latency_ms:g} ms | {contender.key} | redis-py {clients} threads",
                    lambda c=contender, n=clients: self.thread_workload(stack, c, n),
                )
        if s.idle_clients > 0 and stack.latency_ms == self.idle_latency:
            self.step(
                f"{stack.latency_ms:g} ms | bridge | {s.idle_clients} idle clients",
                lambda: self.idle_clients(stack),
            )
        if s.profile and stack.latency_ms == self.idle_latency:
            self.step(
                f"{stack.latency_ms:g} ms | bridge | py-spy profile, redis-benchmark "
                f"-c {self.headline_clients} -P 1 -t {PROFILE_TESTS}",
                lambda: self.profile(stack),
            )
        if stack.latency_ms == 0.0:
            self.step(
                "0 ms | bridge vs /pipeline | 1-client overhead probe", lambda: self.probe(stack)
            )
            if s.profile:
                self.step(
                    f"0 ms | bridge | py-spy profile, redis-benchmark -c 1 -P 1 "
                    f"-t {PROFILE_ONE_CLIENT_TESTS}",
                    lambda: self.profile(stack, clients=1),
                )

    def step(self, label: str, action: Callable[[], str]) -> None:
        self.progress.begin(label)
        try:
            summary = action()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            self.record.failures.append(f"{label}: {type(exc).__name__}: {exc}")
            summary = f"FAILED: {type(exc).__name__}: {exc}"
        self.progress.end(summary)

    # -- data ------------------------------------------------------------------------------

    def reset_data(self) -> None:
        """FLUSHALL, then preload the thread workload's keys (so its GETs hit)."""
        assert self.redis is not None
        client = redis.Redis.from_url(self.redis.url)
        try:
            client.flushall()
            pipe = client.pipeline(transaction=False)
            for i in range(KEYSPACE):
                pipe.set(key_name(i), value_for(i))
            pipe.execute()
        finally:
            client.close()

    def target(self, stack: LatencyStack, contender: Contender) -> tuple[int, Bridge | None]:
        if contender is DIRECT:
            assert self.redis is not None
            return self.redis.port, None
        bridge = stack.bridges[contender.key]
        return bridge.port, bridge

    def expected_rate(
        self, contender: Contender, clients: int, pipeline: int, latency_ms: float
    ) -> float:
        """A rough guess of a contender's ops/s, only to size -n (never reported)."""
        rtt = latency_ms / 1000 + ASSUMED_STACK_RTT_S
        if contender is not DIRECT and contender is not NOBATCH:
            return min(clients * pipeline / rtt, ASSUMED_BRIDGE_CAP_OPS)
        if contender is NOBATCH:
            in_flight = BridgeConfig().max_in_flight
            return min(min(clients, in_flight) / rtt, ASSUMED_NOBATCH_CAP_OPS)
        return float("inf")

    def requests_for(self, rate: float, clients: int, pipeline: int) -> int:
        """-n so that one test takes about `test_budget_s`; every client gets a pipeline."""
        s = self.settings
        floor = max(clients * pipeline, s.min_requests)
        if rate == float("inf"):  # direct Redis: deeper pipelines need more for a timing
            wanted = float(min(s.requests * pipeline, DIRECT_MAX_REQUESTS))
        else:
            wanted = min(s.requests, rate * s.test_budget_s)
        n = int(max(floor, wanted))
        # redis-benchmark 7 sometimes aborts ("All clients disconnected") when -n is not a
        # multiple of -P: round up.
        return -(-n // pipeline) * pipeline

    # -- steps -----------------------------------------------------------------------------

    def redis_benchmark(
        self, stack: LatencyStack, contender: Contender, clients: int, pipeline: int
    ) -> str:
        s = self.settings
        port, bridge = self.target(stack, contender)
        rate = self.expected_rate(contender, clients, pipeline, stack.latency_ms)
        requests = self.requests_for(rate, clients, pipeline)
        self.reset_data()
        window = Window(stack.devserver_for(contender) if bridge else None, bridge)
        expected_s = len(s.tests.split(",")) * requests / min(rate, ASSUMED_BRIDGE_CAP_OPS)
        timeout = max(REDIS_BENCHMARK_MIN_TIMEOUT_S, 20 * expected_s)
        for _attempt in range(REDIS_BENCHMARK_ATTEMPTS):
            window.begin()
            run = run_redis_benchmark(
                port, clients=clients, pipeline=pipeline, requests=requests, tests=s.tests,
                timeout_s=timeout,
            )  # fmt: skip
            window.end()
            if run.rows:
                break
        rows = [r for r in run.rows if not r.is_setup]
        forwarded = [r for r in rows if not r.test.startswith("PING")] or rows
        if not forwarded:
            raise RuntimeError("redis-benchmark gave no results: " + "; ".join(run.problems[:3]))
        seconds = sum(r.seconds for r in forwarded)
        m = Measurement(
            workload=REDIS_BENCHMARK,
            contender=contender.key,
            latency_ms=stack.latency_ms,
            clients=clients,
            pipeline=pipeline,
            commands=sum(r.requests for r in run.rows),
            seconds=sum(r.seconds for r in run.rows),
            ops_per_s=sum(r.requests for r in forwarded) / seconds if seconds else 0.0,
            p50_ms=statistics.median(r.p50_ms for r in forwarded),
            p99_ms=statistics.median(r.p99_ms for r in forwarded),
            errors=len(run.problems),
            problems=list(run.problems[:5]),
            tests=[TestFigure(r.test, r.requests, r.rps, r.p50_ms, r.p99_ms) for r in rows],
            **window.fields,  # type: ignore[arg-type]
        )
        self.record.measurements.append(m)
        return f"n={requests}: {describe(m)}"

    def thread_workload(self, stack: LatencyStack, contender: Contender, clients: int) -> str:
        self.reset_data()
        if contender is SDK:
            make = sdk_factory(stack.devserver.url, stack.devserver.token)
            window = Window(stack.devserver, None)
        else:
            port, bridge = self.target(stack, contender)
            make = redis_py_factory(port)
            window = Window(stack.devserver if bridge else None, bridge)
        m = self._threads(stack.latency_ms, contender, clients, make, window)
        self.record.measurements.append(m)
        return describe(m)

    def _threads(
        self,
        latency_ms: float,
        contender: Contender,
        clients: int,
        make: Callable[[int], object],
        window: Window,
    ) -> Measurement:
        run = run_threads(
            make,  # type: ignore[arg-type]
            clients=clients,
            duration_s=self.settings.duration_s,
            on_start=window.begin,
            on_stop=window.end,
        )
        return Measurement(
            workload=REDIS_PY,
            contender=contender.key,
            latency_ms=latency_ms,
            clients=clients,
            pipeline=1,
            commands=run.operations + run.errors,
            seconds=run.seconds,
            ops_per_s=run.ops_per_s,
            p50_ms=run.p50_ms,
            p99_ms=run.p99_ms,
            errors=run.errors,
            problems=[run.first_error] if run.first_error else [],
            **window.fields,  # type: ignore[arg-type]
        )

    @property
    def headline_clients(self) -> int:
        clients = self.settings.clients
        return TARGET_CLIENTS if TARGET_CLIENTS in clients else max(clients)

    def idle_clients(self, stack: LatencyStack) -> str:
        """A fresh bridge: workload, then 1,000 idle clients, idle CPU, workload again."""
        s = self.settings
        clients = self.headline_clients
        bridge = stack.new_bridge(BRIDGE, suffix="-idle")
        try:
            started = bridge.sample()
            self.reset_data()
            make = redis_py_factory(bridge.port)
            before = self._threads(
                stack.latency_ms, BRIDGE, clients, make, Window(stack.devserver, bridge)
            )
            with open_idle_clients(bridge.port, s.idle_clients):
                time.sleep(s.idle_settle_s)
                idle0 = bridge.sample()
                time.sleep(s.idle_window_s)
                idle1 = bridge.sample()
                with_idle = self._threads(
                    stack.latency_ms, BRIDGE, clients, make, Window(stack.devserver, bridge)
                )
            final = bridge.sample()
        finally:
            bridge.stop()
        self.record.idle = IdleClientsResult(
            latency_ms=stack.latency_ms,
            idle_clients=s.idle_clients,
            rss_started_kb=started.rss_kb,
            rss_with_idle_kb=idle0.rss_kb,
            hwm_kb=final.hwm_kb,
            idle_window_s=s.idle_window_s,
            idle_cpu_s=idle1.cpu_s - idle0.cpu_s,
            before=before,
            with_idle=with_idle,
        )
        return (
            f"RSS {started.rss_kb / 1024:.1f} -> {idle0.rss_kb / 1024:.1f} MiB with "
            f"{s.idle_clients} idle, peak {final.hwm_kb / 1024:.1f} MiB; "
            f"{before.ops_per_s:,.0f} -> {with_idle.ops_per_s:,.0f} ops/s"
        )

    def profile(self, stack: LatencyStack, clients: int | None = None) -> str:
        """Repeat a redis-benchmark point (default the headline one) against the bridge under
        py-spy; one client profiles `-t get` at 0 ms (the latency target)."""
        one = clients == 1
        clients = clients or self.headline_clients
        bridge = stack.bridges[BRIDGE.key]
        requests = max(self.settings.requests, PROFILE_MIN_REQUESTS)
        tests = PROFILE_ONE_CLIENT_TESTS if one else PROFILE_TESTS
        self.reset_data()
        raw_path = Path(self.log_dir) / f"bridge-profile-{clients}.txt"
        try:
            with profiling.recording(bridge.pid, raw_path):
                run_redis_benchmark(
                    bridge.port, clients=clients, pipeline=1, requests=requests,
                    tests=tests, timeout_s=REDIS_BENCHMARK_MIN_TIMEOUT_S,
                )  # fmt: skip
        except RuntimeError as exc:
            self.record.profile_note = str(exc)
            return f"no profile: {exc}"
        workload = (
            f"redis-benchmark -c {clients} -P 1 -t {tests} -n {requests}, "
            f"{stack.latency_ms:g} ms injected"
        )
        figures = profiling.summarize(raw_path.read_text(encoding="utf-8"), workload=workload)
        if one:
            self.record.profile_one_client = figures
        else:
            self.record.profile = figures
        top = ", ".join(f"{name} {share:.0%}" for name, share in figures.by_package[:4])
        return f"{figures.samples} samples: {top}"

    def probe(self, stack: LatencyStack) -> str:
        assert self.redis is not None
        self.reset_data()
        result = probe_overhead(
            bridge_port=stack.bridges[BRIDGE.key].port,
            rest_url=stack.devserver.url,
            token=stack.devserver.token,
            redis_port=self.redis.port,
            iterations=self.settings.probe_iterations,
        )
        self.record.probe = result
        return (
            f"p50 via bridge {result.via_bridge_p50_ms * 1000:.0f} us, direct /pipeline "
            f"{result.direct_pipeline_p50_ms * 1000:.0f} us: +{result.added_p50_us:.0f} us"
        )


# -- metadata ---------------------------------------------------------------------------------


def _first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    rev = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return rev + (" (with uncommitted changes)" if dirty else "")


def collect_meta(argv: list[str]) -> dict[str, object]:
    return {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks.harness", *argv]),
        "git": _git_revision(),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "memory_gib": round(_mem_total_gib(), 1),
            "load_average_start": list(os.getloadavg()),
        },
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {name: _version(name) for name in VERSIONED_PACKAGES},
        "redis_server": _first_line(["redis-server", "--version"]),
        "redis_benchmark": _first_line(["redis-benchmark", "--version"]),
    }


def collect_settings(settings: Settings) -> dict[str, object]:
    defaults = BridgeConfig()
    data: dict[str, object] = asdict(settings)
    data["bridge_defaults"] = {
        "max_batch_commands": defaults.max_batch_commands,
        "max_in_flight": defaults.max_in_flight,
        "max_batch_bytes": defaults.max_batch_bytes,
    }
    data["thread_workload"] = "80% GET / 20% SET, 100-byte values, 1000 preloaded keys"
    return data


# -- entry point ------------------------------------------------------------------------------


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT unwind like Ctrl-C, so every child is stopped on the way out (SIGINT
    too: a shell without job control starts background commands with SIGINT ignored)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = parse_args(argv)
    profile_note = ""
    if not settings.profile:
        profile_note = "not requested (--no-profile, or --quick)"
    elif profiling.py_spy_path() is None:
        settings = replace(settings, profile=False)
        profile_note = "py-spy is not installed (`pip install py-spy`)"
    record = RunRecord(meta=collect_meta(argv), settings=collect_settings(settings))
    record.profile_note = profile_note
    log_dir = make_log_dir()
    runner = Runner(settings, record, log_dir)
    print(
        f"resp-bridge benchmark: {runner.progress.total} steps, latencies "
        f"{', '.join(f'{x:g}' for x in settings.latencies_ms)} ms, clients "
        f"{', '.join(map(str, settings.clients))}; server logs in {log_dir}",
        file=sys.stderr,
    )
    extra = [f"release {settings.release} side by side"] if settings.release else []
    extra += ["bridge over HTTPS too"] if settings.https else []
    if extra:
        print(f"  with {' and '.join(extra)}", file=sys.stderr)
    interrupted = False
    with signals_as_interrupt():
        try:
            runner.run()
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: every server was stopped", file=sys.stderr)
    record.meta["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    record.meta["load_average_end"] = list(os.getloadavg())
    record.meta["interrupted"] = interrupted
    record.meta["duration_s"] = round(time.monotonic() - runner.progress.started, 1)
    written = report.write_report(record, Path(settings.out))
    for path in written.files:
        print(f"wrote {path}", file=sys.stderr)
    if written.note:
        print(written.note, file=sys.stderr)
    print(report.render_summary(record))
    return 130 if interrupted else (1 if record.failures else 0)


if __name__ == "__main__":
    sys.exit(main())
