"""Client of the Upstash-compatible REST API's data path: /pipeline, /multi-exec, path form.

Owns the auth header, encoding headers, the read-your-writes sync token, status handling and
the decoding of answers into RESP2 frames. The HTTP itself is the lean keep-alive client of
`bridge.upstream.http_client` (httpx only when a test injects a transport), which maps every
transport failure to the upstream exception tree (`bridge.errors`) with `executed=False` only
when the request certainly never reached the server. Never retries: that decision belongs to
the dispatcher, which knows whether the commands were writes. The token is held here, put
only into the prepared header block, and never formatted into a message.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from bridge import __version__
from bridge.core import rest_codec
from bridge.errors import (
    ConfigError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
)
from bridge.redaction import redact_url
from bridge.upstream.http_client import HttpClient, HttpResponse, header_block
from bridge.upstream.http_errors import token_refused
from bridge.upstream.transport_adapter import HttpxPoster

if TYPE_CHECKING:
    from bridge.upstream.http_client import _Connection

log = logging.getLogger("bridge.upstream")

_USER_AGENT = f"resp-bridge/{__version__}"

#: Statuses for which the REST API refused the whole request before running anything
#: (bad body, size/quota limits, rate limiting); each command gets the error text.
_REFUSED_STATUSES = frozenset({400, 403, 413, 414, 429})


@dataclass(frozen=True, slots=True)
class ProbeResult:
    reachable: bool
    resp2: bool
    server_version: str | None
    detail: str


class RestClient:
    """Sends /pipeline, /multi-exec and path-form requests; returns RESP2 frames."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        http2: bool = False,
        max_connections: int = 16,
        resp2: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_file: str | None = None,
    ) -> None:
        """`http2` is accepted and ignored: HTTP/1.1 keep-alive measured faster (README)."""
        self.url = url.rstrip("/")
        self.display_url = redact_url(self.url)
        self.resp2 = resp2
        self.sync_token = ""
        self.sync_token_updated: float | None = None
        self._sync_line = b""
        self._http: HttpClient | HttpxPoster
        if transport is not None:  # tests: an httpx mock transport
            self._http = HttpxPoster(self.url, transport, timeout_s, connect_timeout_s)
        else:
            self._http = HttpClient(
                self.url,
                timeout_s=timeout_s,
                connect_timeout_s=connect_timeout_s,
                max_connections=max_connections,
                ca_file=ca_file,
                user_agent=_USER_AGENT,
            )
        self._set_token(token)

    @property
    def token(self) -> str:
        """The current REST token: for the SSE client's header and for scrubbing replies,
        never for a message."""
        return self._token

    def _set_token(self, token: str) -> None:
        try:
            fixed = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
            #: The prepared header blocks: RESP2 answers, and JSON with base64 strings.
            self._blocks = {
                True: header_block([*fixed, ("Upstash-Response-Format", "resp2")]),
                False: header_block([*fixed, ("Upstash-Encoding", "base64")]),
            }
        except ValueError:
            raise ConfigError("token: contains a line break or NUL character") from None
        self._token = token

    def set_token(self, token: str) -> None:
        """RELOAD: later requests use the new token; requests in flight keep the old one."""
        self._set_token(token)

    def switch(self, url: str, token: str) -> None:
        """DB USE: later requests go to another database (`url`, `token`); requests in flight
        finish on the old one. Its sync token belonged to the old database: dropped."""
        self._set_token(token)
        self.url = url.rstrip("/")
        self.display_url = redact_url(self.url)
        self._http.switch(self.url)
        self.sync_token = ""
        self.sync_token_updated = None
        self._sync_line = b""

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: bytes, *, resp2: bool) -> HttpResponse:
        response = await self._http.post(path, self._blocks[resp2] + self._sync_line, body)
        return self._answered(response)

    def _answered(self, response: HttpResponse) -> HttpResponse:
        """Every answer: its sync token is kept for later requests; 401 is the token's fault."""
        token = response.headers.get(b"upstash-sync-token")
        if token:
            if token != self.sync_token.encode("latin-1"):
                self.sync_token = token.decode("latin-1")
                self._sync_line = b"Upstash-Sync-Token: " + token + b"\r\n"
            self.sync_token_updated = time.monotonic()
        if response.status == 401:
            raise token_refused()
        return response

    # -- requests ----------------------------------------------------------------------------

    async def pipeline(self, commands: Sequence[Sequence[str]]) -> list[bytes]:
        """Run commands with POST /pipeline; one RESP2 frame per command, in order."""
        body = rest_codec.pipeline_body(commands)
        response = await self._post("/pipeline", body, resp2=self.resp2)
        return self._pipeline_frames(response, len(commands))

    # -- /pipeline without a task (the dispatcher's read-poller path) ------------------------

    def can_start(self) -> bool:
        """`start_pipeline` will most likely send at once (an idle keep-alive connection)."""
        http = self._http
        return type(http) is HttpClient and http.has_idle()

    def start_pipeline(self, commands: Sequence[Sequence[str]]) -> PipelineCall | None:
        """Send a /pipeline now without waiting (see `HttpClient.try_start`); None when that
        needs waiting (nothing was sent: `pipeline` then). Raises like `pipeline`."""
        http = self._http
        assert type(http) is HttpClient
        body = rest_codec.pipeline_body(commands)
        conn = http.try_start("/pipeline", self._blocks[self.resp2] + self._sync_line, body)
        if conn is None:
            return None
        return PipelineCall(self, http, conn, len(commands))

    def _pipeline_frames(self, response: HttpResponse, n: int) -> list[bytes]:
        refused = self._refused(response)
        if refused is not None:
            return [refused] * n
        self._check_status(response)
        try:  # (not `_map_codec_errors`: a generator context manager per request)
            if self.resp2 and _is_octet_stream(response):
                return rest_codec.resp2_pipeline_frames(response.body, n)
            return rest_codec.json_pipeline_frames(response.body, n)
        except rest_codec.CodecError as exc:
            raise _invalid_response(exc) from exc

    async def single(self, args: Sequence[bytes]) -> bytes:
        """Run one command in the path form (for binary arguments); its RESP2 frame."""
        path, body = rest_codec.path_form(args)
        response = await self._post(path, body, resp2=self.resp2)
        if response.status == 400:
            text = rest_codec.error_text_of(response.body)
            if text is not None:
                return rest_codec.item_to_frame({"error": text})
        refused = self._refused(response)
        if refused is not None:
            return refused
        self._check_status(response)
        with _map_codec_errors():
            if self.resp2 and _is_octet_stream(response):
                return rest_codec.resp2_pipeline_frames(response.body, 1)[0]
            return rest_codec.json_pipeline_frames(b"[" + response.body + b"]", 1)[0]

    async def multi_exec(self, commands: Sequence[Sequence[str]]) -> bytes:
        """Run commands atomically with POST /multi-exec; the EXEC reply frame."""
        body = rest_codec.pipeline_body(commands)
        response = await self._post("/multi-exec", body, resp2=False)
        if response.status in _REFUSED_STATUSES:
            text = rest_codec.error_text_of(response.body)
            if text is not None:
                return rest_codec.item_to_frame({"error": text})
        self._check_status(response)
        with _map_codec_errors():
            return rest_codec.multi_exec_frame(response.body, len(commands))

    def _refused(self, response: HttpResponse) -> bytes | None:
        if response.status in _REFUSED_STATUSES:
            text = rest_codec.error_text_of(response.body)
            if text is not None:
                return rest_codec.item_to_frame({"error": text})
        return None

    @staticmethod
    def _check_status(response: HttpResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        text = rest_codec.error_text_of(response.body) or response.reason
        # A 4xx means the server looked at the request and refused it: nothing ran.
        raise UpstreamHTTPError(status, text[:200], executed=status >= 500)

    async def probe(self) -> ProbeResult:
        """Check reachability and the token, detect resp2 support and the server version."""
        try:
            response = await self._post(
                "/pipeline", rest_codec.pipeline_body([["PING"], ["INFO", "server"]]), resp2=True
            )
        except UpstreamAuthError:
            raise
        except UpstreamError as exc:
            return ProbeResult(False, False, None, str(exc))
        if response.status != 200:
            # A 5xx is the upstream (or a proxy before it) failing: not reached, and it says
            # nothing about resp2. A 4xx is an answer: this API does not take the probe.
            reached = response.status < 500
            return ProbeResult(reached, False, None, f"HTTP {response.status} to resp2 probe")
        version = None
        if _is_octet_stream(response):
            try:
                frames = rest_codec.resp2_pipeline_frames(response.body, 2)
            except rest_codec.CodecError as exc:
                return ProbeResult(True, False, None, f"resp2 probe body unusable: {exc}")
            resp2 = frames[0] == b"+PONG\r\n"
            version = _redis_version(frames[1])
            return ProbeResult(True, resp2, version, "resp2 supported")
        return ProbeResult(True, False, version, "resp2 not supported: using JSON + base64")


class PipelineCall:
    """A /pipeline in flight from `RestClient.start_pipeline`: its socket, read by the caller
    when readable (`read`), or finished by awaiting (`resume`)."""

    __slots__ = ("conn", "fd", "http", "n", "rest")

    def __init__(self, rest: RestClient, http: HttpClient, conn: _Connection, n: int) -> None:
        self.rest = rest
        self.http = http
        self.conn = conn
        self.n = n
        assert conn.sock is not None
        self.fd = conn.sock.fileno()

    @property
    def sent(self) -> bool:
        """The whole request was written (else only `resume` can go on)."""
        return self.conn.unsent is None

    def on_lost(self, callback: Callable[[], None] | None) -> None:
        """`callback` runs if the connection is closed under the request (its deadline passed,
        or the client closed): the socket will not become readable any more."""
        self.conn.on_lost = callback

    def read(self) -> list[bytes] | None:
        """The socket is readable: the frames once the answer is complete, else None.
        Raises UpstreamError, or NeedsTask (then `resume`)."""
        response = self.http.read_ready(self.conn)
        return None if response is None else self._frames(response)

    def abandon(self) -> UpstreamError:
        """The connection was closed under the request: the error for its commands."""
        return self.http.abandon(self.conn)

    async def resume(self) -> list[bytes]:
        return self._frames(await self.http.resume(self.conn))

    def _frames(self, response: HttpResponse) -> list[bytes]:
        return self.rest._pipeline_frames(self.rest._answered(response), self.n)


def _is_octet_stream(response: HttpResponse) -> bool:
    return response.headers.get(b"content-type", b"").startswith(b"application/octet-stream")


def _redis_version(frame: bytes) -> str | None:
    if not frame.startswith(b"$"):
        return None
    for line in frame.split(b"\r\n"):
        if line.startswith(b"redis_version:"):
            return line.split(b":", 1)[1].decode("ascii", "replace").strip()
    return None


@contextlib.contextmanager
def _map_codec_errors() -> Iterator[None]:
    try:
        yield
    except rest_codec.CodecError as exc:
        raise _invalid_response(exc) from exc


def _invalid_response(exc: rest_codec.CodecError) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"invalid response: {exc}")
