"""A fake REST upstream for SSE streams, at the transport seam (`httpx.MockTransport`).

Each SSE request gets a `FakeSse` body that the test feeds, ends or breaks. Used by the SSE
client's tests here and by the pub/sub hub's (tests/server/test_pubsub_hub.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote_to_bytes

import httpx
import trio

from bridge.upstream.sse_client import SseClient

URL = "http://upstream.test/base"


class FakeSse(httpx.AsyncByteStream):
    """The body of one SSE response, fed by the test."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._send, self._receive = trio.open_memory_channel[bytes | Exception | None](1000)
        self.closed = trio.Event()

    def push(self, data: bytes) -> None:
        self._send.send_nowait(data)

    def event(self, text: str) -> None:
        self.push("".join(f"data: {line}\n" for line in text.split("\n")).encode() + b"\n")

    def end(self) -> None:
        self._send.send_nowait(None)

    def fail(self, exc: Exception | None = None) -> None:
        self._send.send_nowait(exc or httpx.ReadError("connection reset"))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._receive.receive()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    async def aclose(self) -> None:
        self.closed.set()


class FakeUpstream:
    """MockTransport handler: every request opens a FakeSse that confirms itself (unless
    `confirm` is False); `refuse[path] = (status, json)` answers with an error instead."""

    def __init__(self, *, confirm: bool = True) -> None:
        self.confirm = confirm
        self.requests: list[httpx.Request] = []
        self.streams: list[FakeSse] = []
        self.refuse: dict[str, tuple[int, object]] = {}

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode()
        if path in self.refuse:
            status, body = self.refuse[path]
            return httpx.Response(status, json=body)
        stream = FakeSse(path)
        self.streams.append(stream)
        if self.confirm:
            stream.event(confirmation(path))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    def by_path(self, path: str) -> FakeSse:
        """The newest stream opened on `path`."""
        return [s for s in self.streams if s.path == path][-1]

    def open_paths(self) -> list[str]:
        return [s.path for s in self.streams if not s.closed.is_set()]


def confirmation(path: str) -> str:
    kind, _, name = path.removeprefix("/base/").partition("/")
    if kind == "monitor":
        return '"OK"'
    return f"{kind},{unquote_to_bytes(name).decode('utf-8', 'replace')},1"


def sse_client(upstream: FakeUpstream, token: Callable[[], str] = lambda: "tok") -> SseClient:
    return SseClient(
        URL,
        token,
        connect_timeout_s=1,
        transport=httpx.MockTransport(upstream.handler),
    )
