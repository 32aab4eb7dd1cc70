"""A small HTTP/1.1 server on trio + httptools: keep-alive, bounded requests, streamed responses.

Owns the HTTP framing only: read one request (head + body, under size limits and deadlines),
hand it to an async handler, write the handler's response, repeat while the connection stays
keep-alive. It knows nothing about Redis or Upstash. Requests are parsed by llhttp (Node's C
parser, through httptools): the devserver stands in for the upstream in benchmarks on the
same machine, so its per-request CPU must stay small next to the bridge's. Responses are
written as prepared bytes. A handler returns either a `Response` (body in memory) or a
`StreamingResponse` (Server-Sent Events, chunked): a stream runs until its producer returns,
the client disconnects (detected by a concurrent read that sees EOF), or a write makes no
progress for STREAM_SEND_TIMEOUT_S. Listeners may be TLS ones (`trio.SSLListener`).

On a plain TCP connection the socket is read and written directly (non-blocking
`os.read`/`os.write` on its descriptor): it is read once trio reports it readable, and written
at once (trio waits only when the socket is full), so a request costs one task switch, the
wait for it. The time limits of the waits (idle
keep-alive, request read, response write) are not trio deadlines moved per request: a wait
notes when it must end, and one reaper task per server cancels connections whose wait has
overrun (checked every REAP_INTERVAL_S, so a limit may be exceeded by up to that much).

One client can never take the server down: each connection task catches `Exception` and closes
only its own socket. A client going away (EOF, reset, broken pipe, TLS handshake refused, stuck
reader) is a debug/info line; a traceback is logged only for a bug.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
import trio

from bridge.devserver.tls_stream import TlsSocketListener, TlsSocketStream

log = logging.getLogger("bridge.devserver.http_server")

#: Largest request head (request line + headers): path-form commands carry their arguments
#: percent-encoded in the URL (up to 3 bytes per byte), so this is generous; larger -> 431.
MAX_HEADER_BYTES = 1024 * 1024
#: Bytes asked from the socket per read.
RECV_CHUNK_BYTES = 64 * 1024
#: An idle keep-alive connection is closed after this long without a new request.
KEEPALIVE_IDLE_TIMEOUT_S = 75.0
#: A request that has started must be fully received within this time.
REQUEST_READ_TIMEOUT_S = 30.0
#: A non-streamed response must be fully written within this time.
RESPONSE_SEND_TIMEOUT_S = 30.0
#: A streamed (SSE) write that makes no progress this long means a stuck client: drop it.
STREAM_SEND_TIMEOUT_S = 30.0
#: A TLS client must finish its handshake within this time.
TLS_HANDSHAKE_TIMEOUT_S = 10.0
#: After refusing an oversize body, keep reading (and discarding) it this long / this much,
#: so the client sees the 413 instead of a reset (closing with unread data sends RST).
LINGER_TIMEOUT_S = 2.0
LINGER_MAX_BYTES = 256 * 1024 * 1024
#: Concurrent client connections; more wait in the accept backlog.
MAX_CONNECTIONS = 2048
#: How often the reaper looks for connections whose wait has overrun its time limit.
REAP_INTERVAL_S = 0.5
#: A connection whose requests arrive (and are answered) without waiting yields to the other
#: tasks after this many requests in a row.
MAX_REQUESTS_WITHOUT_YIELD = 16

#: The `server` header of every response unless the HttpServer is given another name.
DEFAULT_SERVER_NAME = b"resp-bridge-devserver"
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_END_CHUNKED = b"0\r\n\r\n"


@dataclass(slots=True)
class Request:
    """One received request. Header names are lower-case; repeated headers are comma-joined."""

    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    close: bool = False


#: A stream producer gets `send(chunk)` and returns when the stream should end.
StreamProducer = Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]


@dataclass(slots=True)
class StreamingResponse:
    status: int
    producer: StreamProducer
    content_type: bytes = b"text/event-stream"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: Called once the stream is over, even if the producer never ran (client already gone).
    cleanup: Callable[[], Awaitable[None]] | None = None


Handler = Callable[[Request], Awaitable[Response | StreamingResponse]]


class RequestTooLarge(Exception):
    """The request body exceeds the configured limit."""

    def __init__(self, limit: int, actual: int | None) -> None:
        super().__init__(limit, actual)
        self.limit = limit
        self.actual = actual


class _BadRequest(Exception):
    """The client broke HTTP; answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client closed the connection or stopped reading: nothing more to say to it."""


#: Exceptions that mean "the client went away", not a bug of ours.
_GONE_TYPES = (_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def client_went_away(exc: BaseException) -> bool:
    """True when `exc` (or every leaf of an exception group) says the peer went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(client_went_away(leaf) for leaf in exc.exceptions)
    return isinstance(exc, (*_GONE_TYPES, trio.TooSlowError))


def _cause_text(exc: BaseException) -> str:
    """The innermost cause of a client-gone error, e.g. `ConnectionResetError: ...`."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    text = str(seen).strip()
    return f"{type(seen).__name__}: {text}" if text else type(seen).__name__


def _peer(stream: trio.abc.Stream) -> str:
    if isinstance(stream, TlsSocketStream):
        return stream.peer
    inner: Any = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        host, port = inner.socket.getpeername()[:2]
    except (AttributeError, OSError, ValueError, TypeError):
        return "?"
    return f"{host}:{port}"


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The TLS context of an HTTPS listener (HTTP/1.1 only, announced by ALPN).

    Raises ValueError naming the file and what is wrong with it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise ValueError(f"TLS: {exc.filename or cert_file}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"TLS: cannot load the certificate {cert_file!r} with the key {key_file!r} "
            f"(PEM files, the key matching the certificate): {exc}"
        ) from None
    return context


def tls_listeners(
    listeners: Sequence[trio.SocketListener], context: ssl.SSLContext | None
) -> list[trio.abc.Listener[Any]]:
    """`listeners` as HTTPS ones when `context` is given (the handshake runs per connection,
    bounded by TLS_HANDSHAKE_TIMEOUT_S). `trio.SSLListener`s are served too."""
    if context is None:
        return list(listeners)
    return [TlsSocketListener(listener, context) for listener in listeners]


class HttpServer:
    """Serves `handler` on trio listeners. `on_too_large(exc)` builds the 413 response."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int,
        on_too_large: Callable[[RequestTooLarge], Response],
        on_bad_request: Callable[[int, str], Response],
        on_connection: Callable[[int], None] | None = None,
        server_name: bytes = DEFAULT_SERVER_NAME,
    ) -> None:
        self._handler = handler
        self.server_name = server_name
        self._max_body_bytes = max_body_bytes
        self._on_too_large = on_too_large
        self._on_bad_request = on_bad_request
        self._on_connection = on_connection
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        #: Open connections, for the reaper.
        self._connections: set[_Connection] = set()

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reap)
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started()

    async def _reap(self) -> None:
        """Cancel the connections whose current wait has passed its time limit (they close
        quietly, as on a trio deadline)."""
        while True:
            await trio.sleep(REAP_INTERVAL_S)
            now = trio.current_time()
            for conn in self._connections:
                if conn.wait_deadline < now:
                    conn.cancel()

    async def _accept_loop(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                await self._limiter.acquire_on_behalf_of(listener)
                try:
                    stream = await listener.accept()
                except BaseException:
                    self._limiter.release_on_behalf_of(listener)
                    raise
                token = object()
                self._limiter.release_on_behalf_of(listener)
                await self._limiter.acquire_on_behalf_of(token)
                nursery.start_soon(self._serve_connection, stream, token)

    async def _serve_connection(self, stream: trio.abc.Stream, token: object) -> None:
        if self._on_connection is not None:
            self._on_connection(+1)
        try:
            async with stream:
                if not await _handshake(stream):
                    return
                conn = _Connection(self, stream)
                self._connections.add(conn)
                try:
                    await conn.run()
                finally:
                    self._connections.discard(conn)
        except Exception as exc:
            if client_went_away(exc):
                log.debug("client %s went away (%s)", _peer(stream), _cause_text(exc))
            else:
                log.exception("unexpected error on an HTTP connection; closing it")
        finally:
            self._limiter.release_on_behalf_of(token)
            if self._on_connection is not None:
                self._on_connection(-1)


async def _handshake(stream: trio.abc.Stream) -> bool:
    """Finish the TLS handshake (if TLS); a refused or stalled one is the client's business
    (an info line). False: the connection is to be closed."""
    if not isinstance(stream, (TlsSocketStream, trio.SSLStream)):
        return True
    with trio.move_on_after(TLS_HANDSHAKE_TIMEOUT_S) as scope:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError) and cause.reason:
                reason = cause.reason.lower().replace("_", " ")
                if "alert" in reason or "unexpected eof" in reason:
                    reason += " (does the client trust this server's certificate?)"
            else:
                reason = _cause_text(exc)
            log.info("TLS handshake with client %s failed: %s", _peer(stream), reason)
            return False
    if scope.cancelled_caught:
        log.info("TLS handshake with client %s timed out", _peer(stream))
        return False
    return True


class _Connection:
    """One client connection, and the httptools parser's callback object.

    The parser is fed whatever the socket gives; its callbacks assemble requests into
    `_ready` (pipelined requests queue there in order). A single cancel scope covers the
    connection; a wait (idle, request read, response write) sets `wait_deadline` and the
    server's reaper cancels the scope once it has passed. The handler runs without a limit
    (`wait_deadline` is infinite meanwhile): Redis calls carry their own timeouts."""

    __slots__ = (
        "_body",
        "_body_size",
        "_error",
        "_expect_continue",
        "_fd",
        "_head_bytes",
        "_headers",
        "_headers_done",
        "_in_message",
        "_limit",
        "_parser",
        "_ready",
        "_request_deadline",
        "_scope",
        "_server",
        "_stream",
        "_too_large",
        "_unyielded",
        "_url",
        "wait_deadline",
    )

    def __init__(self, server: HttpServer, stream: trio.abc.Stream) -> None:
        self._server = server
        self._stream = stream
        #: The socket's descriptor on a plain TCP connection (driven directly), else -1.
        self._fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        self._limit = server._max_body_bytes
        self._scope = trio.CancelScope()
        #: When the current wait must be over (trio time; inf while none is limited).
        self.wait_deadline = math.inf
        #: When the request being received must be complete (None: not set yet).
        self._request_deadline: float | None = None
        #: Requests in a row that came without waiting for the socket.
        self._unyielded = 0
        self._parser = httptools.HttpRequestParser(self)
        #: Complete requests, in arrival order: (request, keep-alive, HTTP/1.1).
        self._ready: deque[tuple[Request, bool, bool]] = deque()
        self._error: _BadRequest | None = None
        self._too_large: RequestTooLarge | None = None
        self._reset_message()
        self._in_message = False

    def _reset_message(self) -> None:
        self._url: list[bytes] = []
        self._headers: dict[bytes, bytes] = {}
        self._headers_done = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_bytes = 0
        self._expect_continue = False

    # -- httptools callbacks (synchronous, inside feed_data) ---------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        if self._head_bytes <= MAX_HEADER_BYTES:
            self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_bytes > MAX_HEADER_BYTES:
            return
        key = name.lower()
        headers = self._headers
        headers[key] = headers[key] + b", " + value if key in headers else value

    def on_headers_complete(self) -> None:
        self._headers_done = True
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._limit:
            self._too_large = RequestTooLarge(self._limit, int(length))
        elif (
            self._headers.get(b"expect", b"").lower() == b"100-continue"
            and self._parser.get_http_version() == "1.1"
        ):
            self._expect_continue = True

    def on_body(self, body: bytes) -> None:
        if self._too_large is not None:
            return
        self._body_size += len(body)
        if self._body_size > self._limit:
            self._too_large = RequestTooLarge(self._limit, None)
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._request_deadline = None
        if self._too_large is not None:
            return
        parser = self._parser
        http11 = parser.get_http_version() == "1.1"
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(parser.get_method(), b"".join(self._url), self._headers, body)
        self._ready.append((request, http11 and parser.should_keep_alive(), http11))

    # -- reading ----------------------------------------------------------------------------

    def _feed(self, data: bytes | bytearray) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades are not served: answer the request as plain HTTP, then close.
            if self._ready:
                request, _, http11 = self._ready.pop()
                self._ready.append((request, False, http11))
            self._error = _BadRequest(400, "ERR bad HTTP request: protocol upgrades are refused")
        except httptools.HttpParserError as exc:
            self._error = _BadRequest(400, f"ERR bad HTTP request: {exc}")
        if self._in_message and not self._headers_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._error = _BadRequest(
                    431,
                    f"ERR bad HTTP request: request line and headers exceed "
                    f"{MAX_HEADER_BYTES} bytes",
                )

    async def _read_request(self) -> tuple[Request, bool, bool] | None:
        """The next request; None when the client closed its connection between requests.
        Raises _BadRequest or RequestTooLarge (then the connection is answered and closed)."""
        ready = self._ready
        if ready:
            return ready.popleft()
        if self._in_message:  # part of it came with the previous one: a fresh time limit
            self._request_deadline = trio.current_time() + REQUEST_READ_TIMEOUT_S
        while True:
            if ready:
                return ready.popleft()
            if self._error is not None:
                raise self._error
            if self._too_large is not None:
                raise self._too_large
            # Between requests a keep-alive connection may idle; a started request has a
            # deadline (from its first bytes). The wait comes first: a client that waits for
            # each response has sent nothing yet, and epoll answers at once if it has.
            if self._in_message:
                if self._request_deadline is None:
                    self._request_deadline = trio.current_time() + REQUEST_READ_TIMEOUT_S
                self._bound(self._request_deadline)
            else:
                self._bound(trio.current_time() + KEEPALIVE_IDLE_TIMEOUT_S)
            self._unyielded = 0
            data = await self._receive()
            if not data:
                if self._in_message:  # half-closed mid-request: it may still read the 400
                    raise _BadRequest(400, "ERR bad HTTP request: incomplete request")
                return None  # the client closed its keep-alive connection
            self._feed(data)
            if self._expect_continue and self._in_message and self._too_large is None:
                self._expect_continue = False
                await self._send_all(_CONTINUE)

    async def _receive(self) -> bytes | bytearray:
        """Wait for the next bytes (b"" at EOF)."""
        fd = self._fd
        if fd < 0:
            return await self._stream.receive_some(RECV_CHUNK_BYTES)
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, RECV_CHUNK_BYTES)
            except BlockingIOError:
                continue

    async def _send_all(self, data: bytes) -> None:
        """Write all of `data` within RESPONSE_SEND_TIMEOUT_S; a plain socket that takes it
        at once costs no wait and no deadline."""
        fd = self._fd
        if fd < 0:
            self._bound(trio.current_time() + RESPONSE_SEND_TIMEOUT_S)
            await self._stream.send_all(data)
            return
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        self._bound(trio.current_time() + RESPONSE_SEND_TIMEOUT_S)
        view = memoryview(data)[sent:]
        while view:
            await trio.lowlevel.wait_writable(fd)
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue

    def _bound(self, deadline: float) -> None:
        self.wait_deadline = deadline

    def _unbound(self) -> None:
        self.wait_deadline = math.inf

    def cancel(self) -> None:
        """The reaper's verdict: a wait overran its limit. The connection closes quietly."""
        self._scope.cancel()

    # -- the request loop -------------------------------------------------------------------

    async def run(self) -> None:
        with self._scope:
            await self._run()
        # An overrun wait (idle keep-alive, slow request or stuck reader) closes quietly.

    async def _run(self) -> None:
        server = self._server
        while True:
            try:
                parsed = await self._read_request()
            except RequestTooLarge as exc:
                await self._send_simple(server._on_too_large(exc), b"", close=True)
                await self._linger()
                return
            except _BadRequest as exc:
                await self._send_simple(
                    server._on_bad_request(exc.status, exc.message), b"", close=True
                )
                await self._linger()
                return
            if parsed is None:
                return
            request, keep_alive, http11 = parsed
            self._unbound()
            response = await server._handler(request)
            if isinstance(response, StreamingResponse):
                await self._send_stream(response, chunked=http11)
                return
            close = response.close or not keep_alive
            await self._send_simple(response, request.method, close=close)
            if close:
                return
            self._unyielded += 1
            if self._unyielded >= MAX_REQUESTS_WITHOUT_YIELD:
                # Nothing of this connection waited lately (requests already there, answers
                # taken at once): let the other tasks run.
                self._unyielded = 0
                await trio.lowlevel.checkpoint()

    async def _linger(self) -> None:
        """Discard what the client still sends for a while before closing, so that it reads
        our error response instead of a connection reset."""
        stream = self._stream
        with trio.move_on_after(LINGER_TIMEOUT_S):
            send_eof = getattr(stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
            drained = 0
            while drained < LINGER_MAX_BYTES:
                data = await stream.receive_some(RECV_CHUNK_BYTES)
                if not data:
                    break
                drained += len(data)

    # -- writing ----------------------------------------------------------------------------

    async def _send_simple(self, response: Response, method: bytes, *, close: bool) -> None:
        body = response.body
        status = response.status
        headers = response.headers
        out = b"HTTP/1.1 %d %b\r\nserver: %b\r\ncontent-type: %b\r\n%bcontent-length: %d\r\n%b" % (
            status,
            _REASONS.get(status, b""),
            self._server.server_name,
            response.content_type,
            b"".join([b"%b: %b\r\n" % header for header in headers]) if headers else b"",
            len(body),
            b"connection: close\r\n\r\n" if close else b"\r\n",
        )
        if body and method != b"HEAD":
            out += body
        await self._send_all(out)

    async def _send_stream(self, response: StreamingResponse, *, chunked: bool) -> None:
        head = _head(self._server.server_name, response)
        if chunked:
            head += b"transfer-encoding: chunked\r\n"
        head += b"connection: close\r\n\r\n"  # a stream ends by closing the connection
        stream = self._stream

        async def send(chunk: bytes) -> None:
            if not chunk:
                return  # an empty chunk would end a chunked body
            data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
            with trio.fail_after(STREAM_SEND_TIMEOUT_S):
                await stream.send_all(data)

        client_gone = False

        async def watch_disconnect(cancel: trio.CancelScope) -> None:
            # The request is complete; any further read returns EOF once the client is gone.
            nonlocal client_gone
            try:
                while await stream.receive_some(RECV_CHUNK_BYTES):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            client_gone = True
            cancel.cancel()

        try:
            with trio.fail_after(STREAM_SEND_TIMEOUT_S):
                await stream.send_all(head)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_disconnect, nursery.cancel_scope)
                await response.producer(send)
                nursery.cancel_scope.cancel()
            if not client_gone and chunked:
                with trio.fail_after(STREAM_SEND_TIMEOUT_S):
                    await stream.send_all(_END_CHUNKED)
        finally:
            if response.cleanup is not None:
                with trio.CancelScope(shield=True):
                    await response.cleanup()


def _head(server_name: bytes, response: Response | StreamingResponse) -> bytes:
    """Status line and headers, without the blank line that ends them."""
    status = response.status
    parts = [
        b"HTTP/1.1 %d %b\r\nserver: %b\r\ncontent-type: %b\r\n"
        % (status, _REASONS.get(status, b""), server_name, response.content_type)
    ]
    for name, value in response.headers:
        parts.append(b"%b: %b\r\n" % (name, value))
    return b"".join(parts)
