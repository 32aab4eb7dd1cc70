"""Shared fixtures: a real redis-server and the real devserver (as a subprocess).

- `redis_server` (session): a `RedisServerProcess` on a free loopback port; skipped only if
  redis-server is not installed.
- `devserver` (session): `resp-bridge devserver --port 0 --redis-url <redis_server>` started as
  a subprocess; the fixture waits for its `READY <url>` line. Its handle has `.url`, `.token`,
  `.readonly_token`, `.redis_url`, `.stats()` and `.reset_stats()`.
- `devserver_factory(**flags)`: more devservers with extra flags (`latency_ms=20` ->
  `--latency-ms 20`), stopped at the end of the test.
- `flush_redis`: FLUSHALL through redis-py before the test (not autouse).

Before anything runs, HOME and the XDG directories point into a temporary directory for the
whole session (and RUNTIME_DIRECTORY / RESP_BRIDGE_ADMIN_SOCKET are unset), so no bridge a test
starts can take the user's default admin socket or write under the user's home.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import redis

from bridge.config import default_admin_socket
from bridge.devserver.redis_process import RedisServerProcess

# Property tests assert outcomes, never speed: a per-example deadline only measures how busy
# the (shared, 2-core) machine is, so it is off for every hypothesis test.
hypothesis.settings.register_profile("resp-bridge", deadline=None)
hypothesis.settings.load_profile("resp-bridge")

#: The user's own default admin socket, and whether it existed before the tests ran.
USER_DEFAULT_ADMIN_SOCKET = default_admin_socket()
USER_DEFAULT_ADMIN_SOCKET_EXISTED = os.path.lexists(USER_DEFAULT_ADMIN_SOCKET)
#: The session's stand-in for HOME (XDG_* directories below it); set by pytest_configure.
TEST_HOME = ""
_XDG = {
    "XDG_RUNTIME_DIR": "run",
    "XDG_CONFIG_HOME": "config",
    "XDG_DATA_HOME": "data",
    "XDG_CACHE_HOME": "cache",
    "XDG_STATE_HOME": "state",
}


def pytest_configure(config: pytest.Config) -> None:
    """Point HOME and XDG_* at a temporary home for the session (children inherit it)."""
    global TEST_HOME
    TEST_HOME = tempfile.mkdtemp(prefix="resp-bridge-tests-home-")
    os.environ["HOME"] = TEST_HOME
    for name, sub in _XDG.items():
        os.environ[name] = os.path.join(TEST_HOME, sub)
        os.makedirs(os.environ[name], mode=0o700)
    for name in ("RUNTIME_DIRECTORY", "RESP_BRIDGE_ADMIN_SOCKET", "RESP_BRIDGE_METRICS_BIND"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(TEST_HOME, ignore_errors=True)


#: How long a devserver subprocess may take to print its READY line.
DEVSERVER_START_TIMEOUT_S = 30.0
#: How long it may take to exit after SIGTERM.
DEVSERVER_STOP_TIMEOUT_S = 10.0

TEST_TOKEN = "devserver-test-token"
TEST_READONLY_TOKEN = "devserver-test-readonly-token"


@dataclass
class DevServerHandle:
    """A running devserver subprocess and how to reach it."""

    url: str
    token: str
    readonly_token: str
    redis_url: str | None
    process: subprocess.Popen[bytes]
    log_path: str
    _stopped: bool = field(default=False, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def readonly_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.readonly_token}"}

    def stats(self) -> dict[str, int]:
        response = httpx.get(f"{self.url}/_devserver/stats", headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        response = httpx.post(
            f"{self.url}/_devserver/reset-stats", headers=self.headers, timeout=10
        )
        response.raise_for_status()

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if not self._stopped:
            self._stopped = True
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(DEVSERVER_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
        return self.process.returncode


def devserver_command(*args: str) -> list[str]:
    """The command line that runs `resp-bridge devserver ARGS` with this interpreter."""
    return [sys.executable, "-c", "from bridge.cli import main; main()", "devserver", *args]


def start_devserver(
    redis_url: str | None,
    *,
    token: str = TEST_TOKEN,
    readonly_token: str = TEST_READONLY_TOKEN,
    extra_args: tuple[str, ...] = (),
) -> DevServerHandle:
    """Start a devserver subprocess and wait for its READY line."""
    args = ["--port", "0", "--token", token, "--readonly-token", readonly_token]
    if redis_url is not None:
        args += ["--redis-url", redis_url]
    args += list(extra_args)
    # In the session's temporary home: removed with it at the end (was left in /tmp).
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept for the handle's lifetime
        prefix="devserver-", suffix=".log", delete=False, dir=TEST_HOME or None
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESP_BRIDGE_DEVSERVER_")}
    process = subprocess.Popen(
        devserver_command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    log.close()
    handle = DevServerHandle("", token, readonly_token, redis_url, process, log.name)
    deadline = time.monotonic() + DEVSERVER_START_TIMEOUT_S
    assert process.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, remaining))
        line = process.stdout.readline().decode() if ready else ""
        if line.startswith("READY "):
            handle.url = line.split(" ", 1)[1].strip()
            return handle
        if not line or remaining <= 0:
            handle.stop()
            raise RuntimeError(
                f"devserver did not print READY within {DEVSERVER_START_TIMEOUT_S} s "
                f"(exit code {process.returncode}); its log:\n{handle.log_text()}"
            )


def _flag(name: str, value: Any) -> list[str]:
    option = "--" + name.replace("_", "-")
    return [option] if value is True else [option, str(value)]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServerProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: install it with apt-get install redis-server")
    with RedisServerProcess() as process:
        yield process


@pytest.fixture(scope="session")
def devserver(redis_server: RedisServerProcess) -> Iterator[DevServerHandle]:
    handle = start_devserver(redis_server.url)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def devserver_factory(
    redis_server: RedisServerProcess,
) -> Iterator[Callable[..., DevServerHandle]]:
    """`devserver_factory(latency_ms=20, redis_url=...)`: a devserver with extra flags."""
    started: list[DevServerHandle] = []

    def factory(**flags: Any) -> DevServerHandle:
        redis_url = flags.pop("redis_url", redis_server.url)
        extra: list[str] = []
        for name, value in flags.items():
            extra += _flag(name, value)
        handle = start_devserver(redis_url, extra_args=tuple(extra))
        started.append(handle)
        return handle

    try:
        yield factory
    finally:
        for handle in started:
            handle.stop()


@pytest.fixture
def redis_client(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    """redis-py straight to the test redis-server (bytes replies)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def flush_redis(redis_client: redis.Redis) -> redis.Redis:
    """FLUSHALL before the test; returns the redis-py client."""
    redis_client.flushall()
    return redis_client
