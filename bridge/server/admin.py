"""The admin console: a unix socket speaking RESP, for operators (PgBouncer's console model).

Owns the admin connections and commands; the socket file's safety checks live in
`admin_socket`, the reply values and their encoding in `admin_replies`. Commands: HELP,
STATS, CLIENTS, KILL, UPSTREAM [PROBE], PAUSE, RESUME, RELOAD, SHUTDOWN, METRICS, CONFIG and
the database management groups DB / TEAM (run through `bridge.upstream.management_ops`). Replies
are encoded as RESP2 (maps as flat arrays, so `redis-cli -s PATH STATS` reads well) or, after
`HELLO 3`, RESP3 (maps stay maps: `resp-bridge admin` uses that to print tables and JSON).

Invariants:
- no secret reaches a reply: every reply value is scrubbed of the REST token, requirepass and
  the management credentials before it is encoded; management results mask credential keys;
- peers of another user (other than root) are refused (SO_PEERCRED), on top of mode 0600;
- one admin client cannot hurt the bridge: bounded input (parser limits), a bounded number of
  admin clients, a deadline on every command, and `Exception` contained per connection.
It changes the running bridge only through `BridgeState`'s methods (kill, switch_upstream,
rotate_token), the dispatcher's pause, and the daemon's `Lifecycle` (reload, graceful stop).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio

from bridge import __version__, logs
from bridge.config import BridgeConfig
from bridge.core.parser import ParserLimits, ProtocolError, RequestParser
from bridge.core.resp import ErrorReply, Status, encode_error
from bridge.errors import ConfigError, UpstreamAuthError
from bridge.server.admin_replies import (
    AdminError,
    client_row,
    config_reply,
    cost_reply,
    encode_value,
    prometheus_text,
    scrub_value,
    secrets_of,
    stats_reply,
)
from bridge.server.admin_socket import (
    open_admin_socket,
    peer_uid,
    resolve_admin_socket,
)
from bridge.server.cost import PROBE
from bridge.server.lifecycle import Lifecycle
from bridge.server.state import BridgeState
from bridge.upstream import management_ops

log = logging.getLogger("bridge.admin")

#: Admin clients at once (operators and scripts, not traffic); more are refused.
MAX_ADMIN_CLIENTS = 16
#: An admin connection silent this long is closed.
ADMIN_IDLE_TIMEOUT_S = 600.0
ADMIN_READ_BYTES = 16 * 1024
#: Admin commands are short: small limits keep a confused peer from costing memory.
ADMIN_PARSER_LIMITS = ParserLimits(
    max_inline_bytes=16 * 1024,
    max_bulk_bytes=64 * 1024,
    max_args=256,
    max_query_buffer_bytes=1024 * 1024,
)
#: Deadline of one command (management calls have their own 30 s HTTP deadline).
ADMIN_COMMAND_TIMEOUT_S = 60.0
#: A reply must be written within this time, or the admin client is dropped.
ADMIN_SEND_TIMEOUT_S = 10.0
#: PAUSE waits this long by default for in-flight upstream requests to finish.
PAUSE_WAIT_S = 30.0
PAUSE_MAX_WAIT_S = 3600.0
PAUSE_POLL_S = 0.01
#: UPSTREAM PROBE: PING + INFO server on the upstream (2 billed commands), under this deadline.
PROBE_TIMEOUT_S = 10.0
#: Health is judged on the upstream requests of this window, sampled every HEALTH_SAMPLE_S.
HEALTH_WINDOW_S = 60
HEALTH_SAMPLE_S = 1.0


DB_USE_HELP = [
    "DB [UPSTASH] USE <id>  -- switch this bridge to that database's REST endpoint and token "
    "(no client is dropped; the configuration is unchanged)"
]


def rest_url(endpoint: str, current_url: str) -> str:
    """The REST URL of an Upstash database `endpoint` (a host, or host:port): https, except
    plain http when the bridge already talks http to a loopback host and the endpoint is one
    too (a local devserver): a token never travels in clear over a network."""
    current = urlsplit(current_url)
    host = urlsplit(f"//{endpoint}").hostname or ""
    if current.scheme == "http" and _is_loopback(host) and _is_loopback(current.hostname or ""):
        return f"http://{endpoint}"
    return f"https://{endpoint}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the server -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Peer:
    """State of one admin connection."""

    proto: int = 2
    quit: bool = False
    after_reply: Callable[[], None] | None = None


Handler = Callable[[list[str], _Peer], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class AdminCommand:
    name: str
    usage: str
    summary: str
    handler: Handler
    #: Changes the bridge: logged at INFO with the first argument.
    acts: bool = False


class AdminServer:
    """Serves admin connections on one listener; see the module docstring."""

    def __init__(
        self,
        state: BridgeState,
        *,
        path: str,
        lifecycle: Lifecycle | None = None,
        stop_now: Callable[[], None] | None = None,
    ) -> None:
        self.state = state
        self.path = path
        self.lifecycle = lifecycle
        self._stop_now = stop_now
        self._active = 0
        self._samples: deque[tuple[float, int, int]] = deque(
            maxlen=int(HEALTH_WINDOW_S / HEALTH_SAMPLE_S) + 1
        )
        self._sync_token = ""
        self._sync_seen_at: float | None = None
        self._last_probe: dict[str, Any] | None = None
        self.commands = {c.name: c for c in self._command_table()}

    def _command_table(self) -> list[AdminCommand]:
        return [
            AdminCommand("HELP", "HELP", "this list", self._help),
            # redis-cli answers HELP itself, without sending it: COMMANDS is the same list.
            AdminCommand("COMMANDS", "COMMANDS", "this list (for redis-cli)", self._help),
            AdminCommand(
                "STATS", "STATS",
                "counters: clients, commands, batches, HTTP requests, errors, latency, bytes",
                self._stats,
            ),
            AdminCommand(
                "COST", "COST",
                "upstream commands by cause, their price, the rate per day and month, budgets",
                self._cost,
            ),
            AdminCommand(
                "CLIENTS", "CLIENTS",
                "connected clients: id, address, name, age, idle, state, pending replies",
                self._clients,
            ),
            AdminCommand("KILL", "KILL <id>", "disconnect one client", self._kill, acts=True),
            AdminCommand(
                "UPSTREAM", "UPSTREAM [PROBE]",
                "upstream URL, health, probe results, in-flight requests, sync token age "
                "(PROBE: check it now, 2 upstream commands)",
                self._upstream,
            ),
            AdminCommand(
                "PAUSE", "PAUSE [wait_s]",
                "hold new commands; waits (default 30 s) for in-flight requests to finish",
                self._pause, acts=True,
            ),
            AdminCommand("RESUME", "RESUME", "release held commands", self._resume, acts=True),
            AdminCommand(
                "RELOAD", "RELOAD",
                "re-read the configuration and token (as SIGHUP); no client is dropped",
                self._reload, acts=True,
            ),
            AdminCommand(
                "SHUTDOWN", "SHUTDOWN [GRACEFUL|NOW]",
                "stop: drain clients under shutdown_timeout_s (default), or close them now",
                self._shutdown, acts=True,
            ),
            AdminCommand(
                "METRICS", "METRICS", "counters in Prometheus text format", self._metrics
            ),
            AdminCommand(
                "CONFIG", "CONFIG [name ...]", "effective configuration, secrets redacted",
                self._config,
            ),
            AdminCommand(
                "DB", "DB [UPSTASH|ENTERPRISE] <op> ...",
                "database management (DB HELP lists the operations)", self._db, acts=True,
            ),
            AdminCommand(
                "TEAM", "TEAM <op> ...", "Upstash teams (TEAM HELP lists the operations)",
                self._team, acts=True,
            ),
            AdminCommand(
                "KAFKA", "KAFKA <object> <op> ...",
                "Upstash Kafka clusters, topics, credentials, connectors (KAFKA HELP)",
                lambda words, peer: self._management("KAFKA", words), acts=True,
            ),
            AdminCommand(
                "QSTASH", "QSTASH <op>", "the Upstash QStash user and token (QSTASH HELP)",
                lambda words, peer: self._management("QSTASH", words), acts=True,
            ),
            AdminCommand("PING", "PING", "+PONG", self._ping),
            AdminCommand("HELLO", "HELLO [2|3]", "choose RESP2 or RESP3 replies", self._hello),
            AdminCommand("QUIT", "QUIT", "close this admin connection", self._quit),
            AdminCommand("COMMAND", "COMMAND", "(for redis-cli; empty)", self._command),
            AdminCommand("CLIENT", "CLIENT", "(for Redis clients; accepted)", self._client),
        ]  # fmt: skip

    # -- serving ------------------------------------------------------------------------

    async def run(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sample)
            await nursery.start(trio.serve_listeners, self.handle_stream, [listener])
            task_status.started()

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        uid = peer_uid(stream)
        try:
            if uid is not None and uid not in (os.getuid(), 0):
                log.warning("admin: refused a peer with uid %d", uid)
                await self._send(stream, encode_error("ERR permission denied"))
                return
            if self._active >= MAX_ADMIN_CLIENTS:
                await self._send(stream, encode_error("ERR too many admin connections"))
                return
            self._active += 1
            try:
                await self._serve(stream)
            finally:
                self._active -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception:
            log.exception("admin connection failed")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    @staticmethod
    async def _send(stream: trio.abc.Stream, data: bytes) -> None:
        with trio.fail_after(ADMIN_SEND_TIMEOUT_S):
            await stream.send_all(data)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        parser = RequestParser(ADMIN_PARSER_LIMITS)
        peer = _Peer()
        while not peer.quit:
            data = b""
            with trio.move_on_after(ADMIN_IDLE_TIMEOUT_S):
                data = await stream.receive_some(ADMIN_READ_BYTES)
            if not data:
                return  # EOF or idle for too long
            try:
                parser.feed(data)
                commands = parser.commands()
            except ProtocolError as exc:
                await self._send(stream, encode_error(f"ERR {exc}"))
                return
            for args in commands:
                if not args:
                    continue
                reply = await self.execute(args, peer)
                await self._send(stream, reply)
                if peer.after_reply is not None:
                    action, peer.after_reply = peer.after_reply, None
                    action()
                if peer.quit:
                    return

    async def execute(self, args: list[bytes], peer: _Peer) -> bytes:
        """Run one admin command; its encoded reply (errors included)."""
        name = args[0].decode("utf-8", "replace").upper()
        words = [a.decode("utf-8", "replace") for a in args[1:]]
        command = self.commands.get(name)
        value: Any
        if command is None:
            value = ErrorReply(f"ERR unknown admin command '{name[:40]}'; try HELP".encode())
        else:
            if command.acts:
                log.info("admin: %s", " ".join([name, *words[:1]]))
            try:
                limit = ADMIN_COMMAND_TIMEOUT_S
                if name == "PAUSE":
                    limit += PAUSE_MAX_WAIT_S
                with trio.fail_after(limit):
                    value = await command.handler(words, peer)
            except AdminError as exc:
                value = ErrorReply(str(exc).encode())
            except management_ops.ManagementError as exc:
                value = ErrorReply(f"ERR {exc}".encode())
            except trio.TooSlowError:
                value = ErrorReply(f"ERR {name} did not finish within {limit:g} s".encode())
            except Exception:
                log.exception("admin command %s failed", name)
                value = ErrorReply(b"ERR internal error in the admin command (see the log)")
        return encode_value(scrub_value(value, secrets_of(self.state)), peer.proto)

    # -- background: health samples and sync token changes ------------------------------

    async def _sample(self) -> None:
        while True:
            self._take_sample()
            await trio.sleep(HEALTH_SAMPLE_S)

    def _take_sample(self) -> None:
        s = self.state.stats
        self._samples.append((trio.current_time(), s.http_requests, sum(s.errors.values())))
        token = self.state.upstream.sync_token
        if token != self._sync_token:
            self._sync_token = token
            self._sync_seen_at = time.monotonic()

    def health(self) -> str:
        s = self.state.stats
        requests, errors = s.http_requests, sum(s.errors.values())
        if self._samples:
            _, old_requests, old_errors = self._samples[0]
            requests -= old_requests
            errors -= old_errors
        window = f"in the last {HEALTH_WINDOW_S} s"
        breaker = self.state.dispatcher.breaker
        if breaker.state != "closed":
            return f"failing: circuit breaker {breaker.state} ({errors} errors {window})"
        if errors == 0 and requests == 0:
            probe = self._last_probe
            if probe is not None and not probe["ok"]:
                return f"failing: the last probe failed ({probe['detail']})"
            return f"ok (idle: no upstream requests {window})"
        if errors == 0:
            return "ok"
        if errors >= requests:
            return f"failing: {errors} failed upstream request(s) {window}, none succeeded"
        return f"degraded: {errors} of {requests} upstream requests failed {window}"

    def sync_token_age_s(self) -> float | None:
        upstream = self.state.upstream
        if not upstream.sync_token:
            return None
        updated = upstream.sync_token_updated
        if updated is not None:
            for now in (time.monotonic(), time.time()):
                if 0 <= now - updated < self.state.stats.uptime_s + 5:
                    return round(now - updated, 1)
        if self._sync_seen_at is None or self._sync_token != upstream.sync_token:
            self._take_sample()
        assert self._sync_seen_at is not None
        return round(time.monotonic() - self._sync_seen_at, 1)

    # -- commands -----------------------------------------------------------------------

    async def _help(self, words: list[str], peer: _Peer) -> Any:
        lines = [f"{c.usage}  -- {c.summary}" for c in self.commands.values()]
        lines += ["", "Management (DB/TEAM/KAFKA/QSTASH; destructive ones end with CONFIRM):"]
        lines += management_ops.help_lines() + DB_USE_HELP
        return lines

    async def _stats(self, words: list[str], peer: _Peer) -> Any:
        return stats_reply(self.state)

    async def _cost(self, words: list[str], peer: _Peer) -> Any:
        return cost_reply(self.state)

    async def _clients(self, words: list[str], peer: _Peer) -> Any:
        paused = self.state.dispatcher.paused
        return [client_row(c, paused) for c in list(self.state.connections.values())]

    async def _kill(self, words: list[str], peer: _Peer) -> Any:
        if len(words) != 1:
            raise AdminError("ERR usage: KILL <id> (ids from CLIENTS)")
        try:
            client_id = int(words[0])
        except ValueError:
            raise AdminError(f"ERR client id must be a number, got {words[0]!r}") from None
        if not self.state.kill_client(client_id):
            raise AdminError(f"ERR no such client {client_id}")
        return Status(b"OK")

    async def _upstream(self, words: list[str], peer: _Peer) -> Any:
        state = self.state
        upstream = state.upstream
        if words and words[0].upper() == "PROBE":
            await self._probe()
        elif words:
            raise AdminError("ERR usage: UPSTREAM [PROBE]")
        age = self.sync_token_age_s()
        breaker = state.dispatcher.breaker
        circuit = {
            "state": breaker.state,
            "consecutive_failures": breaker.consecutive_failures,
            "opened_total": breaker.opened_total,
            "rejected_total": breaker.rejected_total,
            "retry_in_s": round(breaker.retry_in_s(), 2),
        }
        return {
            "url": upstream.display_url,
            "health": self.health(),
            "response_format": "resp2" if upstream.resp2 else "json+base64",
            "server_version": state.server_version,
            "last_probe": self._last_probe
            if self._last_probe is not None
            else "none since start (UPSTREAM PROBE checks now)",
            "requests_in_flight": state.dispatcher.in_flight,
            "max_in_flight": state.dispatcher.limits.max_in_flight,
            "paused": state.dispatcher.paused,
            "http_requests": state.stats.http_requests,
            "errors": dict(sorted(state.stats.errors.items())),
            "sync_token": "present" if upstream.sync_token else "none yet",
            "sync_token_age_s": age,
            "circuit_breaker": circuit,
        }

    async def _probe(self) -> None:
        started = trio.current_time()
        ok = False
        try:
            with trio.fail_after(PROBE_TIMEOUT_S):
                result = await self.state.upstream.probe()
        except UpstreamAuthError:
            detail = "the upstream refused the token (HTTP 401)"
        except trio.TooSlowError:
            detail = f"no answer within {PROBE_TIMEOUT_S:g} s"
        else:
            ok = result.reachable
            detail = result.detail
            if ok:
                self.state.stats.cost.add(PROBE, 2)  # PING + INFO server
            self.state.note_server_version(result.server_version)
        self._last_probe = {
            "ok": ok,
            "detail": detail,
            "latency_ms": round((trio.current_time() - started) * 1000, 1),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    async def _pause(self, words: list[str], peer: _Peer) -> Any:
        wait_s = PAUSE_WAIT_S
        if words:
            try:
                wait_s = float(words[0])
            except ValueError:
                raise AdminError("ERR usage: PAUSE [wait_s]") from None
            if not 0 <= wait_s <= PAUSE_MAX_WAIT_S:
                raise AdminError(f"ERR wait_s must be between 0 and {PAUSE_MAX_WAIT_S:g}")
        dispatcher, numbered = self.state.dispatcher, self.state.databases
        dispatcher.set_paused(True)
        numbered.set_paused(True)
        with trio.move_on_after(wait_s):
            while dispatcher.in_flight or numbered.in_flight:
                await trio.sleep(PAUSE_POLL_S)
        if dispatcher.in_flight or numbered.in_flight:
            raise AdminError(
                f"ERR paused, but {dispatcher.in_flight + numbered.in_flight} upstream "
                f"request(s) are still in flight after {wait_s:g} s"
            )
        return Status(b"OK")

    async def _resume(self, words: list[str], peer: _Peer) -> Any:
        self.state.dispatcher.set_paused(False)
        self.state.databases.set_paused(False)
        return Status(b"OK")

    async def _reload(self, words: list[str], peer: _Peer) -> Any:
        lifecycle = self.lifecycle
        if lifecycle is None or lifecycle.reload_config is None:
            raise AdminError("ERR this bridge has no configuration source to reload")
        if lifecycle.state is None:
            raise AdminError("ERR the bridge is still starting; retry in a moment")
        if lifecycle.stopping:
            raise AdminError("ERR the bridge is shutting down")
        try:
            wanted = lifecycle.reload_config()
        except ConfigError as exc:
            raise AdminError(
                f"ERR reload failed, the running configuration is kept: {exc}"
            ) from None
        before = self.state.config
        lifecycle.reload()
        after = self.state.config
        names = [f.name for f in dataclasses.fields(BridgeConfig)]
        for value in (after.upstash_api_key, after.enterprise_password):
            logs.add_secret(value)
        return {
            "result": "reloaded",
            "applied": [n for n in names if getattr(before, n) != getattr(after, n)],
            "restart_needed": [
                n for n in names if getattr(wanted, n) != getattr(after, n) or (
                    n == "admin_socket" and getattr(before, n) != getattr(wanted, n)
                )
            ],
        }  # fmt: skip

    async def _shutdown(self, words: list[str], peer: _Peer) -> Any:
        mode = words[0].upper() if words else "GRACEFUL"
        if mode not in ("GRACEFUL", "NOW") or len(words) > 1:
            raise AdminError("ERR usage: SHUTDOWN [GRACEFUL|NOW]")
        lifecycle = self.lifecycle
        if mode == "GRACEFUL" and lifecycle is not None and lifecycle.state is not None:
            log.info("admin: SHUTDOWN GRACEFUL, draining clients")
            peer.after_reply = lifecycle.stop_requested.set
        elif self._stop_now is not None:
            log.warning("admin: SHUTDOWN %s, closing every client now", mode)
            peer.after_reply = self._stop_now
        else:
            raise AdminError("ERR this bridge cannot be stopped from the admin socket")
        peer.quit = True
        return Status(b"OK")

    async def _metrics(self, words: list[str], peer: _Peer) -> Any:
        return prometheus_text(self.state)

    async def _config(self, words: list[str], peer: _Peer) -> Any:
        return config_reply(self.state, self.path, words)

    async def _db(self, words: list[str], peer: _Peer) -> Any:
        return await self._management("DB", words)

    async def _team(self, words: list[str], peer: _Peer) -> Any:
        return await self._management("TEAM", words)

    async def _management(self, group: str, words: list[str]) -> Any:
        if not words or words[-1].upper() == "HELP":
            return management_ops.help_lines(group) + (DB_USE_HELP if group == "DB" else [])
        rest = words[1:] if words[0].lower() in management_ops.PROVIDERS else words
        if group == "DB" and rest and rest[0].upper() == "USE":
            return await self._use(words)
        config = self.state.config
        full = [group, *words]
        request = management_ops.parse_command(
            full, default_provider=management_ops.default_provider(config)
        )
        result = await management_ops.run_management(config, full, show_secrets=True)
        switched = None
        if request.op.name == "RESET-PASSWORD" and request.provider == management_ops.UPSTASH:
            switched = self._follow_new_token(result)
        result = management_ops.redact_secrets(result)
        if switched is not None and isinstance(result, dict):
            result["bridge"] = switched
        return result

    async def _use(self, words: list[str]) -> Any:
        """DB USE <id>: switch to that Upstash database's REST endpoint and token; clients
        stay connected, requests in flight finish on the old database, pub/sub streams
        reconnect to the new one."""
        provider = management_ops.default_provider(self.state.config)
        if words[0].lower() in management_ops.PROVIDERS:
            provider = words.pop(0).lower()
        if len(words) != 2:
            raise AdminError("ERR usage: DB USE <id>")
        if provider != management_ops.UPSTASH:
            raise AdminError(
                "ERR DB USE needs the Upstash developer API (upstash_email, upstash_api_key): "
                "Redis Enterprise databases have no REST endpoint"
            )
        database_id = words[1]
        database = await management_ops.run_management(
            self.state.config, ["DB", "UPSTASH", "INFO", database_id], show_secrets=True
        )
        endpoint = database.get("endpoint") if isinstance(database, dict) else None
        token = database.get("rest_token") if isinstance(database, dict) else None
        if not isinstance(endpoint, str) or not endpoint or not isinstance(token, str) or not token:
            raise AdminError(f"ERR database {database_id} has no REST endpoint and token")
        state = self.state
        upstream = state.upstream
        before = upstream.display_url
        in_use = str(database.get("database_id") or database_id)
        streams = state.switch_upstream(rest_url(endpoint, upstream.url), token, in_use)
        log.warning(
            "DB USE: this bridge now uses database %s at %s (was %s); the configuration is "
            "unchanged: a restart goes back to the configured database",
            in_use, upstream.display_url, before,
        )  # fmt: skip
        return {
            "result": "switched",
            "database_id": in_use,
            "database_name": database.get("database_name"),
            "url": upstream.display_url,
            "previous_url": before,
            "token": "the database's own (never shown)",
            "clients": len(self.state.connections),
            "pubsub_streams_reconnected": streams,
        }

    def _follow_new_token(self, database: Any) -> str | None:
        """After a password reset of the database this bridge uses (the one chosen by DB USE,
        else the one whose endpoint is the REST URL's host), switch to the new REST token: the
        old one stopped working."""
        if not isinstance(database, dict):
            return None
        endpoint, token = database.get("endpoint"), database.get("rest_token")
        if not endpoint or not isinstance(token, str) or not token:
            return None
        state = self.state
        parts = urlsplit(state.upstream.url)
        in_use = state.database_in_use
        if in_use is not None:
            if database.get("database_id") != in_use:
                return None
        elif endpoint not in (parts.hostname, parts.netloc):
            return None
        if not state.rotate_token(token):
            # DB USE chose this database: the configuration still names the configured one.
            log.warning(
                "the REST token of database %s (in use by DB USE) was reset: this bridge now "
                "uses the new one", in_use,
            )  # fmt: skip
            return "switched to the new REST token"
        log.warning(
            "the REST token of database %s was reset: this bridge now uses the new one; "
            "update UPSTASH_REDIS_REST_TOKEN (or token in the config file), or a reload or "
            "restart will go back to the old token",
            database.get("database_id", "?"),
        )
        return "switched to the new REST token; update the configured token too"

    async def _ping(self, words: list[str], peer: _Peer) -> Any:
        return words[0] if words else Status(b"PONG")

    async def _hello(self, words: list[str], peer: _Peer) -> Any:
        if words:
            if words[0] not in ("2", "3"):
                raise AdminError("NOPROTO unsupported protocol version")
            peer.proto = int(words[0])
        return {
            "server": "resp-bridge-admin",
            "version": __version__,
            "proto": peer.proto,
            "mode": "admin",
        }

    async def _quit(self, words: list[str], peer: _Peer) -> Any:
        peer.quit = True
        return Status(b"OK")

    async def _command(self, words: list[str], peer: _Peer) -> Any:
        return []

    async def _client(self, words: list[str], peer: _Peer) -> Any:
        return Status(b"OK")


async def serve_admin(
    state: BridgeState,
    lifecycle: Lifecycle | None,
    stop_now: Callable[[], None] | None,
    *,
    task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the admin console of `state` until cancelled (started in run_bridge's nursery).

    An explicit `admin_socket` that cannot be used stops the start-up (ConfigError); the
    default one only logs a warning, so that several bridges of one user can run at once
    (the first gets the default socket)."""
    path, explicit = resolve_admin_socket(state.config)
    for value in (state.config.upstash_api_key, state.config.enterprise_password):
        logs.add_secret(value)
    if path is None:
        log.info("admin socket disabled")
        task_status.started(None)
        return
    try:
        admin_socket = open_admin_socket(path, explicit=explicit)
    except ConfigError as exc:
        if explicit:
            raise
        # Even when another bridge has the default socket, say it loudly: `resp-bridge admin`
        # would talk to that other bridge, not to this one.
        log.warning("no admin socket: %s (set --admin-socket to choose a path)", exc)
        task_status.started(None)
        return
    admin = AdminServer(state, path=admin_socket.path, lifecycle=lifecycle, stop_now=stop_now)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.run, admin_socket.listener)
            log.info("admin socket listening on %s", admin_socket.path)
            task_status.started(admin_socket.path)
    finally:
        admin_socket.remove()
