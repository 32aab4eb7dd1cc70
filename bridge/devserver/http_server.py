"""A small HTTP/1.1 server on trio + h11: keep-alive, bounded requests, streamed responses.

Owns the HTTP framing only: read one request (head + body, under a size limit and deadlines),
hand it to an async handler, write the handler's response, repeat while the connection stays
keep-alive. It knows nothing about Redis or Upstash. A handler returns either a `Response`
(body in memory) or a `StreamingResponse` (Server-Sent Events): a stream runs until its
producer returns, the client disconnects (detected by a concurrent read that sees EOF), or a
write makes no progress for STREAM_SEND_TIMEOUT_S. One client can never take the server down:
each connection task catches `Exception` and closes only its own socket.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
import trio

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
#: After refusing an oversize body, keep reading (and discarding) it this long / this much,
#: so the client sees the 413 instead of a reset (closing with unread data sends RST).
LINGER_TIMEOUT_S = 2.0
LINGER_MAX_BYTES = 256 * 1024 * 1024
#: Concurrent client connections; more wait in the accept backlog.
MAX_CONNECTIONS = 2048

SERVER_HEADER = (b"server", b"resp-bridge-devserver")
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


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


class _ClientGone(Exception):
    """The client closed the connection or broke the protocol: nothing more to say to it."""


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
    ) -> None:
        self._handler = handler
        self._max_body_bytes = max_body_bytes
        self._on_too_large = on_too_large
        self._on_bad_request = on_bad_request
        self._on_connection = on_connection
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
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

    async def _serve_connection(self, stream: trio.SocketStream, token: object) -> None:
        if self._on_connection is not None:
            self._on_connection(+1)
        try:
            async with stream:
                await _Connection(self, stream).run()
        except (_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:
            log.exception("unexpected error on an HTTP connection; closing it")
        finally:
            self._limiter.release_on_behalf_of(token)
            if self._on_connection is not None:
                self._on_connection(-1)


class _Connection:
    """One client connection. A single cancel scope bounds it; its deadline is moved per phase
    (idle wait, request read, response write) instead of opening a scope per step, which
    keeps the per-request cost low. The handler itself runs without this deadline: Redis
    calls carry their own timeouts."""

    __slots__ = ("_conn", "_method", "_scope", "_server", "_stream")

    def __init__(self, server: HttpServer, stream: trio.SocketStream) -> None:
        self._server = server
        self._stream = stream
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._method = b""
        self._scope = trio.CancelScope()

    def _deadline_in(self, seconds: float) -> None:
        self._scope.deadline = trio.current_time() + seconds

    async def run(self) -> None:
        with self._scope:
            await self._run()
        # A passed deadline (idle keep-alive, slow request or stuck reader) closes quietly.

    async def _run(self) -> None:
        conn = self._conn
        while True:
            try:
                request = await self._read_request()
            except RequestTooLarge as exc:
                await self._send_simple(self._server._on_too_large(exc), force_close=True)
                await self._linger()
                return
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send_simple(
                        self._server._on_bad_request(
                            exc.error_status_hint, f"ERR bad HTTP request: {exc}"
                        ),
                        force_close=True,
                    )
                    await self._linger()
                return
            if request is None:
                return
            self._scope.deadline = math.inf
            response = await self._server._handler(request)
            if isinstance(response, StreamingResponse):
                await self._send_stream(response)
                return
            await self._send_simple(response, force_close=response.close)
            if conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _linger(self) -> None:
        """Discard what the client still sends for a while before closing, so that it reads
        our error response instead of a connection reset."""
        with trio.move_on_after(LINGER_TIMEOUT_S):
            await self._stream.send_eof()
            drained = 0
            while drained < LINGER_MAX_BYTES:
                data = await self._stream.receive_some(RECV_CHUNK_BYTES)
                if not data:
                    break
                drained += len(data)

    async def _receive_into_h11(self) -> None:
        data = await self._stream.receive_some(RECV_CHUNK_BYTES)
        self._conn.receive_data(data)  # b"" signals EOF to h11

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive_into_h11()
                continue
            return event

    async def _read_request(self) -> Request | None:
        conn = self._conn
        # Between requests a keep-alive connection may idle; a started request has a deadline.
        self._deadline_in(KEEPALIVE_IDLE_TIMEOUT_S)
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await self._stream.receive_some(RECV_CHUNK_BYTES)
            if not data:
                return None  # the client closed its keep-alive connection
            conn.receive_data(data)
            event = conn.next_event()
        self._deadline_in(REQUEST_READ_TIMEOUT_S)
        while event is h11.NEED_DATA:
            await self._receive_into_h11()
            event = conn.next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise _ClientGone()
        self._method = event.method
        body = await self._read_body(event)
        headers: dict[bytes, bytes] = {}
        for name, value in event.headers:
            headers[name] = headers[name] + b", " + value if name in headers else value
        return Request(event.method, event.target, headers, body)

    async def _read_body(self, event: h11.Request) -> bytes:
        limit = self._server._max_body_bytes
        length = _content_length(event.headers)
        if length is not None and length > limit:
            raise RequestTooLarge(limit, length)
        if self._conn.they_are_waiting_for_100_continue:
            await self._stream.send_all(
                self._conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            ev = await self._next_event()
            if isinstance(ev, h11.Data):
                size += len(ev.data)
                if size > limit:
                    raise RequestTooLarge(limit, None)
                chunks.append(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _ClientGone()

    @staticmethod
    def _head(content_type: bytes, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [SERVER_HEADER, (b"content-type", content_type), *extra]

    async def _send_simple(self, response: Response, *, force_close: bool = False) -> None:
        conn = self._conn
        headers = self._head(response.content_type, response.headers)
        headers.append((b"content-length", b"%d" % len(response.body)))
        if force_close:
            headers.append((b"connection", b"close"))
        out = (
            conn.send(
                h11.Response(
                    status_code=response.status,
                    headers=headers,
                    reason=_REASONS.get(response.status, b""),
                )
            )
            or b""
        )
        if response.body and self._method != b"HEAD":
            out += conn.send(h11.Data(data=response.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        self._deadline_in(RESPONSE_SEND_TIMEOUT_S)
        await self._stream.send_all(out)

    async def _send_stream(self, response: StreamingResponse) -> None:
        conn = self._conn
        headers = self._head(response.content_type, response.headers)
        headers.append((b"connection", b"close"))  # a stream ends by closing the connection
        stream = self._stream

        async def send(chunk: bytes) -> None:
            with trio.fail_after(STREAM_SEND_TIMEOUT_S):
                await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")

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
                await stream.send_all(
                    conn.send(
                        h11.Response(
                            status_code=response.status,
                            headers=headers,
                            reason=_REASONS.get(response.status, b""),
                        )
                    )
                    or b""
                )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_disconnect, nursery.cancel_scope)
                await response.producer(send)
                nursery.cancel_scope.cancel()
            if not client_gone:
                with trio.fail_after(STREAM_SEND_TIMEOUT_S):
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except trio.TooSlowError:
            raise _ClientGone() from None
        finally:
            if response.cleanup is not None:
                with trio.CancelScope(shield=True):
                    await response.cleanup()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
