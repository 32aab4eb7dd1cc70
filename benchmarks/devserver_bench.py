"""Throughput of `resp-bridge devserver`: /pipeline batches of 1, 10 and 100 commands.

Starts a redis-server child and a devserver subprocess (or uses --url/--token of a running
one), then, for each batch size, runs several concurrent httpx clients (one keep-alive
connection each) that POST /pipeline with half SET, half GET commands for --duration seconds.
Prints requests/s and commands/s per batch size as a table. The client runs in this Python
process, so on a small machine it shares the CPU with the devserver: the figures are a lower
bound of what the devserver can do.

    python benchmarks/devserver_bench.py --duration 5 --clients 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import trio

from bridge.child_process import read_ready_line, spawn_child, stop_child
from bridge.devserver.redis_process import RedisServerProcess

#: How long the devserver may take to print READY.
START_TIMEOUT_S = 30.0
TOKEN = "bench-token"


@dataclass
class Result:
    batch: int
    requests: int
    commands: int
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cps(self) -> float:
        return self.commands / self.seconds


def start_devserver(redis_url: str, latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    args = [
        sys.executable, "-c", "from bridge.cli import main; main()", "devserver",
        "--port", "0", "--redis-url", redis_url, "--token", TOKEN,
        "--readonly-token", TOKEN + "-ro", "--latency-ms", str(latency_ms),
        "--log-level", "warning",
    ]  # fmt: skip
    proc = spawn_child(args, stdout=subprocess.PIPE, stderr=None)
    url = read_ready_line(proc, START_TIMEOUT_S)
    if not url:
        stop_child(proc)
        raise SystemExit("devserver did not start (no READY line; its log is above)")
    return proc, url


def batch_commands(n: int, batch: int) -> list[list[str]]:
    commands: list[list[str]] = []
    for i in range(batch):
        key = f"bench:{n}:{i % 16}"
        commands.append(["SET", key, "x" * 16] if i % 2 == 0 else ["GET", key])
    return commands


async def raw_worker(
    url: str, token: str, n: int, batch: int, deadline: float, counts: dict[str, int]
) -> None:
    """A minimal keep-alive HTTP/1.1 client on a trio socket: far cheaper than httpx, so the
    figures reflect the devserver rather than the client."""
    parts = httpx.URL(url)
    body = json.dumps(batch_commands(n, batch)).encode()
    request = (
        f"POST /pipeline HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    stream = await trio.open_tcp_stream(parts.host, parts.port or 80)
    buf = b""
    async with stream:
        while time.monotonic() < deadline:
            await stream.send_all(request)
            while (head_end := buf.find(b"\r\n\r\n")) < 0:
                buf += await stream.receive_some(65536)
            head = buf[: head_end + 2].lower()
            start = head.index(b"content-length:") + 15
            length = int(head[start : head.index(b"\r\n", start)])
            end = head_end + 4 + length
            while len(buf) < end:
                buf += await stream.receive_some(65536)
            counts["requests"] += 1
            if not head.startswith(b"http/1.1 200"):
                counts["errors"] += 1
            buf = buf[end:]


async def run_case(
    url: str, token: str, batch: int, clients: int, duration: float, raw: bool
) -> Result:
    counts = {"requests": 0, "errors": 0}
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(n: int) -> None:
        if raw:
            await raw_worker(url, token, n, batch, deadline, counts)
            return
        commands = batch_commands(n, batch)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, limits=limits, timeout=30
        ) as client:
            while time.monotonic() < deadline:
                response = await client.post("/pipeline", json=commands)
                counts["requests"] += 1
                if response.status_code != 200 or len(response.json()) != batch:
                    counts["errors"] += 1

    async with httpx.AsyncClient(base_url=url, headers=headers) as warm:
        await warm.post("/pipeline", json=[["PING"]])
    started = time.monotonic()
    deadline = started + duration
    async with trio.open_nursery() as nursery:
        for n in range(clients):
            nursery.start_soon(worker, n)
    elapsed = time.monotonic() - started
    return Result(batch, counts["requests"], counts["requests"] * batch, counts["errors"], elapsed)


def print_table(results: list[Result], clients: int, latency_ms: float, client: str) -> None:
    print(f"\ndevserver /pipeline throughput ({clients} concurrent {client} clients, "
          f"latency {latency_ms:g} ms, {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"{'batch':>6} {'requests':>10} {'requests/s':>12} {'commands/s':>12} {'errors':>7}")
    for r in results:
        print(f"{r.batch:>6} {r.requests:>10} {r.rps:>12.0f} {r.cps:>12.0f} {r.errors:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per batch size")
    parser.add_argument("--clients", type=int, default=8, help="concurrent httpx clients")
    parser.add_argument(
        "--batches", default="1,10,100", help="comma-separated commands per /pipeline"
    )
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="httpx.AsyncClient (default) or a minimal raw-socket HTTP/1.1 client",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="devserver --latency-ms")
    parser.add_argument("--url", help="benchmark a running devserver instead (needs --token)")
    parser.add_argument("--token", help="token of the running devserver given with --url")
    parser.add_argument("--redis-url", help="Redis for the started devserver (default: own)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    redis_proc: RedisServerProcess | None = None
    devserver: subprocess.Popen[bytes] | None = None
    try:
        if args.url:
            if not args.token:
                parser.error("--url needs --token")
            url, token = args.url, args.token
        else:
            redis_url = args.redis_url
            if redis_url is None:
                redis_proc = RedisServerProcess().start()
                redis_url = redis_proc.url
            print(f"starting devserver (redis {redis_url}) ...", file=sys.stderr)
            devserver, url = start_devserver(redis_url, args.latency_ms)
            token = TOKEN
        results = []
        for batch in batches:
            print(
                f"batch {batch:>4}: {args.clients} clients for {args.duration:g} s ...",
                file=sys.stderr,
                flush=True,
            )
            result = trio.run(
                run_case, url, token, batch, args.clients, args.duration, args.client == "raw"
            )
            print(
                f"            {result.rps:.0f} requests/s, {result.cps:.0f} commands/s",
                file=sys.stderr,
            )
            results.append(result)
        print_table(results, args.clients, args.latency_ms, args.client)
    finally:
        if devserver is not None:
            stop_child(devserver)
        if redis_proc is not None:
            redis_proc.stop()


if __name__ == "__main__":
    main()
