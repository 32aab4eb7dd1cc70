"""Error paths of the management JSON client (bridge/upstream/api_client.py).

Transport failures are raised by a `MockTransport` (unit tests of error paths); the real
exchanges with both APIs are in test_management.py against the devserver's emulation.
"""

from __future__ import annotations

import ssl

import httpx
import pytest

from bridge.upstream.api_client import MASK, ApiClient, ManagementError

PASSWORD = "api-secret-0123456789"


def _client(handler: httpx.MockTransport) -> ApiClient:
    return ApiClient("https://ops:pw@[::1]:9443/", "ops", PASSWORD, transport=handler, timeout_s=2)


def _raising(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("exc", "kind", "says"),
    [
        (httpx.ReadTimeout("timed out"), "timeout", "no answer from the management API at"),
        (httpx.ConnectTimeout("timed out"), "unavailable", "cannot reach the management API at"),
        (httpx.ConnectError("[Errno 111] refused"), "unavailable", "cannot reach"),
        (httpx.RemoteProtocolError("bad status line"), "transport", "RemoteProtocolError"),
    ],
)
async def test_transport_failures(exc: Exception, kind: str, says: str) -> None:
    async with _client(_raising(exc)) as client:
        with pytest.raises(ManagementError) as caught:
            await client.request("GET", "/v1/bdbs")
    assert caught.value.kind == kind and says in str(caught.value)
    assert "https://[::1]:9443" in str(caught.value)  # shown redacted: no userinfo
    assert "pw@" not in str(caught.value) and PASSWORD not in str(caught.value)


async def test_untrusted_certificate_says_what_to_do() -> None:
    cause = ssl.SSLCertVerificationError("certificate verify failed: self-signed certificate")
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]")
    error.__cause__ = cause
    async with _client(_raising(error)) as client:
        with pytest.raises(ManagementError) as caught:
            await client.request("GET", "/v1/bdbs")
    assert caught.value.kind == "tls" and "--ca-file" in str(caught.value)


async def test_error_bodies_are_quoted_with_secrets_masked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": f"busy, retry with {PASSWORD}"})

    async with _client(httpx.MockTransport(handler)) as client:
        with pytest.raises(ManagementError) as caught:
            await client.request("POST", "/v1/bdbs", body={"name": "x"})
    text = str(caught.value)
    assert caught.value.status == 409 and caught.value.kind == "http"
    assert "HTTP 409 conflict" in text and f"busy, retry with {MASK}" in text
    assert PASSWORD not in text
