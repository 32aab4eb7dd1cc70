"""Counters of the devserver, served as JSON on `GET /_devserver/stats` (a devserver extension).

Owns the counter names and their meaning; plain integers updated from the single trio thread,
so no locking. `sse_streams_open` and `http_connections_open` are gauges and survive
`reset()`; everything else restarts at zero. Requests to `/_devserver/*` are not counted, so
tests can read the counters freely (their HTTP connections are, as connections).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

_GAUGES = frozenset({"sse_streams_open", "http_connections_open"})


@dataclass(slots=True)
class Stats:
    #: HTTP requests received (every endpoint except /_devserver/*), including refused ones.
    http_requests: int = 0
    #: HTTP connections open right now (a gauge; /_devserver/* requests use them too).
    http_connections_open: int = 0
    #: HTTP connections accepted since start/reset (keep-alive reuse keeps this low).
    http_connections_total: int = 0
    #: Redis commands received over REST: single requests plus every /pipeline and
    #: /multi-exec item (what Upstash would bill), including ones refused before Redis.
    commands: int = 0
    #: Single-command requests (path form, raw body form, JSON form).
    single_commands: int = 0
    #: /pipeline requests.
    pipelines: int = 0
    #: /multi-exec requests.
    multi_exec: int = 0
    #: SSE streams (/subscribe, /psubscribe, /monitor) open right now (a gauge).
    sse_streams_open: int = 0
    #: SSE streams opened since start/reset.
    sse_streams_total: int = 0
    #: Responses with status 401.
    auth_failures: int = 0
    #: Responses with a 4xx status (401 included).
    http_4xx: int = 0
    #: Responses with a 5xx status (Redis unreachable, internal errors).
    http_5xx: int = 0

    def reset(self) -> None:
        for f in fields(self):
            if f.name not in _GAUGES:
                setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
