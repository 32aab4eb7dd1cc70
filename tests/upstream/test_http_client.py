"""The lean upstream HTTP client (`bridge.upstream.http_client`) and `RestClient` on top of it.

The main cases run against the real devserver (and its real redis-server), over plain HTTP and
through a TLS-terminating proxy with trustme certificates. The failure cases a real server
cannot be told to produce on cue (a chunked answer, closing an idle keep-alive connection,
dropping the connection in the middle of a request) use a tiny scripted socket server; every
failure asserts its `executed` flag, and that the token is never in the message.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from bridge.errors import UpstreamAuthError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.upstream import http_client
from bridge.upstream.http_client import HttpClient, header_block
from bridge.upstream.rest import RestClient

TOKEN = "devserver-test-token"
SECRET = "s3cret-token-in-header-only"
HEADERS = header_block([("Authorization", f"Bearer {SECRET}"), ("Content-Type", "text/plain")])


def rest_client(url: str, token: str = TOKEN, **kwargs: Any) -> RestClient:
    kwargs.setdefault("timeout_s", 5)
    kwargs.setdefault("connect_timeout_s", 2)
    return RestClient(url, token, **kwargs)


def lean(client: RestClient) -> HttpClient:
    http = client._http
    assert isinstance(http, HttpClient)
    return http


# -- a scripted server for the cases a real one does not produce on cue -----------------------

Script = Callable[[trio.SocketStream, int], Awaitable[None]]


@asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running `script(stream, connection_number)` per connection; yields
    its URL and the list of connection numbers accepted so far."""
    accepted: list[int] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        accepted.append(len(accepted))
        try:
            await script(stream, len(accepted) - 1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        yield f"http://127.0.0.1:{port}", accepted
        nursery.cancel_scope.cancel()


async def read_request(stream: trio.SocketStream) -> bytes:
    """One whole request (head + Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head + b"\r\n\r\n" + body


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def reset(stream: trio.SocketStream) -> None:
    """Close with RST (SO_LINGER 0), as a server that drops a connection hard."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def assert_clean(exc: BaseException) -> None:
    assert SECRET not in str(exc) and TOKEN not in str(exc)


# -- the real devserver -----------------------------------------------------------------------


async def test_pipeline_reuses_one_keep_alive_connection(devserver: Any) -> None:
    client = rest_client(devserver.url, resp2=True)
    try:
        assert await client.pipeline([["SET", "hc:k", "v"]]) == [b"+OK\r\n"]
        for _ in range(50):
            assert await client.pipeline([["GET", "hc:k"], ["PING"]]) == [
                b"$1\r\nv\r\n",
                b"+PONG\r\n",
            ]
        assert await client.multi_exec([["INCR", "hc:n"], ["GET", "hc:k"]]) in (
            b"*2\r\n:1\r\n$1\r\nv\r\n",
            b"*2\r\n:2\r\n$1\r\nv\r\n",
        )
        assert await client.single([b"SET", b"hc:bin", b"\x00\xff\r\n"]) == b"+OK\r\n"
        assert await client.single([b"GET", b"hc:bin"]) == b"$4\r\n\x00\xff\r\n\r\n"
        assert lean(client).connections_opened == 1
        assert client.sync_token  # the devserver sends one on every answer
    finally:
        await client.aclose()


async def test_concurrent_requests_stay_within_max_connections(devserver: Any) -> None:
    client = rest_client(devserver.url, max_connections=3)
    results: list[list[bytes]] = []

    async def one(i: int) -> None:
        results.append(await client.pipeline([["ECHO", f"m{i}"]]))

    try:
        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
        assert sorted(results) == sorted(
            [[b"$%d\r\nm%d\r\n" % (len(f"m{i}"), i)] for i in range(30)]
        )
        assert 1 <= lean(client).connections_opened <= 3
    finally:
        await client.aclose()


async def test_resp2_and_json_answers_agree(devserver: Any) -> None:
    json_client = rest_client(devserver.url)
    resp2_client = rest_client(devserver.url, resp2=True)
    try:
        commands = [
            ["RPUSH", "hc:list", "a", "b"],
            ["LRANGE", "hc:list", "0", "-1"],
            ["DEL", "hc:list"],
        ]
        assert await json_client.pipeline(commands) == await resp2_client.pipeline(commands)
        probe = await resp2_client.probe()
        assert probe.reachable and probe.resp2 and probe.server_version
    finally:
        await json_client.aclose()
        await resp2_client.aclose()


async def test_large_request_and_answer_bodies(devserver: Any) -> None:
    client = rest_client(devserver.url, resp2=True)
    value = "x" * (3 * 1024 * 1024)  # several sends and many reads, beyond one socket buffer
    try:
        assert await client.pipeline([["SET", "hc:big", value]]) == [b"+OK\r\n"]
        [frame] = await client.pipeline([["GET", "hc:big"]])
        assert frame == b"$%d\r\n%s\r\n" % (len(value), value.encode())
        assert lean(client).connections_opened == 1
    finally:
        await client.aclose()


async def test_wrong_token_is_refused_as_not_executed(devserver: Any) -> None:
    client = rest_client(devserver.url, token="not-the-token-abc", resp2=True)
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await client.pipeline([["SET", "hc:never", "1"]])
        assert info.value.executed is False and info.value.status == 401
        assert "not-the-token-abc" not in str(info.value)
        client.set_token(TOKEN)  # RELOAD
        assert await client.pipeline([["PING"]]) == [b"+PONG\r\n"]
    finally:
        await client.aclose()


async def test_switch_moves_later_requests_to_another_server(
    devserver: Any, devserver_factory: Callable[..., Any]
) -> None:
    other = devserver_factory()
    client = rest_client(devserver.url, resp2=True)
    try:
        await client.pipeline([["SET", "hc:where", "first"]])
        first_token = client.sync_token
        client.switch(other.url, other.token)
        assert client.sync_token == "" and client.display_url == other.url
        other.reset_stats()
        assert await client.pipeline([["PING"]]) == [b"+PONG\r\n"]
        assert other.stats()["http_requests"] >= 1
        assert client.sync_token and client.sync_token != first_token
        assert lean(client).connections_opened == 2
    finally:
        await client.aclose()


async def test_timeout_after_sending_is_outcome_unknown(
    devserver_factory: Callable[..., Any],
) -> None:
    slow = devserver_factory(latency_ms=800)
    client = rest_client(slow.url, timeout_s=0.2)
    try:
        with trio.fail_after(5):
            with pytest.raises(UpstreamTimeout) as info:
                await client.pipeline([["INCR", "hc:slow"]])
        assert info.value.executed is True
        assert_clean(info.value)
    finally:
        await client.aclose()


async def test_every_request_keeps_its_deadline() -> None:
    """Deadlines are kept by one watchdog: a request that is never answered times out after a
    quiet spell and beside requests that are answered; one given a shorter timeout than the
    request already waiting times out first (the watchdog wakes earlier); each such
    connection is dropped, and the others are unaffected."""

    async def script(stream: trio.SocketStream, number: int) -> None:
        while request := await read_request(stream):
            if b"never" in request:
                await trio.sleep_forever()
            await stream.send_all(ok(b"+OK\r\n"))

    failed: list[str] = []

    async def never(client: HttpClient, name: str) -> None:
        with pytest.raises(UpstreamTimeout) as info:
            await client.post("/", b"", b"never")
        assert info.value.executed is True
        failed.append(name)

    async with scripted_server(script) as (url, accepted):
        client = HttpClient(url, timeout_s=0.2, connect_timeout_s=1)
        try:
            with trio.fail_after(10):
                assert (await client.post("/", b"", b"fast")).body == b"+OK\r\n"
                await trio.sleep(0.3)  # the watchdog has nothing to wait for
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(never, client, "after a quiet spell")
                    await trio.sleep(0.02)
                    assert (await client.post("/", b"", b"fast")).body == b"+OK\r\n"
                client.timeout_s = 30.0
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(never, client, "long")
                    await trio.sleep(0.02)
                    client.timeout_s = 0.1
                    nursery.start_soon(never, client, "short")
                    with trio.fail_after(5):  # long before the first request's 30 s
                        while "short" not in failed:
                            await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()
                assert (await client.post("/", b"", b"fast")).body == b"+OK\r\n"
            assert failed == ["after a quiet spell", "short"]
            # one connection per request left unanswered, plus the one that kept answering
            assert client.connections_opened == len(accepted) == 4
        finally:
            await client.aclose()


async def test_no_free_connection_in_time_is_not_executed(
    devserver_factory: Callable[..., Any],
) -> None:
    slow = devserver_factory(latency_ms=600)
    client = rest_client(slow.url, timeout_s=5, max_connections=1, resp2=True)
    outcomes: list[object] = []

    async def one() -> None:
        try:
            outcomes.append(await client.pipeline([["PING"]]))
        except UpstreamError as exc:
            outcomes.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)  # takes the only connection for 600 ms
            await trio.sleep(0.05)
            lean(client).timeout_s = 0.2  # the second request's deadline comes first
            nursery.start_soon(one)
        first, second = outcomes
        assert isinstance(first, UpstreamUnavailable) and first.executed is False
        assert "no upstream connection" in str(first)
        assert second == [b"+PONG\r\n"]
    finally:
        await client.aclose()


async def test_connection_refused_is_not_executed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", timeout_s=2, connect_timeout_s=1)
    with pytest.raises(UpstreamUnavailable) as info:
        await client.post("/pipeline", HEADERS, b"[]")
    assert info.value.executed is False and "ECONNREFUSED" in str(info.value)
    assert_clean(info.value)


# -- scripted servers: framing and connection loss --------------------------------------------


async def test_chunked_answers_and_keep_alive() -> None:
    async def script(stream: trio.SocketStream, _n: int) -> None:
        while await read_request(stream):
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nUpstash-Sync-Token: c1\r\n"
                b"Content-Type: application/json\r\n\r\n"
                b'5\r\n[{"re\r\n'
                b'b\r\nsult":"T0s=\r\n'
                b'3\r\n"}]\r\n0\r\n\r\n'
            )

    async with scripted_server(script) as (url, accepted):
        client = rest_client(url)
        for _ in range(3):
            assert await client.pipeline([["SET", "a", "b"]]) == [b"$2\r\nOK\r\n"]
        assert client.sync_token == "c1" and len(accepted) == 1
        await client.aclose()


async def test_answer_until_close_is_read_and_the_connection_not_reused() -> None:
    async def script(stream: trio.SocketStream, _n: int) -> None:
        await read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await stream.send_all(b"world")

    async with scripted_server(script) as (url, accepted):
        client = HttpClient(url, timeout_s=2, connect_timeout_s=1)
        for _ in range(2):
            response = await client.post("/x", HEADERS, b"")
            assert (response.status, response.body) == (200, b"hello world")
        assert len(accepted) == 2
        await client.aclose()


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    async def script(stream: trio.SocketStream, _n: int) -> None:
        await read_request(stream)
        await stream.send_all(ok(b"one answer, then I close"))

    async with scripted_server(script) as (url, accepted):
        client = HttpClient(url, timeout_s=2, connect_timeout_s=1)
        for _ in range(3):
            response = await client.post("/x", HEADERS, b"body")
            assert response.body == b"one answer, then I close"
            await trio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        assert len(accepted) == 3 and client.connections_opened == 3
        await client.aclose()


async def test_reset_found_on_write_retries_once_on_a_new_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The peek before reuse is skipped, as if the RST raced it: the send fails before any
    byte was accepted, which proves the request never left, so a new connection is used."""

    async def script(stream: trio.SocketStream, n: int) -> None:
        await read_request(stream)
        await stream.send_all(ok(b"conn %d" % n))
        if n == 0:
            reset(stream)

    async with scripted_server(script) as (url, accepted):
        client = HttpClient(url, timeout_s=2, connect_timeout_s=1)
        assert (await client.post("/x", HEADERS, b"")).body == b"conn 0"
        await trio.sleep(0.1)  # the RST is in
        monkeypatch.setattr(http_client._Connection, "stale", lambda self, now: False)
        assert (await client.post("/x", HEADERS, b"")).body == b"conn 1"
        assert len(accepted) == 2
        await client.aclose()


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"", "without answering"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", "in the middle"),
    ],
)
async def test_connection_dropped_after_the_request_is_outcome_unknown(
    answer: bytes, words: str
) -> None:
    async def script(stream: trio.SocketStream, _n: int) -> None:
        await read_request(stream)
        if answer:
            await stream.send_all(answer)

    async with scripted_server(script) as (url, accepted):
        client = HttpClient(url, timeout_s=2, connect_timeout_s=1)
        with pytest.raises(UpstreamError) as info:
            await client.post("/pipeline", HEADERS, b'[["INCR","x"]]')
        assert info.value.executed is True and words in str(info.value)
        assert not isinstance(info.value, UpstreamUnavailable)
        assert_clean(info.value)
        assert len(accepted) == 1  # never retried
        await client.aclose()


async def test_reset_after_the_request_is_outcome_unknown() -> None:
    async def script(stream: trio.SocketStream, _n: int) -> None:
        await read_request(stream)
        reset(stream)

    async with scripted_server(script) as (url, accepted):
        client = HttpClient(url, timeout_s=2, connect_timeout_s=1)
        with pytest.raises(UpstreamError) as info:
            await client.post("/pipeline", HEADERS, b'[["INCR","x"]]')
        assert info.value.executed is True and "ECONNRESET" in str(info.value)
        assert len(accepted) == 1
        await client.aclose()


async def test_garbage_answer_is_a_protocol_error() -> None:
    async def script(stream: trio.SocketStream, _n: int) -> None:
        await read_request(stream)
        await stream.send_all(b"+OK\r\nthis is RESP, not HTTP\r\n")

    async with scripted_server(script) as (url, _accepted):
        client = HttpClient(url, timeout_s=2, connect_timeout_s=1)
        with pytest.raises(UpstreamError, match="unreadable HTTP answer") as info:
            await client.post("/pipeline", HEADERS, b"[]")
        assert info.value.executed is True
        await client.aclose()


# -- HTTPS: a TLS-terminating proxy with trustme certificates in front of the devserver -------


@asynccontextmanager
async def tls_proxy(target_url: str, cert: trustme.LeafCert) -> AsyncIterator[int]:
    """Terminate TLS on a free port and relay the bytes to `target_url` (the devserver)."""
    host, port = target_url.split("//")[1].split(":")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
    listen_port = listeners[0].transport_listener.socket.getsockname()[1]

    async def relay(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.aclose_forcefully(sink)

    async def handle(client: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await client.do_handshake()
        except trio.BrokenResourceError:
            return  # the client refused our certificate
        upstream = await trio.open_tcp_stream(host, int(port))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay, client, upstream)
            nursery.start_soon(relay, upstream, client)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        yield listen_port
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_https_with_ca_file_verifies_and_keeps_alive(
    devserver: Any, ca: trustme.CA, ca_file: str
) -> None:
    async with tls_proxy(devserver.url, ca.issue_cert("localhost")) as port:
        client = rest_client(f"https://localhost:{port}", ca_file=ca_file, resp2=True)
        try:
            assert await client.pipeline([["SET", "hc:tls", "yes"]]) == [b"+OK\r\n"]
            for _ in range(20):
                assert await client.pipeline([["GET", "hc:tls"]]) == [b"$3\r\nyes\r\n"]
            value = "t" * 500_000
            await client.pipeline([["SET", "hc:tls-big", value]])
            assert await client.single([b"STRLEN", b"hc:tls-big"]) == b":500000\r\n"
            # an answer of many TLS records (decrypted bytes wait inside the SSL object)
            [frame] = await client.pipeline([["GET", "hc:tls-big"]])
            assert frame == b"$500000\r\n" + value.encode() + b"\r\n"
            assert lean(client).connections_opened == 1
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("unknown CA", "certificate verify failed"),
        ("wrong host name", "Hostname mismatch"),
        ("expired", "certificate has expired"),
    ],
)
async def test_https_certificate_errors_are_clear_and_not_executed(
    devserver: Any, ca: trustme.CA, ca_file: str, tmp_path: Path, case: str, words: str
) -> None:
    trusted = ca_file
    if case == "unknown CA":
        cert = trustme.CA().issue_cert("localhost")
    elif case == "wrong host name":
        cert = ca.issue_cert("other.example")
    else:
        now = dt.datetime.now(dt.UTC)
        cert = ca.issue_cert(
            "localhost", not_before=now - dt.timedelta(days=3), not_after=now - dt.timedelta(days=1)
        )
    async with tls_proxy(devserver.url, cert) as port:
        client = HttpClient(
            f"https://localhost:{port}", timeout_s=3, connect_timeout_s=2, ca_file=trusted
        )
        with pytest.raises(UpstreamUnavailable) as info:
            await client.post("/pipeline", HEADERS, b'[["PING"]]')
        text = str(info.value)
        assert info.value.executed is False
        assert f"TLS certificate of localhost:{port} not accepted" in text and words in text
        if case == "unknown CA":
            assert "--ca-file" in text  # what to do about it
        assert_clean(info.value)
        await client.aclose()


async def test_https_idle_connection_closed_by_the_server_is_replaced(
    ca: trustme.CA, ca_file: str
) -> None:
    """The TLS server answers once per connection, then closes it (close_notify + FIN)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
    port = listeners[0].transport_listener.socket.getsockname()[1]
    accepted: list[int] = []

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        accepted.append(1)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            await stream.send_all(ok(b"tls answer %d" % len(accepted)))
            await stream.aclose()  # sends close_notify
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        client = HttpClient(
            f"https://localhost:{port}", timeout_s=3, connect_timeout_s=2, ca_file=ca_file
        )
        for n in (1, 2, 3):
            response = await client.post("/x", HEADERS, b"")
            assert response.body == b"tls answer %d" % n
            await trio.sleep(0.05)  # the close arrives while the connection is idle
        assert client.connections_opened == 3 and len(accepted) == 3
        await client.aclose()
        nursery.cancel_scope.cancel()


# -- requests without a task: `start_pipeline`, read when readable, or resumed ----------------


async def _warm(client: RestClient) -> None:
    """One awaited request, so an idle keep-alive connection is there to start on."""
    assert await client.pipeline([["PING"]]) in ([b"+PONG\r\n"], [b"$4\r\nPONG\r\n"])


async def test_a_started_pipeline_is_read_when_its_socket_is_readable(devserver: Any) -> None:
    client = rest_client(devserver.url, resp2=True)
    try:
        await _warm(client)
        call = client.start_pipeline([["SET", "hc:st", "v"], ["GET", "hc:st"]])
        assert call is not None and call.sent
        frames = None
        with trio.fail_after(5):
            while frames is None:
                await trio.lowlevel.wait_readable(call.fd)
                frames = call.read()
        assert frames == [b"+OK\r\n", b"$1\r\nv\r\n"]
        # the connection went back to the pool and carries the next request
        assert await client.pipeline([["GET", "hc:st"]]) == [b"$1\r\nv\r\n"]
        assert lean(client).connections_opened == 1
    finally:
        await client.aclose()


async def test_a_started_pipeline_the_socket_did_not_take_whole_is_resumed(
    devserver: Any,
) -> None:
    client = rest_client(devserver.url, resp2=True)
    value = "y" * (1024 * 1024)
    try:
        await _warm(client)
        [idle] = lean(client)._idle
        assert idle.sock is not None
        idle.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        call = client.start_pipeline([["SET", "hc:st-big", value]])
        assert call is not None and not call.sent
        with trio.fail_after(10):
            assert await call.resume() == [b"+OK\r\n"]
        [frame] = await client.pipeline([["GET", "hc:st-big"]])
        assert frame == b"$%d\r\n%s\r\n" % (len(value), value.encode())
    finally:
        await client.aclose()


async def test_a_started_pipeline_past_its_deadline_is_lost_as_may_have_run() -> None:
    async def first_answered_then_silent(stream: trio.SocketStream, _: int) -> None:
        await read_request(stream)
        await stream.send_all(ok(b'[{"result":"UE9ORw=="}]'))  # base64 PONG
        await read_request(stream)
        await trio.sleep_forever()

    async with scripted_server(first_answered_then_silent) as (url, _):
        client = rest_client(url, timeout_s=0.2)
        lost = trio.Event()
        try:
            await _warm(client)
            call = client.start_pipeline([["INCR", "n"]])
            assert call is not None and call.sent
            call.on_lost(lost.set)
            with trio.fail_after(5):
                await lost.wait()
            exc = call.abandon()
            assert isinstance(exc, UpstreamTimeout) and exc.executed
            assert_clean(exc)
            assert lean(client)._busy == set()
        finally:
            await client.aclose()
