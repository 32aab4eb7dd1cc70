"""Async (trio) connections to Redis and a bounded pool of them, for the devserver.

Owns the wire side towards redis-server: connect + AUTH/SELECT handshake, sending a batch of
already-encoded commands in one write (a RESP pipeline), and reading back the replies: as the
exact bytes of each frame, as the exact bytes of them all, or as hiredis' values. It does not
interpret replies beyond that and does not decide which commands are allowed.

Invariants:
- A connection is used by one request at a time (the pool hands it out exclusively).
- A connection whose request did not complete cleanly (error, timeout, cancellation) is closed,
  never returned to the pool: its reply stream may be out of step or inside a MULTI.
- Every network wait has a deadline; failures surface as `RedisUnavailable`.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import hiredis
import trio

from bridge import redaction
from bridge.core.resp import ErrorReply as _ErrorReply
from bridge.core.resp import FrameReader, RespProtocolError, encode_command, parse_frame

#: Connect (TCP + handshake) deadline: an unreachable Redis must turn into a quick 503.
REDIS_CONNECT_TIMEOUT_S = 3.0
#: Deadline for a reply to start/finish arriving (blocking commands add their own timeout).
REDIS_REPLY_TIMEOUT_S = 10.0
#: How long a request may wait for a free pooled connection before getting a 503.
POOL_ACQUIRE_TIMEOUT_S = 5.0
#: Default number of pooled connections per role (a devserver is a dev/test tool).
DEFAULT_POOL_SIZE = 32
#: Bytes asked from the socket per read; large replies arrive in few reads.
READ_CHUNK_BYTES = 256 * 1024
#: Largest reply buffered from Redis (protects the devserver from e.g. KEYS * on a huge db).
MAX_REPLY_BYTES = 512 * 1024 * 1024
#: Deadline of best-effort cleanup on close.
CLOSE_TIMEOUT_S = 1.0
#: hiredis' answer while a reply is incomplete (a RESP3 false could pass for its default).
_INCOMPLETE = object()


class RedisUnavailable(Exception):
    """Redis could not be reached, dropped the connection, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect: parsed from `redis://[user:pass@]host:port[/db]`."""

    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} (use redis://)")
        db_text = parts.path.strip("/")
        try:
            db = int(db_text) if db_text else 0
            port = parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            db=db,
        )

    def with_credentials(self, username: str | None, password: str | None) -> RedisAddress:
        return RedisAddress(self.host, self.port, username, password, self.db)

    @property
    def display(self) -> str:
        """The URL without its password (safe for logs)."""
        auth = f"{self.username}@" if self.username else ""
        db = f"/{self.db}" if self.db else ""
        return f"redis://{auth}{self.host}:{self.port}{db}"


def redact_url(url: str) -> str:
    """A Redis URL for logs and error messages: the user name kept (it says which ACL user),
    the password masked, the rest as `bridge.redaction` shows any URL."""
    return redaction.redact_url(url, keep_user=True)


class RedisConnection:
    """One TCP connection to Redis. Not safe for concurrent use: the pool serializes it.

    The socket is driven directly (non-blocking `os.read`/`os.write` on its descriptor, trio
    only waiting for readiness): a request costs one write and, usually, one wait and one
    read. Two ways to read replies: `execute` returns each reply's exact frame (the core's
    `FrameReader`; `read_frame` then reads pushes that follow, as SSE does), while
    `execute_raw` and `execute_values` let hiredis (C) find the replies and return their
    bytes all together or their values. Between requests no byte is left unread (a reply
    stream out of step closes the connection)."""

    __slots__ = ("_fd", "_frames", "_poller", "_reader", "_stream", "broken")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()
        self._frames = FrameReader()
        self._reader = hiredis.Reader(notEnoughData=_INCOMPLETE)
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        self.broken = False

    @classmethod
    async def open(cls, address: RedisAddress) -> RedisConnection:
        """Connect and run the AUTH/SELECT handshake, within REDIS_CONNECT_TIMEOUT_S."""
        try:
            with trio.fail_after(REDIS_CONNECT_TIMEOUT_S):
                stream = await trio.open_tcp_stream(address.host, address.port)
                conn = cls(stream)
                try:
                    await conn._handshake(address)
                except BaseException:
                    conn.broken = True
                    await conn.aclose()
                    raise
                return conn
        except trio.TooSlowError:
            raise RedisUnavailable(
                f"ERR devserver: Redis at {address.display} did not accept a connection "
                f"within {REDIS_CONNECT_TIMEOUT_S} s"
            ) from None
        except OSError as exc:
            raise RedisUnavailable(
                f"ERR devserver: cannot connect to Redis at {address.display}: "
                f"{exc.strerror or exc}"
            ) from None

    async def _handshake(self, address: RedisAddress) -> None:
        commands: list[list[bytes | str]] = []
        if address.password is not None:
            if address.username:
                commands.append(["AUTH", address.username, address.password])
            else:
                commands.append(["AUTH", address.password])
        if address.db:
            commands.append(["SELECT", str(address.db)])
        if not commands:
            return
        frames = await self.execute(b"".join(encode_command(c) for c in commands), len(commands))
        for frame in frames:
            value = parse_frame(frame)
            if isinstance(value, _ErrorReply):
                raise HandshakeError(value.text)

    def _lost(self, exc: OSError | None = None) -> RedisUnavailable:
        self.broken = True
        if exc is None:
            return RedisUnavailable("ERR devserver: Redis closed the connection")
        return RedisUnavailable(f"ERR devserver: lost the connection to Redis ({exc})")

    async def send(self, data: bytes) -> None:
        """Write all of `data`: at once when the socket takes it (no wait, no task switch)."""
        rest = self._send_now(data)
        if rest is not None:
            await self._send_rest(rest)

    def _send_now(self, data: bytes) -> memoryview | None:
        """Write what the socket takes now; the part left (None: nothing left)."""
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._lost(exc) from None
        return None if sent == len(data) else memoryview(data)[sent:]

    async def _send_rest(self, view: memoryview) -> None:
        fd = self._fd
        while view:
            try:
                await trio.lowlevel.wait_writable(fd)
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                pass
            except (trio.ClosedResourceError, OSError) as exc:
                raise self._lost(exc if isinstance(exc, OSError) else None) from None

    def _receive_now(self) -> bytes | None:
        """What Redis has sent, without waiting (None: nothing yet)."""
        try:
            data = os.read(self._fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._lost(exc) from None
        if not data:
            raise self._lost()
        return data

    async def _receive(self) -> bytes:
        """The next bytes from Redis (waits for them; no deadline: callers set one)."""
        fd = self._fd
        while True:
            try:
                await trio.lowlevel.wait_readable(fd)
                data = os.read(fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                continue
            except (trio.ClosedResourceError, OSError) as exc:
                raise self._lost(exc if isinstance(exc, OSError) else None) from None
            if not data:
                raise self._lost()
            return data

    async def read_frame(self) -> bytes:
        """Read one complete reply frame (exact bytes). No deadline: callers set one.
        Cancelling it loses nothing: bytes already read stay buffered for the next call."""
        frames = self._frames
        while True:
            try:
                frame = frames.next_frame()
            except RespProtocolError as exc:
                self.broken = True
                raise RedisUnavailable(f"ERR devserver: invalid reply from Redis ({exc})") from None
            if frame is not None:
                return frame
            if frames.buffered > MAX_REPLY_BYTES:
                self.broken = True
                raise RedisUnavailable(
                    f"ERR devserver: reply from Redis larger than {MAX_REPLY_BYTES} bytes"
                )
            frames.feed(await self._receive())

    async def execute(
        self, payload: bytes, count: int, timeout_s: float = REDIS_REPLY_TIMEOUT_S
    ) -> list[bytes]:
        """Send `payload` (count encoded commands) in one write and read `count` replies,
        each as its exact frame."""
        try:
            with trio.fail_after(timeout_s):
                await self.send(payload)
                return [await self.read_frame() for _ in range(count)]
        except trio.TooSlowError:
            raise self._too_slow(timeout_s) from None

    async def execute_raw(
        self,
        payload: bytes,
        count: int,
        timeout_s: float = REDIS_REPLY_TIMEOUT_S,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> bytes:
        """Like `execute`, but the `count` replies as one byte string (exactly as sent).

        `hold`: awaited between sending and reading (the devserver's emulated latency): the
        replies are then read in one go once it returns, instead of waking up for them
        first; the reply deadline counts from then."""
        chunks = await self._exchange(payload, count, timeout_s, None, hold)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def execute_values(
        self,
        payload: bytes,
        count: int,
        timeout_s: float = REDIS_REPLY_TIMEOUT_S,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> list[object]:
        """Like `execute_raw`, but the replies parsed by hiredis: bytes for bulk and simple
        strings alike, int, None, lists, `hiredis.ReplyError` for errors (nested too)."""
        values: list[object] = []
        await self._exchange(payload, count, timeout_s, values, hold)
        return values

    async def execute_both(
        self,
        payload: bytes,
        count: int,
        timeout_s: float = REDIS_REPLY_TIMEOUT_S,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[list[object], bytes]:
        """`execute_values` and `execute_raw` at once: the values and the exact bytes."""
        values: list[object] = []
        chunks = await self._exchange(payload, count, timeout_s, values, hold)
        return values, chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _exchange(
        self,
        payload: bytes,
        count: int,
        timeout_s: float,
        values: list[object] | None,
        hold: Callable[[], Awaitable[None]] | None,
    ) -> list[bytes]:
        """Send, then read until hiredis has seen `count` complete replies: the bytes read
        (exactly those replies), their values appended to `values` when given."""
        if self._frames.buffered:  # an earlier `execute` left bytes nobody asked for
            self.broken = True
            raise RedisUnavailable("ERR devserver: invalid reply from Redis (out of step)")
        rest = self._send_now(payload)
        chunks: list[bytes] = []
        got = size = 0
        if hold is not None and rest is None:
            await hold()
            data = self._receive_now()  # usually every reply by now: no wait, no deadline
            if data is not None:
                got = self._take(data, chunks, values)
                size = len(data)
        if rest is not None or got < count:
            # A scope of its own (not fail_after's context manager): the cheapest bounded wait.
            with trio.CancelScope(deadline=trio.current_time() + timeout_s) as scope:
                if rest is not None:
                    await self._send_rest(rest)
                while got < count:
                    if size > MAX_REPLY_BYTES:
                        self.broken = True
                        raise RedisUnavailable(
                            f"ERR devserver: reply from Redis larger than {MAX_REPLY_BYTES} bytes"
                        )
                    data = await self._receive()
                    got += self._take(data, chunks, values)
                    size += len(data)
            if scope.cancelled_caught:
                raise self._too_slow(timeout_s)
        if got > count or self._reader.has_data():
            self.broken = True
            raise RedisUnavailable("ERR devserver: invalid reply from Redis (more than asked)")
        return chunks

    def _take(self, data: bytes, chunks: list[bytes], values: list[object] | None) -> int:
        """Feed `data` to hiredis: how many replies it completed (their values appended)."""
        chunks.append(data)
        reader = self._reader
        reader.feed(data)
        gets = reader.gets
        got = 0
        try:
            while (value := gets()) is not _INCOMPLETE:
                got += 1
                if values is not None:
                    values.append(value)
        except hiredis.ProtocolError as exc:
            self.broken = True
            raise RedisUnavailable(f"ERR devserver: invalid reply from Redis ({exc})") from None
        return got

    def _too_slow(self, timeout_s: float) -> RedisUnavailable:
        self.broken = True
        return RedisUnavailable(f"ERR devserver: Redis did not answer within {timeout_s:g} s")

    def is_stale(self) -> bool:
        """True if an idle connection has something to read: EOF (Redis closed it) or junk."""
        try:
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True

    async def aclose(self) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
            scope.shield = True
            await self._stream.aclose()


class HandshakeError(RedisUnavailable):
    """AUTH or SELECT was refused (wrong credentials, missing ACL user, bad db number)."""


class RedisPool:
    """A bounded pool of connections to one Redis address (one role: full or read-only).

    `async with pool.connection() as conn:` lends a connection exclusively; it goes back to the
    pool only if it is not `broken` and the block exited without an exception.
    `on_handshake_error` may repair the cause once (e.g. re-create the read-only ACL user after
    a Redis restart) before the connect is retried.
    """

    def __init__(
        self,
        address: RedisAddress,
        size: int = DEFAULT_POOL_SIZE,
        *,
        on_handshake_error: Callable[[HandshakeError], Awaitable[None]] | None = None,
    ) -> None:
        self.address = address
        self.size = size
        self._idle: list[RedisConnection] = []
        #: Slots not lent out; while requests wait for one, a release hands its slot over.
        self._free = size
        self._waiting = trio.lowlevel.ParkingLot()
        self._on_handshake_error = on_handshake_error
        self.opened_total = 0

    @property
    def open_connections(self) -> int:
        return self.size - self._free + len(self._idle)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def has_room(self) -> bool:
        """At most three quarters of the connections are lent out: one may be held longer."""
        return self._free * 4 > self.size

    async def _acquire_slot(self) -> None:
        if self._free:  # the common case: no wait, no cancel scope
            self._free -= 1
            return
        try:
            with trio.fail_after(POOL_ACQUIRE_TIMEOUT_S):
                await self._waiting.park()  # woken by a release, which hands its slot over
        except trio.TooSlowError:
            raise RedisUnavailable(
                f"ERR devserver: all {self.size} Redis connections stayed busy for "
                f"{POOL_ACQUIRE_TIMEOUT_S} s"
            ) from None

    async def _get(self) -> RedisConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_stale():
                return conn
            await conn.aclose()
        return await self.open_dedicated()

    async def open_dedicated(self) -> RedisConnection:
        """A new connection outside the pool's bound (SSE streams count their own limit)."""
        try:
            conn = await RedisConnection.open(self.address)
        except HandshakeError as exc:
            if self._on_handshake_error is None:
                raise
            await self._on_handshake_error(exc)
            conn = await RedisConnection.open(self.address)
        self.opened_total += 1
        return conn

    async def acquire(self) -> RedisConnection:
        """Borrow a connection exclusively; give it back with `release` (in a finally)."""
        await self._acquire_slot()
        try:
            return await self._get()
        except BaseException:
            self._release_slot()
            raise

    async def release(self, conn: RedisConnection) -> None:
        """Take back a borrowed connection: pooled again unless `broken` (then closed)."""
        if conn.broken:
            try:
                await conn.aclose()
            finally:
                self._release_slot()
            return
        self._idle.append(conn)
        self._release_slot()

    def _release_slot(self) -> None:
        if self._waiting:
            self._waiting.unpark()
        else:
            self._free += 1

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[RedisConnection]:
        """`acquire` .. `release` as a block; an exception inside marks the connection broken."""
        conn = await self.acquire()
        try:
            yield conn
        except BaseException:
            conn.broken = True
            raise
        finally:
            await self.release(conn)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()
