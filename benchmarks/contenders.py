"""The contenders of a run, and the local servers each one needs.

Five contenders on the same workloads, and two more on redis-benchmark when asked:
  1. `direct`: redis-server over TCP, no HTTP at all (the upper bound);
  2. `bridge`: `resp-bridge serve` with its defaults (auto-batching);
  3. `bridge-nobatch`: the bridge with `--max-batch-commands 1`, one HTTP request per command
     (what a naive proxy does; its other settings, `--max-in-flight` included, stay default);
  4. `upstash-sdk`: the official `upstash-redis` Python SDK straight to the REST server, one
     client (one HTTP keep-alive connection) per thread; it cannot run redis-benchmark;
  5. `ideal`: clients x pipeline depth / injected round trip, computed, not measured (the
     physical limit of request/response clients; undefined at 0 ms);
  6. `release`: the bridge of an older release (8208cb6 for the issue's targets), defaults,
     from its own install (`--release-bridge`, `--make-release`);
  7. `bridge-https`: the bridge, defaults, to a devserver serving HTTPS (`--tls-cert`, a
     trustme CA given to the bridge with `--ca-file`): the production transport.

`LatencyStack` owns one devserver with an injected round trip (two with HTTPS: one plain, one
TLS) and the bridges in front of them; only one stack runs at a time, so idle servers do not
share the 2 cores with the measured ones.
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
RELEASE = Contender(
    "release",
    "release 8208cb6",
    "`resp-bridge serve` of an older release (default settings), from its own install",
    bridge_flags=(),
)
HTTPS = Contender(
    "bridge-https",
    "bridge over HTTPS",
    "`resp-bridge serve --ca-file CA` to the devserver over HTTPS (trustme certificate)",
    bridge_flags=(),
)
CONTENDERS: tuple[Contender, ...] = (DIRECT, BRIDGE, NOBATCH, SDK, IDEAL, RELEASE, HTTPS)
#: The bridges every stack starts; RELEASE and HTTPS only when asked for.
BASE_BRIDGES: tuple[Contender, ...] = (BRIDGE, NOBATCH)
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
    """A devserver with `latency_ms` injected, and one bridge per bridge contender.

    `release_python` adds the RELEASE bridge (run by that interpreter); `https` adds a second
    devserver serving HTTPS with a fresh trustme certificate and the HTTPS bridge before it.
    """

    def __init__(
        self,
        redis_url: str,
        latency_ms: float,
        log_dir: str,
        *,
        release_python: str | None = None,
        https: bool = False,
    ) -> None:
        tag = f"{latency_ms:g}ms"
        self.latency_ms = latency_ms
        self.devserver = DevServer(
            latency_ms, redis_url, os.path.join(log_dir, f"devserver-{tag}.log")
        )
        self.tls_devserver: DevServer | None = None
        if https:
            cert, key, ca = tls_files(log_dir)
            self.tls_devserver = DevServer(
                latency_ms,
                redis_url,
                os.path.join(log_dir, f"devserver-tls-{tag}.log"),
                extra_args=("--tls-cert", cert, "--tls-key", key),
                ca_file=ca,
            )
        self.release_python = release_python
        self.bridges: dict[str, Bridge] = {}
        self._log_dir = log_dir
        self._tag = tag

    @property
    def contenders(self) -> tuple[Contender, ...]:
        """The bridge contenders of this stack, in report order."""
        extra = (RELEASE,) if self.release_python else ()
        return BASE_BRIDGES + extra + ((HTTPS,) if self.tls_devserver else ())

    def __enter__(self) -> LatencyStack:
        try:
            self.devserver.start()
            if self.tls_devserver is not None:
                self.tls_devserver.start()
            for contender in self.contenders:
                self.bridges[contender.key] = self.new_bridge(contender)
        except BaseException:
            self.close()
            raise
        return self

    def devserver_for(self, contender: Contender) -> DevServer:
        if contender is HTTPS and self.tls_devserver is not None:
            return self.tls_devserver
        return self.devserver

    def new_bridge(self, contender: Contender, suffix: str = "") -> Bridge:
        """Start one more bridge of `contender` (the caller stops it, or `close` does)."""
        assert contender.bridge_flags is not None
        log = os.path.join(self._log_dir, f"{contender.key}-{self._tag}{suffix}.log")
        upstream = self.devserver_for(contender)
        flags = contender.bridge_flags
        if contender is HTTPS:
            assert upstream.ca_file is not None
            flags = (*flags, "--ca-file", upstream.ca_file)
        python = self.release_python if contender is RELEASE else None
        return Bridge(upstream.url, upstream.token, flags, log, python=python).start()

    def close(self) -> None:
        for bridge in self.bridges.values():
            with contextlib.suppress(Exception):
                bridge.stop()
        self.devserver.stop()
        if self.tls_devserver is not None:
            self.tls_devserver.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def tls_files(log_dir: str) -> tuple[str, str, str]:
    """A trustme CA and a certificate for 127.0.0.1 / localhost: (cert, key, CA) PEM paths."""
    import trustme  # test/bench dependency only

    paths = tuple(os.path.join(log_dir, name) for name in ("tls-cert.pem", "tls-key.pem", "ca.pem"))
    if not all(os.path.exists(p) for p in paths):
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        leaf.cert_chain_pems[0].write_to_path(paths[0])
        leaf.private_key_pem.write_to_path(paths[1])
        ca.cert_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]
