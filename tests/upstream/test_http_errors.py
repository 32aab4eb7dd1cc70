"""The one httpx-to-upstream exception map (bridge/upstream/http_errors.py).

Unit tests of error paths, so httpx's exceptions are raised directly and through a
`MockTransport`; the real failures (refused connections, timeouts against a live devserver)
are in tests/e2e/test_upstream_errors.py.
"""

from __future__ import annotations

import httpx
import pytest

from bridge.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bridge.upstream.http_errors import (
    HTTPX_ERRORS,
    HTTPX_STREAM_ERRORS,
    MAX_DESCRIPTION_CHARS,
    describe,
    map_exceptions,
    token_refused,
)

_REQUEST = httpx.Request("POST", "https://db.example/pipeline")


@pytest.mark.parametrize(
    ("raised", "expected", "executed"),
    [
        (httpx.ConnectError("refused", request=_REQUEST), UpstreamUnavailable, False),
        (httpx.ConnectTimeout("connect timed out", request=_REQUEST), UpstreamUnavailable, False),
        (httpx.PoolTimeout("no free connection", request=_REQUEST), UpstreamUnavailable, False),
        (httpx.ReadTimeout("read timed out", request=_REQUEST), UpstreamTimeout, True),
        (httpx.WriteTimeout("write timed out", request=_REQUEST), UpstreamTimeout, True),
        (httpx.ReadError("reset", request=_REQUEST), UpstreamError, True),
        (httpx.RemoteProtocolError("bad frame", request=_REQUEST), UpstreamError, True),
        (httpx.DecodingError("bad gzip", request=_REQUEST), UpstreamError, True),
    ],
)
def test_request_errors(raised: Exception, expected: type[UpstreamError], executed: bool) -> None:
    with pytest.raises(UpstreamError) as caught, map_exceptions(HTTPX_ERRORS):
        raise raised
    assert type(caught.value) is expected
    assert caught.value.executed is executed
    assert caught.value.__cause__ is raised
    assert str(caught.value) == f"{type(raised).__name__}: {raised}"


def test_stream_errors_only_in_the_stream_map() -> None:
    closed = httpx.StreamClosed()
    with pytest.raises(httpx.StreamClosed), map_exceptions(HTTPX_ERRORS):
        raise closed  # a bug in a plain request: not disguised as an upstream failure
    with pytest.raises(UpstreamError) as caught, map_exceptions(HTTPX_STREAM_ERRORS):
        raise closed
    assert type(caught.value) is UpstreamError and caught.value.__cause__ is closed


def test_other_exceptions_pass_unchanged() -> None:
    with pytest.raises(KeyError), map_exceptions():
        raise KeyError("not an HTTP failure")
    with pytest.raises(UpstreamTimeout), map_exceptions():
        raise UpstreamTimeout("already mapped")


async def test_through_a_transport() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    transport = httpx.MockTransport(refuse)
    with (
        pytest.raises(UpstreamUnavailable, match=r"ConnectError: .*refused") as caught,
        map_exceptions(),
    ):
        await transport.handle_async_request(_REQUEST)
    assert caught.value.executed is False


def test_describe() -> None:
    assert describe(httpx.ReadError("")) == "ReadError"
    assert describe(httpx.ReadError("  reset by peer \n")) == "ReadError: reset by peer"
    long = describe(httpx.ReadError("x" * 1000))
    assert len(long) == MAX_DESCRIPTION_CHARS and long.startswith("ReadError: xxx")


def test_token_refused() -> None:
    error = token_refused()
    assert isinstance(error, UpstreamAuthError)
    assert (error.status, error.executed, str(error)) == (401, False, "token refused")
