"""WATCH groups by key, so that a write marks every watch of its key dirty at once.

The bridge routes every write of its clients, so a successful write to a watched key (even
one that leaves the value as it was: `SET k same`, `APPEND k ''`) marks the watches of that key
dirty when its reply arrives, and EXEC answers the null reply without running anything. With
keyspace events (bridge.server.keyspace) the watch also holds its keys' streams from WATCH on,
so writes from anywhere mark it dirty. The fingerprint check of the EXEC script stays as the
last line. Groups are held weakly: a group the session dropped (EXEC, DISCARD, UNWATCH, RESET,
disconnect) leaves the registry, and releases its streams, when it is garbage.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from bridge.core.actions import WatchGroup
from bridge.server.keyspace import WATCH_CLASSES, Keyspace, KeyStream


class WatchRegistry:
    """Live WATCH groups by key."""

    def __init__(self, keyspace: Keyspace | None = None) -> None:
        self.keyspace = keyspace
        self.by_key: dict[bytes, weakref.WeakSet[WatchGroup]] = {}
        #: Watches made dirty by a write through the bridge / by a keyspace event.
        self.dirtied_locally = 0
        self.dirtied_by_events = 0

    def add(self, group: WatchGroup) -> list[KeyStream] | None:
        """Register `group`; with usable keyspace events, also hold its keys' streams (the
        caller waits until they are live before reading the fingerprints)."""
        for key in group.keys:
            self.by_key.setdefault(key, weakref.WeakSet()).add(group)
        streams = None
        keyspace = self.keyspace
        if keyspace is not None and keyspace.usable(WATCH_CLASSES):
            streams = keyspace.hold(group.keys)
            group.covered = streams is not None
        weakref.finalize(group, self._forget, list(group.keys), streams)
        return streams

    def _forget(self, keys: list[bytes], streams: list[KeyStream] | None) -> None:
        for key in keys:
            groups = self.by_key.get(key)
            # Iterating skips the dying group (its WeakSet entry may not be gone yet).
            if groups is not None and next(iter(groups), None) is None:
                del self.by_key[key]
        if streams is not None and self.keyspace is not None:
            self.keyspace.release(streams)

    def touched(self, keys: Iterable[bytes], *, event: bool = False) -> None:
        """These keys were written: their watches are dirty."""
        for key in keys:
            groups = self.by_key.get(key)
            if not groups:
                continue
            for group in groups:
                if not group.dirty:
                    group.dirty = True
                    if event:
                        self.dirtied_by_events += 1
                    else:
                        self.dirtied_locally += 1
