"""`resp-bridge devserver --tls-cert/--tls-key`: refused at start when incomplete or unreadable
(with the file named), and an HTTPS listener whose handshake offers HTTP/1.1 only."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import trustme
from click.testing import CliRunner

from bridge.devserver.command_line import devserver as devserver_command
from tests.conftest import start_devserver


def test_cert_without_key_is_a_usage_error(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    trustme.CA().issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(cert))
    result = CliRunner().invoke(devserver_command, ["--tls-cert", str(cert)])
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together: add --tls-key" in result.output


def test_a_key_that_does_not_match_is_named(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(cert))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(key))  # another key
    result = CliRunner().invoke(devserver_command, ["--tls-cert", str(cert), "--tls-key", str(key)])
    assert result.exit_code == 2
    assert "cannot load the certificate" in result.output and str(cert) in result.output


def test_https_listener_speaks_http11_only(tmp_path: Path, redis_server: object) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    handle = start_devserver(
        redis_server.url,  # type: ignore[attr-defined]
        extra_args=("--tls-cert", str(cert), "--tls-key", str(key)),
    )
    try:
        assert handle.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(ca_file))
        context.set_alpn_protocols(["h2", "http/1.1"])
        port = int(handle.url.rsplit(":", 1)[1])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.selected_alpn_protocol() == "http/1.1"
        with httpx.Client(verify=context, base_url=handle.url, headers=handle.headers) as c:
            assert c.post("/", json=["ECHO", "over tls"]).json() == {"result": "over tls"}
            assert c.post("/", json=["ECHO", "again"]).json() == {"result": "again"}
    finally:
        handle.stop()
