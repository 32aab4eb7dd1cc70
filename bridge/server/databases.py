"""Redis database numbers other than 0: which REST database serves each, and its own queue.

Database 0 is the bridge's main upstream (`BridgeState.upstream`, `.dispatcher`, `.blocking`).
Each other number n has a `NumberedDatabase`: its own REST client, dispatcher (so its own
batching queue, in-flight limit and circuit breaker) and blocking hub (its keys are its own).
Where numbers come from:
- the embedded default: numbers 0..15 are the logical databases of the one local
  redis-server, served by the devserver with the token `<token>.db<n>`; MOVE, SWAPDB and
  COPY ... DB can then be forwarded as they are (`shared`);
- a configured upstream: one `[databases.N]` table (url, token) per extra number, each a
  separate REST database (nothing can be atomic across two of them).
A numbered database is opened on first use (its dispatcher runs in this registry's nursery);
a reload that changes or removes a table retires the old one once its work is done. Pub/sub
and MONITOR stay on database 0's upstream: channels are global in Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import trio

from bridge.config import DATABASE_TOKEN_ENV, BridgeConfig, DatabaseTarget
from bridge.errors import ConfigError, UpstreamAuthError
from bridge.server.blocking_hub import BlockingHub
from bridge.server.breaker import CircuitBreaker
from bridge.server.cost import PROBE
from bridge.server.counters import Stats
from bridge.server.dispatcher import Dispatcher, DispatchLimits
from bridge.upstream.rest import RestClient

log = logging.getLogger("bridge.databases")

#: Redis databases 0..N-1 the embedded default serves (redis-server's default `databases 16`):
#: each is a logical database of the one local redis-server, reached with its own token.
EMBEDDED_DATABASES = 16

#: How long a retired database (its table changed by a reload) may take to finish its work.
RETIRE_TIMEOUT_S = 30.0


class NumberedDatabase:
    """Database number n > 0: its REST client, dispatcher and blocking hub."""

    __slots__ = ("blocking", "commands", "dispatcher", "number", "scope", "upstream")

    def __init__(self, number: int, upstream: RestClient, config: BridgeConfig, stats: Stats):
        self.number = number
        self.upstream = upstream
        self.dispatcher = Dispatcher(
            upstream,
            DispatchLimits(
                max_batch_commands=config.max_batch_commands,
                max_batch_bytes=config.max_batch_bytes,
                max_in_flight=config.max_in_flight,
                timeout_s=config.upstream_timeout_s,
            ),
            stats,
            CircuitBreaker(config.breaker_failures, config.breaker_open_s),
        )
        self.blocking = BlockingHub(
            self.dispatcher,
            stats,
            min_interval_s=config.blocking_poll_min_ms / 1000,
            max_interval_s=config.blocking_poll_max_ms / 1000,
        )
        #: Commands clients sent to this database (counted by the connections).
        self.commands = 0
        self.scope = trio.CancelScope()


def rest_client(config: BridgeConfig, url: str, token: str, resp2: bool) -> RestClient:
    """A REST client with the same settings as the main upstream's."""
    return RestClient(
        url,
        token,
        timeout_s=config.upstream_timeout_s,
        connect_timeout_s=config.connect_timeout_s,
        max_connections=config.max_in_flight + 2,
        resp2=resp2,
        ca_file=config.ca_file,
    )


class Databases:
    """Database numbers -> their `NumberedDatabase`; see the module docstring."""

    def __init__(self, config: BridgeConfig, stats: Stats, main: RestClient) -> None:
        self.config = config
        self.stats = stats
        self._main = main
        #: Every number is a logical database of one Redis server (the embedded default).
        self.shared = config.embedded
        #: number -> (url, token) of the REST database serving it.
        self._targets: dict[int, tuple[str, str]] = {}
        self._open: dict[int, NumberedDatabase] = {}
        self._resp2: dict[int, bool] = {}
        self._nursery: trio.Nursery | None = None
        #: Admin PAUSE holds every database's commands (those opened meanwhile too).
        self.paused = False
        #: CLIENT PAUSE in force: (mode, trio deadline), applied to databases opened later.
        self._client_pause: tuple[str, float] | None = None
        #: Numbers 0..count-1 are served (embedded: once `run` knows the devserver's token).
        self.count = EMBEDDED_DATABASES if config.embedded else 0
        if not config.embedded:
            self._targets = _targets_of(config.databases)

    # -- what sessions ask -----------------------------------------------------------------

    def problem(self, number: int) -> str | None:
        """None when `number` is served, else the error for SELECT (naming what to add)."""
        if number == 0 or number in self._targets or 0 < number < self.count:
            return None
        if number < 0 or self.shared:
            return "ERR DB index is out of range"
        return (
            f"ERR DB index {number} is not configured: add a [databases.{number}] table (url, "
            f"token; or {DATABASE_TOKEN_ENV.format(number)}) to the config file"
        )

    def get(self, number: int) -> NumberedDatabase | None:
        """The database serving `number` (> 0), opened on first use; None when not served
        (or before `run` started)."""
        db = self._open.get(number)
        if db is not None:
            return db
        target = self._targets.get(number)
        if target is None or self._nursery is None:
            return None
        resp2 = self._resp2.get(number, self._main.resp2)
        db = NumberedDatabase(
            number, rest_client(self.config, *target, resp2), self.config, self.stats
        )
        db.dispatcher.set_paused(self.paused)
        if self._client_pause is not None:
            mode, until = self._client_pause
            if until > trio.current_time():
                db.dispatcher.pause_clients(mode, until - trio.current_time())
        self._open[number] = db
        self._nursery.start_soon(self._serve, db)
        return db

    def set_paused(self, paused: bool) -> None:
        """Admin PAUSE / RESUME for the numbered databases (database 0's is the caller's)."""
        self.paused = paused
        for db in self._open.values():
            db.dispatcher.set_paused(paused)

    def pause_clients(self, mode: str, timeout_s: float) -> None:
        """CLIENT PAUSE for the numbered databases (database 0's is the caller's)."""
        self._client_pause = (mode, trio.current_time() + timeout_s)
        for db in self._open.values():
            db.dispatcher.pause_clients(mode, timeout_s)

    def unpause_clients(self) -> None:
        self._client_pause = None
        for db in self._open.values():
            db.dispatcher.unpause_clients()

    @property
    def in_flight(self) -> int:
        return sum(db.dispatcher.in_flight for db in self._open.values())

    def count_served(self) -> int:
        """The highest number served + 1 (CONFIG GET databases)."""
        return max([self.count, 1, *(n + 1 for n in self._targets)])

    def opened(self) -> Iterator[NumberedDatabase]:
        return iter(sorted(self._open.values(), key=lambda d: d.number))

    def numbers(self) -> list[int]:
        """Every number served besides 0."""
        return sorted(self._targets)

    def display_url(self, number: int) -> str:
        db = self._open.get(number)
        if db is not None:
            return db.upstream.display_url
        from bridge.redaction import redact_url

        target = self._targets.get(number)
        return redact_url(target[0]) if target else "(no longer configured)"

    def tokens(self) -> list[str]:
        return [token for _, token in self._targets.values()]

    # -- running -----------------------------------------------------------------------------

    async def run(
        self,
        token_of: Callable[[str, int], str] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Host the numbered databases' dispatchers; configured ones are probed first (a
        refused token stops the start, naming its table). `token_of(token, n)`: the embedded
        devserver's token scheme for database n (`bridge.server.embedded`)."""
        if self.shared and token_of is not None:
            main = self._main
            for n in range(1, self.count):
                self._targets[n] = (main.url, token_of(main.token, n))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if not self.shared:
                for number in sorted(self._targets):
                    db = self.get(number)
                    assert db is not None
                    await self._probe(db)
            task_status.started()
            await trio.sleep_forever()

    async def _probe(self, db: NumberedDatabase) -> None:
        upstream = db.upstream
        try:
            result = await upstream.probe()
        except UpstreamAuthError:
            raise ConfigError(
                f"databases.{db.number}: the upstream {upstream.display_url} refused the token "
                f"(HTTP 401): check the token of [databases.{db.number}] / "
                f"{DATABASE_TOKEN_ENV.format(db.number)}"
            ) from None
        wanted = self.config.response_format
        upstream.resp2 = result.resp2 if wanted == "auto" else wanted == "resp2"
        self._resp2[db.number] = upstream.resp2
        if result.reachable:
            self.stats.cost.add(PROBE, 2)  # PING + INFO server (bridge.server.cost)
            log.info(
                "database %d: upstream %s (%s)", db.number, upstream.display_url, result.detail
            )
        else:
            log.warning(
                "database %d: upstream %s is not reachable yet (%s); its commands get errors "
                "until it is",
                db.number, upstream.display_url, result.detail,
            )  # fmt: skip

    async def _serve(self, db: NumberedDatabase) -> None:
        try:
            with db.scope:
                await db.dispatcher.run()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await db.upstream.aclose()

    # -- changes -----------------------------------------------------------------------------

    def reconfigure(self, config: BridgeConfig) -> list[int]:
        """RELOAD: the tables of `config` replace the running ones (configured upstream only);
        returns the numbers whose table changed. A changed or removed database finishes the
        work already queued, then closes; its clients move on with their next command."""
        self.config = config
        for db in self._open.values():
            db.dispatcher.set_batch_limits(config.max_batch_commands, config.max_batch_bytes)
        if self.shared:
            return []
        new = _targets_of(config.databases)
        changed = sorted(
            n for n in set(new) | set(self._targets) if new.get(n) != self._targets.get(n)
        )
        self._targets = new
        for number in changed:
            self._resp2.pop(number, None)
            old = self._open.pop(number, None)
            if old is not None and self._nursery is not None:
                self._nursery.start_soon(self._retire, old)
        return changed

    async def _retire(self, db: NumberedDatabase) -> None:
        with trio.move_on_after(RETIRE_TIMEOUT_S):
            while db.dispatcher.in_flight or db.dispatcher.has_work():
                await trio.sleep(0.05)
        db.scope.cancel()


def _targets_of(tables: tuple[DatabaseTarget, ...]) -> dict[int, tuple[str, str]]:
    return {t.number: (t.url, t.token) for t in tables}
