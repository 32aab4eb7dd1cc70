"""The optional HTTP listener for scrapers and load balancers (`--metrics-bind HOST:PORT`).

- `GET /metrics`: the Prometheus exposition, rendered by the official `prometheus_client`. A
  custom collector reads the bridge's counters at scrape time from the same text the admin
  console's `METRICS` returns (one list of metrics, nothing added to the per-command path),
  plus the library's standard `process_*` metrics.
- `GET /healthz`: 200 while the process serves (liveness: never depends on the upstream).
- `GET /readyz`: 200 when the bridge listens for clients, is not draining, its circuit breaker
  is not refusing requests and the upstream answered within `metrics_ready_upstream_s`; else
  503 with the reason. Replies to clients' commands count as answers; when there were none in
  that window, one `PING` is sent (at most that often while it succeeds, every
  FAILED_RECHECK_S while it fails), straight to the REST client, not through the dispatcher.

Served by the project's small trio HTTP/1.1 server (`bridge.devserver.http_server`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector

from bridge import __version__
from bridge.config import BridgeConfig, parse_host_port
from bridge.devserver.http_server import HttpServer, Request, RequestTooLarge, Response
from bridge.server.admin_replies import prometheus_text
from bridge.server.breaker import OPEN
from bridge.server.cost import PROBE

if TYPE_CHECKING:
    from bridge.server.lifecycle import Lifecycle
    from bridge.server.state import BridgeState

log = logging.getLogger("bridge.metrics")

#: While the upstream check fails, how often /readyz may send another PING.
FAILED_RECHECK_S = 2.0
#: Longest one readiness PING may take (a load balancer's own timeout is usually ~5 s).
PING_TIMEOUT_S = 2.0
_TEXT = b"text/plain; charset=utf-8"
#: The classic text format (every metric name here is a legacy-valid one): what every
#: Prometheus version and agent reads.
_EXPOSITION = CONTENT_TYPE_PLAIN_0_0_4.encode()


@dataclass(frozen=True, slots=True)
class MetricsSources:
    """What the listener reads from the running bridge, as functions (called at request
    time, in the trio thread), so it depends on no class of the server."""

    #: The admin console's METRICS text (Prometheus text format).
    exposition: Callable[[], str]
    #: A number that grows with every successful upstream reply.
    upstream_successes: Callable[[], int]
    #: True while the circuit breaker refuses requests (the upstream is known to be down).
    circuit_open: Callable[[], bool]
    #: Send one cheap command upstream; raise on any failure.
    ping_upstream: Callable[[], Awaitable[None]]
    #: True once SIGTERM started the drain.
    draining: Callable[[], bool]


class BridgeCollector:
    """A prometheus_client collector yielding the bridge's metric families at scrape time."""

    def __init__(self, exposition: Callable[[], str]) -> None:
        self._exposition = exposition

    def collect(self) -> Iterator[Metric]:
        yield from text_string_to_metric_families(self._exposition())


class Readiness:
    """The /readyz decision. `listening` is set by the bridge once its listeners accept."""

    def __init__(self, sources: MetricsSources, within_s: float) -> None:
        self.sources = sources
        self.within_s = within_s
        self.listening = False
        self._last_ok = -math.inf
        self._seen_successes = -1
        self._last_ping = -math.inf
        self._last_failure = "no upstream reply yet"
        self._lock = trio.Lock()

    def _fresh(self) -> bool:
        now = trio.current_time()
        successes = self.sources.upstream_successes()
        if successes != self._seen_successes:
            if self._seen_successes >= 0:
                self._last_ok = now
            self._seen_successes = successes
        return now - self._last_ok <= self.within_s

    async def check(self) -> tuple[bool, str]:
        """(ready, reason)."""
        if not self.listening:
            return False, "starting: not accepting clients yet"
        if self.sources.draining():
            return False, "draining: shutting down"
        if self.sources.circuit_open():
            return False, "upstream down: circuit breaker open"
        if self._fresh():
            return True, "ready"
        async with self._lock:  # concurrent checks share one PING
            if self._fresh():
                return True, "ready"
            now = trio.current_time()
            if now - self._last_ping < min(FAILED_RECHECK_S, self.within_s):
                return False, self._last_failure
            self._last_ping = now
            try:
                with trio.fail_after(PING_TIMEOUT_S):
                    await self.sources.ping_upstream()
            except Exception as exc:  # any failure means "not ready": say which
                self._last_failure = f"upstream unreachable: {type(exc).__name__}: {exc}"[:300]
                return False, self._last_failure
            self._last_ok = trio.current_time()
            return True, "ready"


class MetricsEndpoint:
    """The request handler: /metrics, /healthz, /readyz (GET or HEAD)."""

    def __init__(self, sources: MetricsSources, within_s: float) -> None:
        self.readiness = Readiness(sources, within_s)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BridgeCollector(sources.exposition))
        ProcessCollector(registry=self.registry)

    async def handle(self, request: Request) -> Response:
        if request.method not in (b"GET", b"HEAD"):
            return Response(405, b"only GET and HEAD\n", _TEXT, [(b"allow", b"GET, HEAD")])
        path = request.target.split(b"?", 1)[0]
        if path == b"/metrics":
            return Response(200, generate_latest(self.registry), _EXPOSITION)
        if path == b"/healthz":
            return Response(200, b"ok\n", _TEXT)
        if path == b"/readyz":
            ready, reason = await self.readiness.check()
            return Response(200 if ready else 503, reason.encode() + b"\n", _TEXT)
        return Response(404, b"not found: try /metrics, /healthz or /readyz\n", _TEXT)


def metrics_sources(state: BridgeState, lifecycle: Lifecycle | None) -> MetricsSources:
    """The sources of a running bridge: its stats, breaker, REST client and admin METRICS."""

    def circuit_open() -> bool:
        breaker = state.dispatcher.breaker
        return bool(breaker.state == OPEN and breaker.retry_in_s() > 0)

    async def ping() -> None:
        [frame] = await state.upstream.pipeline([["PING"]])
        state.stats.cost.add(PROBE)
        if frame.startswith(b"-"):  # PONG is a status (resp2) or a bulk string (JSON format)
            raise RuntimeError(bytes(frame[1:200]).decode("utf-8", "replace").strip())

    return MetricsSources(
        exposition=lambda: prometheus_text(state),
        upstream_successes=lambda: int(state.stats.upstream_latency.count),
        circuit_open=circuit_open,
        ping_upstream=ping,
        draining=lambda: lifecycle is not None and bool(lifecycle.stopping),
    )


def _too_large(exc: RequestTooLarge) -> Response:
    return Response(413, b"request too large\n", _TEXT, close=True)


def _bad_request(status: int, message: str) -> Response:
    return Response(status, message.encode() + b"\n", _TEXT, close=True)


async def serve_metrics(
    config: BridgeConfig,
    sources: MetricsSources,
    *,
    task_status: trio.TaskStatus[MetricsEndpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on `config.metrics_bind` until cancelled; reports the endpoint once listening
    (set its `readiness.listening` when the bridge accepts clients)."""
    assert config.metrics_bind
    host, port = parse_host_port(config.metrics_bind)
    endpoint = MetricsEndpoint(sources, config.metrics_ready_upstream_s)
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0:  # a free port on a name with several addresses: one address, one port
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound = listeners[0].socket.getsockname()
    shown = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    server = HttpServer(
        endpoint.handle,
        max_body_bytes=0,
        on_too_large=_too_large,
        on_bad_request=_bad_request,
        server_name=b"resp-bridge/" + __version__.encode(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        log.info("metrics: http://%s/metrics, /healthz and /readyz", shown)
        task_status.started(endpoint)
