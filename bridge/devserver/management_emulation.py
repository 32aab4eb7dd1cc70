"""Emulation of the two database management APIs, for tests and offline development.

A small in-memory model (databases, teams, members; Redis Enterprise bdbs, cluster, nodes)
behind the documented endpoints and JSON shapes of `spec/upstash-developer-api.txt` (paths
under `/v2/redis`, `/v2/team(s)`) and the Redis Enterprise REST API (`/v1/bdbs`, `/v2/bdbs`,
`/v1/cluster`, `/v1/nodes`); the Upstash Kafka and QStash groups (`/v2/kafka`, `/v2/qstash`)
are answered by `kafka_qstash_emulation`, after the same auth check. It is strict on purpose,
so a client bug shows up as a failing test: the method must match the path (405 otherwise),
Basic credentials must match the provider's (401), JSON bodies must be objects with exactly the
documented fields of the right types (400), unknown ids give 404, Enterprise paths with an
unknown version give 505. Every request is recorded (method, path, query, body, user; never the
password) for tests to assert on, and `fail_next(status, text)` makes the next request fail as
the real API would.

Served by `serve_management` on its own listener (HTTP or HTTPS with a given SSL context),
with the devserver's HTTP/1.1 layer (`bridge.devserver.http_server`). Not a full model: no billing,
no real regions. Alone, Upstash databases hold no data; given a `backend` (the devserver's
`DevServerApp`, see `resp-bridge devserver --management-port`), each created database is a
real one: its own Redis logical database, emptied on creation and deletion, served by the
devserver's REST endpoints to its own `rest_token` / `read_only_rest_token` (rotated by
reset-password). Its `endpoint` is then the devserver's `host:port`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import itertools
import secrets
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
import trio

from bridge.devserver.http_server import HttpServer, Request, RequestTooLarge, Response
from bridge.devserver.kafka_qstash_emulation import KafkaQStashEmulator

#: Largest request body the emulation reads (the APIs take small JSON objects).
MAX_BODY_BYTES = 1024 * 1024
#: Requests kept for assertions (oldest dropped first).
MAX_RECORDED_REQUESTS = 10_000

UPSTASH_REGIONS = frozenset({
    "eu-west-1", "us-east-1", "us-west-1", "ap-northeast-1", "us-central1",
})  # fmt: skip
GLOBAL_REGIONS = frozenset({
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1",
    "ap-southeast-1", "ap-southeast-2", "sa-east-1",
})  # fmt: skip
TEAM_ROLES = frozenset({"admin", "dev", "finance"})
#: Fields of GET /v2/redis/databases items (the documented example).
UPSTASH_LIST_KEYS = (
    "database_id", "database_name", "database_type", "region", "port", "creation_time",
    "state", "password", "user_email", "endpoint", "tls", "rest_token", "read_only_rest_token",
)  # fmt: skip
UPSTASH_LIMITS = {
    "db_max_clients": 1000,
    "db_max_request_size": 1048576,
    "db_disk_threshold": 107374182400,
    "db_max_entry_size": 104857600,
    "db_memory_threshold": 1073741824,
    "db_daily_bandwidth_limit": 53687091200,
    "db_max_commands_per_second": 1000,
}


class DatabaseBackend(Protocol):
    """Where emulated Upstash databases really live (the devserver's `DevServerApp`)."""

    def free_db_index(self) -> int | None: ...

    def add_database(self, index: int, token: str, readonly_token: str) -> None: ...

    def set_database_tokens(self, index: int, token: str, readonly_token: str) -> None: ...

    async def flush_db(self, index: int) -> None: ...

    async def remove_database(self, index: int) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    user: str | None
    content_type: str | None


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass
class _Model:
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    eviction: dict[str, bool] = field(default_factory=dict)
    auto_upgrade: dict[str, bool] = field(default_factory=dict)
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, str]] = field(default_factory=dict)  # team -> email -> role
    bdbs: dict[int, dict[str, Any]] = field(default_factory=dict)


def _token(database_id: str, password: str, prefix: str) -> str:
    raw = f"{database_id}{password}".encode()
    return prefix + base64.urlsafe_b64encode(raw).decode()


class ManagementEmulator:
    """The request handler and the model; see the module docstring."""

    def __init__(
        self,
        *,
        upstash_email: str = "dev@example.com",
        upstash_api_key: str = "upstash-api-key",
        enterprise_user: str = "admin@example.com",
        enterprise_password: str = "enterprise-password",
        endpoint: str | None = None,
        backend: DatabaseBackend | None = None,
    ) -> None:
        """`endpoint`: the host every new Upstash database reports (default: a made-up
        `emulated-<port>.upstash.io`); tests point it at a devserver. `backend`: where the
        databases really live (see the module docstring)."""
        self._endpoint = endpoint
        self._backend = backend
        #: database_id -> Redis logical database index in the backend.
        self.db_indexes: dict[str, int] = {}
        #: Backend work of the current request, run before it is answered.
        self._after: list[Callable[[], Awaitable[None]]] = []
        self._upstash = (upstash_email, upstash_api_key)
        self._enterprise = (enterprise_user, enterprise_password)
        self.model = _Model()
        #: The Kafka and QStash groups (`/v2/kafka/...`, `/v2/qstash/...`): bookkeeping only.
        self.kafka_qstash = KafkaQStashEmulator(customer_id=upstash_email)
        self.requests: list[RecordedRequest] = []
        self._failures: list[tuple[int, Any]] = []
        self._ports = itertools.count(30000)
        self._bdb_uids = itertools.count(1)
        self._add_enterprise_fixtures()

    # -- test hooks -----------------------------------------------------------------------

    def fail_next(self, status: int, body: Any) -> None:
        """The next request answers `status` with this JSON body (after auth is checked)."""
        self._failures.append((status, body))

    def last(self) -> RecordedRequest:
        return self.requests[-1]

    # -- HTTP -----------------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        parts = urlsplit(req.target.decode("latin-1"))
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query))
        method = req.method.decode("ascii", "replace")
        content_type = req.headers.get(b"content-type")
        body: Any = None
        if req.body:
            try:
                body = orjson.loads(req.body)
            except orjson.JSONDecodeError:
                body = req.body.decode("utf-8", "replace")
        enterprise = path.startswith("/v1/") or path.split("/")[2:3] in (["bdbs"], ["cluster"])
        user = self._basic_user(req)
        self.requests.append(
            RecordedRequest(
                method, path, query, body, user[0] if user else None,
                content_type.decode("latin-1") if content_type else None,
            )
        )  # fmt: skip
        del self.requests[:-MAX_RECORDED_REQUESTS]
        self._after.clear()
        try:
            if enterprise:
                return self._json(*self._enterprise_route(req, method, path, query, body, user))
            result = self._upstash_route(req, method, path, body, user)
            await self._run_after()
            return self._json(*result)
        except ApiError as exc:
            return self._json(exc.status, exc.body)

    async def _run_after(self) -> None:
        jobs, self._after = self._after, []
        for job in jobs:
            try:
                await job()
            except Exception as exc:  # RedisUnavailable and its kin: the backend is down
                raise ApiError(503, f"devserver: Redis is unavailable: {exc}") from None

    @staticmethod
    def _json(status: int, value: Any) -> Response:
        if value is None:
            return Response(status, b"", b"application/json")
        return Response(status, orjson.dumps(value), b"application/json")

    @staticmethod
    def _basic_user(req: Request) -> tuple[str, str] | None:
        header = req.headers.get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        return (name, password) if sep else None

    def _check_auth(self, user: tuple[str, str] | None, expected: tuple[str, str]) -> None:
        ok = (
            user is not None
            and hmac.compare_digest(user[0].encode(), expected[0].encode())
            and hmac.compare_digest(user[1].encode(), expected[1].encode())
        )
        if not ok:
            raise ApiError(401, "Unauthorized")
        if self._failures:
            raise ApiError(*self._failures.pop(0))

    # -- Upstash developer API ------------------------------------------------------------

    def _upstash_route(
        self, req: Request, method: str, path: str, body: Any, user: tuple[str, str] | None
    ) -> tuple[int, Any]:
        seg = path.strip("/").split("/")
        if seg[:1] != ["v2"] or len(seg) < 2:
            raise ApiError(404, "not found")
        self._check_auth(user, self._upstash)
        seg = seg[1:]
        if seg[0] in ("kafka", "qstash"):
            return self.kafka_qstash.route(method, path, seg, body)
        routes: dict[tuple[str, ...], tuple[str, Callable[..., tuple[int, Any]]]] = {
            ("redis", "databases"): ("GET", self._list_databases),
            ("redis", "database"): ("POST", self._create_database),
            ("redis", "move-to-team"): ("POST", self._move_to_team),
            ("teams",): ("GET", self._list_teams),
            ("team",): ("POST", self._create_team),
            ("teams", "member"): ("POST|DELETE", self._member),
        }
        with_id: dict[tuple[str, ...], tuple[str, Callable[..., tuple[int, Any]]]] = {
            ("redis", "database"): ("GET|DELETE", self._database),
            ("redis", "rename"): ("POST", self._rename),
            ("redis", "reset-password"): ("POST", self._reset_password),
            ("redis", "enable-tls"): ("POST", self._enable_tls),
            ("redis", "enable-eviction"): ("POST", self._eviction_on),
            ("redis", "disable-eviction"): ("POST", self._eviction_off),
            ("redis", "enable-autoupgrade"): ("POST", self._autoupgrade_on),
            ("redis", "disable-autoupgrade"): ("POST", self._autoupgrade_off),
            ("redis", "update-regions"): ("POST", self._update_regions),
            ("redis", "stats"): ("GET", self._stats),
            ("team",): ("DELETE", self._delete_team),
            ("teams",): ("GET", self._list_members),
        }
        key = tuple(seg)
        args: tuple[Any, ...] = (method, body)
        if key in routes:
            allowed, handler = routes[key]
        elif tuple(seg[:-1]) in with_id and seg[-1]:
            allowed, handler = with_id[tuple(seg[:-1])]
            args = (method, body, seg[-1])
        else:
            raise ApiError(404, f"no such endpoint: {path}")
        if method not in allowed.split("|"):
            raise ApiError(405, f"method {method} not allowed on {path}")
        return handler(*args)

    @staticmethod
    def _fields(body: Any, required: dict[str, type], optional: dict[str, type]) -> dict:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        unknown = set(body) - set(required) - set(optional)
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        for name, kind in {**required, **optional}.items():
            if name not in body:
                if name in required:
                    raise ApiError(400, f"{name} is required")
                continue
            value = body[name]
            if kind is list:
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif kind is bool:
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, kind) and not isinstance(value, bool)
            if not ok:
                raise ApiError(400, f"{name} must be a {kind.__name__}")
        return cast(dict, body)

    @staticmethod
    def _no_body(body: Any) -> None:
        if body not in (None, {}):
            raise ApiError(400, "this endpoint takes no request body")

    def _db(self, database_id: str) -> dict[str, Any]:
        db = self.model.databases.get(database_id)
        if db is None:
            raise ApiError(404, "database not found")
        return db

    def _list_databases(self, method: str, body: Any) -> tuple[int, Any]:
        self._no_body(body)
        return 200, [
            {k: db[k] for k in UPSTASH_LIST_KEYS if k in db} for db in self.model.databases.values()
        ]

    def _create_database(self, method: str, body: Any) -> tuple[int, Any]:
        fields = self._fields(
            body,
            {"name": str, "region": str},
            {"tls": bool, "primary_region": str, "read_regions": list},
        )
        region = fields["region"]
        if region == "global":
            primary = fields.get("primary_region")
            if primary is None:
                raise ApiError(400, "primary_region is required for a global database")
            for r in [primary, *fields.get("read_regions", [])]:
                if r not in GLOBAL_REGIONS:
                    raise ApiError(400, f"invalid region: {r}")
        else:
            if region not in UPSTASH_REGIONS:
                raise ApiError(400, f"invalid region: {region}")
            if "primary_region" in fields or "read_regions" in fields:
                raise ApiError(400, "primary_region and read_regions need region global")
        if not fields["name"].strip():
            raise ApiError(400, "name must not be empty")
        index = None
        if self._backend is not None:
            index = self._backend.free_db_index()
            if index is None:
                raise ApiError(
                    400, "database limit reached: delete one (the devserver gives each "
                    "database one of redis-server's logical databases)"
                )  # fmt: skip
        database_id = str(uuid.uuid4())
        password = secrets.token_hex(16)
        port = next(self._ports)
        db: dict[str, Any] = {
            "database_id": database_id,
            "database_name": fields["name"],
            "database_type": "Pay as You Go",
            "region": region,
            "port": port,
            "creation_time": int(time.time()),
            "state": "active",
            "password": password,
            "user_email": self._upstash[0],
            "endpoint": self._endpoint or f"emulated-{port}.upstash.io",
            "tls": fields.get("tls", False),
            "rest_token": _token(database_id, password, "AX"),
            "read_only_rest_token": _token(database_id, password[::-1], "An"),
        }
        if region == "global":
            db["type"] = "paid"
            db["primary_region"] = fields["primary_region"]
            db["read_regions"] = list(fields.get("read_regions", []))
        if self._backend is not None and index is not None:
            self._backend.add_database(index, db["rest_token"], db["read_only_rest_token"])
            self.db_indexes[database_id] = index
            self._after.append(functools.partial(self._backend.flush_db, index))
        self.model.databases[database_id] = db
        return 200, dict(db)

    def _database(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        self._no_body(body)
        db = self._db(database_id)
        if method == "DELETE":
            del self.model.databases[database_id]
            index = self.db_indexes.pop(database_id, None)
            if self._backend is not None and index is not None:
                self._after.append(functools.partial(self._backend.remove_database, index))
            return 200, "OK"
        return 200, {**db, **UPSTASH_LIMITS, "db_request_limit": 9223372036854775808}

    def _rename(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        fields = self._fields(body, {"name": str}, {})
        db = self._db(database_id)
        db["database_name"] = fields["name"]
        return 200, {k: v for k, v in db.items() if "token" not in k}

    def _reset_password(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        self._no_body(body)
        db = self._db(database_id)
        db["password"] = secrets.token_hex(16)
        db["rest_token"] = _token(database_id, db["password"], "AX")
        db["read_only_rest_token"] = _token(database_id, db["password"][::-1], "An")
        index = self.db_indexes.get(database_id)
        if self._backend is not None and index is not None:
            self._backend.set_database_tokens(index, db["rest_token"], db["read_only_rest_token"])
        return 200, dict(db)

    def _enable_tls(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        self._no_body(body)
        db = self._db(database_id)
        db["tls"] = True
        return 200, {k: v for k, v in db.items() if "token" not in k}

    def _toggle(self, table: dict[str, bool], body: Any, database_id: str, on: bool) -> tuple:
        self._no_body(body)
        self._db(database_id)
        table[database_id] = on
        return 200, "OK"

    def _eviction_on(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        return self._toggle(self.model.eviction, body, database_id, True)

    def _eviction_off(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        return self._toggle(self.model.eviction, body, database_id, False)

    def _autoupgrade_on(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        return self._toggle(self.model.auto_upgrade, body, database_id, True)

    def _autoupgrade_off(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        return self._toggle(self.model.auto_upgrade, body, database_id, False)

    def _update_regions(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        fields = self._fields(body, {"read_regions": list}, {})
        db = self._db(database_id)
        if db["region"] != "global":
            raise ApiError(400, "read regions can only be updated on a global database")
        for r in fields["read_regions"]:
            if r not in GLOBAL_REGIONS:
                raise ApiError(400, f"invalid region: {r}")
        db["read_regions"] = list(fields["read_regions"])
        return 200, "OK"

    def _move_to_team(self, method: str, body: Any) -> tuple[int, Any]:
        fields = self._fields(body, {"team_id": str, "database_id": str}, {})
        db = self._db(fields["database_id"])
        if fields["team_id"] not in self.model.teams:
            raise ApiError(404, "team not found")
        db["user_email"] = fields["team_id"]
        return 200, "OK"

    def _stats(self, method: str, body: Any, database_id: str) -> tuple[int, Any]:
        self._no_body(body)
        self._db(database_id)
        now = time.strftime("%Y-%m-%d %H:%M:%S.000 +0000 UTC", time.gmtime())

        def series(*ys: float) -> list[dict[str, Any]]:
            return [{"x": now, "y": y} for y in ys]

        return 200, {
            "connection_count": series(1, 2),
            "keyspace": series(10, 12),
            "throughput": series(1.5, 2.5),
            "produce_throughput": None,
            "consume_throughput": None,
            "diskusage": series(4096, 8192),
            "latencymean": series(0.2, 0.18),
            "read_latency_mean": series(0, 0),
            "read_latency_99": series(0, 0),
            "write_latency_mean": series(0, 0),
            "write_latency_99": series(0, 0),
            "hits": series(5, 7),
            "misses": series(1, 1),
            "read": series(3.5, 4.0),
            "write": series(1.0, 2.0),
            "dailyrequests": series(100, 120),
            "days": ["Thursday", "Friday", "Saturday", "Sunday", "Monday"],
            "dailybilling": series(0.1, 0.2),
            "dailybandwidth": 50444,
            "bandwidths": series(1000, 2000),
            "dailyproduce": None,
            "dailyconsume": None,
            "total_monthly_requests": 220,
            "total_monthly_read_requests": 150,
            "total_monthly_write_requests": 70,
            "total_monthly_storage": 8192,
            "total_monthly_billing": 0.3,
            "total_monthly_produce": 0,
            "total_monthly_consume": 0,
        }

    def _team(self, team_id: str) -> dict[str, Any]:
        team = self.model.teams.get(team_id)
        if team is None:
            raise ApiError(404, "team not found")
        return team

    def _list_teams(self, method: str, body: Any) -> tuple[int, Any]:
        self._no_body(body)
        return 200, [{**t, "member_role": "owner"} for t in self.model.teams.values()]

    def _create_team(self, method: str, body: Any) -> tuple[int, Any]:
        fields = self._fields(body, {"team_name": str, "copy_cc": bool}, {})
        team_id = str(uuid.uuid4())
        team = {"team_id": team_id, "team_name": fields["team_name"], "copy_cc": fields["copy_cc"]}
        self.model.teams[team_id] = team
        self.model.members[team_id] = {self._upstash[0]: "owner"}
        return 200, dict(team)

    def _delete_team(self, method: str, body: Any, team_id: str) -> tuple[int, Any]:
        self._no_body(body)
        self._team(team_id)
        del self.model.teams[team_id]
        del self.model.members[team_id]
        return 200, "OK"

    def _list_members(self, method: str, body: Any, team_id: str) -> tuple[int, Any]:
        self._no_body(body)
        team = self._team(team_id)
        return 200, [
            {"team_id": team_id, "team_name": team["team_name"], "member_email": email,
             "member_role": role}
            for email, role in self.model.members[team_id].items()
        ]  # fmt: skip

    def _member(self, method: str, body: Any) -> tuple[int, Any]:
        if method == "POST":
            fields = self._fields(
                body, {"team_id": str, "member_email": str, "member_role": str}, {}
            )
        else:
            fields = self._fields(body, {"team_id": str, "member_email": str}, {})
        team = self._team(fields["team_id"])
        members = self.model.members[fields["team_id"]]
        email = fields["member_email"]
        if method == "DELETE":
            if email not in members:
                raise ApiError(404, "member not found")
            if members[email] == "owner":
                raise ApiError(400, "the owner cannot be removed from the team")
            del members[email]
            return 200, "OK"
        if fields["member_role"] not in TEAM_ROLES:
            raise ApiError(400, "member_role must be admin, dev or finance")
        members[email] = fields["member_role"]
        return 200, {
            "team_id": fields["team_id"],
            "team_name": team["team_name"],
            "member_email": email,
            "member_role": fields["member_role"],
        }

    # -- Redis Enterprise REST API --------------------------------------------------------

    def _add_enterprise_fixtures(self) -> None:
        self._new_bdb("db1", 1024**3)

    def _new_bdb(self, name: str, memory_size: int) -> dict[str, Any]:
        uid = next(self._bdb_uids)
        port = 12000 + uid
        bdb = {
            "uid": uid,
            "name": name,
            "type": "redis",
            "status": "active",
            "memory_size": memory_size,
            "port": port,
            "shards_count": 1,
            "replication": False,
            "version": "7.2.4",
            "endpoints": [
                {"uid": f"{uid}:1", "dns_address_name": f"redis-{port}.cluster.local",
                 "addr": ["10.0.0.1"], "port": port, "addr_type": "external"},
            ],
            "authentication_redis_pass": secrets.token_hex(8),
            "created_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip
        self.model.bdbs[uid] = bdb
        return bdb

    def _enterprise_route(
        self,
        req: Request,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        user: tuple[str, str] | None,
    ) -> tuple[int, Any]:
        seg = path.strip("/").split("/")
        version = seg[0]
        if version not in ("v1", "v2"):
            raise ApiError(505, {"error_code": "unsupported_version", "description": version})
        accept = req.headers.get(b"accept", b"application/json")
        if b"application/json" not in accept and b"*/*" not in accept:
            raise ApiError(406, {"error_code": "not_acceptable", "description": "use JSON"})
        if body is not None and req.headers.get(b"content-type") != b"application/json":
            raise ApiError(
                400, {"error_code": "bad_header", "description": "Content-Type must be JSON"}
            )
        try:
            self._check_auth(user, self._enterprise)
        except ApiError as exc:
            if exc.status == 401:
                raise ApiError(401, None) from None
            raise
        rest = seg[1:]
        if rest == ["bdbs"]:
            if method == "GET" and version == "v1":
                self._no_body(body)
                return 200, [self._select(b, query) for b in self.model.bdbs.values()]
            if method == "POST":
                return self._create_bdb(version, body)
            raise ApiError(405, {"error_code": "method_not_allowed", "description": path})
        if version != "v1":
            raise ApiError(505, {"error_code": "unsupported_version", "description": path})
        if rest in (["cluster"], ["nodes"]):
            if method != "GET":
                raise ApiError(405, {"error_code": "method_not_allowed", "description": path})
            if rest == ["cluster"]:
                return 200, {"name": "cluster.local", "created_time": "2024-01-01T00:00:00Z",
                             "rack_aware": False, "email_alerts": False}  # fmt: skip
            return 200, [{"uid": 1, "addr": "10.0.0.1", "status": "active",
                          "shard_count": len(self.model.bdbs), "total_memory": 8 * 1024**3,
                          "software_version": "7.2.4-92"}]  # fmt: skip
        if len(rest) == 2 and rest[0] == "bdbs":
            bdb = self._bdb(rest[1])
            if method == "GET":
                return 200, self._select(bdb, query)
            if method == "DELETE":
                del self.model.bdbs[bdb["uid"]]
                return 200, None
            raise ApiError(405, {"error_code": "method_not_allowed", "description": path})
        if len(rest) == 3 and rest[:2] == ["bdbs", "stats"] and method == "GET":
            bdb = self._bdb(rest[2])
            return 200, {
                "uid": str(bdb["uid"]),
                "intervals": [
                    {"interval": "1sec", "stime": "2024-01-01T00:00:00Z",
                     "etime": "2024-01-01T00:00:01Z", "used_memory": 1048576,
                     "no_of_keys": 10, "total_req": 5.0, "conns": 1}
                    for _ in range(2)
                ],
            }  # fmt: skip
        raise ApiError(404, {"error_code": "not_found", "description": f"no endpoint {path}"})

    def _bdb(self, uid: str) -> dict[str, Any]:
        try:
            bdb = self.model.bdbs.get(int(uid))
        except ValueError:
            bdb = None
        if bdb is None:
            raise ApiError(404, {"error_code": "db_not_exist", "description": "Database not found"})
        return bdb

    @staticmethod
    def _select(bdb: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        fields = query.get("fields")
        if not fields:
            return dict(bdb)
        wanted = [f.strip() for f in fields.split(",")]
        return {k: bdb[k] for k in wanted if k in bdb}

    def _create_bdb(self, version: str, body: Any) -> tuple[int, Any]:
        if version == "v2":
            if not isinstance(body, dict) or set(body) - {"bdb", "recovery_plan"}:
                raise ApiError(400, {"error_code": "invalid_schema", "description": "need bdb"})
            body = body.get("bdb")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ApiError(400, {"error_code": "invalid_schema", "description": "name required"})
        size = body.get("memory_size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ApiError(
                400, {"error_code": "invalid_schema", "description": "memory_size required"}
            )
        unknown = set(body) - {"name", "type", "memory_size", "port", "replication"}
        if unknown:
            raise ApiError(
                400,
                {"error_code": "invalid_schema", "description": f"unknown: {sorted(unknown)}"},
            )
        if any(b["name"] == body["name"] for b in self.model.bdbs.values()):
            raise ApiError(
                409, {"error_code": "name_conflict", "description": "Database name in use"}
            )
        return 200, dict(self._new_bdb(body["name"], size))


@dataclass(frozen=True, slots=True)
class EmulatorInfo:
    url: str
    port: int


def _too_large(exc: RequestTooLarge) -> Response:
    return Response(413, orjson.dumps("request too large"), b"application/json")


def _bad_request(status: int, message: str) -> Response:
    return Response(status, orjson.dumps(message), b"application/json")


async def serve_management(
    emulator: ManagementEmulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[EmulatorInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the emulation until cancelled; reports its base URL once listening."""
    server = HttpServer(
        emulator.handle,
        max_body_bytes=MAX_BODY_BYTES,
        on_too_large=_too_large,
        on_bad_request=_bad_request,
    )
    listeners: list[Any] = (await trio.open_tcp_listeners(port, host=host))[:1]
    bound = int(listeners[0].socket.getsockname()[1])
    if ssl_context is not None:
        listeners = [
            trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in listeners
        ]
    scheme = "https" if ssl_context is not None else "http"
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        task_status.started(EmulatorInfo(f"{scheme}://{host}:{bound}", bound))
