"""What one loopback `send()` costs the sender, by how long the sockets were quiet before it.

The bridge's profiles at 50 clients put its reply and upstream `send`s at about a third of its
CPU. This shows how much of that is the machine's: K connections to a child process that reads
them all from one epoll; each round sends 200 bytes on every connection, back to back, then the
sender waits GAP seconds (sleeping, or spinning with `--spin`, which keeps its CPU busy). It
prints the p50 time inside the first `send` of a round and inside the later ones.

    python -m benchmarks.loopback_send            # K = 1, 12, 50; GAP = 0, 0.2 ms, 2 ms

On the 2-core VM of the 2026-12-02 results: 11 µs back to back on one connection (each send
wakes the reader), 23-28 µs after 0.2 ms, 40-55 µs after 2 ms, whether the sender slept or
spun; the later sends of a round, to other connections, 8.5-10 µs each. The first send after a
quiet spell, more than Python, is what a one-client hop through the bridge costs.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time


def _reader(peers: list[socket.socket]) -> None:
    """The child: read every connection until all are closed."""
    ep = select.epoll()
    socks = {}
    for sock in peers:
        sock.setblocking(False)
        ep.register(sock.fileno(), select.EPOLLIN)
        socks[sock.fileno()] = sock
    while socks:
        for fd, _ in ep.poll(1):
            try:
                data = socks[fd].recv(65536)
            except BlockingIOError:
                continue
            if not data:
                ep.unregister(fd)
                del socks[fd]


def measure(k: int, gap_s: float, spin: bool, rounds: int) -> tuple[float, float | None]:
    """p50 seconds inside the first send of a round, and inside the later ones (None: k=1)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=k)
    ours: list[socket.socket] = []
    theirs: list[socket.socket] = []
    for _ in range(k):
        sock = socket.create_connection(listener.getsockname())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ours.append(sock)
        theirs.append(listener.accept()[0])
    listener.close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        for sock in ours:
            sock.close()
        _reader(theirs)
        os._exit(0)
    for sock in theirs:
        sock.close()
    first: list[float] = []
    later: list[float] = []
    payload = b"x" * 200
    try:
        for _ in range(rounds):
            if gap_s and spin:
                end = time.perf_counter() + gap_s
                while time.perf_counter() < end:
                    pass
            elif gap_s:
                time.sleep(gap_s)
            for i, sock in enumerate(ours):
                started = time.perf_counter()
                sock.send(payload)
                (later if i else first).append(time.perf_counter() - started)
    finally:
        for sock in ours:
            sock.close()
        os.waitpid(pid, 0)
    first.sort()
    later.sort()
    return first[len(first) // 2], (later[len(later) // 2] if later else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="1,12,50", help="K values (default 1,12,50)")
    parser.add_argument("--gaps-ms", default="0,0.2,2", help="GAP values in ms (0,0.2,2)")
    parser.add_argument("--spin", action="store_true", help="spin through the gap, not sleep")
    parser.add_argument("--rounds", type=int, default=1000, help="rounds per point (1000)")
    args = parser.parse_args()
    how = "spinning" if args.spin else "sleeping"
    for k in (int(v) for v in args.connections.split(",")):
        for gap_ms in (float(v) for v in args.gaps_ms.split(",")):
            first, later = measure(k, gap_ms / 1000, args.spin, args.rounds)
            rest = f", later sends {later * 1e6:.1f} µs" if later is not None else ""
            print(
                f"{k:3d} connection(s), {gap_ms:g} ms {how} between rounds: "
                f"first send {first * 1e6:.1f} µs{rest} (p50)",
                flush=True,
            )


if __name__ == "__main__":
    main()
