"""An httpx transport behind `HttpClient.post`'s interface, for tests that inject one.

The data path runs on `bridge.upstream.http_client`; unit tests of the layers above it (the
dispatcher, the REST client's status handling) script the upstream with an
`httpx.MockTransport` instead of a server. This adapter turns the prepared header block back
into headers, runs the request on the transport, and maps its failures with the one httpx map
(`http_errors.map_exceptions`).
"""

from __future__ import annotations

import httpx

from bridge.upstream.http_client import HttpResponse
from bridge.upstream.http_errors import map_exceptions


class HttpxPoster:
    """`post(path, header_block, body)` on an httpx transport."""

    def __init__(
        self,
        url: str,
        transport: httpx.AsyncBaseTransport,
        timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.url = url.rstrip("/")
        self._transport = transport
        self._timeout = httpx.Timeout(
            timeout_s, connect=connect_timeout_s, pool=timeout_s
        ).as_dict()

    def switch(self, url: str) -> None:
        self.url = url.rstrip("/")

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def post(self, path: str, headers: bytes, body: bytes) -> HttpResponse:
        pairs = [tuple(line.split(b": ", 1)) for line in headers.split(b"\r\n") if line]
        request = httpx.Request(
            "POST",
            self.url + path,
            headers=pairs,  # type: ignore[arg-type]
            content=body,
            extensions={"timeout": self._timeout},
        )
        with map_exceptions():
            response = await self._transport.handle_async_request(request)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        found: dict[bytes, bytes] = {}
        for name, value in response.headers.raw:
            key = name.lower()
            found[key] = value if key not in found else found[key] + b", " + value
        return HttpResponse(response.status_code, response.reason_phrase, found, content)
