"""The JSON client every management provider builds on, its errors and credential masking.

- `ApiClient`: httpx, HTTP Basic auth, JSON in and out, a deadline on every call, and every
  failure mapped at this boundary (through the shared map of `bridge.upstream.http_errors`)
  to `ManagementError` with a message that says what happened (status + the API's own error
  text) and what to do. Credentials are never formatted into a message: URLs are shown
  redacted (`bridge.redaction`) and known secret values are masked (`scrub`).
- `redact_secrets`: JSON results with credential-like keys (database passwords, REST tokens)
  masked.

The provider clients (`upstash_api`, `enterprise_api`) import only this module; the
operation table that dispatches to them is `management_ops`. Must not import trio (httpx runs
on whichever async library calls it).
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import orjson

from bridge import __version__
from bridge.errors import BridgeError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bridge.redaction import MASK, redact_url
from bridge.upstream.http_errors import map_exceptions

#: Deadline of one management API call (creating a database can take a few seconds).
MANAGEMENT_TIMEOUT_S = 30.0
#: Longest piece of an API's error body quoted in a message (bodies can be HTML pages).
MAX_ERROR_TEXT_CHARS = 300
#: Largest response body accepted from a management API (stats series are the biggest).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Keys whose values are credentials in the providers' JSON (matched case-insensitively,
#: also as a substring: "read_only_rest_token", "authentication_redis_pass", ...).
SECRET_KEY_PARTS = ("password", "token", "secret", "api_key", "_pass", "private_key")

#: What each status means and what to do; the API's own text is quoted after it.
STATUS_HINTS: Mapping[int, str] = {
    400: "bad request: the API refused the parameters",
    401: "unauthorized: the credentials were refused",
    403: "forbidden: these credentials may not do this (role or plan)",
    404: "not found: no such database, team, Kafka object or endpoint (check the id)",
    405: "method not allowed: this API version does not offer that operation",
    406: "not acceptable: the API could not answer in JSON",
    409: "conflict: the object is busy or already exists; retry once it settles",
    429: "too many requests: rate limited, wait a little and retry",
    500: "internal server error at the provider: retry later",
    502: "bad gateway at the provider: retry later",
    503: "service unavailable: retry later (Redis Enterprise: the node is not in an active "
    "cluster)",
    504: "gateway timeout at the provider: retry later",
    505: "HTTP version not supported: the API does not offer this API version",
}


class ManagementError(BridgeError):
    """A management call failed. The message is safe to show (no credentials)."""

    def __init__(self, message: str, *, status: int | None = None, kind: str = "api") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class ManagementUsageError(ManagementError):
    """The command was not understood (unknown operation, missing or bad argument)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="usage")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


#: Credentials inside strings (Kafka connector properties such as `connection.uri` or
#: `sasl.jaas.config`, and error messages quoting them): a URL's password, `password=...`.
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*):[^@\s/]+@")
_SECRET_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,\"']+)"
)
#: Values masked by key shorter than this are not searched for elsewhere (too common).
MIN_SCRUBBED_CHARS = 8


def redact_secrets(value: Any) -> Any:
    """The JSON value with every credential-like key's value masked (recursively), and in
    every string the credentials it embeds and the values masked elsewhere in it."""
    found: list[str] = []

    def by_key(item: Any) -> Any:
        if isinstance(item, dict):
            out = {}
            for k, v in item.items():
                if is_secret_key(str(k)) and v not in (None, ""):
                    out[k] = MASK
                    if isinstance(v, str) and len(v) >= MIN_SCRUBBED_CHARS:
                        found.append(v)
                else:
                    out[k] = by_key(v)
            return out
        if isinstance(item, list):
            return [by_key(v) for v in item]
        return item

    def in_text(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: in_text(v) for k, v in item.items()}
        if isinstance(item, list):
            return [in_text(v) for v in item]
        if isinstance(item, str) and item != MASK:
            text = _URL_PASSWORD.sub(rf"\1:{MASK}@", scrub(item, found))
            return _SECRET_PAIR.sub(rf"\1\2{MASK}", text)
        return item

    return in_text(by_key(value))


def scrub(text: str, secrets: Sequence[str | None]) -> str:
    """The text with each secret value masked."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def error_text(body: bytes) -> str:
    """The API's own words from an error body: a JSON string, or the usual fields of an
    object (`error`, `message`, `description`, `error_code`), or the first line of text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, str):
        text = data
    elif isinstance(data, dict):
        parts = [
            str(data[k]) for k in ("error_code", "error", "message", "description") if k in data
        ]
        text = ": ".join(parts) if parts else orjson.dumps(data).decode()
    else:
        text = body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    text = " ".join(text.split())
    if len(text) > MAX_ERROR_TEXT_CHARS:
        text = text[:MAX_ERROR_TEXT_CHARS] + "..."
    return text


class ApiClient:
    """JSON over HTTPS with Basic auth; subclasses add the provider's endpoints."""

    #: For messages: "the Upstash developer API".
    provider = "the management API"
    #: What to check when the credentials are refused.
    auth_hint = "check the credentials"

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = MANAGEMENT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.display_url = redact_url(self.base_url)
        self._secrets = (password,)
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(username, password),
            verify=verify,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"User-Agent": f"resp-bridge/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One call; the decoded JSON answer (None for an empty body)."""
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        with self._map_errors(method, path):
            response = await self._client.request(
                method, path, content=content, headers=headers, params=params
            )
        if response.status_code >= 400:
            raise self._status_error(method, path, response)
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise ManagementError(
                f"{self.provider} answered {method} {path} with {len(response.content)} bytes "
                f"(more than {MAX_RESPONSE_BYTES}); refusing to process it"
            )
        if not response.content.strip():
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ManagementError(
                f"{self.provider} answered {method} {path} with HTTP {response.status_code} "
                f"but not JSON: {self._quote(response.content)!r}",
                status=response.status_code,
                kind="protocol",
            ) from None

    def _quote(self, body: bytes) -> str:
        return scrub(error_text(body), self._secrets)

    def _status_error(self, method: str, path: str, response: httpx.Response) -> ManagementError:
        status = response.status_code
        hint = STATUS_HINTS.get(status) or (
            "server error at the provider: retry later" if status >= 500 else "request refused"
        )
        if status == 401:
            hint += f" ({self.auth_hint})"
        text = self._quote(response.content)
        said = f": {text}" if text else ""
        return ManagementError(
            f"{self.provider} refused {method} {path}: HTTP {status} {hint}{said}",
            status=status,
            kind="http",
        )

    @contextlib.contextmanager
    def _map_errors(self, method: str, path: str) -> Iterator[None]:
        """The shared HTTP error map, then a message that says what to do about it."""
        where = f"{self.provider} at {self.display_url}"
        try:
            with map_exceptions():
                yield
        except UpstreamTimeout:
            raise ManagementError(
                f"no answer from {where} to {method} {path} within {self.timeout_s:g} s; "
                "the operation may still complete: check with a LIST or INFO",
                kind="timeout",
            ) from None
        except UpstreamUnavailable as exc:
            cause = exc.__cause__ or exc
            reason = _reason(cause)
            if _is_certificate_error(cause):
                raise ManagementError(
                    f"the TLS certificate of {where} is not trusted ({reason}): give the CA "
                    "that signed it (--ca-file / enterprise_ca_file), or skip verification with "
                    "--insecure (not recommended)",
                    kind="tls",
                ) from None
            raise ManagementError(f"cannot reach {where}: {reason}", kind="unavailable") from None
        except UpstreamError as exc:
            cause = exc.__cause__ or exc
            raise ManagementError(
                f"{method} {path} to {where} failed: {type(cause).__name__}: {_reason(cause)}",
                kind="transport",
            ) from None


def _reason(exc: BaseException) -> str:
    """The innermost cause's text (httpx wraps ssl/OS errors), without URLs' userinfo."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = str(inner) or type(inner).__name__
    return " ".join(text.split())[:MAX_ERROR_TEXT_CHARS]


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
