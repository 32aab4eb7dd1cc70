"""The one map from HTTP-library exceptions to the upstream exception tree of `bridge.errors`.

Every upstream client (REST commands, SSE streams, management APIs) runs its I/O inside
`map_exceptions(...)`, as httpcore does, so a failure is classified once, the same way
everywhere: whether the request can have reached the server decides the class (a connect
failure is `UpstreamUnavailable`, `executed=False`; a timeout after sending is
`UpstreamTimeout`, outcome unknown). Messages name the exception and httpx's text, which names
the URL at most: tokens live only in headers and are never formatted into one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import httpx

from bridge.errors import UpstreamAuthError, UpstreamError, UpstreamTimeout, UpstreamUnavailable

#: Longest exception text carried into an upstream error.
MAX_DESCRIPTION_CHARS = 200

#: (exception classes, what they become); the first entry that matches wins.
ExceptionMapping = Sequence[tuple[tuple[type[Exception], ...], type[UpstreamError]]]

#: A request: a connect failure never reached the server; any other failure may have.
HTTPX_ERRORS: ExceptionMapping = (
    ((httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout), UpstreamUnavailable),
    ((httpx.TimeoutException,), UpstreamTimeout),
    ((httpx.TransportError, httpx.DecodingError), UpstreamError),
)
#: A long-lived stream: it can also be closed under its reader (`httpx.StreamError`), which in
#: a plain request would be a bug and is left to propagate there.
HTTPX_STREAM_ERRORS: ExceptionMapping = (
    *HTTPX_ERRORS,
    ((httpx.StreamError,), UpstreamError),
)


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMapping = HTTPX_ERRORS) -> Iterator[None]:
    """Re-raise an exception listed in `mapping` as its upstream class (the original chained
    as `__cause__`); anything else propagates unchanged."""
    try:
        yield
    except Exception as exc:
        for sources, target in mapping:
            if isinstance(exc, sources):
                raise target(describe(exc)) from exc
        raise


def describe(exc: BaseException) -> str:
    """`ConnectError: [Errno 111] Connection refused`, cut to a log-friendly length."""
    name = type(exc).__name__
    text = str(exc).strip()
    return f"{name}: {text}"[:MAX_DESCRIPTION_CHARS] if text else name


def token_refused() -> UpstreamAuthError:
    """HTTP 401 from the REST API: the token was refused before anything ran."""
    return UpstreamAuthError(401, "token refused", executed=False)
