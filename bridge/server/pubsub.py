"""The pub/sub and MONITOR hub: shared upstream SSE streams fanned out to client connections.

Owns one upstream stream per channel, per pattern and one for MONITOR, shared by every client
of the bridge and reference-counted: opened by the first subscriber, cancelled when the last
one leaves (UNSUBSCRIBE, RESET, disconnect). Each stream is a task in the hub's nursery.
A subscriber's confirmation is released (`done("")`) only once the stream is live upstream
(its `subscribe,<ch>,1`, `psubscribe,...` or `"OK"` event seen), so a message published after
the client saw the confirmation is never missed. Delivery is a synchronous, non-blocking call
on each connection (`deliver_push`/`deliver_monitor`), which enforces its own output limit:
one slow subscriber can never hold up the others or the stream.

Decided behaviours (README):
- A broken stream (network error, upstream restart, idle timeout, the server ending it) is
  reopened with exponential backoff (0.1 s doubling to 5 s, with jitter). Its subscribers stay
  subscribed and see nothing of it; messages published while it was down are lost (Redis
  pub/sub is at-most-once too). Each event of one upstream stream is delivered once; a new
  stream only carries messages published after it was confirmed, so nothing is duplicated.
- A subscribe that cannot be opened (HTTP refusal such as NOPERM for a read-only token, upstream
  unreachable, too many streams) gets an error reply instead of the confirmation; subscribers
  that joined a stream while it was reconnecting get the error of the attempt that failed.
- Payloads: the SSE text is encoded back as UTF-8. The upstream decodes bytes as UTF-8 (the
  devserver replaces invalid sequences with U+FFFD) and a CR or CRLF in a payload arrives as LF,
  so only valid UTF-8 text without CR round-trips exactly; commas, LF and size are no problem.
- Channel of a `message`: the stream's own channel name (byte-exact, even if it has commas).
  Channel of a `pmessage`: the shortest text up to a comma that matches the pattern with Redis'
  glob rules; literal commas in the pattern are honoured (`a,b*`) but a wildcard never extends
  over a comma, since payload commas are far more common than channel commas.
- MONITOR relays the `/monitor` lines (the first `"OK"` event is the confirmation).
Upstream cost (DESIGN §4): one SUBSCRIBE per stream at open, at most one per backoff step while
the upstream fails (≥ 1 per 5 s per stream), one per idle timeout on a server without heartbeats.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
from collections.abc import Callable, Hashable
from typing import Protocol, cast

import trio

from bridge.config import BridgeConfig
from bridge.core.resp import encode_bulk
from bridge.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
    upstream_error_reply,
)
from bridge.server.cost import KEYSPACE, PUBSUB, CostMeter
from bridge.upstream.rest import RestClient
from bridge.upstream.sse_client import SseClient

log = logging.getLogger("bridge.pubsub")

#: First reconnect delay after a stream breaks; doubled per failed attempt.
BACKOFF_INITIAL_S = 0.1
#: Longest reconnect delay: bounds both the outage a subscriber sits through after the upstream
#: is back and the SUBSCRIBE requests a dead upstream costs (one per stream per 5 s).
BACKOFF_MAX_S = 5.0
#: A stream that stayed live this long starts its backoff afresh when it breaks.
STABLE_AFTER_S = 5.0
#: Longest wait for a new stream's confirmation: keeps a subscribe below clients' 5 s socket
#: timeout plus margin even if the upstream accepts the request and then says nothing.
CONFIRM_TIMEOUT_S = 10.0
#: Commas tried when locating the channel inside a pmessage (bounds the work per message).
MAX_PMESSAGE_SPLITS = 32
#: Seconds the hub waits for its HTTP client to close at shutdown.
CLOSE_TIMEOUT_S = 2.0

Done = Callable[[str], None]
Key = tuple[str, bytes]  # ("channel" | "pattern" | "monitor", name)

_MESSAGE = encode_bulk(b"message")
_PMESSAGE = encode_bulk(b"pmessage")
_CONFIRMATIONS = {"channel": "subscribe,", "pattern": "psubscribe,", "monitor": '"OK"'}


class Subscriber(Hashable, Protocol):
    """What the hub needs of a client connection (bridge.server.connection.Connection)."""

    def deliver_push(self, frame_parts: list[bytes]) -> None: ...

    def deliver_monitor(self, line: bytes) -> None: ...


class _Stream:
    """One upstream stream and the connections attached to it."""

    __slots__ = ("attempt", "closed", "key", "live", "matcher", "name_bulk", "prefix", "scope",
                 "subscribers", "waiting")  # fmt: skip

    def __init__(self, key: Key) -> None:
        kind, name = key
        self.key = key
        # Confirmed subscribers, in subscription order (dict as an ordered set).
        self.subscribers: dict[Subscriber, None] = {}
        # Connections waiting for the stream to become live, with their callbacks.
        self.waiting: dict[Subscriber, list[Done]] = {}
        self.live = False
        self.closed = False
        self.scope = trio.CancelScope()
        #: The current connection attempt: cancelled to reconnect at once (`switch_upstream`).
        self.attempt: trio.CancelScope | None = None
        self.name_bulk = encode_bulk(name)
        text = name.decode("utf-8", "replace")
        self.prefix = {"channel": f"message,{text},", "pattern": f"pmessage,{text},"}.get(kind, "")
        self.matcher = GlobPattern(name) if kind == "pattern" else None

    def describe(self) -> str:
        kind, name = self.key
        return "MONITOR" if kind == "monitor" else f"{kind} {name[:100]!r}"


class PubSubHub:
    """Implements `PubSubHubLike` (bridge.server.state) over shared SSE streams."""

    def __init__(
        self,
        client: SseClient,
        *,
        max_streams: int | None = None,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.max_streams = client.max_streams if max_streams is None else max_streams
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._confirm_timeout_s = confirm_timeout_s
        self._rng = rng or random.Random()
        self._streams: dict[Key, _Stream] = {}
        self._by_conn: dict[Subscriber, set[Key]] = {}
        self._nursery: trio.Nursery | None = None
        #: Upstream SSE responses open right now.
        self.streams_open = 0
        #: Times a broken stream was reopened.
        self.reconnects = 0
        #: message/pmessage events and MONITOR lines received from the upstream.
        self.messages = 0
        #: Pushes handed to client connections (a message times its subscribers).
        self.deliveries = 0
        #: Counts each stream opened (one SUBSCRIBE/PSUBSCRIBE/MONITOR billed upstream).
        self.cost = CostMeter()

    def set_cost(self, cost: CostMeter) -> None:
        """Count streams opened in the bridge's cost counters."""
        self.cost = cost

    @classmethod
    def for_rest(cls, upstream: RestClient, config: BridgeConfig) -> PubSubHub:
        """The hub of a running bridge: streams go to the same upstream (URL and current
        token) as `upstream`, on an HTTP client of their own."""
        return cls(
            SseClient.for_rest(
                upstream, connect_timeout_s=config.connect_timeout_s, ca_file=config.ca_file
            )
        )

    @property
    def streams(self) -> int:
        """Streams wanted (open, opening or waiting to reconnect)."""
        return len(self._streams)

    def subscriber_count(self, kind: str, name: bytes) -> int:
        stream = self._streams.get((kind, name))
        return 0 if stream is None else len(stream.subscribers) + len(stream.waiting)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the stream tasks until cancelled; closes the HTTP client on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                await self._client.aclose()

    # -- PubSubHubLike -----------------------------------------------------------------------

    def subscribe(self, conn: Subscriber, kind: str, name: bytes, done: Done) -> None:
        self._join((kind, name), conn, done)

    def monitor(self, conn: Subscriber, done: Done) -> None:
        self._join(("monitor", b""), conn, done)

    def unsubscribe(self, conn: Subscriber, kind: str, name: bytes) -> None:
        keys = self._by_conn.get(conn)
        if keys is not None:
            keys.discard((kind, name))
            if not keys:
                del self._by_conn[conn]
        self._leave((kind, name), conn)

    def drop(self, conn: Subscriber) -> None:
        for key in self._by_conn.pop(conn, ()):
            self._leave(key, conn)

    def has_monitors(self) -> bool:
        """Whether a confirmed MONITOR client exists (cheap: checked per local command)."""
        stream = self._streams.get(("monitor", b""))
        return stream is not None and bool(stream.subscribers)

    def feed_monitors(self, line: bytes) -> None:
        """A MONITOR line the bridge writes itself, for a command it answered without the
        upstream (PING, CLIENT ...), to every confirmed MONITOR client."""
        stream = self._streams.get(("monitor", b""))
        if stream is not None:
            for conn in list(stream.subscribers):
                conn.deliver_monitor(line)

    # -- membership --------------------------------------------------------------------------

    def _join(self, key: Key, conn: Subscriber, done: Done) -> None:
        if self._nursery is None:
            done("ERR pub/sub is not running (the bridge is starting or shutting down)")
            return
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= self.max_streams:
                done(
                    f"ERR resp-bridge: too many upstream pub/sub streams open "
                    f"({self.max_streams}); each channel, pattern and MONITOR needs one"
                )
                return
            stream = self._streams[key] = _Stream(key)
            self._nursery.start_soon(self._run_stream, stream)
        self._by_conn.setdefault(conn, set()).add(key)
        if conn in stream.subscribers:
            done("")  # already subscribed: confirm again, register once (as Redis does)
        elif stream.live:
            stream.subscribers[conn] = None
            done("")
        else:
            stream.waiting.setdefault(conn, []).append(done)

    def _leave(self, key: Key, conn: Subscriber) -> None:
        stream = self._streams.get(key)
        if stream is None:
            return
        stream.subscribers.pop(conn, None)
        # A subscribe still waiting is confirmed (its reply precedes the unsubscribe/RESET
        # reply in the client's stream, as in Redis); it never reaches the subscriber set.
        for done in stream.waiting.pop(conn, ()):
            done("")
        if not stream.subscribers and not stream.waiting:
            self._close(stream)

    def switch_upstream(self, url: str) -> int:
        """DB USE: open streams reconnect at once to `url` (with the REST client's current
        token); subscribers stay subscribed, messages published meanwhile are lost. Returns
        the number of streams reconnected."""
        self._client.set_url(url)
        moved = 0
        for stream in list(self._streams.values()):
            if stream.attempt is not None:
                stream.attempt.cancel()
                moved += 1
        return moved

    def _close(self, stream: _Stream) -> None:
        if not stream.closed:
            stream.closed = True
            if self._streams.get(stream.key) is stream:
                del self._streams[stream.key]
            stream.scope.cancel()

    def _resolve(self, stream: _Stream, error: str) -> None:
        """Answer every waiting subscribe: confirmed (error "") or refused."""
        waiting, stream.waiting = stream.waiting, {}
        for conn, callbacks in waiting.items():
            if not error:
                stream.subscribers[conn] = None
            else:
                keys = self._by_conn.get(conn)
                if keys is not None and conn not in stream.subscribers:
                    keys.discard(stream.key)
                    if not keys:
                        del self._by_conn[conn]
            for done in callbacks:
                done(error)

    # -- one stream --------------------------------------------------------------------------

    async def _run_stream(self, stream: _Stream) -> None:
        kind, name = stream.key
        attempt = 0
        with stream.scope:
            while not stream.closed:
                live_since: float | None = None
                with trio.CancelScope() as attempt_scope:
                    stream.attempt = attempt_scope
                    try:
                        self.cost.add(KEYSPACE if _internal(stream) else PUBSUB)
                        async with self._client.open(kind, name) as events:
                            self.streams_open += 1
                            try:
                                with trio.fail_after(self._confirm_timeout_s):
                                    first = await events.next()
                                if first is None or not first.startswith(_CONFIRMATIONS[kind]):
                                    raise UpstreamProtocolError(
                                        f"the stream did not start with its confirmation "
                                        f"(got {first[:80] if first else 'the end'!r})"
                                    )
                                stream.live = True
                                live_since = trio.current_time()
                                _tell_state(stream, True)  # those there before a reconnect
                                self._resolve(stream, "")
                                while (event := await events.next()) is not None:
                                    self._dispatch(stream, event, events.base64)
                            finally:
                                if stream.live:
                                    _tell_state(stream, False)
                                stream.live = False
                                self.streams_open -= 1
                        failure: str = "the upstream ended the stream"
                        reply = "ERR upstream ended the pub/sub stream before confirming it"
                        idle = False
                    except trio.TooSlowError:
                        failure = f"no confirmation within {self._confirm_timeout_s} s"
                        reply = f"ERR upstream pub/sub stream unavailable: {failure}"
                        idle = False
                    except UpstreamError as exc:
                        failure, reply = str(exc) or type(exc).__name__, _refusal_reply(exc)
                        # A live stream that went silent past the idle timeout: routine on a
                        # server without heartbeats, so not worth a warning.
                        idle = isinstance(exc, UpstreamTimeout) and live_since is not None
                    except Exception as exc:  # a bug here must not take the bridge down
                        log.exception("pub/sub stream for %s failed", stream.describe())
                        failure = type(exc).__name__
                        reply = f"ERR resp-bridge pub/sub failure: {failure}"
                        idle = False
                stream.attempt = None
                if attempt_scope.cancelled_caught:
                    self.reconnects += 1  # switch_upstream: reconnect now, elsewhere
                    continue
                self._resolve(stream, reply)
                if not stream.subscribers:
                    if live_since is None:
                        log.info("pub/sub stream for %s refused: %s", stream.describe(), failure)
                    self._close(stream)
                    return
                if live_since is not None and trio.current_time() - live_since >= STABLE_AFTER_S:
                    attempt = 0
                delay = min(self._backoff_max_s, self._backoff_initial_s * 2**attempt)
                delay *= 0.5 + 0.5 * self._rng.random()
                attempt += 1
                log.log(
                    logging.INFO if idle else logging.WARNING,
                    "pub/sub stream for %s broke (%s); %d subscriber(s) stay subscribed, "
                    "reconnecting in %.2f s (messages published meanwhile are lost)",
                    stream.describe(), failure, len(stream.subscribers), delay,
                )  # fmt: skip
                await trio.sleep(delay)
                self.reconnects += 1

    def _dispatch(self, stream: _Stream, text: str, b64: bool = False) -> None:
        kind = stream.key[0]
        if kind == "monitor":
            self._fan_out(stream, None, text.encode())
            return
        if b64:
            parts = _b64_parts(kind, text)
        elif kind == "channel" and text.startswith(stream.prefix):
            parts = [_MESSAGE, stream.name_bulk, encode_bulk(text[len(stream.prefix) :].encode())]
        elif kind == "pattern" and text.startswith(stream.prefix):
            assert stream.matcher is not None
            channel, payload = split_pmessage(text[len(stream.prefix) :], stream.matcher)
            parts = [_PMESSAGE, stream.name_bulk, encode_bulk(channel), encode_bulk(payload)]
        elif text.startswith(("unsubscribe,", "punsubscribe,")):
            raise UpstreamProtocolError("the upstream unsubscribed the stream")
        else:
            parts = None
        if parts is None:
            log.debug("pub/sub stream for %s: ignored event %r", stream.describe(), text[:80])
            return
        self._fan_out(stream, parts, b"")

    def _fan_out(self, stream: _Stream, parts: list[bytes] | None, line: bytes) -> None:
        """One event to every subscriber of `stream`: a message's `parts`, or (None) a MONITOR
        `line`. A connection that fails is logged and skipped: it must not starve the others."""
        self.messages += 1
        subscribers = list(stream.subscribers)
        for conn in subscribers:
            try:
                if parts is not None:
                    conn.deliver_push(parts)
                else:
                    conn.deliver_monitor(line)
            except Exception:
                log.exception("pub/sub delivery for %s to %r failed", stream.describe(), conn)
        self.deliveries += len(subscribers)


def _internal(stream: _Stream) -> bool:
    """The stream serves the bridge's own keyspace wake-ups (bridge.server.keyspace)."""
    return any(getattr(conn, "internal", False) for conn in (*stream.subscribers, *stream.waiting))


def _tell_state(stream: _Stream, up: bool) -> None:
    """Subscribers that follow the stream's state (keyspace streams) learn it broke or is
    live again: events may have been missed meanwhile."""
    for conn in list(stream.subscribers):
        follow = getattr(conn, "stream_state", None)
        if follow is not None:
            try:
                follow(up)
            except Exception:  # a bug there must not break the stream of the others
                log.exception("pub/sub stream state for %s to %r failed", stream.describe(), conn)


def _b64_parts(kind: str, text: str) -> list[bytes] | None:
    """RESP parts of a base64-mode event (binary-exact: every field is base64)."""
    fields = text.split(",")
    try:
        if kind == "channel" and fields[0] == "message" and len(fields) == 3:
            decoded = [base64.b64decode(f, validate=True) for f in fields[1:]]
            return [_MESSAGE, *(encode_bulk(d) for d in decoded)]
        if kind == "pattern" and fields[0] == "pmessage" and len(fields) == 4:
            decoded = [base64.b64decode(f, validate=True) for f in fields[1:]]
            return [_PMESSAGE, *(encode_bulk(d) for d in decoded)]
    except (binascii.Error, ValueError):
        raise UpstreamProtocolError("a base64 pub/sub event is not valid base64") from None
    if fields[0] in ("unsubscribe", "punsubscribe"):
        raise UpstreamProtocolError("the upstream unsubscribed the stream")
    return None


def _refusal_reply(exc: UpstreamError) -> str:
    """The client's error for a stream that could not be opened: Redis' own text when the
    upstream relayed one (e.g. NOPERM for a read-only token), else the upstream error line."""
    if isinstance(exc, UpstreamAuthError):
        return upstream_error_reply(exc)
    if isinstance(exc, UpstreamHTTPError):
        if exc.status == 400 and str(exc)[:1].isupper():
            return str(exc)
        return f"ERR upstream refused the pub/sub stream (HTTP {exc.status}): {exc}"
    return f"ERR upstream pub/sub stream unavailable: {exc}"


def split_pmessage(rest: str, matcher: GlobPattern) -> tuple[bytes, bytes]:
    """(channel, payload) of the text after `pmessage,<pattern>,`: the channel is the
    shortest text before a comma that matches the pattern (first comma if none does)."""
    pos = -1
    for _ in range(MAX_PMESSAGE_SPLITS):
        pos = rest.find(",", pos + 1)
        if pos < 0:
            break
        channel = rest[:pos].encode()
        if matcher.match(channel):
            return channel, rest[pos + 1 :].encode()
    head, _, payload = rest.partition(",")
    return head.encode(), payload.encode()


# -- Redis glob patterns (util.c stringmatchlen, case-sensitive) -------------------------------

_STAR = object()
_ANY = object()


class GlobPattern:
    """A Redis glob (`*`, `?`, `[a-z]`, `[^...]`, `\\x`) matched over bytes without
    backtracking blow-up: O(len(text) x len(pattern)) at worst."""

    __slots__ = ("_tokens",)

    def __init__(self, pattern: bytes) -> None:
        tokens: list[object] = []
        i, n = 0, len(pattern)
        while i < n:
            c = pattern[i]
            if c == 0x2A:  # *
                if not tokens or tokens[-1] is not _STAR:
                    tokens.append(_STAR)
            elif c == 0x3F:  # ?
                tokens.append(_ANY)
            elif c == 0x5B:  # [
                i, token = _parse_class(pattern, i + 1)
                tokens.append(token)
            elif c == 0x5C and i + 1 < n:  # backslash escapes the next byte
                i += 1
                tokens.append(pattern[i])
            else:
                tokens.append(c)
            i += 1
        self._tokens = tokens

    def match(self, text: bytes) -> bool:
        tokens = self._tokens
        t = p = 0
        star = -1
        mark = 0
        while t < len(text):
            if p < len(tokens) and tokens[p] is not _STAR and _one(tokens[p], text[t]):
                p += 1
                t += 1
            elif p < len(tokens) and tokens[p] is _STAR:
                star, mark = p, t
                p += 1
            elif star >= 0:
                p = star + 1
                mark += 1
                t = mark
            else:
                return False
        while p < len(tokens) and tokens[p] is _STAR:
            p += 1
        return p == len(tokens)


def _parse_class(pattern: bytes, i: int) -> tuple[int, tuple[bool, tuple[tuple[int, int], ...]]]:
    """Parse `[...]` from just after the `[`; returns the index of its `]` (or the last byte
    when unterminated, as Redis does) and (negated, ranges)."""
    n = len(pattern)
    negate = i < n and pattern[i] == 0x5E  # ^
    if negate:
        i += 1
    ranges: list[tuple[int, int]] = []
    while i < n:
        c = pattern[i]
        if c == 0x5C and i + 1 < n:
            i += 1
            ranges.append((pattern[i], pattern[i]))
        elif c == 0x5D:  # ]
            return i, (negate, tuple(ranges))
        elif i + 2 < n and pattern[i + 1] == 0x2D:  # a-z
            lo, hi = sorted((c, pattern[i + 2]))
            ranges.append((lo, hi))
            i += 2
        else:
            ranges.append((c, c))
        i += 1
    return n - 1, (negate, tuple(ranges))


def _one(token: object, byte: int) -> bool:
    if token is _ANY:
        return True
    if isinstance(token, int):
        return token == byte
    negate, ranges = cast("tuple[bool, tuple[tuple[int, int], ...]]", token)
    return any(lo <= byte <= hi for lo, hi in ranges) != negate
