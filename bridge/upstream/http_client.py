"""A lean HTTP/1.1 keep-alive client for the data path: one fixed origin, POST only.

The bridge sends two request shapes to one upstream, with fixed headers; a general-purpose
stack (httpx → httpcore → h11) spent most of the bridge's CPU per command on flexibility it
does not use. Here a request is one `bytes` built from a prepared header block, written with
one `send` on a plain non-blocking socket (an `ssl.SSLSocket` over it for HTTPS) waited on
with trio's wait_readable/wait_writable, and the response is parsed by httptools (llhttp,
C): Content-Length, chunked and read-until-close bodies.

Connections are kept alive in a small LIFO pool (at most `max_connections`, idle ones expire
after KEEPALIVE_EXPIRY_S). Every failure maps to the upstream exception tree of
`bridge.errors`, and its `executed` flag is exact: a request counts as "not executed" only
when no byte of it can have reached the server (connect/TLS failure, no free connection, or a
send that failed before any byte was accepted). A reused connection that the server closed
while idle is detected before writing (a non-blocking peek sees EOF) and replaced
transparently; any failure after the first byte was written is "may have run".

Deadlines are kept by one watchdog task per client, not by a cancel scope per request (one
cost 8.5 µs, a tenth of the bridge's own CPU for a request at one client): a request past its
deadline has its connection closed under it, which wakes it with "timed out".

The header block (which holds the REST token) is only ever written to the socket, never
formatted into a message or a log line.
"""

from __future__ import annotations

import errno
import math
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
import trio

from bridge.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnavailable

#: Bytes asked of the socket per read, into a buffer each connection keeps: `recv(n)` would
#: allocate n bytes per call, and above glibc's mmap threshold (128 KB) that is an mmap,
#: an mremap and a munmap per response.
RECV_SIZE = 256 * 1024
#: An idle connection older than this is closed instead of reused (httpx's default too):
#: servers drop idle keep-alive connections after a while, and reusing one at the moment the
#: server closes it is the one failure a client cannot classify.
KEEPALIVE_EXPIRY_S = 5.0
#: Bodies smaller than this are joined to the head and written with one send.
_JOIN_BELOW = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One response: status, lower-case header names (repeats comma-joined), whole body."""

    status: int
    reason: str
    headers: dict[bytes, bytes]
    body: bytes

    def header(self, name: bytes) -> str:
        """A header's value as text ('' when absent); `name` in lower case."""
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else ""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host, port and the URL's path prefix (no trailing '/')."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the upstream URL must be http:// or https:// with a host name")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and host name verification always on: the system store, or `ca_file` only."""
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """`Name: value\\r\\n` lines for `HttpClient.post`; refuses values that would split lines."""
    lines = []
    for name, value in headers:
        if any(c in name or c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: value contains a line break or NUL")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class _Reader:
    """httptools callbacks of one connection, reset for each response."""

    __slots__ = ("chunks", "complete", "headers", "headers_done", "reason", "size")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.reason = b""
        self.complete = False
        self.headers_done = False
        self.size = 0

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        old = self.headers.get(key)
        self.headers[key] = value if old is None else old + b", " + value

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    """One keep-alive connection: its non-blocking socket (an SSLSocket for HTTPS), its parser.

    The stdlib socket is used directly, with trio's wait_readable/wait_writable: trio's own
    stream layers (SocketStream, SSLStream and its MemoryBIO pumping) cost more per request
    than the request itself on a fast upstream.
    """

    __slots__ = (
        "buffer", "deadline", "on_lost", "origin", "parser", "reader", "sock", "timed_out", "tls",
        "unsent", "used_at",
    )  # fmt: skip

    def __init__(self, origin: Origin, sock: socket.socket) -> None:
        self.origin = origin
        self.sock: socket.socket | None = sock
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.reader = _Reader()
        self.parser = httptools.HttpResponseParser(self.reader)
        self.used_at = time.monotonic()
        #: trio time by which the request it carries must be answered (see `_watchdog`).
        self.deadline = math.inf
        #: Set by the watchdog when it closed the connection for missing `deadline`.
        self.timed_out = False
        #: Reads land here; httptools copies what it keeps (header values, body chunks).
        self.buffer = memoryview(bytearray(RECV_SIZE))
        #: A request started by `try_start`: what the socket did not take yet (for `resume`),
        #: and what to call if the connection is closed under it (the watchdog, `aclose`).
        self.unsent: memoryview | None = None
        self.on_lost: Callable[[], None] | None = None

    def stale(self, now: float) -> bool:
        """True if the connection must not be reused: expired, closed by the peer (EOF), or
        holding unexpected bytes. One non-blocking peek; no byte is consumed."""
        if now - self.used_at > KEEPALIVE_EXPIRY_S:
            return True
        sock = self.sock
        if sock is None or (self.tls and sock.pending()):  # type: ignore[attr-defined]
            return True
        try:
            # the raw socket's recv, also under TLS: a close_notify or an alert is data too
            _RAW_RECV(sock, 1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True  # EOF (b"") or data nobody asked for

    def close(self) -> None:
        sock = self.sock
        self.sock = None
        if sock is not None:
            trio.lowlevel.notify_closing(sock)
            sock.close()


class NeedsTask(Exception):
    """`read_ready` cannot go on without awaiting (a TLS write): call `resume`."""


def _lose(conn: _Connection) -> None:
    """Close `conn` under its request, and tell whoever reads it without a task."""
    lost = conn.on_lost
    conn.close()
    if lost is not None:
        lost()


class _SendFailed(Exception):
    """The request could not be written; `sent` says whether any byte was accepted."""

    def __init__(self, cause: Exception, sent: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sent = sent


class HttpClient:
    """POSTs to one origin over pooled keep-alive HTTP/1.1 connections."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int = 16,
        ca_file: str | None = None,
        user_agent: str = "resp-bridge",
    ) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max(1, max_connections)
        self._ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None
        self._user_agent = user_agent
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._opening = 0
        self._room = trio.lowlevel.ParkingLot()
        self._closed = False
        #: The watchdog's sleep (None until the first request starts it); its deadline is the
        #: earliest request deadline it knows of.
        self._watch: trio.CancelScope | None = None
        self.origin = Origin.parse(url)
        self._fixed = self._fixed_head()
        #: Connections opened so far (tests and stats read it: reuse means it stays small).
        self.connections_opened = 0

    def _fixed_head(self) -> bytes:
        host = self.origin.netloc.encode("idna")
        return b"Host: " + host + f"\r\nUser-Agent: {self._user_agent}\r\n".encode("ascii")

    def switch(self, url: str) -> None:
        """Later requests go to `url`; requests in flight finish on their old connection."""
        self.origin = Origin.parse(url)
        self._fixed = self._fixed_head()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._room.unpark_all()

    async def aclose(self) -> None:
        """Close every connection, busy ones too (their requests fail as 'may have run')."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            _lose(conn)
        self._idle.clear()
        self._busy.clear()
        self._room.unpark_all()
        if self._watch is not None:
            self._watch.cancel()
        await trio.lowlevel.checkpoint()

    # -- the request -------------------------------------------------------------------------

    async def post(self, path: str, headers: bytes, body: bytes) -> HttpResponse:
        """POST `body` to `path` with the prepared `headers` block; the whole response.

        Raises UpstreamUnavailable (not executed), UpstreamTimeout or UpstreamError (may have
        run), UpstreamProtocolError (the answer is not HTTP we can read).
        """
        deadline = trio.current_time() + self.timeout_s
        head = self._head(path, headers, len(body))
        parts = (head + body,) if len(body) < _JOIN_BELOW else (head, body)
        for attempt in (1, 2):
            conn, reused = self._take_idle() or await self._acquire(deadline)
            self._set_deadline(conn, deadline)
            ok = False
            try:
                try:
                    await self._send(conn, parts)
                except _SendFailed as exc:
                    if conn.timed_out:
                        raise self._timeout() from None
                    if not exc.sent and reused and attempt == 1:
                        # The server had closed this idle connection; nothing of the
                        # request reached it: one retry on a new connection is safe.
                        continue
                    raise self._send_error(exc) from exc.cause
                response, ok = await self._receive(conn)
                ok = ok and not self._closed
                return response
            finally:
                self._release(conn, ok)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _head(self, path: str, headers: bytes, length: int) -> bytes:
        return b"".join(
            (
                b"POST ",
                (self.origin.prefix + path).encode("ascii"),
                b" HTTP/1.1\r\n",
                self._fixed,
                headers,
                b"Content-Length: ",
                str(length).encode(),
                b"\r\n\r\n",
            )
        )

    def _set_deadline(self, conn: _Connection, deadline: float) -> None:
        conn.deadline = deadline
        watch = self._watch
        if watch is None or deadline < watch.deadline:
            self._watch_until(deadline)

    def _timeout(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"ReadTimeout: no complete answer within {self.timeout_s:g}s")

    # -- the same request without a task: started here, read when the socket is readable ----
    # The bridge's read poller watches the socket of such a request and calls `read_ready`
    # from its round: no task waits for it, so a request costs no task wake-up, no park and
    # no one-shot epoll registration of its own.

    def has_idle(self) -> bool:
        """A pooled connection is idle: `try_start` will most likely not return None."""
        return bool(self._idle) and not self._closed

    def try_start(self, path: str, headers: bytes, body: bytes) -> _Connection | None:
        """Send a request now, on an idle pooled connection, without waiting: the connection
        it is on (its answer is read with `read_ready` each time its socket is readable, or
        awaited with `resume`), or None when no idle connection is at hand (nothing was sent;
        `post` waits for one). What the socket did not take at once is kept for `resume`.
        Raises like `post` when the send failed after bytes may have left."""
        taken = self._take_idle()
        if taken is None:
            return None
        conn = taken[0]
        self._set_deadline(conn, trio.current_time() + self.timeout_s)
        data = self._head(path, headers, len(body)) + body
        sock = conn.sock
        assert sock is not None
        try:
            n = sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            n = 0  # (TLS: the same bytes must be offered again, which `resume` does)
        except OSError as exc:
            self._release(conn, False)
            if conn.tls:  # a failed TLS write may still have put records on the wire
                raise self._send_error(_SendFailed(exc, sent=True)) from exc
            return None  # nothing of it reached the server: `post` takes another connection
        if n < len(data):
            conn.unsent = memoryview(data)[n:]
        return conn

    def read_ready(self, conn: _Connection) -> HttpResponse | None:
        """The socket of a request from `try_start` is readable: read what it holds. The
        response once complete (the connection goes back to the pool), else None. Raises
        like `post` (the connection is closed then), or NeedsTask when only awaiting can go
        on (a TLS write): `resume` then."""
        sock = conn.sock
        tls = conn.tls
        try:
            while True:
                try:
                    if sock is None:
                        raise trio.ClosedResourceError("connection closed")
                    try:
                        n = sock.recv_into(conn.buffer)
                    except (BlockingIOError, ssl.SSLWantReadError):
                        return None
                    except ssl.SSLWantWriteError:
                        raise NeedsTask() from None
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        n = 0
                except (OSError, trio.ClosedResourceError) as exc:
                    raise self._read_failure(conn, exc) from exc
                done = self._absorb(conn, n)
                if done is not None:
                    response, keep = done
                    self._release(conn, keep and not self._closed)
                    return response
                # Decrypted bytes may wait in the SSL object with nothing on the socket.
                if not (tls and sock.pending()):  # type: ignore[attr-defined]
                    return None
        except UpstreamError:
            self._release(conn, False)
            raise

    def abandon(self, conn: _Connection) -> UpstreamError:
        """A request from `try_start` whose connection was closed under it (`on_lost`):
        release it; the error its commands get ("may have run")."""
        self._release(conn, False)
        return self._read_failure(conn, trio.ClosedResourceError("connection closed"))

    async def resume(self, conn: _Connection) -> HttpResponse:
        """Finish a request from `try_start` by awaiting: send what is left, read the rest."""
        ok = False
        try:
            unsent, conn.unsent = conn.unsent, None
            if unsent:
                try:
                    await self._send(conn, (unsent,))  # type: ignore[arg-type]
                except _SendFailed as exc:
                    if conn.timed_out:
                        raise self._timeout() from None
                    # part of it was sent (or offered to TLS) by `try_start`
                    raise self._send_error(_SendFailed(exc.cause, sent=True)) from exc.cause
            response, ok = await self._receive(conn)
            ok = ok and not self._closed
            return response
        finally:
            self._release(conn, ok)

    # -- deadlines ---------------------------------------------------------------------------

    def _watch_until(self, deadline: float) -> None:
        """Make the watchdog look at `deadline` (it sleeps until the earliest one it knows)."""
        if self._watch is None:
            self._watch = trio.CancelScope(deadline=deadline)
            trio.lowlevel.spawn_system_task(self._watchdog, name="upstream request deadlines")
        else:
            self._watch.deadline = deadline

    async def _watchdog(self) -> None:
        """Close the connection of every request past its deadline; its task then fails with
        UpstreamTimeout. Sleeps until the earliest deadline in flight: all requests get the
        same timeout, so one that starts later never needs an earlier wake-up."""
        while not self._closed:
            assert self._watch is not None
            with self._watch:
                await trio.sleep_forever()
            if self._closed:
                return
            now = trio.current_time()
            earliest = math.inf
            for conn in list(self._busy):
                if conn.deadline <= now:
                    conn.timed_out = True
                    _lose(conn)
                elif conn.deadline < earliest:
                    earliest = conn.deadline
            self._watch = trio.CancelScope(deadline=earliest)

    # -- pool --------------------------------------------------------------------------------

    def _take_idle(self) -> tuple[_Connection, bool] | None:
        """A live pooled connection, if one is idle (no waiting, no cancel scope)."""
        if self._closed:
            return None
        now = time.monotonic()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.origin is not self.origin or conn.stale(now):
                conn.close()
                continue
            self._busy.add(conn)
            return conn, True
        return None

    async def _acquire(self, deadline: float) -> tuple[_Connection, bool]:
        """A pooled connection (reused=True) or a new one, waiting while all are busy; by
        `deadline`, else UpstreamUnavailable (nothing was sent)."""
        with trio.move_on_at(deadline):
            while True:
                if self._closed:
                    raise UpstreamUnavailable("the upstream client is closed")
                taken = self._take_idle()
                if taken is not None:
                    return taken
                if len(self._busy) + self._opening < self.max_connections:
                    break
                await self._room.park()
            self._opening += 1
            try:
                conn = await self._open()
            finally:
                self._opening -= 1
            self._busy.add(conn)
            return conn, False
        raise UpstreamUnavailable(
            f"PoolTimeout: no upstream connection to {self.origin.netloc} ready within "
            f"{self.timeout_s:g}s ({self.max_connections} at most)"
        )

    def _release(self, conn: _Connection, reusable: bool) -> None:
        self._busy.discard(conn)
        conn.deadline = math.inf
        conn.on_lost = None
        conn.unsent = None
        if reusable and conn.origin is self.origin and conn.sock is not None:
            conn.used_at = time.monotonic()
            conn.reader.reset()
            self._idle.append(conn)
        else:
            conn.close()
        self._room.unpark()

    async def _open(self) -> _Connection:
        origin = self.origin
        sock: socket.socket | None = None
        try:
            with trio.fail_after(self.connect_timeout_s):
                tcp = await trio.open_tcp_stream(origin.host, origin.port)
                sock = _take_socket(tcp)
                if origin.tls:
                    if self._ssl is None:
                        self._ssl = tls_context(self._ca_file)
                    # wrap_socket takes the file descriptor over from `sock`
                    sock = self._ssl.wrap_socket(
                        sock, server_hostname=origin.host, do_handshake_on_connect=False
                    )
                    await _handshake(sock)  # type: ignore[arg-type]
        except BaseException as exc:
            if sock is not None:
                trio.lowlevel.notify_closing(sock)
                sock.close()
            if isinstance(exc, trio.TooSlowError):
                raise UpstreamUnavailable(
                    f"ConnectTimeout: no connection to {origin.netloc} within "
                    f"{self.connect_timeout_s:g}s"
                ) from None
            if isinstance(exc, ssl.SSLError | ssl.CertificateError):
                raise UpstreamUnavailable(_tls_failure(origin, exc)) from exc
            if isinstance(exc, OSError):
                raise UpstreamUnavailable(
                    f"ConnectError: {origin.netloc}: {_os_text(exc)}"
                ) from exc
            raise
        self.connections_opened += 1
        return _Connection(origin, sock)

    # -- I/O ---------------------------------------------------------------------------------

    async def _send(self, conn: _Connection, parts: tuple[bytes, ...]) -> None:
        sock = conn.sock
        if sock is None:
            raise _SendFailed(OSError(errno.EBADF, "connection closed"), sent=False)
        # Under TLS a failed write may still have put records on the wire: "maybe sent".
        sent_any = conn.tls
        for part in parts:
            view = memoryview(part)
            while view:
                try:
                    n = sock.send(view)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    await trio.lowlevel.wait_writable(sock)
                    continue
                except ssl.SSLWantReadError:  # a TLS renegotiation or key update
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except (OSError, trio.ClosedResourceError) as exc:
                    raise _SendFailed(exc, sent=sent_any) from exc
                sent_any = True
                view = view[n:]

    async def _receive(self, conn: _Connection) -> tuple[HttpResponse, bool]:
        """The whole response, and whether the connection may carry another request."""
        sock = conn.sock
        tls = conn.tls
        buffer = conn.buffer
        while True:
            try:
                if sock is None:
                    raise trio.ClosedResourceError("connection closed")
                # Decrypted bytes may wait inside the SSL object with nothing on the socket.
                if not (tls and sock.pending()):  # type: ignore[attr-defined]
                    await trio.lowlevel.wait_readable(sock)
                try:
                    n = sock.recv_into(buffer)
                except (BlockingIOError, ssl.SSLWantReadError):
                    continue
                except ssl.SSLWantWriteError:
                    await trio.lowlevel.wait_writable(sock)
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    n = 0  # closed, with or without close_notify (as browsers accept)
            except (OSError, trio.ClosedResourceError) as exc:
                raise self._read_failure(conn, exc) from exc
            done = self._absorb(conn, n)
            if done is not None:
                return done

    def _read_failure(self, conn: _Connection, exc: BaseException) -> UpstreamError:
        if conn.timed_out:
            return self._timeout()
        return UpstreamError(
            f"ReadError: connection lost while waiting for the answer: {_os_text(exc)}"
        )

    @staticmethod
    def _absorb(conn: _Connection, n: int) -> tuple[HttpResponse, bool] | None:
        """`n` bytes were read into the buffer (0: EOF): the response and whether the
        connection may carry another request, once it is complete; else None."""
        reader = conn.reader
        parser = conn.parser
        if not n:
            if reader.headers_done and _until_close(reader.headers):
                return _response(reader, parser), False
            raise UpstreamError(
                "RemoteProtocolError: the upstream closed the connection "
                + ("in the middle of the answer" if reader.headers else "without answering")
            )
        try:
            parser.feed_data(conn.buffer[:n])
        except httptools.HttpParserError as exc:
            if reader.complete:  # bytes after the answer: keep it, drop the connection
                return _response(reader, parser), False
            raise UpstreamProtocolError(f"unreadable HTTP answer: {exc}") from exc
        except httptools.HttpParserUpgrade as exc:
            raise UpstreamProtocolError("the upstream tried to upgrade the protocol") from exc
        if not reader.complete:
            return None
        # (httptools' should_keep_alive() is reset once the message is complete)
        keep = parser.get_http_version() == "1.1" and not _closes(reader.headers)
        return _response(reader, parser), keep

    def _send_error(self, exc: _SendFailed) -> UpstreamError:
        text = f"WriteError: {_os_text(exc.cause)}"
        if not exc.sent:
            return UpstreamUnavailable(text)
        return UpstreamError(text + " (part of the request was sent)")


def _response(reader: _Reader, parser: httptools.HttpResponseParser) -> HttpResponse:
    chunks = reader.chunks
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    status = parser.get_status_code()
    reason = reader.reason.decode("latin-1", "replace")
    return HttpResponse(status, reason, reader.headers, body)


def _until_close(headers: dict[bytes, bytes]) -> bool:
    """A body delimited by the end of the connection (no length, not chunked)."""
    return b"content-length" not in headers and b"transfer-encoding" not in headers


def _closes(headers: dict[bytes, bytes]) -> bool:
    value = headers.get(b"connection")
    return value is not None and b"close" in value.lower()


#: The plain socket's recv (an SSLSocket's own recv refuses flags such as MSG_PEEK).
_RAW_RECV = socket.socket.recv


def _take_socket(stream: trio.SocketStream) -> socket.socket:
    """The non-blocking stdlib socket under a freshly connected trio SocketStream."""
    sock = getattr(stream.socket, "_sock", None)
    if not isinstance(sock, socket.socket):  # trio's internals moved: a clear failure
        raise OSError(errno.ENOTSOCK, "trio's SocketStream no longer exposes its socket")
    return sock


async def _handshake(sock: ssl.SSLSocket) -> None:
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await trio.lowlevel.wait_readable(sock)
        except ssl.SSLWantWriteError:
            await trio.lowlevel.wait_writable(sock)


def _os_text(exc: BaseException) -> str:
    """`ECONNREFUSED (Connection refused)`: the errno of `exc` or of what caused it."""
    cause: BaseException | None = exc
    while cause is not None and not (isinstance(cause, OSError) and cause.errno is not None):
        # trio's happy eyeballs raises OSError from a group of attempts: take the last one
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[-1]
            continue
        cause = cause.__cause__ or cause.__context__
    cause = cause or exc
    if isinstance(cause, OSError) and cause.errno is not None:
        name = errno.errorcode.get(cause.errno, str(cause.errno))
        return f"{name} ({cause.strerror.split(': ')[-1]})" if cause.strerror else name
    return str(cause or exc) or type(cause or exc).__name__


#: What to do about a refused certificate, by OpenSSL verify code (default: the CA is unknown).
_TLS_ADVICE = {
    9: "it is not valid yet: check this machine's clock",
    10: "renew the server's certificate (or check this machine's clock)",
    62: "it names other hosts: put a host name it was issued for in --url / url",
    64: "it does not name this IP address: put a host name it was issued for in --url / url",
}


def _tls_failure(origin: Origin, cause: BaseException) -> str:
    if isinstance(cause, ssl.SSLCertVerificationError):
        what = cause.verify_message or cause.reason or str(cause)
        advice = _TLS_ADVICE.get(
            cause.verify_code, "a private CA is given with --ca-file / ca_file"
        )
        return (
            f"TLS certificate of {origin.netloc} not accepted (certificate verify failed: "
            f"{what}); {advice}"
        )
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake with {origin.netloc} failed: {cause.reason or cause}"
    return f"TLS handshake with {origin.netloc} failed: {_os_text(cause)}"
