"""Child processes of the benchmark harness and their accounting from /proc.

Owns starting and stopping the servers a run needs: `redis-server` (through the project's
`RedisServerProcess`), `resp-bridge devserver` and `resp-bridge serve`, each a child in its own
session (a terminal's Ctrl-C reaches only the harness, which then stops them in order) that
Linux also kills if the harness dies (both from `bridge.child_process`). Everything binds to
127.0.0.1 on a free port; no process here ever talks to anything but loopback, and the bridge
never sees the `UPSTASH_REDIS_REST_*` variables of the caller's environment.

`ProcSample` reads CPU time (utime + stime) and memory (VmRSS, VmHWM) of a pid from /proc.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import httpx

from bridge.child_process import log_tail, read_ready_line, spawn_child, stop_child

#: How long a devserver may take to print its READY line.
DEVSERVER_START_TIMEOUT_S = 30.0
#: How long a bridge may take to answer PING on its port.
BRIDGE_START_TIMEOUT_S = 20.0
#: How long a child may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: Attempts at starting a bridge when another process takes the free port picked for it.
BRIDGE_START_ATTEMPTS = 3
#: Token of the benchmark's devservers (local only, never a real credential).
BENCH_TOKEN = "resp-bridge-bench-token"

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bridge_cli(*args: str, python: str | None = None) -> list[str]:
    """The command line of `resp-bridge ARGS` with this interpreter, or `python` (another
    install, such as an older release's venv); works without the script."""
    if python is None:
        return [sys.executable, "-c", "from bridge.cli import main; main()", *args]
    # -I: the other install's own bridge, never the one in the current directory
    return [python, "-I", "-c", "from bridge.cli import main; main()", *args]


def child_env() -> dict[str, str]:
    """The environment of every child: the caller's, without any upstream credentials."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPSTASH_REDIS_REST", "RESP_BRIDGE_"))
    }


def spawn(args: list[str], log_path: str, *, stdout_pipe: bool = False) -> subprocess.Popen[bytes]:
    """Start a child in its own session, stderr (and stdout unless piped) to `log_path`.
    Called from the harness's main thread, so the child dies with the harness."""
    with open(log_path, "ab") as log:
        return spawn_child(
            args, stdout=subprocess.PIPE if stdout_pipe else log, stderr=log, env=child_env()
        )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL; always reaps the child."""
    stop_child(proc, STOP_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU seconds used so far and memory of one process, read from /proc."""

    cpu_s: float
    rss_kb: int
    hwm_kb: int

    @classmethod
    def read(cls, pid: int) -> ProcSample:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            # The command name (field 2) may contain spaces: split after its closing ')'.
            fields = fh.read().rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        rss_kb = hwm_kb = 0
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm_kb = int(line.split()[1])
        return cls((utime + stime) / _CLOCK_TICKS_PER_S, rss_kb, hwm_kb)


@dataclass
class DevServer:
    """A `resp-bridge devserver` child with an injected round trip."""

    latency_ms: float
    redis_url: str
    log_path: str
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    _http: httpx.Client | None = field(default=None, repr=False)
    #: More devserver flags (`--tls-cert C --tls-key K`), and the CA that signed its
    #: certificate (for the stats client).
    extra_args: tuple[str, ...] = ()
    ca_file: str | None = None

    @property
    def token(self) -> str:
        return BENCH_TOKEN

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> DevServer:
        args = bridge_cli(
            "devserver", "--port", "0", "--redis-url", self.redis_url,
            "--token", BENCH_TOKEN, "--readonly-token", BENCH_TOKEN + "-ro",
            "--latency-ms", f"{self.latency_ms:g}", "--log-level", "warning", *self.extra_args,
        )  # fmt: skip
        self.proc = spawn(args, self.log_path, stdout_pipe=True)
        self.url = read_ready_line(self.proc, DEVSERVER_START_TIMEOUT_S)
        if not self.url:
            self.stop()
            raise RuntimeError(f"devserver did not start; its log:\n{log_tail(self.log_path)}")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {BENCH_TOKEN}"},
            timeout=10,
            verify=ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True,
        )
        return self

    def stats(self) -> dict[str, int]:
        assert self._http is not None
        response = self._http.get("/_devserver/stats")
        response.raise_for_status()
        return dict(response.json())

    def reset_stats(self) -> None:
        assert self._http is not None
        self._http.post("/_devserver/reset-stats").raise_for_status()

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.proc is not None:
            stop_process(self.proc)


@dataclass
class Bridge:
    """A `resp-bridge serve` child in front of a devserver, with extra flags."""

    upstream_url: str
    token: str
    flags: tuple[str, ...]
    log_path: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    #: The interpreter of another install (an older release), or None for this one.
    python: str | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Bridge:
        for attempt in range(BRIDGE_START_ATTEMPTS):
            self.port = free_port()
            args = bridge_cli(
                "serve", "--port", str(self.port), "--url", self.upstream_url,
                "--token", self.token, "--log-level", "warning", *self.flags,
                "--admin-socket", f"{self.log_path}.admin.sock", python=self.python,
            )  # fmt: skip
            self.proc = spawn(args, self.log_path)
            if self._wait_ready():
                return self
            self.stop()
            if attempt == BRIDGE_START_ATTEMPTS - 1:
                raise RuntimeError(f"bridge did not start; its log:\n{log_tail(self.log_path)}")
        raise AssertionError("unreachable")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + BRIDGE_START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def sample(self) -> ProcSample:
        return ProcSample.read(self.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def make_log_dir() -> str:
    """A fresh directory for the children's logs (kept after the run for post-mortems)."""
    return tempfile.mkdtemp(prefix="resp-bridge-bench-")
