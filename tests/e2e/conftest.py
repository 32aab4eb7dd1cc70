"""End-to-end fixtures: a real bridge process in front of the real devserver and redis-server.

The bridge runs as a subprocess (`resp-bridge serve`), exactly as users run it, on a free
loopback port; clients are real redis-py connections and the real redis-cli. Each bridge gets
its own admin socket in the test's temporary directory unless the test chooses one (a flag, or
an env var that moves the default): never the user's default one.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trustme

from bridge.devserver.redis_process import RedisServerProcess
from tests.conftest import DevServerHandle, start_devserver

BRIDGE_START_TIMEOUT_S = 20.0
#: Env vars a test sets to choose where the default admin socket goes.
_ADMIN_SOCKET_ENV = {"RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR", "RESP_BRIDGE_ADMIN_SOCKET"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BridgeProcess:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: str
    unixsocket: str | None = None
    clients: list[redis.Redis] = field(default_factory=list)

    def client(self, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("protocol", 2)
        kwargs.setdefault("socket_timeout", 10)
        client = redis.Redis(host="127.0.0.1", port=self.port, **kwargs)
        self.clients.append(client)
        return client

    def pool_client(self, **kwargs: Any) -> redis.Redis:
        """A client whose connection pool takes Connection kwargs (e.g. parser_class)."""
        kwargs.setdefault("protocol", 2)
        kwargs.setdefault("socket_timeout", 10)
        pool = redis.ConnectionPool(host="127.0.0.1", port=self.port, **kwargs)
        client = redis.Redis(connection_pool=pool)
        self.clients.append(client)
        return client

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_bridge(
    tmp_dir: str, url: str | None, token: str | None, *extra: str, env: dict[str, str] | None = None
) -> BridgeProcess:
    port = free_port()
    log_path = os.path.join(tmp_dir, f"bridge-{port}.log")
    args = [
        sys.executable, "-c", "from bridge.cli import main; main()", "serve",
        "--port", str(port), *extra,
    ]  # fmt: skip
    if "--admin-socket" not in extra and not _ADMIN_SOCKET_ENV & set(env or {}):
        args += ["--admin-socket", os.path.join(tmp_dir, f"admin-{port}.sock")]
    if url is not None:
        args += ["--url", url]
    if token is not None:
        args += ["--token", token]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("UPSTASH_REDIS_REST")}
    run_env.update(env or {})
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=run_env)
    log_file.close()
    bridge = BridgeProcess(port, proc, log_path)
    deadline = time.monotonic() + BRIDGE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge exited with {proc.returncode}:\n{bridge.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                    return bridge
        except OSError:
            time.sleep(0.05)
    bridge.stop()
    raise RuntimeError(f"bridge did not start in time:\n{bridge.log()}")


@pytest.fixture(scope="session")
def bridge(devserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """One bridge for the session, in front of the session's devserver."""
    proc = start_bridge(str(tmp_path_factory.mktemp("bridge")), devserver.url, devserver.token)
    yield proc
    proc.stop()


@pytest.fixture
def bridge_factory(
    tmp_path: Any,
) -> Iterator[Callable[..., BridgeProcess]]:
    """Start extra bridges with custom flags; all stopped at the end of the test."""
    started: list[BridgeProcess] = []

    def factory(url: str | None, token: str | None, *extra: str, **kw: Any) -> BridgeProcess:
        proc = start_bridge(str(tmp_path), url, token, *extra, **kw)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
def r(bridge: BridgeProcess, redis_server: Any) -> Iterator[redis.Redis]:
    """A RESP2 redis-py client through the bridge, on a flushed database."""
    direct = redis.Redis.from_url(redis_server.url)
    direct.flushall()
    direct.close()
    client = bridge.client()
    yield client
    client.close()


# -- HTTPS upstream: the devserver over TLS, certificates from trustme -------------------------


class ThrowawayCA:
    """A throw-away CA (trustme) writing PEM files into a temp dir: its own certificate for
    --ca-file and server certificates for the devserver's --tls-cert/--tls-key."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._ca = trustme.CA()
        self.ca_file = str(directory / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)

    def server_cert(
        self, name: str, *identities: str, not_after: datetime.datetime | None = None
    ) -> tuple[str, str]:
        """(cert file with its chain, key file) of a certificate for `identities`."""
        not_before = None
        if not_after is not None:
            not_before = not_after - datetime.timedelta(days=30)
        leaf = self._ca.issue_cert(*identities, not_before=not_before, not_after=not_after)
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)


@dataclass
class TlsDevServer(DevServerHandle):
    """A devserver serving HTTPS; its own endpoints are reached with the test CA."""

    ca_file: str = ""

    @classmethod
    def of(cls, handle: DevServerHandle, ca_file: str) -> TlsDevServer:
        assert handle.url.startswith("https://"), handle.url
        values = {f.name: getattr(handle, f.name) for f in fields(handle)}
        return cls(**values, ca_file=ca_file)

    def _verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def stats(self) -> dict[str, int]:
        response = httpx.get(
            f"{self.url}/_devserver/stats", headers=self.headers, timeout=10, verify=self._verify()
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        response = httpx.post(
            f"{self.url}/_devserver/reset-stats",
            headers=self.headers,
            timeout=10,
            verify=self._verify(),
        )
        response.raise_for_status()


def start_tls_devserver(
    redis_url: str, ca: ThrowawayCA, cert: tuple[str, str], *extra: str
) -> TlsDevServer:
    handle = start_devserver(
        redis_url, extra_args=("--tls-cert", cert[0], "--tls-key", cert[1], *extra)
    )
    return TlsDevServer.of(handle, ca.ca_file)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    return ThrowawayCA(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_cert(tls_ca: ThrowawayCA) -> tuple[str, str]:
    """A valid certificate for 127.0.0.1 and localhost."""
    return tls_ca.server_cert("server", "127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def tls_devserver(
    redis_server: RedisServerProcess, tls_ca: ThrowawayCA, tls_cert: tuple[str, str]
) -> Iterator[TlsDevServer]:
    """The session's devserver twin over HTTPS (same redis-server)."""
    handle = start_tls_devserver(redis_server.url, tls_ca, tls_cert)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def tls_bridge(
    tls_devserver: TlsDevServer, tls_ca: ThrowawayCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    """A bridge whose upstream is the HTTPS devserver, verified with --ca-file."""
    proc = start_bridge(
        str(tmp_path_factory.mktemp("tls-bridge")),
        tls_devserver.url,
        tls_devserver.token,
        "--ca-file",
        tls_ca.ca_file,
    )
    yield proc
    proc.stop()
