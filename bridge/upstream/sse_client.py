"""Server-Sent-Events client of the REST API's `/subscribe`, `/psubscribe` and `/monitor`.

Owns the streaming HTTP requests (httpx over HTTP/1.1, on a client of its own so that
long-lived streams never take the slots of the command path) and the SSE wire format:
`SseParser` is sans-I/O (bytes in, event texts out; lines end with CRLF, LF or CR; `data:`
fields joined with LF; a blank line ends an event; comments and other fields ignored; every
buffer bounded). Failures are mapped to the upstream exception tree of `bridge.errors` at this
boundary: a non-2xx answer raises `UpstreamHTTPError` (`UpstreamAuthError` for 401) carrying
the JSON error text.

It knows nothing of subscribers: `bridge.server.pubsub` decides what a stream means. The
token is read from a callable at each request (so a reload applies to the next stream) and
is never formatted into a message or a log line.
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote_from_bytes

import httpx

from bridge import __version__
from bridge.core import rest_codec
from bridge.errors import UpstreamHTTPError, UpstreamProtocolError
from bridge.upstream.http_errors import HTTPX_STREAM_ERRORS, map_exceptions, token_refused
from bridge.upstream.rest import RestClient

#: Largest SSE event accepted (all of its `data:` lines together). Matches the per-client
#: pub/sub output limit of the bridge (32 MB, Redis' hard pubsub limit): a bigger message would
#: disconnect every subscriber anyway, so the stream is broken (and reconnected) instead.
MAX_EVENT_BYTES = 32 * 1024 * 1024
#: Most bytes of an error body read from a refused stream (error texts are short JSON).
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Seconds without a single byte (event or `: heartbeat` comment) after which a stream is
#: presumed dead (a silently dropped NAT mapping never sends a FIN) and reconnected. Well above
#: the devserver's 15 s heartbeat; Upstash documents none, so a quiet channel on a server that
#: never sends heartbeats is re-opened this often (one SUBSCRIBE per stream per period).
IDLE_TIMEOUT_S = 120.0
#: Most streams open at once on this client (each is an HTTP/1.1 connection of its own).
DEFAULT_MAX_STREAMS = 512

#: The stream kinds and their paths.
PATHS = {"channel": "subscribe", "pattern": "psubscribe", "monitor": "monitor"}


def credentials(client: RestClient) -> tuple[str, Callable[[], str]]:
    """(base URL, token getter) of the REST client, so streams follow a token reload; the
    token is only ever put in a header."""
    return client.url, lambda: client.token


def stream_path(kind: str, name: bytes) -> str:
    """`/subscribe/<name>` with every byte but unreserved ones percent-encoded (`/`, `,`,
    spaces, non-ASCII); names made only of dots are encoded too, or URL normalisation would
    treat them as `.`/`..` segments."""
    if kind == "monitor":
        return "/monitor"
    encoded = quote_from_bytes(name, safe="")
    if encoded and not encoded.strip("."):
        encoded = "%2E" * len(encoded)
    return f"/{PATHS[kind]}/{encoded}"


class SseParser:
    """Sans-I/O SSE reader: `feed(bytes)` returns the data of every event it completed.

    Text is decoded as UTF-8 with U+FFFD for invalid sequences (the format is UTF-8 by
    definition). Raises `UpstreamProtocolError` when one event grows past `max_event_bytes`.
    """

    __slots__ = ("_buffer", "_data", "_has_data", "_max", "_size", "_skip_lf", "_started")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buffer = bytearray()  # the current, unterminated line
        self._data: list[str] = []  # data lines of the current event
        self._has_data = False
        self._size = 0  # bytes held for the current event (its data lines + current line)
        self._skip_lf = False  # the last chunk ended with CR: an LF first in the next is its pair
        self._started = False  # a leading BOM is dropped once

    def feed(self, data: bytes) -> list[str]:
        events: list[str] = []
        pos = 0
        if self._skip_lf and data[:1] == b"\n":
            pos = 1
        self._skip_lf = False
        end = len(data)
        # Next CR and LF at or after `pos` (-1: none left); refreshed only once passed, so a
        # chunk of many short lines is scanned in linear time.
        cr = data.find(b"\r", pos)
        lf = data.find(b"\n", pos)
        while pos < end:
            if 0 <= cr < pos:
                cr = data.find(b"\r", pos)
            if 0 <= lf < pos:
                lf = data.find(b"\n", pos)
            if cr < 0 and lf < 0:
                self._buffer += data[pos:]
                self._check(len(self._buffer))
                break
            brk = lf if cr < 0 else cr if lf < 0 else min(cr, lf)
            self._buffer += data[pos:brk]
            self._check(len(self._buffer))
            line = bytes(self._buffer)
            self._buffer.clear()
            pos = brk + 1
            if data[brk] == 13:  # CR: swallow the LF of a CRLF, even across chunks
                if pos < end:
                    if data[pos] == 10:
                        pos += 1
                else:
                    self._skip_lf = True
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _check(self, pending: int) -> None:
        if self._size + pending > self._max:
            raise UpstreamProtocolError(
                f"SSE event larger than {self._max} bytes; the stream was dropped"
            )

    def _line(self, line: bytes) -> str | None:
        if not self._started:
            self._started = True
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
        if not line:
            if not self._has_data:
                return None
            event = "\n".join(self._data)
            self._data = []
            self._has_data = False
            self._size = 0
            return event
        if line[:1] == b":":
            return None  # comment (heartbeat)
        name, colon, value = line.partition(b":")
        if name != b"data":
            return None  # event/id/retry and unknown fields carry nothing the bridge uses
        if colon and value[:1] == b" ":
            value = value[1:]
        self._data.append(value.decode("utf-8", "replace"))
        self._has_data = True
        self._size += len(value) + 1
        return None


#: Devserver extension: ask for base64-encoded channel/pattern/payload fields.
BASE64_HEADER = "resp-bridge-sse-encoding"


class SseEvents:
    """The events of one open stream, read with `await events.next()` (None: it ended)."""

    def __init__(self, response: httpx.Response, parser: SseParser) -> None:
        #: The server applied the binary-exact extension (fields base64-encoded).
        self.base64 = response.headers.get(BASE64_HEADER, "").lower() == "base64"
        self._chunks = response.aiter_bytes()
        self._parser = parser
        self._ready: deque[str] = deque()

    async def next(self) -> str | None:
        """The next event's data; None when the server ended the stream cleanly."""
        while not self._ready:
            with map_exceptions(HTTPX_STREAM_ERRORS):
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    return None
            self._ready.extend(self._parser.feed(chunk))
        return self._ready.popleft()


class SseClient:
    """Opens SSE streams on the REST API; one httpx client shared by all streams."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str],
        *,
        connect_timeout_s: float,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_event_bytes: int = MAX_EVENT_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_file: str | None = None,
    ) -> None:
        """`ca_file`: the CA bundle the upstream's certificate is verified against (the
        bridge's --ca-file, as for the command path); None: the system's. Never unverified."""
        self.url = url.rstrip("/")
        self._token = token
        self.max_streams = max_streams
        self._max_event_bytes = max_event_bytes
        self._client = httpx.AsyncClient(
            base_url=self.url,
            # HTTP/1.1 on purpose: httpcore queues an HTTP/2 request that exceeds the server's
            # max_concurrent_streams on a semaphore without timeout instead of opening another
            # connection, so the 101st long-lived stream would hang; one connection per stream
            # also keeps one stream's stall or reset from touching the others.
            http2=False,
            # read: the longest silence tolerated between two chunks of an open stream.
            timeout=httpx.Timeout(
                idle_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s
            ),
            limits=httpx.Limits(max_connections=max_streams, max_keepalive_connections=0),
            transport=transport,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
            headers={"User-Agent": f"resp-bridge/{__version__}"},
        )

    @classmethod
    def for_rest(
        cls,
        client: RestClient,
        *,
        connect_timeout_s: float,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        max_streams: int = DEFAULT_MAX_STREAMS,
        ca_file: str | None = None,
    ) -> SseClient:
        """An SSE client for the same upstream (URL and current token) as `client`, verifying
        its certificate against the same `ca_file`."""
        url, token = credentials(client)
        return cls(
            url,
            token,
            connect_timeout_s=connect_timeout_s,
            idle_timeout_s=idle_timeout_s,
            max_streams=max_streams,
            ca_file=ca_file,
        )

    def set_url(self, url: str) -> None:
        """DB USE: streams opened from now on go to `url` (open ones are not touched)."""
        self.url = url.rstrip("/")
        self._client.base_url = self.url

    async def aclose(self) -> None:
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def open(self, kind: str, name: bytes = b"") -> AsyncIterator[SseEvents]:
        """Open the stream of `kind` ("channel", "pattern" or "monitor") for `name`.

        The response has started (2xx) when this yields; the caller reads the events and
        leaves the block to close the stream. Raises the `bridge.errors` upstream tree.
        """
        headers = {
            "Accept": "text/event-stream",
            "Authorization": f"Bearer {self._token()}",
            "Cache-Control": "no-cache",
            # A compressing server or proxy would hold events back to fill its blocks.
            "Accept-Encoding": "identity",
            # Binary-exact events where the server offers it (the devserver does; Upstash
            # ignores the header and sends text, which SseEvents.base64 tells apart).
            BASE64_HEADER: "base64",
        }
        path = stream_path(kind, name)
        with map_exceptions(HTTPX_STREAM_ERRORS):
            async with self._client.stream("POST", path, headers=headers) as response:
                if not 200 <= response.status_code < 300:
                    raise await _refusal(response)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise UpstreamProtocolError(
                        f"/{PATHS[kind]} answered {content_type or 'no content type'}, "
                        "not text/event-stream"
                    )
                yield SseEvents(response, SseParser(self._max_event_bytes))


async def _refusal(response: httpx.Response) -> UpstreamHTTPError:
    """The exception for a non-2xx answer, with the JSON error text when there is one."""
    status = response.status_code
    if status == 401:
        return token_refused()
    body = bytearray()
    try:
        body += response.content  # already read (a transport that is not streaming)
    except httpx.ResponseNotRead:
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_ERROR_BODY_BYTES:
                    break
    text = rest_codec.error_text_of(bytes(body[:MAX_ERROR_BODY_BYTES])) or response.reason_phrase
    return UpstreamHTTPError(status, text[:200], executed=False)
