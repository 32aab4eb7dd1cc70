"""HTTP client of the Upstash-compatible REST API (httpx): the only module that speaks HTTP.

Owns the auth header, encoding headers, the read-your-writes sync token, timeouts and the
mapping of every transport failure to the upstream exception tree (`bridge.errors`), with
`executed=False` only when the request certainly never reached the server. Never retries:
that decision belongs to the dispatcher, which knows whether the commands were writes.
The token is held here and never formatted into a message.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx

from bridge import __version__
from bridge.core import rest_codec
from bridge.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
)
from bridge.redaction import redact_url
from bridge.upstream.http_errors import map_exceptions, token_refused

log = logging.getLogger("bridge.upstream")

_USER_AGENT = f"resp-bridge/{__version__}"
#: Paths whose parsed URL is kept (/pipeline, /multi-exec; path-form requests vary).
_URL_CACHE_SIZE = 8

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
        http2: bool = True,
        max_connections: int = 16,
        resp2: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.display_url = redact_url(self.url)
        self._token = token
        self.resp2 = resp2
        self.sync_token = ""
        self.sync_token_updated: float | None = None
        # The transport, not an AsyncClient: the bridge needs none of the client's layers
        # (cookies, redirects, auth flows, event hooks), which cost ~30% of a request's CPU.
        self._transport = transport or httpx.AsyncHTTPTransport(
            http2=http2 and self.url.startswith("https"),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # TLS verification is always on; a private CA can be given, never switched off.
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )
        self._timeout = httpx.Timeout(
            timeout_s, connect=connect_timeout_s, pool=timeout_s
        ).as_dict()
        self._urls: dict[str, httpx.URL] = {}

    @property
    def token(self) -> str:
        """The current REST token: for the SSE client's header and for scrubbing replies,
        never for a message."""
        return self._token

    def set_token(self, token: str) -> None:
        """RELOAD: later requests use the new token; requests in flight keep the old one."""
        self._token = token

    def switch(self, url: str, token: str) -> None:
        """DB USE: later requests go to another database (`url`, `token`); requests in flight
        finish on the old one. Its sync token belonged to the old database: dropped."""
        self.url = url.rstrip("/")
        self.display_url = redact_url(self.url)
        self._token = token
        self._urls.clear()
        self.sync_token = ""
        self.sync_token_updated = None

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _headers(self, *, resp2: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
        }
        if resp2:
            headers["Upstash-Response-Format"] = "resp2"
        else:
            headers["Upstash-Encoding"] = "base64"
        if self.sync_token:
            headers["Upstash-Sync-Token"] = self.sync_token
        return headers

    async def _post(self, path: str, body: bytes, *, resp2: bool) -> httpx.Response:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.url + path)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        request = httpx.Request(
            "POST",
            url,
            headers=self._headers(resp2=resp2),
            content=body,
            extensions={"timeout": self._timeout},
        )
        with map_exceptions():
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        token = response.headers.get("upstash-sync-token")
        if token:
            self.sync_token = token
            self.sync_token_updated = time.monotonic()
        if response.status_code == 401:
            raise token_refused()
        return response

    # -- requests ----------------------------------------------------------------------------

    async def pipeline(self, commands: Sequence[Sequence[str]]) -> list[bytes]:
        """Run commands with POST /pipeline; one RESP2 frame per command, in order."""
        body = rest_codec.pipeline_body(commands)
        response = await self._post("/pipeline", body, resp2=self.resp2)
        n = len(commands)
        refused = self._refused(response)
        if refused is not None:
            return [refused] * n
        self._check_status(response)
        with _map_codec_errors():
            if self.resp2 and _is_octet_stream(response):
                return rest_codec.resp2_pipeline_frames(response.content, n)
            return rest_codec.json_pipeline_frames(response.content, n)

    async def single(self, args: Sequence[bytes]) -> bytes:
        """Run one command in the path form (for binary arguments); its RESP2 frame."""
        path, body = rest_codec.path_form(args)
        response = await self._post(path, body, resp2=self.resp2)
        if response.status_code == 400:
            text = rest_codec.error_text_of(response.content)
            if text is not None:
                return rest_codec.item_to_frame({"error": text})
        refused = self._refused(response)
        if refused is not None:
            return refused
        self._check_status(response)
        with _map_codec_errors():
            if self.resp2 and _is_octet_stream(response):
                return rest_codec.resp2_pipeline_frames(response.content, 1)[0]
            return rest_codec.json_pipeline_frames(b"[" + response.content + b"]", 1)[0]

    async def multi_exec(self, commands: Sequence[Sequence[str]]) -> bytes:
        """Run commands atomically with POST /multi-exec; the EXEC reply frame."""
        body = rest_codec.pipeline_body(commands)
        response = await self._post("/multi-exec", body, resp2=False)
        if response.status_code in _REFUSED_STATUSES:
            text = rest_codec.error_text_of(response.content)
            if text is not None:
                return rest_codec.item_to_frame({"error": text})
        self._check_status(response)
        with _map_codec_errors():
            return rest_codec.multi_exec_frame(response.content, len(commands))

    def _refused(self, response: httpx.Response) -> bytes | None:
        if response.status_code in _REFUSED_STATUSES:
            text = rest_codec.error_text_of(response.content)
            if text is not None:
                return rest_codec.item_to_frame({"error": text})
        return None

    @staticmethod
    def _check_status(response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        text = rest_codec.error_text_of(response.content) or response.reason_phrase
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
        if response.status_code != 200:
            return ProbeResult(True, False, None, f"HTTP {response.status_code} to resp2 probe")
        version = None
        if _is_octet_stream(response):
            try:
                frames = rest_codec.resp2_pipeline_frames(response.content, 2)
            except rest_codec.CodecError as exc:
                return ProbeResult(True, False, None, f"resp2 probe body unusable: {exc}")
            resp2 = frames[0] == b"+PONG\r\n"
            version = _redis_version(frames[1])
            return ProbeResult(True, resp2, version, "resp2 supported")
        return ProbeResult(True, False, version, "resp2 not supported: using JSON + base64")


def _is_octet_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/octet-stream")


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
        raise UpstreamProtocolError(f"invalid response: {exc}") from exc
