"""The contenders of a run, and the local servers each one needs.

Five contenders on the same workloads:
  1. `direct`: redis-server over TCP, no HTTP at all (the upper bound);
  2. `bridge`: `resp-bridge serve` with its defaults (auto-batching);
  3. `bridge-nobatch`: the bridge with `--max-batch-commands 1`, one HTTP request per command
     (what a naive proxy does; its other settings, `--max-in-flight` included, stay default);
  4. `upstash-sdk`: the official `upstash-redis` Python SDK straight to the REST server, one
     client (one HTTP keep-alive connection) per thread; it cannot run redis-benchmark;
  5. `ideal`: clients x pipeline depth / injected round trip, computed, not measured (the
     physical limit of request/response clients; undefined at 0 ms).

`LatencyStack` owns one devserver with an injected round trip and the two bridges in front of
it; only one stack runs at a time, so idle servers do not share the 2 cores with the measured
ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import redis
import upstash_redis

from benchmarks.processes import Bridge, DevServer
from benchmarks.workloads import CLIENT_SOCKET_TIMEOUT_S, KeyValueClient


@dataclass(frozen=True, slots=True)
class Contender:
    key: str
    label: str
    description: str
    #: Flags of `resp-bridge serve` for the bridge contenders; None for the others.
    bridge_flags: tuple[str, ...] | None = None
    runs_redis_benchmark: bool = True
    measured: bool = True


DIRECT = Contender("direct", "direct redis-server", "redis-server over TCP, no HTTP (upper bound)")
BRIDGE = Contender(
    "bridge", "bridge (auto-batching)", "`resp-bridge serve`, default settings", bridge_flags=()
)
NOBATCH = Contender(
    "bridge-nobatch",
    "bridge, batching off",
    "`resp-bridge serve --max-batch-commands 1`: one HTTP request per command",
    bridge_flags=("--max-batch-commands", "1"),
)
SDK = Contender(
    "upstash-sdk",
    "upstash-redis SDK",
    "official `upstash-redis` Python SDK to the REST server, one client per thread",
    runs_redis_benchmark=False,
)
IDEAL = Contender(
    "ideal",
    "ideal",
    "clients x pipeline depth / injected round trip (computed)",
    measured=False,
)
CONTENDERS: tuple[Contender, ...] = (DIRECT, BRIDGE, NOBATCH, SDK, IDEAL)
BY_KEY = {c.key: c for c in CONTENDERS}


def ideal_ops_per_s(clients: int, pipeline: int, latency_ms: float) -> float | None:
    """Request/response clients cannot beat one round trip per pipeline each."""
    if latency_ms <= 0:
        return None
    return clients * pipeline / (latency_ms / 1000)


def redis_py_factory(port: int) -> Callable[[int], KeyValueClient]:
    """A `make_client(n)` for the thread workload: redis-py with its defaults (RESP3 on 8.x)."""

    def make(_n: int) -> KeyValueClient:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=CLIENT_SOCKET_TIMEOUT_S)

    return make


def sdk_factory(url: str, token: str) -> Callable[[int], KeyValueClient]:
    """A `make_client(n)` for the thread workload: the Upstash SDK, defaults, one per thread."""

    def make(_n: int) -> KeyValueClient:
        return upstash_redis.Redis(url=url, token=token)  # type: ignore[return-value]

    return make


class LatencyStack:
    """A devserver with `latency_ms` injected, and one bridge per bridge contender."""

    def __init__(self, redis_url: str, latency_ms: float, log_dir: str) -> None:
        tag = f"{latency_ms:g}ms"
        self.latency_ms = latency_ms
        self.devserver = DevServer(
            latency_ms, redis_url, os.path.join(log_dir, f"devserver-{tag}.log")
        )
        self.bridges: dict[str, Bridge] = {}
        self._log_dir = log_dir
        self._tag = tag

    def __enter__(self) -> LatencyStack:
        try:
            self.devserver.start()
            for contender in CONTENDERS:
                if contender.bridge_flags is not None:
                    self.bridges[contender.key] = self.new_bridge(contender)
        except BaseException:
            self.close()
            raise
        return self

    def new_bridge(self, contender: Contender, suffix: str = "") -> Bridge:
        """Start one more bridge of `contender` (the caller stops it, or `close` does)."""
        assert contender.bridge_flags is not None
        log = os.path.join(self._log_dir, f"{contender.key}-{self._tag}{suffix}.log")
        return Bridge(self.devserver.url, self.devserver.token, contender.bridge_flags, log).start()

    def close(self) -> None:
        for bridge in self.bridges.values():
            with contextlib.suppress(Exception):
                bridge.stop()
        self.devserver.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
