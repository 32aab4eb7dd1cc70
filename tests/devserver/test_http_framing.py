"""HTTP/1.1 framing of the devserver at the byte level: what a client sees on the wire.

Raw sockets on purpose: an HTTP library would hide pipelining, `Expect: 100-continue`,
chunked request bodies, HTTP/1.0 and malformed requests, which the parser must handle.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import DevServerHandle


def connect(devserver: DevServerHandle) -> socket.socket:
    url = httpx.URL(devserver.url)
    assert url.host and url.port
    return socket.create_connection((url.host, url.port), timeout=10)


def read_responses(
    sock: socket.socket, count: int
) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """`count` Content-Length responses: (status line, lower-case headers, body)."""
    data = b""
    out: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    while len(out) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = data[:head_end].split(b"\r\n")
            headers = dict(line.split(b": ", 1) for line in lines[1:])
            headers = {k.lower(): v for k, v in headers.items()}
            length = int(headers.get(b"content-length", b"0"))
            if len(data) >= head_end + 4 + length:
                body = data[head_end + 4 : head_end + 4 + length]
                out.append((lines[0], headers, body))
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} responses: {data!r}"
        data += chunk
    return out


def post(devserver: DevServerHandle, path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Authorization: Bearer {devserver.token}"]
    head += [f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_pipelined_requests_in_one_write_are_answered_in_order(
    devserver: DevServerHandle,
) -> None:
    requests = b"".join(
        post(devserver, "/pipeline", json.dumps([["ECHO", f"r{i}"]]).encode()) for i in range(20)
    )
    with connect(devserver) as sock:
        sock.sendall(requests)
        replies = read_responses(sock, 20)
    assert [json.loads(body) for _, _, body in replies] == [
        [{"result": f"r{i}"}] for i in range(20)
    ]
    assert all(status == b"HTTP/1.1 200 OK" for status, _, _ in replies)
    assert all(b"connection" not in headers for _, headers, _ in replies)


def test_request_split_across_many_writes(devserver: DevServerHandle) -> None:
    request = post(devserver, "/", json.dumps(["ECHO", "split"]).encode())
    with connect(devserver) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(request), 7):
            sock.sendall(request[i : i + 7])
        [(status, _, body)] = read_responses(sock, 1)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body) == {"result": "split"}


def test_chunked_request_body(devserver: DevServerHandle) -> None:
    body = json.dumps(["ECHO", "chunked"]).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {devserver.token}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunks = b"".join(
        b"%x\r\n%b\r\n" % (len(body[i : i + 5]), body[i : i + 5]) for i in range(0, len(body), 5)
    )
    with connect(devserver) as sock:
        sock.sendall(head + chunks + b"0\r\n\r\n")
        [(_, _, reply)] = read_responses(sock, 1)
    assert json.loads(reply) == {"result": "chunked"}


def test_expect_100_continue_is_answered_before_the_body(devserver: DevServerHandle) -> None:
    body = json.dumps(["ECHO", "continued"]).encode()
    head = post(devserver, "/", body, "Expect: 100-continue")[: -len(body)]
    with connect(devserver) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        [(status, _, reply)] = read_responses(sock, 1)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(reply) == {"result": "continued"}


def test_connection_close_and_http10_close_after_the_response(devserver: DevServerHandle) -> None:
    for request in (
        post(devserver, "/", b'["ECHO","bye"]', "Connection: close"),
        post(devserver, "/", b'["ECHO","bye"]').replace(b"HTTP/1.1", b"HTTP/1.0"),
    ):
        with connect(devserver) as sock:
            sock.sendall(request)
            [(_, headers, reply)] = read_responses(sock, 1)
            assert headers[b"connection"] == b"close"
            assert json.loads(reply) == {"result": "bye"}
            assert sock.recv(100) == b""  # the server closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_requests_get_400_and_close(
    devserver: DevServerHandle, request_bytes: bytes
) -> None:
    with connect(devserver) as sock:
        sock.sendall(request_bytes)
        [(status, headers, body)] = read_responses(sock, 1)
        assert status.startswith(b"HTTP/1.1 400 ")
        assert headers[b"connection"] == b"close"
        assert "bad HTTP request" in json.loads(body)["error"]
        assert sock.recv(100) == b""


def test_a_request_cut_short_by_eof_gets_400(devserver: DevServerHandle) -> None:
    request = post(devserver, "/", b'["ECHO","cut"]')[:-5]
    with connect(devserver) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        [(status, _, body)] = read_responses(sock, 1)
    assert status.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {"error": "ERR bad HTTP request: incomplete request"}
