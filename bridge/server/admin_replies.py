"""What the admin console replies: values built from the running bridge, their RESP encoding,
and the scrubbing that keeps secrets out of them. No I/O; `bridge.server.admin` serves them.

Reply values are plain Python (dict, list, str, int, float, bool, None, and `Status` /
`ErrorReply` for line replies). `encode_value` writes RESP2 (maps as flat arrays, for
`redis-cli`) or RESP3 (maps, doubles, booleans, for `resp-bridge admin`). `scrub_value` masks
every credential the bridge holds wherever it appears in a value: the last step before encoding.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.core import resp
from bridge.core.resp import ErrorReply, Status
from bridge.redaction import redact_url
from bridge.server.cost import SOURCES
from bridge.server.counters import LATENCY_BUCKETS_MS
from bridge.server.state import BridgeState, ClientConnection
from bridge.upstream import management_ops

#: Shorter "secrets" are not masked by value (masking "ab" would garble every reply).
SHORTEST_SECRET_CHARS = 4


class AdminError(Exception):
    """A command failed; the text is the RESP error line (starts with an error code)."""


# -- RESP encoding of reply values ------------------------------------------------------------


def encode_value(value: Any, proto: int) -> bytes:
    """dict → map (RESP2: flat array), list → array, str/bytes → bulk, int, float, bool,
    None → null; `Status` and `ErrorReply` keep their line types; anything else as its text.
    Floats keep Python's shortest spelling (operators read them)."""
    return resp.encode_value(value, proto, default=str, float_text=_float_text)


def _float_text(value: float) -> bytes:
    return repr(value).encode()


def scrub_value(value: Any, secrets: list[str]) -> Any:
    """The reply value with each secret replaced by <redacted> wherever it appears."""
    if not secrets:
        return value
    if isinstance(value, Status | ErrorReply):
        text = bytes(value).decode("utf-8", "replace")
        return type(value)(management_ops.scrub(text, secrets).encode())
    if isinstance(value, str):
        return management_ops.scrub(value, secrets)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        return management_ops.scrub(text, secrets) if any(s in text for s in secrets) else value
    if isinstance(value, dict):
        return {scrub_value(k, secrets): scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v, secrets) for v in value]
    return value


def secrets_of(state: BridgeState) -> list[str]:
    """Every credential the bridge holds (config secrets and the token in use)."""
    return [v for v in state.secrets() if len(v) >= SHORTEST_SECRET_CHARS]


# -- replies built from the running bridge ----------------------------------------------------


def stats_reply(state: BridgeState) -> dict[str, Any]:
    s = state.stats
    latency = s.upstream_latency
    return {
        "clients": len(state.connections),
        "connections_total": s.connections_total,
        "connections_rejected": s.connections_rejected,
        "commands": s.commands_total,
        "commands_local": s.commands_local,
        "commands_forwarded": s.commands_forwarded,
        "transactions": s.transactions,
        "batches": s.batches,
        "commands_per_batch": round(s.commands_per_batch, 2),
        "http_requests": s.http_requests,
        "retries": s.retries,
        "errors_total": sum(s.errors.values()),
        "errors": dict(sorted(s.errors.items())),
        "protocol_errors": s.protocol_errors,
        "refused_total": sum(s.refused.values()),
        "refused": {f"{cmd}: {why}": n for (cmd, why), n in sorted(s.refused.items())},
        "upstream_latency_ms": {
            "p50": latency.quantile(0.5),
            "p90": latency.quantile(0.9),
            "p99": latency.quantile(0.99),
            "mean": round(latency.total / latency.count, 3) if latency.count else 0.0,
            "count": latency.count,
        },
        "requests_in_flight": state.dispatcher.in_flight,
        "paused": state.dispatcher.paused,
        "client_pause": state.dispatcher.client_pause or "off",
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "uptime_s": round(s.uptime_s, 1),
        "databases": databases_reply(state),
        "upstream_commands": s.cost.total,
        "upstream_commands_by_source": {src: s.cost.by_source.get(src, 0) for src in SOURCES},
        "blocking": blocking_reply(state),
    }


def blocking_reply(state: BridgeState) -> dict[str, Any]:
    """Blocked clients, their polls and wake-ups, WATCH and the keyspace streams."""
    hub, keyspace = state.blocking, state.keyspace
    return {
        "waiting": hub.waiting,
        "polls": hub.polls,
        "polls_skipped": hub.polls_skipped,
        "wakeups_local": hub.wakeups,
        "wakeups_keyspace": hub.event_wakeups,
        "watch_dirtied_locally": hub.watches.dirtied_locally,
        "watch_dirtied_by_events": hub.watches.dirtied_by_events,
        "keyspace_events": keyspace.mode,
        "keyspace_flags": keyspace.flags_text,
        "keyspace_streams": keyspace.streams,
        "keyspace_streams_live": keyspace.live_streams,
        "keyspace_streams_refused": keyspace.refused,
        "keyspace_events_received": keyspace.events,
    }


def cost_reply(state: BridgeState) -> dict[str, Any]:
    """Admin COST: what the upstream bills, by cause, with the estimate and budgets."""
    report = state.stats.cost.report()
    config = state.config
    report["settings"] = {
        "blocking_poll_max_ms": config.blocking_poll_max_ms,
        "blocking_fallback_poll_s": config.blocking_fallback_poll_s,
        "keyspace_events": f"{config.keyspace_events} (upstream flags "
        f"{state.keyspace.flags_text!r})",
        "keyspace_max_streams": config.keyspace_max_streams,
        "metrics_ready_upstream_s": config.metrics_ready_upstream_s,
    }
    return report


def databases_reply(state: BridgeState) -> dict[str, Any]:
    """Per database number in use: its upstream, clients that SELECTed it, its queue."""
    clients: dict[int, int] = {}
    for conn in state.connections.values():
        clients[conn.session.db] = clients.get(conn.session.db, 0) + 1
    numbered = {db.number: db for db in state.databases.opened()}
    out: dict[str, Any] = {
        "0": {
            "upstream": state.upstream.display_url,
            "clients": clients.get(0, 0),
            "commands": state.stats.commands_forwarded - sum(d.commands for d in numbered.values()),
            "requests_in_flight": state.dispatcher.in_flight,
            "circuit_breaker": state.dispatcher.breaker.state,
        }
    }
    for number in sorted(set(numbered) | {n for n in clients if n}):
        db = numbered.get(number)
        out[str(number)] = {
            "upstream": state.databases.display_url(number),
            "clients": clients.get(number, 0),
            "commands": db.commands if db else 0,
            "requests_in_flight": db.dispatcher.in_flight if db else 0,
            "circuit_breaker": db.dispatcher.breaker.state if db else "closed",
        }
    return out


def client_row(conn: ClientConnection, paused: bool) -> dict[str, Any]:
    session = conn.session
    pending, waiting = conn.backlog()
    if session.monitoring:
        state = "monitor"
    elif session.channels or session.patterns:
        state = "pubsub"
    elif waiting:
        state = "paused" if paused else "waiting"
    elif session.multi is not None:
        state = "multi"
    else:
        state = "idle"
    lib = b" ".join((session.lib_name, session.lib_ver)).decode("utf-8", "replace")
    return {
        "id": session.id,
        "addr": session.addr,
        "name": session.name.decode("utf-8", "replace"),
        "lib": lib.strip(),
        "age_s": session.age_s,
        "idle_s": session.idle_s,
        "state": state,
        "pending": pending,
        "cmd": session.last_command,
        "resp": session.protocol,
        "db": session.db,
        "subscriptions": len(session.channels) + len(session.patterns),
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(state: BridgeState) -> str:
    """The bridge's counters in the Prometheus text exposition format (version 0.0.4)."""
    s = state.stats
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            number = repr(float(value)) if isinstance(value, float) else str(value)
            lines.append(f"{name}{labels} {number}")

    info = f'{{version="{_label(__version__)}",upstream="{_label(state.upstream.display_url)}"}}'
    family("resp_bridge_info", "gauge", "Version and upstream (value is always 1).", [(info, 1)])
    family("resp_bridge_uptime_seconds", "gauge", "Seconds since start.", [("", s.uptime_s)])
    family("resp_bridge_clients", "gauge", "Connected clients.", [("", len(state.connections))])
    family(
        "resp_bridge_connections_total", "counter", "Client connections accepted.",
        [("", s.connections_total)],
    )  # fmt: skip
    family(
        "resp_bridge_connections_rejected_total", "counter",
        "Client connections refused (max clients).", [("", s.connections_rejected)],
    )  # fmt: skip
    family(
        "resp_bridge_commands_total", "counter", "Commands processed, by where they ran.",
        [('{where="local"}', s.commands_local), ('{where="forwarded"}', s.commands_forwarded)],
    )  # fmt: skip
    family(
        "resp_bridge_transactions_total", "counter", "MULTI/EXEC sent as /multi-exec.",
        [("", s.transactions)],
    )  # fmt: skip
    family("resp_bridge_batches_total", "counter", "/pipeline requests.", [("", s.batches)])
    family(
        "resp_bridge_batched_commands_total", "counter", "Commands sent in /pipeline requests.",
        [("", s.batched_commands)],
    )  # fmt: skip
    family(
        "resp_bridge_http_requests_total", "counter", "HTTP requests to the upstream.",
        [("", s.http_requests)],
    )  # fmt: skip
    cost = s.cost
    family(
        "resp_bridge_upstream_commands_total", "counter",
        "Commands the upstream bills, by what caused them.",
        [(f'{{source="{src}"}}', cost.by_source.get(src, 0)) for src in SOURCES],
    )  # fmt: skip
    family(
        "resp_bridge_budget_refused_total", "counter",
        "Commands refused by an enforced command budget, by source.",
        [(f'{{source="{src}"}}', n) for src, n in sorted(cost.refused.items())],
    )  # fmt: skip
    family(
        "resp_bridge_keyspace_streams", "gauge", "Keyspace notification streams held.",
        [("", state.keyspace.streams)],
    )  # fmt: skip
    family(
        "resp_bridge_blocking_polls_total", "counter", "Polls of emulated blocking commands.",
        [("", state.blocking.polls)],
    )  # fmt: skip
    family(
        "resp_bridge_upstream_retries_total", "counter", "Read-only requests retried.",
        [("", s.retries)],
    )  # fmt: skip
    family(
        "resp_bridge_upstream_errors_total", "counter", "Failed upstream requests, by kind.",
        [(f'{{kind="{_label(kind)}"}}', n) for kind, n in sorted(s.errors.items())],
    )  # fmt: skip
    family(
        "resp_bridge_refused_commands_total", "counter",
        "Commands the bridge refused itself (not sent upstream), by command and reason.",
        [(f'{{command="{_label(cmd)}",reason="{_label(why)}"}}', n)
         for (cmd, why), n in sorted(s.refused.items())],
    )  # fmt: skip
    family(
        "resp_bridge_protocol_errors_total", "counter", "Clients dropped for protocol errors.",
        [("", s.protocol_errors)],
    )  # fmt: skip
    family(
        "resp_bridge_received_bytes_total", "counter", "Bytes read from clients.",
        [("", s.bytes_in)],
    )  # fmt: skip
    family(
        "resp_bridge_sent_bytes_total", "counter", "Bytes written to clients.",
        [("", s.bytes_out)],
    )  # fmt: skip
    family(
        "resp_bridge_upstream_requests_in_flight", "gauge", "Upstream requests in flight.",
        [("", state.dispatcher.in_flight)],
    )  # fmt: skip
    family(
        "resp_bridge_paused", "gauge", "1 while PAUSE holds new commands.",
        [("", int(state.dispatcher.paused))],
    )  # fmt: skip
    latency = s.upstream_latency
    buckets: list[tuple[str, float]] = []
    seen = 0
    for bound, n in zip(LATENCY_BUCKETS_MS, latency.counts, strict=True):
        seen += n
        le = "+Inf" if bound == float("inf") else repr(bound / 1000.0)
        buckets.append((f'_bucket{{le="{le}"}}', seen))
    name = "resp_bridge_upstream_latency_seconds"
    lines.append(f"# HELP {name} Upstream request latency.")
    lines.append(f"# TYPE {name} histogram")
    for suffix, count in buckets:
        lines.append(f"{name}{suffix} {count}")
    lines.append(f"{name}_sum {latency.total / 1000.0!r}")
    lines.append(f"{name}_count {latency.count}")
    return "\n".join(lines) + "\n"


def config_reply(state: BridgeState, socket_path: str, names: list[str]) -> dict[str, Any]:
    values = state.config.redacted()
    values["admin_socket"] = socket_path
    if values.get("url"):
        values["url"] = redact_url(values["url"])
    for key in ("upstash_api_url", "enterprise_url"):
        if values.get(key):
            values[key] = redact_url(values[key])
    if names:
        unknown = [n for n in names if n.lower() not in values]
        if unknown:
            raise AdminError(f"ERR unknown setting {unknown[0]!r}; CONFIG lists them all")
        return {n.lower(): values[n.lower()] for n in names}
    return values
