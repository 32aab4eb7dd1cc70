"""The production transport end to end: the bridge in front of the devserver over HTTPS.

Upstash is only reachable over TLS, so every core case of the end-to-end suite runs again here
with the bridge's upstream being the devserver with `--tls-cert/--tls-key` (certificates from
a throw-away trustme CA) and the bridge given that CA with `--ca-file`: data types,
pipelines, transactions (MULTI/EXEC, WATCH), pub/sub and MONITOR over SSE, blocking commands
woken by a push, `DB USE` through the management emulation. The cases are the existing
tests themselves, imported: this module overrides the fixtures they use (`bridge`,
`devserver`, `devserver_factory`, `bridge_factory`) with HTTPS ones, so a case changed there
is changed here. Then the certificate errors a user can meet (unknown CA, wrong host name,
expired), each of which must be named at start with what to do.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess
from tests.admin.test_db_use import (
    test_db_use_switches_the_running_bridge_and_follows_a_password_reset,
)
from tests.e2e.conftest import (
    BridgeProcess,
    ThrowawayCA,
    TlsDevServer,
    start_bridge,
    start_tls_devserver,
)
from tests.e2e.test_blocking import (
    test_blpop_returns_at_once_and_first_nonempty_key_wins,
    test_external_producer_is_picked_up_by_polling,
    test_local_write_wakes_the_waiter_at_once,
    test_transaction_helper_retries_until_consistent,
    test_watch_detects_a_concurrent_change,
    test_watch_unchanged_key_executes_with_types_kept,
)
from tests.e2e.test_datatypes import (
    rc,
    test_binary_keys_and_values,
    test_hashes,
    test_keys_and_server,
    test_lists,
    test_one_megabyte_value,
    test_pipeline_with_transaction,
    test_pipeline_without_transaction,
    test_scripting,
    test_sets,
    test_sorted_sets,
    test_streams,
    test_strings,
    test_transaction_runtime_error_is_per_command,
)
from tests.e2e.test_protocol import test_multi_exec_semantics
from tests.e2e.test_pubsub import (
    isolated,
    spawn,
    test_get_message_patterns_and_counts,
    test_payloads,
    test_redis_cli_monitor,
    test_redis_py_monitor_and_stream_sharing,
)

#: The imported cases, collected here again with the HTTPS fixtures below.
CASES = (
    rc, isolated, spawn,
    test_strings, test_hashes, test_lists, test_sets, test_sorted_sets, test_streams,
    test_scripting, test_keys_and_server, test_binary_keys_and_values, test_one_megabyte_value,
    test_pipeline_without_transaction, test_pipeline_with_transaction,
    test_transaction_runtime_error_is_per_command, test_multi_exec_semantics,
    test_watch_unchanged_key_executes_with_types_kept, test_watch_detects_a_concurrent_change,
    test_transaction_helper_retries_until_consistent,
    test_blpop_returns_at_once_and_first_nonempty_key_wins,
    test_external_producer_is_picked_up_by_polling, test_local_write_wakes_the_waiter_at_once,
    test_get_message_patterns_and_counts, test_payloads, test_redis_cli_monitor,
    test_redis_py_monitor_and_stream_sharing,
    test_db_use_switches_the_running_bridge_and_follows_a_password_reset,
)  # fmt: skip


# -- the HTTPS versions of the fixtures the imported cases use ---------------------------------


@pytest.fixture
def devserver(tls_devserver: TlsDevServer) -> TlsDevServer:
    return tls_devserver


@pytest.fixture
def bridge(tls_bridge: BridgeProcess) -> BridgeProcess:
    return tls_bridge


@pytest.fixture
def devserver_factory(
    devserver_factory: Callable[..., Any], tls_ca: ThrowawayCA, tls_cert: tuple[str, str]
) -> Callable[..., TlsDevServer]:
    """The suite's factory, every devserver it starts serving HTTPS."""

    def factory(**flags: Any) -> TlsDevServer:
        handle = devserver_factory(tls_cert=tls_cert[0], tls_key=tls_cert[1], **flags)
        return TlsDevServer.of(handle, tls_ca.ca_file)

    return factory


@pytest.fixture
def bridge_factory(
    bridge_factory: Callable[..., BridgeProcess], tls_ca: ThrowawayCA
) -> Callable[..., BridgeProcess]:
    """The suite's factory, every bridge of an HTTPS upstream given the test CA."""

    def factory(url: str | None, token: str | None, *extra: str, **kw: Any) -> BridgeProcess:
        if url is not None and url.startswith("https://"):
            extra = ("--ca-file", tls_ca.ca_file, *extra)
        return bridge_factory(url, token, *extra, **kw)

    return factory


def test_the_cases_really_run_over_tls(tls_bridge: BridgeProcess, r: redis.Redis) -> None:
    """The overrides took: the bridge's upstream is https and the SSE streams use the CA."""
    assert str(r.info("bridge")["upstream_url"]).startswith("https://"), r.info("bridge")
    pubsub = tls_bridge.client().pubsub()
    pubsub.subscribe("tls:check")
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    pubsub.close()
    assert "ConnectError" not in tls_bridge.log()
    assert "ERROR" not in tls_bridge.log()


# -- certificate errors: named at start, with what to do ---------------------------------------


@pytest.fixture
def started(tmp_path: Any) -> Iterator[Callable[..., BridgeProcess]]:
    """Bridges started with exactly the flags given (no CA added); stopped at the end."""
    bridges: list[BridgeProcess] = []

    def start(url: str, token: str, *extra: str) -> BridgeProcess:
        bridge = start_bridge(str(tmp_path), url, token, *extra)
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        bridge.stop()


@pytest.fixture(scope="module")
def odd_devservers(
    redis_server: RedisServerProcess, tls_ca: ThrowawayCA
) -> Iterator[dict[str, TlsDevServer]]:
    """Devservers with a certificate for another host name and with an expired one."""
    expired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    servers = {
        "wrong host": start_tls_devserver(
            redis_server.url, tls_ca, tls_ca.server_cert("other", "db.example.com")
        ),
        "expired": start_tls_devserver(
            redis_server.url,
            tls_ca,
            tls_ca.server_cert("expired", "127.0.0.1", not_after=expired),
        ),
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize(
    ("case", "reason", "advice"),
    [
        ("unknown CA", "unable to get local issuer certificate", "--ca-file"),
        ("wrong host", "IP address mismatch", "--url"),
        ("expired", "certificate has expired", "renew"),
    ],
)
def test_certificate_errors_are_named_at_start(
    case: str,
    reason: str,
    advice: str,
    tls_devserver: TlsDevServer,
    odd_devservers: dict[str, TlsDevServer],
    tls_ca: ThrowawayCA,
    started: Callable[..., BridgeProcess],
) -> None:
    if case == "unknown CA":  # the user forgot --ca-file: the system trust store says no
        upstream, extra = tls_devserver, ()
    else:
        upstream, extra = odd_devservers[case], ("--ca-file", tls_ca.ca_file)
    bridge = started(upstream.url, upstream.token, *extra)
    client = bridge.client()
    with pytest.raises(redis.ResponseError) as refused:
        client.get("tls:any")
    message = str(refused.value)
    assert "certificate verify failed" in message and reason in message, message
    assert "not executed" in message, message
    start = next(
        line for line in bridge.log().splitlines() if "not reachable" in line or "TLS" in line
    )
    assert reason in start and advice in start, start
    assert upstream.token not in bridge.log()
    assert "Traceback" not in bridge.log()
    # The devserver's side of it: one info line per refused handshake, no error.
    refusals = [line for line in upstream.log_text().splitlines() if "TLS handshake" in line]
    assert refusals and all(" INFO " in line for line in refusals), refusals


def test_tls_clients_that_go_away_are_not_errors(
    tls_devserver: TlsDevServer, redis_client: redis.Redis
) -> None:
    """Aborted handshakes, and resets after it (mid-reply, mid-SSE-stream) on the HTTPS port:
    info lines at most in the devserver, which keeps serving."""
    host, port = tls_devserver.url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=tls_devserver.ca_file)
    redis_client.set("tls:big", b"v" * (2 * 1024 * 1024))
    auth = f"Authorization: Bearer {tls_devserver.token}\r\n"
    after_handshake = (
        f"GET /get/tls:big HTTP/1.1\r\nHost: x\r\n{auth}\r\n",
        f"POST /subscribe/tls:ch HTTP/1.1\r\nHost: x\r\n{auth}Accept: text/event-stream\r\n\r\n",
        f"POST /pipeline HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 100\r\n\r\n[[",
    )

    def reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    for _ in range(10):
        for payload in (b"", b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n"):
            sock = socket.create_connection((host, int(port)), timeout=5)
            if payload:
                sock.sendall(payload)
            reset(sock)
        for request in after_handshake:
            raw = socket.create_connection((host, int(port)), timeout=5)
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(request.encode())
            if "Content-Length" not in request:
                assert tls.recv(100).startswith(b"HTTP/1.1 200")
            reset(tls)
    reply = httpx.post(
        f"{tls_devserver.url}/",
        json=["ECHO", "still serving"],
        headers=tls_devserver.headers,
        verify=context,
    )
    assert reply.json() == {"result": "still serving"}
    deadline = time.monotonic() + 10
    while tls_devserver.stats()["sse_streams_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tls_devserver.stats()["sse_streams_open"] == 0
    log = tls_devserver.log_text()
    assert not [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
