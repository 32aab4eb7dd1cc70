"""Keyspace notifications as wake-ups: one shared upstream stream per key a blocked client or
a WATCH waits on, so a write from anywhere (another bridge, the SDK, a REST call) is pushed
instead of found by the next poll.

Each key's stream is a pattern subscription `__keyspace@*__:<key>` (any database number: the
REST API serves one database per token, whatever its index) on the pub/sub hub, shared with
clients' own subscriptions, reference-counted by its users (waiters, WATCH groups) and kept
open `LINGER_S` after the last one leaves, so a client repeating the same blocking command
(Celery's `BRPOP ... 1` every second) reuses it. At most `max_streams` exist; beyond, callers
get None and poll.

Whether events can be used is read from the upstream at start (`CONFIG GET
notify-keyspace-events`) and again after a stream had to reconnect (a restarted server may
have lost a runtime setting). `auto` uses them when the classes a command needs are enabled,
`on` also adds them at start (`CONFIG SET`, a setting of the whole database), `off` never.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import trio

from bridge.core.resp import parse_frame
from bridge.server.cost import KEYSPACE, PROBE
from bridge.server.dispatcher import ClientQueue, Dispatcher

log = logging.getLogger("bridge.keyspace")

#: Seconds an unused key stream stays open (a repeated blocking command reuses it).
LINGER_S = 60.0
#: How often lingering streams are looked at.
SWEEP_S = 5.0
#: Seconds before notify-keyspace-events is asked again when the upstream could not answer.
RETRY_S = 30.0
#: What `A` stands for in notify-keyspace-events.
ALL_CLASSES = "g$lshzxetd"
#: Event classes a blocking command needs, by plan kind (g: RENAME, RESTORE, COPY, ...).
CLASSES_FOR_KIND = {
    "pop1": "gl", "mpop": "gl", "move": "gl", "zpop1": "gz", "zmpop": "gz", "stream": "gt",
}  # fmt: skip
#: WATCH is broken by every write: every class but module types, plus expiry and eviction.
WATCH_CLASSES = "g$lshzxet"
#: What `on` adds to the upstream's flags (keyspace channel, every class).
ON_FLAGS = "KA"
PATTERN_PREFIX = b"__keyspace@*__:"
#: Where a sync marker is published (matches PATTERN_PREFIX) and how it starts: a message on
#: the key's channel, not a write, so it breaks no WATCH; other bridges' markers are ignored.
SYNC_CHANNEL_PREFIX = b"__keyspace@0__:"
SYNC_MARKER_PREFIX = b"resp-bridge:sync:"
#: Longest wait for a sync marker (then the fingerprint check alone decides).
SYNC_TIMEOUT_S = 2.0
_GLOB_SPECIAL = frozenset(b"*?[]\\")


def key_pattern(key: bytes) -> bytes:
    """The pattern of `key`'s keyspace channel in any database, glob characters escaped."""
    escaped = bytearray(PATTERN_PREFIX)
    for byte in key:
        if byte in _GLOB_SPECIAL:
            escaped.append(0x5C)
        escaped.append(byte)
    return bytes(escaped)


def parse_flags(text: str) -> set[str]:
    """The set of flag letters, `A` expanded."""
    flags = set(text)
    if "A" in flags:
        flags |= set(ALL_CLASSES)
    return flags


def flags_cover(flags: set[str] | None, classes: str) -> bool:
    """Keyspace-channel events (K) of every class in `classes` are on."""
    return flags is not None and "K" in flags and all(c in flags for c in classes)


class PatternHub(Protocol):
    """What this module needs of the pub/sub hub (bridge.server.pubsub.PubSubHub)."""

    def subscribe(
        self, conn: KeyStream, kind: str, name: bytes, done: Callable[[str], None]
    ) -> None: ...

    def unsubscribe(self, conn: KeyStream, kind: str, name: bytes) -> None: ...


class KeyStream:
    """One key's stream, as the pub/sub hub's subscriber."""

    __slots__ = (
        "failed", "idle_since", "key", "live", "markers", "owner", "pattern", "ready", "users",
    )  # fmt: skip

    #: Tells the pub/sub hub this is the bridge's own subscription (counted as keyspace).
    internal = True

    def __init__(self, owner: Keyspace, key: bytes) -> None:
        self.owner = owner
        self.key = key
        self.pattern = key_pattern(key)
        self.users = 0
        self.live = False
        self.failed = ""
        self.ready = trio.Event()  # set once the stream is live or has failed
        self.idle_since: float | None = None
        #: Sync markers published and not seen yet, each with the event set when it arrives.
        self.markers: dict[bytes, trio.Event] = {}

    def deliver_push(self, frame_parts: list[bytes]) -> None:
        # pmessage parts, bulk-encoded: [pmessage, pattern, channel, event name]
        event = frame_parts[-1].split(b"\r\n", 2)[1] if len(frame_parts) == 4 else b""
        if event.startswith(SYNC_MARKER_PREFIX):
            seen = self.markers.pop(event, None)
            if seen is not None:
                seen.set()
            return
        self.owner.on_change(self.key, event)

    def deliver_monitor(self, line: bytes) -> None:
        pass

    def stream_state(self, up: bool) -> None:
        """The hub's stream broke (False) or is live again (True)."""
        self.live = up
        self.owner.on_stream_state(self, up)

    def done(self, error: str) -> None:
        """The hub's answer to the subscription."""
        self.live = not error
        self.failed = error
        self.ready.set()
        if error:
            self.owner.forget(self)


class Keyspace:
    """The key streams, their cap and linger, and what the upstream's flags allow."""

    def __init__(
        self,
        hub: PatternHub,
        dispatcher: Dispatcher,
        *,
        mode: str = "auto",
        max_streams: int = 64,
        linger_s: float = LINGER_S,
    ) -> None:
        self.hub = hub
        self.dispatcher = dispatcher
        self.mode = mode
        self.max_streams = max_streams
        self.linger_s = linger_s
        #: The upstream's notify-keyspace-events flags; None until read (or unreadable).
        self.flags: set[str] | None = None
        self.flags_text = "not read yet"
        self._streams: dict[bytes, KeyStream] = {}
        self._recheck = trio.Event()
        #: Called with a key whose stream saw an event (and its name) / a key stream going
        #: down or up.
        self.on_key_event: Callable[[bytes, bytes], None] = lambda key, event: None
        self.on_key_state: Callable[[bytes, bool], None] = lambda key, up: None
        self.events = 0
        self.refused = 0
        self._markers = 0
        self._retry_at = 0.0

    # -- what may be used ----------------------------------------------------------------

    def usable(self, classes: str) -> bool:
        return self.mode != "off" and self.max_streams > 0 and flags_cover(self.flags, classes)

    @property
    def streams(self) -> int:
        return len(self._streams)

    @property
    def live_streams(self) -> int:
        return sum(1 for s in self._streams.values() if s.live)

    # -- streams -------------------------------------------------------------------------

    def hold(self, keys: Iterable[bytes]) -> list[KeyStream] | None:
        """A stream per key (opened or shared), counted as used; None past the cap (then
        nothing is held)."""
        keys = list(dict.fromkeys(keys))
        new = [k for k in keys if k not in self._streams]
        cost = self.dispatcher.stats.cost
        if new and cost.limited and cost.refusal(KEYSPACE) is not None:
            return None  # an enforced budget: no new streams (the caller polls, if allowed)
        if len(self._streams) + len(new) > self.max_streams:
            self._evict(len(self._streams) + len(new) - self.max_streams)
            if len(self._streams) + len(new) > self.max_streams:
                self.refused += 1
                return None
        held: list[KeyStream] = []
        for key in keys:
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = KeyStream(self, key)
                self.hub.subscribe(stream, "pattern", stream.pattern, stream.done)
            stream.users += 1
            stream.idle_since = None
            held.append(stream)
        return held

    def stream_of(self, key: bytes) -> KeyStream | None:
        return self._streams.get(key)

    def release(self, streams: Iterable[KeyStream]) -> None:
        """The holder is done with these streams (they linger, then close)."""
        now = trio.current_time()
        for stream in streams:
            stream.users -= 1
            if stream.users <= 0:
                stream.users = 0
                stream.idle_since = now

    async def until_live(self, streams: list[KeyStream], timeout_s: float) -> bool:
        """Wait until every stream is live (True) or one failed or the time is up (False)."""
        with trio.move_on_after(max(0.0, timeout_s)):
            for stream in streams:
                await stream.ready.wait()
        return all(s.live for s in streams)

    async def sync(self, streams: list[KeyStream], queue: ClientQueue, source: str) -> bool:
        """Publish a marker on each live stream's channel (in `queue`'s order) and wait until
        every marker came back: then every event published before has arrived too (Redis
        delivers a subscriber's messages in order). False when one did not in time."""
        waits: list[trio.Event] = []
        for stream in streams:
            if not stream.live:
                continue
            self._markers += 1
            token = SYNC_MARKER_PREFIX + str(self._markers).encode()
            seen = stream.markers[token] = trio.Event()
            waits.append(seen)
            channel = SYNC_CHANNEL_PREFIX + stream.key
            self.dispatcher.submit_command(
                queue, [b"PUBLISH", channel, token], None, _ignore, source=source
            )
        with trio.move_on_after(SYNC_TIMEOUT_S):
            for seen in waits:
                await seen.wait()
        return all(seen.is_set() for seen in waits)

    def forget(self, stream: KeyStream) -> None:
        """A stream that could not be opened: the next holder tries a new one."""
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]

    def _close(self, stream: KeyStream) -> None:
        self.forget(stream)
        stream.live = False
        self.hub.unsubscribe(stream, "pattern", stream.pattern)
        self.on_key_state(stream.key, False)  # what was known through it is stale now

    def _evict(self, n: int) -> None:
        idle = sorted(
            (s for s in self._streams.values() if s.users == 0 and s.idle_since is not None),
            key=lambda s: s.idle_since or 0.0,
        )
        for stream in idle[:n]:
            self._close(stream)

    def sweep(self) -> None:
        """Close the streams unused for longer than the linger time."""
        now = trio.current_time()
        for stream in list(self._streams.values()):
            idle_since = stream.idle_since
            if stream.users == 0 and idle_since is not None and now - idle_since >= self.linger_s:
                self._close(stream)

    # -- events --------------------------------------------------------------------------

    def on_change(self, key: bytes, event: bytes) -> None:
        self.events += 1
        self.on_key_event(key, event)

    def on_stream_state(self, stream: KeyStream, up: bool) -> None:
        if up:
            self._recheck.set()  # a reconnect: the server may have been restarted
        self.on_key_state(stream.key, up)

    # -- the upstream's setting ----------------------------------------------------------

    def recheck(self) -> None:
        """Read notify-keyspace-events again soon (a reload: someone may have changed it)."""
        self._recheck.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read (with `on`: set) the flags, then sweep lingering streams; re-read the flags
        after a stream reconnected."""
        if self.mode != "off":
            await self.read_flags(apply=self.mode == "on")
        task_status.started()
        while True:
            with trio.move_on_after(SWEEP_S):
                await self._recheck.wait()
            retry = self.flags is None and trio.current_time() >= self._retry_at
            if self._recheck.is_set() or (retry and self.mode != "off"):
                self._recheck = trio.Event()
                if self.mode != "off":
                    await self.read_flags(apply=self.mode == "on")
            self.sweep()

    async def read_flags(self, *, apply: bool) -> None:
        """Read the upstream's flags (with `apply`, add what is missing); never raises."""
        try:
            await self._read_flags(apply=apply)
        except Exception:  # a bug here must cost the wake-ups, not the bridge
            log.exception("reading notify-keyspace-events failed; blocked clients poll")
            self.flags, self.flags_text = None, "unreadable"
            self._retry_at = trio.current_time() + 20 * RETRY_S

    async def _read_flags(self, *, apply: bool) -> None:
        frame = await self._command([b"CONFIG", b"GET", b"notify-keyspace-events"])
        text = _config_value(frame)
        if text is None:
            # An upstream that is down is asked again later; one that refuses, rarely.
            unreachable = frame.startswith(b"-ERR upstream")
            self._retry_at = trio.current_time() + (RETRY_S if unreachable else 20 * RETRY_S)
            if self.flags_text != "unreadable":
                log.info(
                    "keyspace events not used for now: CONFIG GET notify-keyspace-events "
                    "answered %r; blocked clients poll",
                    frame[:120],
                )
            self.flags, self.flags_text = None, "unreadable"
            return
        flags = parse_flags(text)
        if apply and not flags_cover(flags, WATCH_CLASSES):
            wanted = _normalise(text + ON_FLAGS)
            reply = await self._command([b"CONFIG", b"SET", b"notify-keyspace-events", wanted])
            if reply[:1] == b"-":
                log.warning(
                    "keyspace_events = on: CONFIG SET notify-keyspace-events %s refused (%s); "
                    "using what is set (%r)",
                    wanted.decode(), reply[1:].strip().decode("utf-8", "replace")[:200], text,
                )  # fmt: skip
            else:
                log.info(
                    "keyspace_events = on: set notify-keyspace-events to %r (was %r) for the "
                    "whole database",
                    wanted.decode(), text,
                )  # fmt: skip
                text, flags = wanted.decode(), parse_flags(wanted.decode())
        changed = text != self.flags_text
        self.flags, self.flags_text = flags, text
        if changed:
            blocking = [k for k, c in CLASSES_FOR_KIND.items() if flags_cover(flags, c)]
            log.info(
                "upstream notify-keyspace-events is %r: keyspace wake-ups for %s, WATCH %s",
                text,
                ", ".join(sorted({_KIND_NAMES[k] for k in blocking})) or "no blocking command",
                "from any writer" if flags_cover(flags, WATCH_CLASSES) else "from this bridge",
            )

    async def _command(self, args: list[bytes]) -> bytes:
        done = trio.Event()
        box: list[bytes] = []

        def deliver(frame: bytes) -> None:
            box.append(frame)
            done.set()

        self.dispatcher.submit_command(ClientQueue(), args, None, deliver, source=PROBE)
        await done.wait()
        return box[0]


def _ignore(frame: bytes) -> None:
    """A sync marker's PUBLISH reply (the marker's arrival is what counts)."""


_KIND_NAMES = {
    "pop1": "lists", "mpop": "lists", "move": "lists", "zpop1": "sorted sets",
    "zmpop": "sorted sets", "stream": "streams",
}  # fmt: skip


def _config_value(frame: bytes) -> str | None:
    """The value in a CONFIG GET reply for one parameter, or None."""
    if frame[:1] != b"*":
        return None
    value = parse_frame(frame)
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], bytes):
        return value[1].decode("ascii", "replace")
    return None


def _normalise(text: str) -> bytes:
    """Flags as Redis accepts them: each letter once, classes folded into A when all are on."""
    letters = set(text)
    if "A" in letters or set(WATCH_CLASSES) <= letters:
        letters -= set(ALL_CLASSES)
        letters.add("A")
    order = "KEA" + ALL_CLASSES + "mn"
    return "".join(c for c in order if c in letters).encode()
