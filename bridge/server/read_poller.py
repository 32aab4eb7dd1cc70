"""Every idle client socket in one level-triggered epoll, read from one task.

A trio task per connection waiting in `wait_readable` pays, for every command a
request/response client sends, trio's one-shot epoll re-registration (an epoll_ctl), a
reschedule and a task switch. Here a connection with nothing to await registers its plain
socket once; one task waits for this epoll's own descriptor (one trio wait per round, however
many clients are ready) and calls each ready connection's `on_readable`, which reads, parses
and carries out its commands synchronously. A connection that has to await something (a
blocking command, backpressure, a database switch, EOF, an error) returns False: it leaves the
poller, and its own task takes over until it can come back.

Owns the epoll and its registrations, nothing else: what a readable socket means is the
connection's business.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable
from typing import Protocol

import trio


class PollerClient(Protocol):
    def on_readable(self) -> bool:
        """The socket is readable: consume it. True to stay in the poller."""


class Watcher(Protocol):
    """A socket read without a task of its own (an upstream request in flight)."""

    def on_readable(self) -> None:
        """The socket is readable (level-triggered: called again while it stays so)."""

    def on_poller_closed(self) -> None:
        """The poller stops: the socket will not be watched any more."""


class _Entry:
    __slots__ = ("client", "done", "error")

    def __init__(self, client: PollerClient) -> None:
        self.client = client
        self.done = trio.Event()
        self.error: BaseException | None = None


class ReadPoller:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._entries: dict[int, _Entry] = {}
        self._watched: dict[int, Watcher] = {}
        #: Called after each round, in order (a dispatcher sends what the round queued).
        self._after_round: list[Callable[[], None]] = []
        #: True while the ready sockets of a round are being handled: whatever they queue is
        #: picked up by the after-round hooks.
        self.in_round = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    async def serve(self, fd: int, client: PollerClient) -> None:
        """Call `client.on_readable()` whenever `fd` is readable, until it returns False;
        an exception it raised is raised here, in the client's own task."""
        if self._closed:
            raise trio.ClosedResourceError("the bridge is stopping")
        entry = _Entry(client)
        self._entries[fd] = entry
        self._epoll.register(fd, select.EPOLLIN)
        try:
            await entry.done.wait()
        finally:
            self._release(fd, entry)
        if entry.error is not None:
            raise entry.error

    def watch(self, fd: int, watcher: Watcher) -> None:
        """Call `watcher.on_readable()` from the rounds while `fd` is readable, until
        `unwatch(fd)` (which must come before `fd` is closed)."""
        self._watched[fd] = watcher
        self._epoll.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: gone already
                self._epoll.unregister(fd)

    def after_round(self, hook: Callable[[], None]) -> None:
        """Call `hook()` after every round (while the poller runs)."""
        self._after_round.append(hook)

    def _release(self, fd: int, entry: _Entry) -> None:
        if self._entries.get(fd) is entry:
            del self._entries[fd]
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: gone already
                self._epoll.unregister(fd)
        entry.done.set()

    async def run(self) -> None:
        epoll = self._epoll
        entries = self._entries
        watched = self._watched
        hooks = self._after_round
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                answers: list[Watcher] = []
                self.in_round = True
                try:
                    for fd, _ in epoll.poll(0):
                        entry = entries.get(fd)
                        if entry is None:
                            watcher = watched.get(fd)
                            if watcher is not None:
                                answers.append(watcher)
                            continue
                        try:
                            if entry.client.on_readable():
                                continue
                        except Exception as exc:  # a bug in one client: its own task reports it
                            entry.error = exc
                        self._release(fd, entry)
                    if answers:
                        # What the clients queued goes out before the answers are handled:
                        # the upstream's round trip then overlaps their delivery.
                        for hook in hooks:
                            hook()
                        for watcher in answers:
                            watcher.on_readable()
                finally:
                    self.in_round = False
                for hook in hooks:
                    hook()
        finally:
            self._closed = True
            self.in_round = False
            for fd, entry in list(entries.items()):
                entry.error = trio.ClosedResourceError("the bridge is stopping")
                self._release(fd, entry)
            for fd, watcher in list(watched.items()):
                self.unwatch(fd)
                watcher.on_poller_closed()
            epoll.close()
