"""The devserver application: an Upstash-compatible REST API in front of a real redis-server.

Owns routing, authentication, the request forms, execution against Redis and the response
formats; the wire details live in `codec` (request/response bytes), `redis_conn` (Redis I/O),
`policy` (refused commands), `sse` (streams) and `http` (HTTP/1.1). Also owns the read-only
ACL user and the start-up sequence (`run_devserver`).

Request path, one Redis round trip per request:
  HTTP request -> method check -> route -> auth (token -> role) -> commands -> policy check
  -> one RESP pipeline on one pooled connection of that role -> reply frames -> JSON/RESP2
  -> faults hook -> held until arrival + latency (`latency_clock`) -> response with a fresh
  Upstash-Sync-Token. With a latency, the replies are read once it has passed (while the
  pool has room): the commands still run at arrival, and the devserver wakes up once for
  the response instead of also for Redis' answer.
The common /pipeline (string-only commands, none that `policy` handles) is checked,
counted and encoded by C-level passes over the whole batch (`_plain_pipeline`).
The read-only token is enforced by Redis itself: its requests run on connections
authenticated as an ACL user with read rights, and Redis' NOPERM errors are returned as is.

Numbered databases (`--databases N`): database n (0 < n < N) is Redis logical database
`<redis-url db> + n`, served to the tokens `<token>.db<n>` and `<readonly-token>.db<n>`
(`database_token`), so whoever knows the main tokens can compute them; database 0 is the
devserver's own (the main tokens).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from operator import itemgetter
from typing import Any, cast

import hiredis
import orjson
import trio

from bridge.core.resp import encode_error, split_frames
from bridge.devserver import policy, rest_encoding, sse_endpoints
from bridge.devserver.faults import FaultInjector, Faults
from bridge.devserver.http_server import (
    HttpServer,
    Request,
    RequestTooLarge,
    Response,
    StreamingResponse,
    server_tls_context,
    tls_listeners,
)
from bridge.devserver.latency_clock import LatencyClock
from bridge.devserver.management_emulation import MAX_BODY_BYTES as MANAGEMENT_MAX_BODY_BYTES
from bridge.devserver.management_emulation import ManagementEmulator
from bridge.devserver.redis_conn import (
    DEFAULT_POOL_SIZE,
    REDIS_REPLY_TIMEOUT_S,
    HandshakeError,
    RedisAddress,
    RedisPool,
    RedisUnavailable,
)
from bridge.devserver.redis_process import RedisServerProcess
from bridge.devserver.request_counters import Stats

log = logging.getLogger("bridge.devserver")

#: Upstash's free-tier max request size.
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
#: The ACL user that read-only-token requests run as (one password per devserver instance).
READONLY_USER = "devserver_ro"
#: Its rights: reads minus the "dangerous" ones (KEYS, INFO, ...), minus SCAN (Upstash names
#: SCAN and KEYS as refused), plus PING/ECHO, transactions of reads, read-only scripts (every
#: redis.call inside is checked against the same ACL) and subscriptions. PUBLISH, MONITOR and
#: every write are refused by Redis with NOPERM.
READONLY_ACL_RULES = (
    "on", "resetkeys", "~*", "resetchannels", "&*", "nocommands",
    "+@read", "-@dangerous", "-scan",
    "+ping", "+echo", "+select", "+multi", "+exec", "+discard",
    "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe",
    "+eval_ro", "+evalsha_ro", "+fcall_ro",
    "+config|get",  # policy.plan rewrites every CONFIG GET to notify-keyspace-events only
)  # fmt: skip
#: Deadline of start-up and shutdown housekeeping against Redis (ACL user).
HOUSEKEEPING_TIMEOUT_S = 5.0

ALLOWED_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT"})
JSON = b"application/json"
OCTET = b"application/octet-stream"
UNAUTHORIZED_BODY = b'{"error":"WRONGPASS invalid or missing auth token"}'
EXECABORT = "EXECABORT Transaction discarded because of previous errors."


class Role(Enum):
    FULL = "full"
    READONLY = "readonly"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token gives: its role and the pool of the Redis logical database it runs on."""

    role: Role
    pool: RedisPool
    #: The devserver's own standard token (the /_devserver endpoints need it).
    primary: bool = False
    #: The Redis logical database index, as the key of the per-database stats.
    db: str = "0"


#: Redis logical databases handed to databases created through the management emulation
#: (redis-server's default `databases 16`; the devserver's own numbered ones are skipped).
TENANT_DB_INDEXES = range(1, 16)
#: redis-server's default number of logical databases (a child gets more when asked).
REDIS_DEFAULT_DATABASES = 16


class SetupError(Exception):
    """The devserver cannot serve what it was asked to (e.g. Redis has too few databases)."""


def database_token(token: str, n: int) -> str:
    """The token of numbered database `n` derived from a main token (`n == 0`: itself)."""
    return token if n == 0 else f"{token}.db{n}"


@dataclass(frozen=True)
class DevServerConfig:
    """Everything `run_devserver` needs; the CLI builds it from flags and env vars."""

    bind: str = "127.0.0.1"
    #: 0 picks a free port (reported in DevServerInfo and the READY line).
    port: int = 8079
    #: None: start a redis-server child on a free loopback port.
    redis_url: str | None = None
    #: None: generate a random token (reported in DevServerInfo).
    token: str | None = None
    readonly_token: str | None = None
    #: Numbered databases 0..databases-1 served (see `database_token`).
    databases: int = 1
    #: Emulated round trip: every response leaves no sooner than this after its request arrived
    #: (the devserver's own processing within it is hidden, as a network's latency would be).
    latency_ms: float = 0.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    sse_heartbeat_s: float = sse_endpoints.DEFAULT_HEARTBEAT_S
    redis_pool_size: int = DEFAULT_POOL_SIZE
    max_sse_streams: int = sse_endpoints.DEFAULT_MAX_SSE_STREAMS
    faults: Faults = field(default_factory=Faults)
    #: Also serve the management APIs' emulation (`bridge.devserver.management_emulation`) on this
    #: port (0: a free one), its Upstash databases backed by this devserver; None: off.
    management_port: int | None = None
    management_email: str = "dev@example.com"
    management_api_key: str = "upstash-api-key"
    #: Serve the REST API over HTTPS with this certificate (PEM, with its chain) and key;
    #: None: plain HTTP. The management emulation stays plain HTTP.
    tls_cert: str | None = None
    tls_key: str | None = None


@dataclass(frozen=True)
class DevServerInfo:
    """What a started devserver reports: where it listens and which tokens it accepts."""

    url: str
    port: int
    redis_url: str
    token: str
    readonly_token: str
    token_generated: bool = False
    readonly_token_generated: bool = False
    #: Base URL of the management APIs' emulation, when served.
    management_url: str | None = None
    #: Numbered databases served: 0..databases-1.
    databases: int = 1

    def database_token(self, n: int) -> str:
        """The standard token of numbered database `n` (0: `token`)."""
        return database_token(self.token, self._check_database(n))

    def database_readonly_token(self, n: int) -> str:
        """The read-only token of numbered database `n` (0: `readonly_token`)."""
        return database_token(self.readonly_token, self._check_database(n))

    def _check_database(self, n: int) -> int:
        if not 0 <= n < self.databases:
            raise ValueError(f"database {n} is not served (0..{self.databases - 1})")
        return n

    def startup_line(self) -> str:
        """The start-up log line; shows only tokens it generated (not those it was given, by a
        flag or by the bridge's embedded default)."""
        token = self.token if self.token_generated else "<not shown>"
        ro = self.readonly_token if self.readonly_token_generated else "<not shown>"
        line = (
            f"devserver listening on {self.url} (redis {self.redis_url}) "
            f"token={token} readonly-token={ro}"
        )
        if self.databases > 1:
            line += f" databases=0-{self.databases - 1} (database n: each token + .db<n>)"
        return line


def generate_token() -> str:
    return secrets.token_urlsafe(32)


def _json(status: int, value: object) -> Response:
    return Response(status, orjson.dumps(value), JSON)


def json_error(status: int, message: str) -> Response:
    return Response(status, orjson.dumps({"error": message}), JSON)


_FIRST = itemgetter(0)
#: What `DevServerApp._redis` returns: every reply's exact frame, all the replies as one byte
#: string, hiredis' values of them, or (values, bytes).
_FRAMES, _RAW, _VALUES, _BOTH = range(4)
#: hiredis' C encoder of one command (a tuple of str or bytes arguments).
_pack = cast("Callable[[tuple[str | bytes, ...]], bytes]", hiredis.pack_command)


def _encode(args: list[bytes]) -> bytes:
    """One command as a RESP multibulk (hiredis' C encoder: the hot path of every request)."""
    return _pack(tuple(args))


_MULTI = _encode([b"MULTI"])
_EXEC = _encode([b"EXEC"])


class DevServerApp:
    """The request handler; owns the two Redis pools (full and read-only) and the counters."""

    def __init__(
        self, config: DevServerConfig, token: str, readonly_token: str, address: RedisAddress
    ) -> None:
        if token == readonly_token:
            raise ValueError("the token and the read-only token must differ")
        self.config = config
        self.stats = Stats()
        self._token = token.encode()
        self._readonly_token = readonly_token.encode()
        self._ro_password = secrets.token_hex(24)
        self._full = RedisPool(address, config.redis_pool_size)
        self._readonly = RedisPool(
            address.with_credentials(READONLY_USER, self._ro_password),
            config.redis_pool_size,
            on_handshake_error=self._repair_readonly_user,
        )
        self._address = address
        self._grants = {
            self._token: Grant(Role.FULL, self._full, primary=True, db=str(address.db)),
            self._readonly_token: Grant(Role.READONLY, self._readonly, db=str(address.db)),
        }
        #: Redis logical databases of the numbered databases (0 is the devserver's own).
        self._numbered = range(address.db, address.db + max(1, config.databases))
        #: Their extra pools (database 0's are `_full`/`_readonly`).
        self._numbered_pools: list[RedisPool] = []
        for n in range(1, len(self._numbered)):
            full, readonly = self._database_grants(address.db + n)
            self._numbered_pools += [full.pool, readonly.pool]
            self._grants[database_token(token, n).encode()] = full
            self._grants[database_token(readonly_token, n).encode()] = readonly
        #: Tokens of the devserver itself (emulated databases must not take them).
        self._own_tokens = frozenset(self._grants)
        #: Databases of the management emulation: Redis db index -> (token, read-only token,
        #: their grants).
        self._tenants: dict[int, tuple[bytes, bytes, Grant, Grant]] = {}
        self._latency_s = max(0.0, config.latency_ms) / 1000.0
        #: Releases the responses at arrival + latency (`run_devserver` runs it when latency > 0).
        self.latency_clock = LatencyClock()
        self._sync_prefix = secrets.token_hex(6)
        self._sync_counter = itertools.count(1)
        self.faults = FaultInjector(config.faults)
        self._fault_settings: Faults | None = None
        self._faults_on = False

    # -- life cycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the read-only ACL user. Redis being down is not fatal: requests get 503s.

        Raises SetupError when Redis has fewer logical databases than the numbered ones need.
        """
        try:
            await self._ensure_readonly_user()
            if len(self._numbered) > 1:
                await self._check_database_count()
        except RedisUnavailable as exc:
            log.warning("cannot prepare Redis yet (%s); requests will be retried against it", exc)

    async def _check_database_count(self) -> None:
        async with self._full.connection() as conn:
            (frame,) = await conn.execute(_encode([b"CONFIG", b"GET", b"databases"]), 1)
        if rest_encoding.is_error_frame(frame):
            return  # CONFIG refused (a managed Redis): a wrong index fails at its first use
        items = rest_encoding.array_items(frame)
        if not items or len(items) != 2:
            return
        available = _bulk_int(items[1])
        if available < self._numbered.stop:
            raise SetupError(
                f"--databases {len(self._numbered)} needs Redis logical databases "
                f"{self._numbered.start}..{self._numbered.stop - 1}, but this redis-server has "
                f"{available} (set `databases {self._numbered.stop}` in its configuration)"
            )

    async def aclose(self, *, forget_readonly_password: bool) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(HOUSEKEEPING_TIMEOUT_S):
            if forget_readonly_password:
                with contextlib.suppress(RedisUnavailable):
                    await self._acl_setuser("<" + self._ro_password)
            await self._full.aclose()
            await self._readonly.aclose()
            for pool in self._numbered_pools:
                await pool.aclose()
            for _, _, full, readonly in self._tenants.values():
                await full.pool.aclose()
                await readonly.pool.aclose()

    async def _ensure_readonly_user(self) -> None:
        await self._acl_setuser(*READONLY_ACL_RULES, ">" + self._ro_password)

    async def _acl_setuser(self, *rules: str) -> None:
        args = [b"ACL", b"SETUSER", READONLY_USER.encode(), *(r.encode() for r in rules)]
        async with self._full.connection() as conn:
            (frame,) = await conn.execute(_encode(args), 1)
        if rest_encoding.is_error_frame(frame):
            raise RedisUnavailable(
                "ERR devserver: cannot create the read-only ACL user: "
                + rest_encoding.error_text(frame)
            )

    async def _repair_readonly_user(self, exc: HandshakeError) -> None:
        # Redis restarted (ACL users are not persisted) or the user was changed: re-create it.
        log.info("re-creating the read-only ACL user after: %s", exc)
        await self._ensure_readonly_user()

    # -- databases of the management emulation (one Redis logical database each) -------------

    def free_db_index(self) -> int | None:
        """A Redis logical database no emulated database uses (None: all taken)."""
        for index in TENANT_DB_INDEXES:
            if index not in self._numbered and index not in self._tenants:
                return index
        return None

    def add_database(self, index: int, token: str, readonly_token: str) -> None:
        """Serve Redis logical database `index` to these two tokens (call `flush_db` too)."""
        if index in self._tenants or index in self._numbered:
            raise ValueError(f"Redis database {index} is already in use")
        full, readonly = self._database_grants(index)
        self._tenants[index] = (b"", b"", full, readonly)
        self.set_database_tokens(index, token, readonly_token)

    def _database_grants(self, index: int) -> tuple[Grant, Grant]:
        """Fresh pools (standard, read-only) on Redis logical database `index`."""
        address = dataclasses.replace(self._address, db=index)
        full = Grant(Role.FULL, RedisPool(address, self.config.redis_pool_size), db=str(index))
        readonly = Grant(
            Role.READONLY,
            RedisPool(
                address.with_credentials(READONLY_USER, self._ro_password),
                self.config.redis_pool_size,
                on_handshake_error=self._repair_readonly_user,
            ),
            db=str(index),
        )
        return full, readonly

    def set_database_tokens(self, index: int, token: str, readonly_token: str) -> None:
        """New tokens for an emulated database: the old ones are refused from now on."""
        old_token, old_readonly, full, readonly = self._tenants[index]
        new_token, new_readonly = token.encode(), readonly_token.encode()
        if new_token == new_readonly or ({new_token, new_readonly} & self._own_tokens):
            raise ValueError(
                "the tokens of a database must differ from each other and the devserver's"
            )
        self._grants.pop(old_token, None)
        self._grants.pop(old_readonly, None)
        self._grants[new_token] = full
        self._grants[new_readonly] = readonly
        self._tenants[index] = (new_token, new_readonly, full, readonly)

    async def remove_database(self, index: int) -> None:
        """Stop serving an emulated database: its tokens are refused, its data flushed."""
        token, readonly_token, full, readonly = self._tenants[index]
        self._grants.pop(token, None)
        self._grants.pop(readonly_token, None)
        try:
            await self.flush_db(index)
        finally:
            del self._tenants[index]
            await full.pool.aclose()
            await readonly.pool.aclose()

    async def flush_db(self, index: int) -> None:
        """Empty the Redis logical database of an emulated one (it starts empty)."""
        async with self._tenants[index][2].pool.connection() as conn:
            (frame,) = await conn.execute(_encode([b"FLUSHDB"]), 1)
        if rest_encoding.is_error_frame(frame):
            raise RedisUnavailable(
                f"ERR devserver: cannot flush database {index}: {rest_encoding.error_text(frame)}"
            )

    def count_connection(self, delta: int) -> None:
        self.stats.http_connections_open += delta
        if delta > 0:
            self.stats.http_connections_total += 1

    def stats_dict(self) -> dict[str, object]:
        data: dict[str, object] = dict(self.stats.as_dict())
        pools = [self._full, self._readonly, *self._numbered_pools]
        pools += [grant.pool for _, _, *grants in self._tenants.values() for grant in grants]
        data["redis_connections_open"] = sum(pool.open_connections for pool in pools)
        data["faults_injected"] = dict(self.faults.counts)
        return data

    # -- request entry point ----------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        """The injected latency (0: none, and no clock task)."""
        return self._latency_s

    async def handle(self, req: Request) -> Response | StreamingResponse:
        arrival = time.monotonic()  # the latency counts from here, like a network round trip
        internal = req.target.startswith(b"/_devserver/")
        if not internal:
            self.stats.http_requests += 1
        faulty = not internal and self._faults_active()
        injected = self.faults.before() if faulty else None
        try:
            response = injected if injected is not None else await self._dispatch(req, arrival)
        except rest_encoding.BadRequest as exc:
            response = json_error(exc.status, str(exc))
        except RedisUnavailable as exc:
            response = json_error(503, str(exc))
        except Exception as exc:
            log.exception("internal error while handling a request")
            response = json_error(500, f"ERR devserver internal error: {type(exc).__name__}")
        if faulty and injected is None:
            response = await self._apply_faults(req, response)
        if not internal:
            self._count_status(response.status)
        if self._latency_s and not isinstance(response, StreamingResponse):
            # SSE routes wait before opening their stream.
            await self.latency_clock.sleep_until(arrival + self._latency_s)
        response.headers.append((b"upstash-sync-token", self._next_sync_token()))
        return response

    async def _apply_faults(
        self, req: Request, response: Response | StreamingResponse
    ) -> Response | StreamingResponse:
        """Fault injection after the request ran (may raise `InjectedReset`): see `faults`."""
        return await self.faults.after(response)

    def _faults_active(self) -> bool:
        """`faults.active`, worked out once per settings (they are frozen, replaced whole)."""
        settings = self.faults.settings
        if settings is not self._fault_settings:
            self._fault_settings = settings
            self._faults_on = settings.active
        return self._faults_on

    def _count_status(self, status: int) -> None:
        if status >= 500:
            self.stats.http_5xx += 1
        elif status >= 400:
            self.stats.http_4xx += 1
            if status == 401:
                self.stats.auth_failures += 1

    def _next_sync_token(self) -> bytes:
        return f"{self._sync_prefix}-{next(self._sync_counter)}".encode()

    def _grant(self, req: Request, pairs: list[tuple[bytes, bytes | None]]) -> Grant | None:
        """Authorization: Bearer wins when present; else `?_token=`."""
        header = req.headers.get(b"authorization")
        if header is not None:
            scheme, _, given = header.strip().partition(b" ")
            if scheme.lower() != b"bearer":
                return None
            token = given.strip()
        else:
            in_query = rest_encoding.query_token(pairs)
            if in_query is None:
                return None
            token = in_query
        found = None
        for known, grant in self._grants.items():
            if hmac.compare_digest(token, known):
                found = grant
        return found

    async def _dispatch(self, req: Request, arrival: float) -> Response | StreamingResponse:
        if req.method not in ALLOWED_METHODS:
            response = json_error(
                405,
                f"ERR method {req.method.decode('ascii', 'replace')} not allowed: "
                "use GET, HEAD, POST or PUT",
            )
            response.headers.append((b"allow", b"GET, HEAD, POST, PUT"))
            return response
        raw_path, raw_query = rest_encoding.split_target(req.target)
        pairs = rest_encoding.query_pairs(raw_query)
        segments = rest_encoding.path_segments(raw_path)
        role = self._grant(req, pairs)
        if role is None:
            response = Response(401, UNAUTHORIZED_BODY, JSON)
            response.headers.append((b"www-authenticate", b"Bearer"))
            return response
        first = segments[0].lower()
        if len(segments) == 1 and first in (b"pipeline", b"multi-exec"):
            b64, resp2 = self._formats(req)
            if first == b"pipeline":
                plain = rest_encoding.plain_commands(req.body)
                if plain is not None:
                    return await self._plain_pipeline(plain, role, b64, resp2, arrival)
            commands = rest_encoding.parse_json_commands(req.body)
            if first == b"pipeline":
                return await self._pipeline(commands, role, b64, resp2, arrival)
            return await self._multi_exec(commands, role, b64)
        if first in (b"subscribe", b"psubscribe", b"monitor"):
            return await self._sse(req, first.decode(), segments[1:], role, arrival)
        if first == b"_devserver":
            return self._internal(req, segments[1:], role)
        b64, resp2 = self._formats(req)
        if len(segments) == 1 and not first:
            if req.method in (b"POST", b"PUT") and req.body:
                args = rest_encoding.parse_json_command(req.body)
            else:
                raise rest_encoding.BadRequest(
                    "ERR no command: put it in the path (/set/key/value) "
                    'or POST a JSON array to / (for example ["SET","key","value"])'
                )
        else:
            args = segments
            if req.body and req.method in (b"POST", b"PUT"):
                args.append(req.body)
            args.extend(rest_encoding.query_args(pairs))
        return await self._single(args, role, b64, resp2, arrival)

    @staticmethod
    def _formats(req: Request) -> tuple[bool, bool]:
        """(base64, resp2) from Upstash-Encoding / Upstash-Response-Format; 400 if invalid."""
        fmt = req.headers.get(b"upstash-response-format", b"json").strip().lower()
        b64 = req.headers.get(b"upstash-encoding", b"").strip().lower() == b"base64"
        if fmt not in (b"json", b"resp2", b""):
            raise rest_encoding.BadRequest(
                f"ERR invalid Upstash-Response-Format {fmt.decode('ascii', 'replace')!r}: "
                "use json or resp2"
            )
        resp2 = fmt == b"resp2"
        if resp2 and b64:
            raise rest_encoding.BadRequest(
                "ERR Upstash-Encoding: base64 cannot be combined with "
                "Upstash-Response-Format: resp2"
            )
        return b64, resp2

    # -- command endpoints ------------------------------------------------------------------

    async def _single(
        self, args: list[bytes], role: Grant, b64: bool, resp2: bool, arrival: float
    ) -> Response:
        self.stats.single_commands += 1
        self.stats.commands += 1
        self.stats.count_command(args[0], role.db)
        try:
            todo, block_s = policy.plan(args)
        except policy.Refused as exc:
            if resp2:
                return Response(200, encode_error(str(exc)), OCTET)
            return json_error(400, str(exc))
        if isinstance(todo, bytes):
            frame = todo  # answered without Redis (policy.plan)
        else:
            payload = _encode(todo)
            timeout_s = REDIS_REPLY_TIMEOUT_S + block_s
            if resp2:  # errors too: 200 with the -ERR frame
                raw = await self._redis(role, payload, 1, timeout_s, _RAW, arrival)
                return Response(200, raw, OCTET)
            if not b64:
                (value,) = await self._redis(role, payload, 1, timeout_s, _VALUES, arrival)
                if isinstance(value, hiredis.ReplyError):
                    return json_error(400, str(value))
                return _json(200, {"result": rest_encoding.plain_value(value)})
            (frame,) = await self._redis(role, payload, 1, timeout_s, _FRAMES, arrival)
        if resp2:
            return Response(200, frame, OCTET)
        if rest_encoding.is_error_frame(frame):
            return json_error(400, rest_encoding.error_text(frame))
        return _json(200, {"result": rest_encoding.reply_to_json(frame, b64)})

    async def _plain_pipeline(
        self, commands: list[list[str]], role: Grant, b64: bool, resp2: bool, arrival: float
    ) -> Response:
        """/pipeline of string-only commands (`rest_encoding.plain_commands`): when none is
        one `policy.plan` handles, the whole batch is counted and encoded by C-level passes
        (hiredis packs str arguments as UTF-8, as `str.encode` does); else `_pipeline`."""
        distinct = set(map(_FIRST, commands))
        counts = (
            {commands[0][0]: len(commands)}  # one name, the usual batch: no Counter
            if len(distinct) == 1
            else Counter(map(_FIRST, commands))
        )
        names: dict[bytes, int] = {}
        for name, n in counts.items():
            raw = name.encode()
            if raw.upper() in policy.SPECIAL_NAMES:
                as_bytes = [list(map(str.encode, args)) for args in commands]
                return await self._pipeline(as_bytes, role, b64, resp2, arrival)
            names[raw] = n
        stats = self.stats
        stats.pipelines += 1
        stats.commands += len(commands)
        stats.count_names(names, role.db)
        payload = b"".join(map(_pack, map(tuple, commands)))
        return await self._pipeline_reply(role, payload, len(commands), b64, resp2, arrival)

    async def _pipeline_reply(
        self,
        role: Grant,
        payload: bytes,
        count: int,
        b64: bool,
        resp2: bool,
        arrival: float,
        timeout_s: float = REDIS_REPLY_TIMEOUT_S,
    ) -> Response:
        """Run `count` encoded commands, none answered locally: the /pipeline response."""
        if resp2:
            raw = await self._redis(role, payload, count, timeout_s, _RAW, arrival)
            return Response(200, raw, OCTET)
        if not b64:
            values = await self._redis(role, payload, count, timeout_s, _VALUES, arrival)
            return _json(200, rest_encoding.values_json(values))
        values, raw = await self._redis(role, payload, count, timeout_s, _BOTH, arrival)
        items = rest_encoding.values_json_b64(values)
        if items is None:  # a top-level OK or a nested error: from the exact frames
            frames = split_frames(raw)  # exactly the `count` replies read
            items = [rest_encoding.item_json(frame, True) for frame in frames]
        return _json(200, items)

    async def _pipeline(
        self, commands: list[list[bytes]], role: Grant, b64: bool, resp2: bool, arrival: float
    ) -> Response:
        self.stats.pipelines += 1
        self.stats.commands += len(commands)
        if not commands:
            raise rest_encoding.BadRequest("ERR empty pipeline: send at least one command")
        self.stats.count_names(Counter(map(_FIRST, commands)), role.db)
        # Replies not from Redis (refusals, local answers) by position.
        local: dict[int, bytes] = {}
        payload: list[bytes] = []
        block_s = 0.0
        for i, args in enumerate(commands):
            try:
                todo, block = policy.plan(args)
            except policy.Refused as exc:
                local[i] = encode_error(str(exc))
                continue
            if isinstance(todo, bytes):
                local[i] = todo
                continue
            block_s += block
            payload.append(_encode(todo))
        timeout_s = REDIS_REPLY_TIMEOUT_S + block_s
        if not local:
            return await self._pipeline_reply(
                role, b"".join(payload), len(payload), b64, resp2, arrival, timeout_s
            )
        frames: list[bytes] = []
        if payload:
            frames = await self._redis(
                role, b"".join(payload), len(payload), timeout_s, _FRAMES, arrival
            )
        frames = _splice(frames, local, len(commands))
        if resp2:
            return Response(200, b"".join(frames), OCTET)
        return _json(200, [rest_encoding.item_json(frame, b64) for frame in frames])

    async def _redis(
        self, role: Grant, payload: bytes, count: int, timeout_s: float, want: int, arrival: float
    ) -> Any:
        """`count` encoded commands on a connection of the role's pool, replies as `want`s.

        With a latency, raw replies and values are read once it has passed (the response
        waits for it anyway): one wake-up fewer per request than waiting for Redis first.
        That holds the connection meanwhile, so only while the pool has room to spare.
        The connection goes back to the pool unless the exchange failed (then it is closed)."""
        pool = role.pool
        conn = await pool.acquire()
        try:
            if want == _FRAMES:
                return await conn.execute(payload, count, timeout_s)
            hold = None
            if self._latency_s and pool.has_room():
                hold = partial(self.latency_clock.sleep_until, arrival + self._latency_s)
            if want == _RAW:
                return await conn.execute_raw(payload, count, timeout_s, hold)
            if want == _BOTH:
                return await conn.execute_both(payload, count, timeout_s, hold)
            return await conn.execute_values(payload, count, timeout_s, hold)
        except BaseException:
            conn.broken = True
            raise
        finally:
            await pool.release(conn)

    async def _multi_exec(self, commands: list[list[bytes]], role: Grant, b64: bool) -> Response:
        self.stats.multi_exec += 1
        self.stats.commands += len(commands)
        if not commands:
            raise rest_encoding.BadRequest("ERR empty transaction: send at least one command")
        for args in commands:
            self.stats.count_command(args[0], role.db)
        # Local answers (policy.plan) are constants: leaving them out of MULTI keeps it atomic.
        local: dict[int, bytes] = {}
        queued: list[bytes] = []
        for i, args in enumerate(commands):
            try:
                todo, _ = policy.plan(args)  # blocking commands do not block inside MULTI
            except policy.Refused as exc:
                return json_error(400, f"{EXECABORT} Command {i}: {exc}")
            if isinstance(todo, bytes):
                local[i] = todo
            else:
                queued.append(_encode(todo))
        payload = b"".join([_MULTI, *queued, _EXEC])
        # The pool lends the connection exclusively, so MULTI..EXEC of concurrent requests
        # never share a connection; a failure closes it (Redis then discards the MULTI).
        async with role.pool.connection() as conn:
            frames = await conn.execute(payload, len(queued) + 2)
            if rest_encoding.is_error_frame(frames[0]):
                conn.broken = True
                return json_error(400, rest_encoding.error_text(frames[0]))
        exec_frame = frames[-1]
        if rest_encoding.is_error_frame(exec_frame):
            message = rest_encoding.error_text(exec_frame)
            sent = [i for i in range(len(commands)) if i not in local]
            for i, frame in zip(sent, frames[1:-1], strict=True):
                if rest_encoding.is_error_frame(frame):
                    message = f"{message} Command {i}: {rest_encoding.error_text(frame)}"
                    break
            return json_error(400, message)
        items = rest_encoding.array_items(exec_frame)
        if items is None:
            return json_error(400, f"{EXECABORT} (EXEC returned nil)")
        if local:
            items = _splice(items, local, len(commands))
        return _json(200, [rest_encoding.item_json(frame, b64) for frame in items])

    # -- SSE and internal endpoints ---------------------------------------------------------

    async def _sse(
        self, req: Request, kind: str, targets: list[bytes], role: Grant, arrival: float
    ) -> Response | StreamingResponse:
        if b"text/event-stream" not in req.headers.get(b"accept", b"").lower():
            raise rest_encoding.BadRequest(
                f"ERR /{kind} needs the header Accept: text/event-stream"
            )
        if kind == "monitor":
            if targets and targets != [b""]:
                raise rest_encoding.BadRequest("ERR /monitor takes no arguments")
            targets = []
        elif not targets or any(not t for t in targets):
            raise rest_encoding.BadRequest(
                f"ERR /{kind} needs a non-empty {kind} target in the path"
            )
        if self.stats.sse_streams_open >= self.config.max_sse_streams:
            return json_error(
                503, f"ERR devserver: too many SSE streams open ({self.config.max_sse_streams})"
            )
        if self._latency_s:
            await self.latency_clock.sleep_until(arrival + self._latency_s)
        try:
            stream = await sse_endpoints.open_stream(
                role.pool,
                kind,
                targets,
                heartbeat_s=self.config.sse_heartbeat_s,
                stats=self.stats,
                b64=req.headers.get(sse_endpoints.BASE64_HEADER, b"").lower() == b"base64",
            )
        except sse_endpoints.SseRefused as exc:
            return json_error(400, str(exc))
        self.stats.count_command(kind.upper().encode(), role.db)
        return stream.response()

    def _internal(self, req: Request, segments: list[bytes], role: Grant) -> Response:
        if not role.primary:
            return json_error(
                403, "ERR the devserver endpoints need the standard token, not the read-only one"
            )
        if segments == [b"stats"] and req.method in (b"GET", b"HEAD"):
            return _json(200, self.stats_dict())
        if segments == [b"reset-stats"] and req.method in (b"POST", b"PUT"):
            self.stats.reset()
            self.faults.reset_counts()
            return _json(200, {"result": "OK"})
        if segments == [b"faults"]:
            return _json(*self.faults.endpoint(req.method, req.body))
        return json_error(
            404,
            "ERR unknown devserver endpoint: use GET /_devserver/stats, "
            "POST /_devserver/reset-stats or GET/POST /_devserver/faults",
        )


def _splice(frames: list[bytes], local: dict[int, bytes], total: int) -> list[bytes]:
    """Redis' reply frames with the local ones put back at their positions."""
    replies = iter(frames)
    return [local[i] if i in local else next(replies) for i in range(total)]


def _bulk_int(frame: bytes) -> int:
    """The integer inside a RESP bulk string frame (`$2\r\n16\r\n` -> 16); 0 if not one."""
    _, _, rest = frame.partition(b"\r\n")
    try:
        return int(rest.rstrip(b"\r\n") or 0)
    except ValueError:
        return 0


def _too_large(exc: RequestTooLarge) -> Response:
    actual = f"{exc.actual} bytes" if exc.actual is not None else f"more than {exc.limit} bytes"
    return json_error(
        413, f"ERR max request size exceeded. Limit: {exc.limit} bytes, Actual: {actual}"
    )


def _bad_http(status: int, message: str) -> Response:
    return json_error(status, message)


async def run_devserver(
    config: DevServerConfig,
    *,
    task_status: trio.TaskStatus[DevServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the devserver until cancelled; `task_status.started(DevServerInfo)` once listening.

    Without `config.redis_url`, a redis-server child is started on a free loopback port and
    stopped on exit.
    """
    token = config.token or generate_token()
    readonly_token = config.readonly_token or generate_token()
    tls = None
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            raise ValueError("TLS needs both a certificate and its key")
        tls = server_tls_context(config.tls_cert, config.tls_key)
    async with contextlib.AsyncExitStack() as stack:
        if config.redis_url is None:
            redis_args: tuple[str, ...] = ()
            if config.databases > REDIS_DEFAULT_DATABASES:
                redis_args = ("--databases", str(config.databases))
            process = await stack.enter_async_context(RedisServerProcess(extra_args=redis_args))
            redis_url = process.url
        else:
            redis_url = config.redis_url
        address = RedisAddress.from_url(redis_url)
        app = DevServerApp(config, token, readonly_token, address)
        await app.setup()
        server = HttpServer(
            app.handle,
            max_body_bytes=config.max_request_bytes,
            on_too_large=_too_large,
            on_bad_request=_bad_http,
            on_connection=app.count_connection,
        )
        listeners = await trio.open_tcp_listeners(config.port, host=config.bind)
        if config.port == 0:
            # Port 0 on a name with several addresses gives each its own port: keep one.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        port = int(listeners[0].socket.getsockname()[1])
        host = f"[{config.bind}]" if ":" in config.bind else config.bind
        management_listeners = []
        emulator = None
        if config.management_port is not None:
            emulator = ManagementEmulator(
                upstash_email=config.management_email,
                upstash_api_key=config.management_api_key,
                endpoint=f"{host}:{port}",
                backend=app,
            )
            management_listeners = (
                await trio.open_tcp_listeners(config.management_port, host=config.bind)
            )[:1]
        management_url = None
        if management_listeners:
            bound = int(management_listeners[0].socket.getsockname()[1])
            management_url = f"http://{host}:{bound}"
        scheme = "https" if tls is not None else "http"
        info = DevServerInfo(
            url=f"{scheme}://{host}:{port}",
            port=port,
            redis_url=address.display,
            token=token,
            readonly_token=readonly_token,
            # `not`: an empty token is generated too (it was reported as given).
            token_generated=not config.token,
            readonly_token_generated=not config.readonly_token,
            management_url=management_url,
            databases=max(1, config.databases),
        )
        try:
            async with trio.open_nursery() as nursery:
                if app.latency_s:
                    await nursery.start(app.latency_clock.run)
                await nursery.start(server.serve, tls_listeners(listeners, tls))
                if emulator is not None:
                    management = HttpServer(
                        emulator.handle,
                        max_body_bytes=MANAGEMENT_MAX_BODY_BYTES,
                        on_too_large=_too_large,
                        on_bad_request=_bad_http,
                    )
                    await nursery.start(management.serve, management_listeners)
                    log.info(
                        "management API emulation (Upstash developer API, Redis Enterprise "
                        "REST API) listening on %s",
                        management_url,
                    )
                log.info("%s", info.startup_line())
                task_status.started(info)
        finally:
            await app.aclose(forget_readonly_password=config.redis_url is not None)
