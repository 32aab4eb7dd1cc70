"""Counters of the devserver, served as JSON on `GET /_devserver/stats` (a devserver extension).

Owns the counter names and their meaning; plain integers updated from the single trio thread,
so no locking. `sse_streams_open` and `http_connections_open` are gauges and survive
`reset()`; everything else restarts at zero (the per-name and per-database maps empty).
Requests to `/_devserver/*` are not counted, so tests can read the counters freely (their
HTTP connections are, as connections).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

_GAUGES = frozenset({"sse_streams_open", "http_connections_open"})
#: Most distinct names kept in `commands_by_name`; later new names count under OTHER_NAME
#: (garbage command names must not grow the map without bound).
MAX_COMMAND_NAMES = 512
OTHER_NAME = "(other)"


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
    #: Upper-case command name -> how many were received: every item counted in `commands`,
    #: plus one SUBSCRIBE, PSUBSCRIBE or MONITOR per SSE stream opened (what Upstash bills).
    commands_by_name: dict[str, int] = field(default_factory=dict)
    #: Redis logical database index (as a string, JSON keys) -> commands counted for it, the
    #: same events as `commands_by_name` (an SSE stream counts for its token's database).
    commands_by_db: dict[str, int] = field(default_factory=dict)

    def count_command(self, name: bytes, db: str) -> None:
        """Count one command named `name` (any case) run with the token of database `db`."""
        self.count_names({name: 1}, db)

    def count_names(self, counts: Mapping[bytes, int], db: str) -> None:
        """`count_command` for a batch: `counts` maps each name as received to how many times
        it came (in order of first appearance)."""
        by_name = self.commands_by_name
        total = 0
        for name, n in counts.items():
            total += n
            key = name.upper().decode("utf-8", "replace")
            if key in by_name:
                by_name[key] += n
            elif len(by_name) < MAX_COMMAND_NAMES:
                by_name[key] = n
            else:
                by_name[OTHER_NAME] = by_name.get(OTHER_NAME, 0) + n
        self.commands_by_db[db] = self.commands_by_db.get(db, 0) + total

    def reset(self) -> None:
        for f in fields(self):
            if f.name in _GAUGES:
                continue
            value = getattr(self, f.name)
            if isinstance(value, dict):
                value.clear()
            else:
                setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
