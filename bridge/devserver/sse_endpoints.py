"""Server-Sent-Events endpoints of the devserver: /subscribe, /psubscribe, /monitor.

Owns one stream's life: a dedicated Redis connection (never pooled) that runs SUBSCRIBE,
PSUBSCRIBE or MONITOR; the confirmation is read *before* the HTTP response starts, so a refusal
(e.g. NOPERM for the read-only token) is an ordinary 400 JSON error. Then every Redis push
becomes one SSE event, with `: heartbeat` comments while idle. The connection is closed when
the HTTP client goes away (the HTTP layer cancels the producer), when Redis drops it, or on
shutdown.

Event text (one `data:` field per line of text, each event ended by a blank line):
  subscribe,<channel>,<count>       message,<channel>,<payload>
  psubscribe,<pattern>,<count>      pmessage,<pattern>,<channel>,<payload>
  "OK" (monitor's first event)       <MONITOR line as Redis sends it>
Extension: a request with `Resp-Bridge-Sse-Encoding: base64` gets the channel, pattern and
payload fields base64-encoded (binary-exact; the response echoes the header). Upstash ignores
the header, so a client must check the response. Without it, choices where Upstash is silent:
bytes are decoded as UTF-8 with U+FFFD for invalid
sequences; a payload containing CR, LF or CRLF is split into several `data:` lines, which a
conforming SSE reader joins back with LF (so CR and CRLF arrive as LF).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable

import trio

from bridge.core.resp import ErrorReply, Status, encode_command, parse_frame
from bridge.devserver.http_server import StreamingResponse
from bridge.devserver.redis_conn import RedisConnection, RedisPool, RedisUnavailable
from bridge.devserver.request_counters import Stats

#: Default seconds between `: heartbeat` comments on an idle stream (SRH's proposal uses 15).
DEFAULT_HEARTBEAT_S = 15.0
#: Default most SSE streams open at once; each holds a Redis connection.
DEFAULT_MAX_SSE_STREAMS = 512

HEARTBEAT = b": heartbeat\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class SseRefused(Exception):
    """Redis refused the subscription (or monitor); `str(exc)` is its error text."""


def sse_event(text: str) -> bytes:
    """One SSE event whose data is `text` (multi-line text becomes several `data:` lines)."""
    if "\n" in text or "\r" in text:
        return "".join(f"data: {line}\n" for line in _LINE_BREAK.split(text)).encode() + b"\n"
    return b"data: " + text.encode() + b"\n\n"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


#: Request header (a devserver extension, ignored by Upstash) asking for binary-exact events:
#: channel, pattern and payload fields base64-encoded. The response echoes it when applied.
BASE64_HEADER = b"resp-bridge-sse-encoding"


def _b64(data: object) -> str:
    return base64.b64encode(data).decode() if isinstance(data, bytes) else str(data)


def _event_for(value: object, monitor: bool, b64: bool = False) -> bytes | None:
    """The SSE event for one Redis push, or None for pushes that are not forwarded."""
    if monitor:
        if isinstance(value, Status):
            return sse_event(_text(value))
        return None
    if not isinstance(value, list) or not value or not isinstance(value[0], bytes):
        return None
    kind = value[0].lower()
    if b64:
        if kind in (b"subscribe", b"psubscribe") and len(value) == 3:
            return sse_event(f"{_text(kind)},{_b64(value[1])},{value[2]}")
        if kind == b"message" and len(value) == 3:
            return sse_event(f"message,{_b64(value[1])},{_b64(value[2])}")
        if kind == b"pmessage" and len(value) == 4:
            return sse_event(f"pmessage,{_b64(value[1])},{_b64(value[2])},{_b64(value[3])}")
        return None
    if kind in (b"message", b"subscribe", b"psubscribe") and len(value) == 3:
        return sse_event(f"{_text(kind)},{_text(value[1])},{_str(value[2])}")
    if kind == b"pmessage" and len(value) == 4:
        return sse_event(f"pmessage,{_text(value[1])},{_text(value[2])},{_text(value[3])}")
    return None


def _str(value: object) -> str:
    return _text(value) if isinstance(value, bytes) else str(value)


class SseStream:
    """A confirmed subscription (or monitor) waiting to be streamed to the HTTP client."""

    def __init__(
        self,
        conn: RedisConnection,
        first_events: list[bytes],
        *,
        monitor: bool,
        heartbeat_s: float,
        stats: Stats,
        b64: bool = False,
    ) -> None:
        self._b64 = b64
        self._conn = conn
        self._first_events = first_events
        self._monitor = monitor
        self._heartbeat_s = heartbeat_s
        self._stats = stats
        self._closed = False
        stats.sse_streams_open += 1
        stats.sse_streams_total += 1

    def response(self) -> StreamingResponse:
        headers = list(SSE_HEADERS)
        if self._b64:
            headers.append((BASE64_HEADER, b"base64"))
        return StreamingResponse(200, self.produce, headers=headers, cleanup=self.aclose)

    async def produce(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        try:
            for event in self._first_events:
                await send(event)
            while True:
                frame: bytes | None = None
                # Only the read is bounded: cancelling a half-done write would corrupt the stream.
                with trio.move_on_after(self._heartbeat_s):
                    frame = await self._conn.read_frame()
                if frame is None:
                    await send(HEARTBEAT)
                    continue
                event = _event_for(parse_frame(frame), self._monitor, self._b64)
                if event is not None:
                    await send(event)
        except RedisUnavailable:
            return  # Redis dropped the stream: end the HTTP response too
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stats.sse_streams_open -= 1
        await self._conn.aclose()


async def open_stream(
    pool: RedisPool,
    kind: str,
    targets: list[bytes],
    *,
    heartbeat_s: float,
    stats: Stats,
    b64: bool = False,
) -> SseStream:
    """Run SUBSCRIBE/PSUBSCRIBE <targets> or MONITOR on a new connection and confirm it.

    Raises SseRefused with Redis' error text, or RedisUnavailable.
    """
    monitor = kind == "monitor"
    command: list[bytes | str] = [kind.upper(), *targets]
    replies = 1 if monitor else len(targets)
    conn = await pool.open_dedicated()
    try:
        frames = await conn.execute(encode_command(command), replies)
        first_events: list[bytes] = []
        for frame in frames:
            value = parse_frame(frame)
            if isinstance(value, ErrorReply):
                raise SseRefused(value.text)
            if monitor:
                first_events.append(sse_event('"OK"'))
            else:
                event = _event_for(value, monitor=False, b64=b64)
                if event is not None:
                    first_events.append(event)
    except BaseException:
        await conn.aclose()
        raise
    return SseStream(
        conn, first_events, monitor=monitor, heartbeat_s=heartbeat_s, stats=stats, b64=b64
    )
