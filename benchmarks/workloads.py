"""The workloads of the harness: what the clients do, measured from the client side.

- `run_redis_benchmark`: the real, unmodified `redis-benchmark` with `--csv`; one invocation
  runs every selected test at one client count and pipeline depth, and its CSV is parsed.
- `run_threads`: N threads, one client each (redis-py, or the Upstash SDK), 80% GET / 20% SET
  of 100-byte values on a fixed key space, for a fixed duration; per-operation latency is
  timed around each call, so p50/p99 include the client library's own cost.
- `open_idle_clients`: many connected, idle RESP clients (raw sockets after one PING).
- `probe_overhead`: one client, interleaved requests to the bridge and to the REST server
  directly (one-command `/pipeline`), to isolate what the bridge adds per command.

Nothing here starts servers or knows which contender it measures; timings never assert.
"""

from __future__ import annotations

import csv
import io
import math
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import hiredis
import orjson

from benchmarks.records import ProbeFigures

#: The tests of the issue, in redis-benchmark's own names.
REDIS_BENCHMARK_TESTS = "ping,set,get,incr,lpush,lpop,sadd,hset,zadd,lrange_100,mset"
#: redis-benchmark's clock resolution: a test shorter than this prints rps "inf".
REDIS_BENCHMARK_CLOCK_S = 0.001
#: Keys of the thread workload (preloaded, so GETs hit).
KEYSPACE = 1000
#: Value size of the thread workload's SETs (and of the preloaded values).
VALUE_BYTES = 100
#: Share of GETs in the thread workload (the rest are SETs).
GET_RATIO = 0.8
#: Socket timeout of the raw probe clients.
PROBE_SOCKET_TIMEOUT_S = 10.0
#: redis-py's socket timeout in the thread workload (its default is none at all).
CLIENT_SOCKET_TIMEOUT_S = 30.0
#: Grace added to a thread workload's duration before a stuck thread counts as a failure.
JOIN_GRACE_S = 60.0


def key_name(i: int) -> str:
    return f"bench:key:{i}"


def value_for(i: int) -> str:
    """A 100-character ASCII value (str: the Upstash SDK refuses bytes, redis-py takes both)."""
    return (f"{i:08d}" * (VALUE_BYTES // 8 + 1))[:VALUE_BYTES]


# -- redis-benchmark --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchmarkRow:
    """One test of a redis-benchmark run (one CSV line)."""

    test: str
    requests: int
    rps: float
    avg_ms: float
    p50_ms: float
    p99_ms: float

    @property
    def seconds(self) -> float:
        return self.requests / self.rps if self.rps > 0 else 0.0

    @property
    def is_setup(self) -> bool:
        """'LPUSH (needed to benchmark LRANGE)' prepares data; it is not a selected test."""
        return "needed" in self.test


@dataclass(frozen=True, slots=True)
class BenchmarkRun:
    rows: tuple[BenchmarkRow, ...]
    #: Lines that were not CSV (redis-benchmark prints server errors there) and exit status.
    problems: tuple[str, ...]


def _finite_rps(rps: float, requests: int) -> float:
    """redis-benchmark times tests in whole milliseconds and prints `inf` under 1 ms."""
    if math.isinf(rps):
        return requests / REDIS_BENCHMARK_CLOCK_S
    return rps


def parse_redis_benchmark_csv(text: str, requests: int) -> BenchmarkRun:
    """Parse `redis-benchmark --csv` output; other lines are kept as problems."""
    rows: list[BenchmarkRow] = []
    problems: list[str] = []
    csv_lines = []
    for line in text.splitlines():
        if line.startswith('"'):
            csv_lines.append(line)
        elif line.strip():
            problems.append(line.strip())
    for record in csv.DictReader(io.StringIO("\n".join(csv_lines))):
        try:
            rows.append(
                BenchmarkRow(
                    test=record["test"],
                    requests=requests,
                    rps=_finite_rps(float(record["rps"]), requests),
                    avg_ms=float(record["avg_latency_ms"]),
                    p50_ms=float(record["p50_latency_ms"]),
                    p99_ms=float(record["p99_latency_ms"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            problems.append(f"unparsed CSV record {record!r}")
    return BenchmarkRun(tuple(rows), tuple(problems))


def run_redis_benchmark(
    port: int, *, clients: int, pipeline: int, requests: int, tests: str, timeout_s: float
) -> BenchmarkRun:
    """Run redis-benchmark against 127.0.0.1:port and parse its CSV."""
    args = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
        "-c", str(clients), "-n", str(requests), "-P", str(pipeline),
        "-t", tests, "--csv",
    ]  # fmt: skip
    # subprocess.run kills the child on any exception, Ctrl-C included.
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        check=False,
    )
    run = parse_redis_benchmark_csv(done.stdout, requests)
    problems = list(run.problems) + [f"stderr: {ln}" for ln in done.stderr.splitlines() if ln]
    if done.returncode != 0:
        problems.append(f"redis-benchmark exited with {done.returncode}")
    return BenchmarkRun(run.rows, tuple(problems))


# -- thread workload (redis-py, Upstash SDK) --------------------------------------------------


class KeyValueClient(Protocol):
    def get(self, name: str) -> Any: ...
    def set(self, name: str, value: Any) -> Any: ...
    def close(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class ThreadRun:
    """What N threads did in one timed window."""

    operations: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    first_error: str

    @property
    def ops_per_s(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def run_threads(
    make_client: Callable[[int], KeyValueClient],
    *,
    clients: int,
    duration_s: float,
    on_start: Callable[[], None] = lambda: None,
    on_stop: Callable[[], None] = lambda: None,
) -> ThreadRun:
    """`clients` threads, each with its own client, 80/20 GET/SET for `duration_s`.

    Every thread connects and does one GET first (warm-up, not timed); `on_start` runs once all
    are ready, right before the timed window, and `on_stop` right after the last thread ends.
    """
    ready = threading.Barrier(clients + 1)
    go = threading.Event()
    deadline = [0.0]
    latencies: list[list[int]] = [[] for _ in range(clients)]
    errors = [0] * clients
    first_error: list[str] = []
    value = value_for(0)

    def worker(n: int) -> None:
        rng = random.Random(n)
        client = None
        try:
            client = make_client(n)
            client.get(key_name(n % KEYSPACE))
        except Exception as exc:
            first_error.append(f"{type(exc).__name__}: {exc}")
            errors[n] += 1
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        go.wait()
        mine = latencies[n]
        perf = time.perf_counter_ns
        end = deadline[0]
        try:
            if client is None:
                return
            while time.perf_counter() < end:
                key = key_name(rng.randrange(KEYSPACE))
                is_get = rng.random() < GET_RATIO
                started = perf()
                try:
                    if is_get:
                        client.get(key)
                    else:
                        client.set(key, value)
                except Exception as exc:
                    errors[n] += 1
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                    continue
                mine.append(perf() - started)
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # a close failure must not hide the figures
                    first_error.append(f"close: {exc}")

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=JOIN_GRACE_S)
    except threading.BrokenBarrierError:
        raise RuntimeError("the clients did not all connect in time") from None
    on_start()
    started = time.perf_counter()
    deadline[0] = started + duration_s
    go.set()
    for thread in threads:
        thread.join(duration_s + JOIN_GRACE_S)
    elapsed = time.perf_counter() - started
    on_stop()
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a client thread is stuck (no reply within the grace period)")
    merged = sorted(v for per_thread in latencies for v in per_thread)
    return ThreadRun(
        operations=len(merged),
        errors=sum(errors),
        seconds=elapsed,
        p50_ms=percentile(merged, 0.50) / 1e6,
        p99_ms=percentile(merged, 0.99) / 1e6,
        first_error=first_error[0] if first_error else "",
    )


# -- idle clients -----------------------------------------------------------------------------


@contextmanager
def open_idle_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` RESP connections that each did one PING, then stay idle until the block ends."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_SOCKET_TIMEOUT_S)
            sockets.append(sock)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                raise RuntimeError("an idle client did not get +PONG")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


# -- per-command overhead probe ---------------------------------------------------------------


class RespProbe:
    """A minimal blocking RESP client (one socket, hiredis parsing): no client library cost."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_SOCKET_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()

    def call(self, request: bytes) -> Any:
        self.sock.sendall(request)
        while (reply := self.reader.gets()) is False:
            self.reader.feed(self.sock.recv(65536))
        return reply

    def close(self) -> None:
        self.sock.close()


class PipelineProbe:
    """A minimal keep-alive HTTP/1.1 client posting one-command `/pipeline` requests.

    Sends the headers the bridge sends (`Upstash-Response-Format: resp2`), so the two paths
    differ only by the bridge.
    """

    def __init__(self, url: str, token: str) -> None:
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=PROBE_SOCKET_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"{host}:{port}"
        self.token = token
        self.buf = b""

    def request(self, command: list[str]) -> bytes:
        body = orjson.dumps([command])
        self.sock.sendall(
            (
                f"POST /pipeline HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                f"Upstash-Response-Format: resp2\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        while (head_end := self.buf.find(b"\r\n\r\n")) < 0:
            self.buf += self._recv()
        head = self.buf[: head_end + 2].lower()
        start = head.index(b"content-length:") + 15
        end = head_end + 4 + int(head[start : head.index(b"\r\n", start)])
        while len(self.buf) < end:
            self.buf += self._recv()
        if not head.startswith(b"http/1.1 200"):
            raise RuntimeError(f"/pipeline answered {head.splitlines()[0]!r}")
        body_bytes, self.buf = self.buf[head_end + 4 : end], self.buf[end:]
        return body_bytes

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the REST server closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


def probe_overhead(
    *, bridge_port: int, rest_url: str, token: str, redis_port: int, iterations: int
) -> ProbeFigures:
    """Interleave GETs through the bridge, one-command /pipeline GETs, direct Redis GETs and
    PINGs the bridge answers itself.

    Interleaving puts the paths under the same machine noise; p50s are compared. The PING
    splits what the bridge adds into the extra hop (a process woken on each side, RESP in and
    out) and the upstream half (the HTTP exchange and the work around it).
    """
    key = key_name(1)
    resp_get = f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode()
    resp_ping = b"*1\r\n$4\r\nPING\r\n"
    bridge, redis_direct = RespProbe(bridge_port), RespProbe(redis_port)
    rest = PipelineProbe(rest_url, token)
    samples: tuple[list[int], ...] = ([], [], [], [])
    perf = time.perf_counter_ns
    try:
        for i in range(iterations + iterations // 10):
            t0 = perf()
            bridge.call(resp_get)
            t1 = perf()
            rest.request(["GET", key])
            t2 = perf()
            redis_direct.call(resp_get)
            t3 = perf()
            bridge.call(resp_ping)
            t4 = perf()
            if i >= iterations // 10:  # the first 10% warm the connections and caches
                samples[0].append(t1 - t0)
                samples[1].append(t2 - t1)
                samples[2].append(t3 - t2)
                samples[3].append(t4 - t3)
    finally:
        bridge.close()
        rest.close()
        redis_direct.close()
    p50s = [percentile(sorted(s), 0.5) / 1e6 for s in samples]
    return ProbeFigures(iterations, p50s[0], p50s[1], p50s[2], p50s[3])
