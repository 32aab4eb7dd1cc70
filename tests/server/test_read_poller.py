"""The read poller: one epoll for every idle client socket, and the hand-over to a connection's
own task when it has something to await."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio

from bridge.config import BridgeConfig
from bridge.server.read_poller import ReadPoller
from bridge.server.runner import BridgeInfo, run_bridge


async def until(condition: Callable[[], bool]) -> None:
    """Let the poller run until `condition` holds (fails after 5 s)."""
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.005)


class Reader:
    """Reads what arrives; stays until it reads b"stop" (or raises on b"boom")."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.got = b""

    def on_readable(self) -> bool:
        data = self.sock.recv(4096)
        self.got += data
        if b"boom" in data:
            raise RuntimeError("bug in a client")
        return b"stop" not in data


async def test_each_client_is_read_until_it_asks_to_leave() -> None:
    poller = ReadPoller()
    pairs = [socket.socketpair() for _ in range(3)]
    for ours, _ in pairs:
        ours.setblocking(False)
    readers = [Reader(ours) for ours, _ in pairs]
    left: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller.run)

        async def serve(i: int) -> None:
            await poller.serve(pairs[i][0].fileno(), readers[i])
            left.append(i)

        for i in range(3):
            nursery.start_soon(serve, i)
        await until(lambda: len(poller) == 3)
        for i, (_, theirs) in enumerate(pairs):
            theirs.send(b"hello %d " % i)
        await until(lambda: all(r.got for r in readers))
        assert [r.got for r in readers] == [b"hello 0 ", b"hello 1 ", b"hello 2 "]
        assert left == []
        pairs[1][1].send(b"stop")
        with trio.fail_after(5):
            while not left:
                await trio.sleep(0.01)
        assert left == [1] and len(poller) == 2
        pairs[0][1].send(b"more")
        await until(lambda: readers[0].got == b"hello 0 more")
        nursery.cancel_scope.cancel()
    assert len(poller) == 0
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


async def test_a_failing_client_gets_its_error_and_the_others_go_on() -> None:
    poller = ReadPoller()
    (a, a_peer), (b, b_peer) = socket.socketpair(), socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    ra, rb = Reader(a), Reader(b)
    errors: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller.run)

        async def serve_a() -> None:
            try:
                await poller.serve(a.fileno(), ra)
            except RuntimeError as exc:
                errors.append(exc)

        nursery.start_soon(serve_a)
        nursery.start_soon(poller.serve, b.fileno(), rb)
        await until(lambda: len(poller) == 2)
        a_peer.send(b"boom")
        with trio.fail_after(5):
            while not errors:
                await trio.sleep(0.01)
        assert str(errors[0]) == "bug in a client"
        b_peer.send(b"still read")
        await until(lambda: rb.got == b"still read")
        nursery.cancel_scope.cancel()
    for s in (a, a_peer, b, b_peer):
        s.close()


async def test_a_cancelled_client_leaves_the_epoll() -> None:
    poller = ReadPoller()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    reader = Reader(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller.run)
        with trio.move_on_after(0.05):
            await poller.serve(ours.fileno(), reader)
        assert len(poller) == 0
        theirs.send(b"after")
        await trio.sleep(0.05)
        assert reader.got == b""  # not read any more
        # and it can come back
        nursery.start_soon(poller.serve, ours.fileno(), reader)
        await until(lambda: reader.got == b"after")
        nursery.cancel_scope.cancel()
    ours.close()
    theirs.close()


@pytest.mark.parametrize("pending", [1, 2, 3])
async def test_commands_parsed_past_the_pending_limit_are_all_answered(
    devserver: Any, pending: int
) -> None:
    """Local replies sent at once make room again within one read: the commands parsed
    beyond `max_pending_replies` must still be carried out, although the socket has nothing
    more to read (a stall once: they waited for the next read, which never came)."""
    config = BridgeConfig(
        url=devserver.url,
        token=devserver.token,
        port=0,
        admin_socket="off",
        bind="127.0.0.1",
        max_pending_replies=pending,
    )
    count = 50
    request = b"*1\r\n$4\r\nPING\r\n" * count + b"*2\r\n$3\r\nGET\r\n$7\r\nrb:poll\r\n"
    want = b"+PONG\r\n" * count + b"$-1\r\n"
    async with trio.open_nursery() as nursery:
        info: BridgeInfo = await nursery.start(run_bridge, config)
        assert info.port is not None
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", info.port))
        await sock.send(request)
        got = b""
        with trio.fail_after(10):
            while len(got) < len(want):
                data = await sock.recv(65536)
                assert data, f"closed after {got!r}"
                got += data
        assert got == want
        sock.close()
        nursery.cancel_scope.cancel()


class Answer:
    """A watched socket (an upstream answer): records when it was read, relative to hooks."""

    def __init__(self, sock: socket.socket, log: list[str], name: str) -> None:
        self.sock = sock
        self.log = log
        self.name = name
        self.closed = False

    def on_readable(self) -> None:
        self.log.append(f"{self.name}:{self.sock.recv(4096).decode()}")

    def on_poller_closed(self) -> None:
        self.closed = True


async def test_watched_sockets_are_read_after_the_round_hooks_and_told_of_the_end() -> None:
    """In a round, clients are read first, then the after-round hooks run (a dispatcher sends
    what the clients queued), then the watched answers, then the hooks again; unwatch stops
    the calls, and the poller's end is told to whatever is still watched."""
    poller = ReadPoller()
    log: list[str] = []
    client_ours, client_theirs = socket.socketpair()
    answer_ours, answer_theirs = socket.socketpair()
    other_ours, _other_theirs = socket.socketpair()
    for s in (client_ours, answer_ours, other_ours):
        s.setblocking(False)

    class Client:
        def on_readable(self) -> bool:
            log.append(f"client:{client_ours.recv(4096).decode()}")
            return True

    answer = Answer(answer_ours, log, "answer")
    other = Answer(other_ours, log, "other")
    poller.after_round(lambda: log.append(f"hook in_round={poller.in_round}"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller.run)
        nursery.start_soon(poller.serve, client_ours.fileno(), Client())
        await until(lambda: len(poller) == 1)
        poller.watch(answer_ours.fileno(), answer)
        poller.watch(other_ours.fileno(), other)
        await trio.sleep(0.05)
        log.clear()
        # both readable before the poller's next round (no checkpoint in between)
        answer_theirs.send(b"a")
        client_theirs.send(b"c")
        await until(lambda: len(log) >= 4)
        assert log[:4] == ["client:c", "hook in_round=True", "answer:a", "hook in_round=False"]
        poller.unwatch(answer_ours.fileno())
        log.clear()
        answer_theirs.send(b"b")
        client_theirs.send(b"d")
        await until(lambda: "client:d" in log)
        await trio.sleep(0.05)
        assert not any(e.startswith("answer") for e in log), log
        nursery.cancel_scope.cancel()
    assert other.closed and not answer.closed
    for s in (client_ours, client_theirs, answer_ours, answer_theirs, other_ours, _other_theirs):
        s.close()
