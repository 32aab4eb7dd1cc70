"""Helpers of the reliability tests: plain functions and classes (fixtures: conftest.py).

- `Stack`: starts devservers (each with fresh random tokens) and bridges as subprocesses and
  stops them; every log file and token it saw is recorded in its `recorded`, which
  `test_no_secrets_in_logs.py` greps after running its own scenarios.
- `set_faults(dev, ...)`: switches a running devserver's faults (`POST /_devserver/faults`).
- `RespClient`: a raw-socket RESP client (hiredis parses replies), for what redis-py hides.
- `LoadDriver`: many raw clients driven by one selector, each sending rounds of pipelined
  commands whose replies are checked one by one against the command that asked for them.
- `wait_until_served(port)`: waits out a circuit breaker's back-off after faults stop.
- `report(name, figures)`: prints figures (visible with `pytest -s`) and appends them, one
  JSON line per run, to REPORT_PATH.

Reply outcomes (`classify_error`) follow the bridge's error contract: "not executed"
(refused before any upstream request, the circuit breaker included) means the command did
not run; "outcome unknown" means it may have run; any other reply to a forwarded command is
a result that must match the command.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
import httpx

from tests.conftest import DevServerHandle, start_devserver
from tests.e2e.conftest import BridgeProcess, start_bridge

#: Figures of every run (soak, fuzz, exactly-once...) are appended here as JSON lines.
REPORT_PATH = os.environ.get("RESP_BRIDGE_RELIABILITY_REPORT", "/tmp/resp-bridge-reliability.jsonl")
#: Seconds any single HTTP call of a helper may take.
HTTP_TIMEOUT_S = 10.0
#: Longest a bridge may take to serve again once the faults stop (breaker back-off).
RECOVERY_S = 40.0

Command = Sequence[bytes | str | int]
Checker = Callable[[object], str]


@dataclass
class Recorded:
    """Every log file written and every token used by the processes of one `Stack`."""

    logs: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)


def fresh_token(prefix: str) -> str:
    """A random token, recognisable in a grep (never a substring of ordinary text)."""
    return f"{prefix}-{secrets.token_urlsafe(24)}"


class Stack:
    """Devservers and bridges for one test (or module); `close()` stops them all."""

    def __init__(self, tmp_dir: str, redis_url: str) -> None:
        self.tmp_dir = tmp_dir
        self.redis_url = redis_url
        self.devservers: list[DevServerHandle] = []
        self.bridges: list[BridgeProcess] = []
        self.recorded = Recorded()

    def devserver(self, **flags: Any) -> DevServerHandle:
        """A devserver with fresh tokens; `fault_error_rate=0.1` -> `--fault-error-rate 0.1`."""
        extra: list[str] = []
        for name, value in flags.items():
            extra += ["--" + name.replace("_", "-"), str(value)]
        token, ro_token = fresh_token("rb-test-token"), fresh_token("rb-test-ro-token")
        self.recorded.secrets.update((token, ro_token))
        handle = start_devserver(
            self.redis_url, token=token, readonly_token=ro_token, extra_args=tuple(extra)
        )
        self.recorded.logs.append(handle.log_path)
        self.devservers.append(handle)
        return handle

    def bridge(self, dev: DevServerHandle, *flags: str, token: str | None = None) -> BridgeProcess:
        """A bridge in front of `dev` (with its standard token unless `token` is given)."""
        token = token or dev.token
        self.recorded.secrets.add(token)
        proc = start_bridge(self.tmp_dir, dev.url, token, *flags)
        self.recorded.logs.append(proc.log_path)
        self.bridges.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.bridges:
            proc.stop()
        for handle in self.devservers:
            handle.stop()


def set_faults(dev: DevServerHandle, **settings: float | int | None) -> dict[str, Any]:
    """Switch the faults of a running devserver; returns its `GET /_devserver/faults` view."""
    response = httpx.post(
        f"{dev.url}/_devserver/faults", headers=dev.headers, json=settings, timeout=HTTP_TIMEOUT_S
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


NO_FAULTS: dict[str, float] = {
    "error_rate": 0.0,
    "error_after_rate": 0.0,
    "stall_rate": 0.0,
    "reset_rate": 0.0,
    "garbage_rate": 0.0,
    "slow_sse_ms": 0.0,
}


def rss_kb(pid: int) -> int:
    """Resident set size of a process (VmRSS, kB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def report(name: str, figures: dict[str, Any]) -> None:
    line = json.dumps({"test": name, "time": time.time(), **figures}, sort_keys=True)
    print(f"\n[reliability] {name}: {json.dumps(figures, sort_keys=True)}")
    with open(REPORT_PATH, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def pack(*args: bytes | str | int) -> bytes:
    return hiredis.pack_command(tuple(args))  # type: ignore[no-any-return]


# -- error classification -----------------------------------------------------------------


def classify_error(text: str) -> str:
    """The outcome a forwarded command's error reply announces (see the module docstring)."""
    if "circuit open" in text:
        return "circuit_open" if "not executed" in text else "circuit_open_unlabelled"
    if "not executed" in text:
        return "not_executed"
    if "outcome unknown" in text:
        return "outcome_unknown"
    if text.startswith("ERR upstream"):
        return "upstream_other"
    return "unexpected_error"


#: Outcomes after which the command certainly did not run.
NOT_RUN = frozenset({"not_executed", "circuit_open"})


class Mismatch(AssertionError):
    """A reply that cannot belong to the command it answers."""


# -- a raw RESP client ----------------------------------------------------------------------


class RespClient:
    """One raw TCP connection to a bridge; replies parsed by hiredis (errors as values)."""

    def __init__(self, port: int, *, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.timeout_s = timeout_s

    def send(self, *commands: Command) -> None:
        self.sock.sendall(b"".join(pack(*c) for c in commands))

    def read(self, n: int = 1, *, timeout_s: float | None = None) -> list[object]:
        """Exactly n replies, or TimeoutError / ConnectionError."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        replies: list[object] = []
        while len(replies) < n:
            reply = self.reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(replies)} of {n} replies within the deadline")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed after {len(replies)} of {n} replies")
            self.reader.feed(data)
        return replies

    def call(self, *args: bytes | str | int, timeout_s: float | None = None) -> object:
        self.send(args)
        return self.read(1, timeout_s=timeout_s)[0]

    def close(self) -> None:
        self.sock.close()


def error_text(reply: object) -> str | None:
    return str(reply) if isinstance(reply, hiredis.ReplyError) else None


# -- many clients, one selector -------------------------------------------------------------


class Workload:
    """Builds each client's next round of commands, each with the checker of its reply.

    A checker returns the outcome kind ("ok" or an error class) or raises `Mismatch`."""

    def next_round(self, cid: int) -> list[tuple[Command, Checker]]:
        raise NotImplementedError


@dataclass
class LoadResult:
    clients: int
    rounds: int = 0
    commands_sent: int = 0
    replies_checked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    max_round_s: float = 0.0
    elapsed_s: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "rounds": self.rounds,
            "commands": self.commands_sent,
            "replies_checked": self.replies_checked,
            "outcomes": dict(sorted(self.outcomes.items())),
            "failures": len(self.failures),
            "max_round_s": round(self.max_round_s, 3),
            "elapsed_s": round(self.elapsed_s, 2),
        }


class _Client:
    __slots__ = ("cid", "pending", "reader", "sock", "started")

    def __init__(self, cid: int, sock: socket.socket) -> None:
        self.cid = cid
        self.sock = sock
        self.reader = hiredis.Reader()
        self.pending: deque[Checker] = deque()
        self.started = 0.0


class LoadDriver:
    """`clients` raw connections to a bridge; each sends a round of pipelined commands, reads
    and checks every reply in order, then sends its next round, until the time is up.

    A client whose round is not fully answered within `round_deadline_s` is a failure (a
    hang); so is a connection closed by the bridge, a reply nobody asked for, or a mismatch.
    """

    def __init__(
        self, port: int, clients: int, workload: Workload, *, round_deadline_s: float
    ) -> None:
        self.port = port
        self.workload = workload
        self.round_deadline_s = round_deadline_s
        self.result = LoadResult(clients)
        self._clients: list[_Client] = []
        self._selector = selectors.DefaultSelector()
        self._n = clients

    def connect(self) -> None:
        for cid in range(self._n):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(30)  # sendall of a round never waits long; recv only when readable
            client = _Client(cid, sock)
            self._clients.append(client)
            self._selector.register(sock, selectors.EVENT_READ, client)

    def reset_result(self) -> None:
        """Start counting afresh (after a warm-up run); failures so far are kept."""
        self.result = LoadResult(self._n, failures=self.result.failures)

    @property
    def connected(self) -> int:
        return len(self._clients)

    def close(self) -> None:
        for client in self._clients:
            self._selector.unregister(client.sock)
            client.sock.close()
        self._clients.clear()
        self._selector.close()

    def _fail(self, client: _Client, message: str) -> None:
        self.result.failures.append(f"client {client.cid}: {message}")
        self._selector.unregister(client.sock)
        client.sock.close()
        client.pending.clear()
        self._clients.remove(client)

    def _send_round(self, client: _Client) -> None:
        commands = self.workload.next_round(client.cid)
        client.pending.extend(check for _, check in commands)
        client.started = time.monotonic()
        client.sock.sendall(b"".join(pack(*c) for c, _ in commands))
        self.result.commands_sent += len(commands)

    def run(self, duration_s: float, tick: Callable[[], None] | None = None) -> LoadResult:
        """Run rounds for `duration_s`, then collect the replies still owed; `tick()` is
        called about once a second (e.g. to sample the bridge's memory)."""
        result = self.result
        start = time.monotonic()
        end = start + duration_s
        for client in list(self._clients):
            self._send_round(client)
        last_scan = last_tick = start
        while True:
            now = time.monotonic()
            if tick is not None and now - last_tick >= 1.0:
                last_tick = now
                tick()
            busy = [c for c in self._clients if c.pending]
            if now >= end and not busy:
                break
            for key, _ in self._selector.select(timeout=0.2):
                client: _Client = key.data
                try:
                    data = client.sock.recv(262144)
                except OSError as exc:
                    self._fail(client, f"connection error: {exc!r}")
                    continue
                if not data:
                    self._fail(client, f"closed by the bridge with {len(client.pending)} owed")
                    continue
                client.reader.feed(data)
                try:
                    self._drain(client, end)
                except Mismatch as exc:
                    self._fail(client, f"mismatch: {exc}")
            now = time.monotonic()
            if now - last_scan >= 0.5:
                last_scan = now
                for client in [c for c in self._clients if c.pending]:
                    if now - client.started > self.round_deadline_s:
                        self._fail(
                            client,
                            f"hang: {len(client.pending)} replies missing after "
                            f"{now - client.started:.1f} s",
                        )
        result.elapsed_s = time.monotonic() - start
        return result

    def _drain(self, client: _Client, end: float) -> None:
        result = self.result
        while True:
            try:
                reply = client.reader.gets()
            except hiredis.ProtocolError as exc:
                raise Mismatch(f"unparsable reply stream: {exc}") from None
            if reply is False:
                return
            if not client.pending:
                raise Mismatch(f"a reply nobody asked for: {reply!r:.200}")
            check = client.pending.popleft()
            result.outcomes[check(reply)] += 1
            result.replies_checked += 1
            if not client.pending:
                elapsed = time.monotonic() - client.started
                result.max_round_s = max(result.max_round_s, elapsed)
                result.rounds += 1
                if time.monotonic() < end:
                    self._send_round(client)


class KeyValueWorkload(Workload):
    """Per client, rounds of `SET k v` + `GET k` (a fresh key each time) + `INCR counter`.

    Every reply is checked against its own command: SET gives OK, GET the value just set
    (or nil when that SET did not run, either when its outcome is unknown), INCR the next
    value of the client's own counter (a range while outcomes are unknown). An error reply
    must be an upstream error; its class decides what the checks expect afterwards
    (`strict=False` lets an unlabelled upstream error count as "may have run").
    """

    def __init__(self, run_id: str, *, per_round: int = 2, value_bytes: int = 16) -> None:
        self.run_id = run_id
        self.per_round = per_round
        self.pad = "x" * max(0, value_bytes - 16)
        self._seq: Counter[int] = Counter()
        self._counter: dict[int, tuple[int, int]] = {}

    def _outcome_of_error(self, reply: object) -> str | None:
        text = error_text(reply)
        if text is None:
            return None
        kind = classify_error(text)
        if kind in ("unexpected_error", "circuit_open_unlabelled"):
            raise Mismatch(f"not an upstream error reply: {text[:200]!r}")
        return kind

    def next_round(self, cid: int) -> list[tuple[Command, Checker]]:
        commands: list[tuple[Command, Checker]] = []
        for _ in range(self.per_round):
            self._seq[cid] += 1
            n = self._seq[cid]
            key = f"rb:{self.run_id}:{cid}:{n}"
            value = f"v{cid}:{n}:{self.pad}".encode()
            state = {"set": "maybe"}

            def check_set(reply: object, state: dict[str, str] = state) -> str:
                kind = self._outcome_of_error(reply)
                if kind is None:
                    if reply != b"OK":
                        raise Mismatch(f"SET answered {reply!r:.100}")
                    state["set"] = "yes"
                    return "ok"
                state["set"] = "no" if kind in NOT_RUN else "maybe"
                return kind

            def check_get(
                reply: object, state: dict[str, str] = state, value: bytes = value
            ) -> str:
                kind = self._outcome_of_error(reply)
                if kind is not None:
                    return kind
                allowed: tuple[object, ...] = {
                    "yes": (value,),
                    "no": (None,),
                    "maybe": (value, None),
                }[state["set"]]
                if reply not in allowed:
                    raise Mismatch(f"GET answered {reply!r:.100}, expected one of {allowed!r:.100}")
                return "ok"

            def check_incr(reply: object, cid: int = cid) -> str:
                lo, hi = self._counter.get(cid, (0, 0))
                kind = self._outcome_of_error(reply)
                if kind is None:
                    if not isinstance(reply, int) or not lo + 1 <= reply <= hi + 1:
                        raise Mismatch(f"INCR answered {reply!r:.100}, expected {lo + 1}..{hi + 1}")
                    self._counter[cid] = (reply, reply)
                    return "ok"
                if kind not in NOT_RUN:
                    self._counter[cid] = (lo, hi + 1)
                return kind

            commands.append((("SET", key, value), check_set))
            commands.append((("GET", key), check_get))
            commands.append((("INCR", f"rb:{self.run_id}:ctr:{cid}"), check_incr))
        return commands


def wait_until_served(port: int, deadline_s: float = RECOVERY_S) -> float:
    """Seconds until a forwarded command succeeds again (the breaker may be backing off)."""
    started = time.monotonic()
    client = RespClient(port, timeout_s=deadline_s)
    try:
        while True:
            reply = client.call("GET", "rb:recovery-probe", timeout_s=deadline_s)
            if error_text(reply) is None:
                return time.monotonic() - started
            assert time.monotonic() - started < deadline_s, f"still failing: {reply}"
            time.sleep(0.1)
    finally:
        client.close()
