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
from typing import Protocol

import trio


class PollerClient(Protocol):
    def on_readable(self) -> bool:
        """The socket is readable: consume it. True to stay in the poller."""


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

    def _release(self, fd: int, entry: _Entry) -> None:
        if self._entries.get(fd) is entry:
            del self._entries[fd]
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: gone already
                self._epoll.unregister(fd)
        entry.done.set()

    async def run(self) -> None:
        epoll = self._epoll
        entries = self._entries
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _ in epoll.poll(0):
                    entry = entries.get(fd)
                    if entry is None:
                        continue
                    try:
                        if entry.client.on_readable():
                            continue
                    except Exception as exc:  # a bug in one client: reported by its own task
                        entry.error = exc
                    self._release(fd, entry)
        finally:
            self._closed = True
            for fd, entry in list(entries.items()):
                entry.error = trio.ClosedResourceError("the bridge is stopping")
                self._release(fd, entry)
            epoll.close()
