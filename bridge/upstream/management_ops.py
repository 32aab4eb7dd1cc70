"""Database management over the providers' HTTP APIs: errors, the shared JSON client, the
operation table, and the one entry point (`run_management`) used by the admin socket and the CLI.

- `ApiClient`: httpx, HTTP Basic auth, JSON in and out, a deadline on every call, and every
  failure mapped at this boundary to `ManagementError` with a message that says what happened
  (status + the API's own error text) and what to do. Credentials are never formatted into a
  message: URLs are shown without userinfo and known secret values are masked.
- `OPERATIONS`: the admin commands `DB ...` / `TEAM ...` and `resp-bridge db|team ...` as data
  (name, parameters, which provider method implements it, destructive or not). HELP, usage
  errors and the README's table come from it.
- Results are plain JSON values with secrets (database passwords, REST tokens) masked by key.

The provider clients live in `upstash_api` (Upstash developer API) and `enterprise_api` (Redis
Enterprise Software REST API); they are imported lazily here because they import this module.
Must not import trio (httpx runs on whichever async library calls it).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from bridge import __version__
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

log = logging.getLogger("bridge.management")

#: Deadline of one management API call (creating a database can take a few seconds).
MANAGEMENT_TIMEOUT_S = 30.0
#: Longest piece of an API's error body quoted in a message (bodies can be HTML pages).
MAX_ERROR_TEXT_CHARS = 300
#: Largest response body accepted from a management API (stats series are the biggest).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MASK = "<redacted>"
#: Keys whose values are credentials in the providers' JSON (matched case-insensitively,
#: also as a substring: "read_only_rest_token", "authentication_redis_pass", ...).
SECRET_KEY_PARTS = ("password", "token", "secret", "api_key", "_pass", "private_key")

#: What each status means and what to do; the API's own text is quoted after it.
STATUS_HINTS: Mapping[int, str] = {
    400: "bad request: the API refused the parameters",
    401: "unauthorized: the credentials were refused",
    403: "forbidden: these credentials may not do this (role or plan)",
    404: "not found: no such database, team or endpoint (check the id)",
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


def display_url(url: str) -> str:
    """The URL without userinfo, query or fragment, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_secrets(value: Any) -> Any:
    """The JSON value with every credential-like key's value masked (recursively)."""
    if isinstance(value, dict):
        return {
            k: (MASK if is_secret_key(str(k)) and v not in (None, "") else redact_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


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
        self.display_url = display_url(self.base_url)
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
        where = f"{self.provider} at {self.display_url}"
        try:
            yield
        except httpx.TimeoutException:
            raise ManagementError(
                f"no answer from {where} to {method} {path} within {self.timeout_s:g} s; "
                "the operation may still complete: check with a LIST or INFO",
                kind="timeout",
            ) from None
        except httpx.ConnectError as exc:
            reason = _reason(exc)
            if _is_certificate_error(exc):
                raise ManagementError(
                    f"the TLS certificate of {where} is not trusted ({reason}): give the CA "
                    "that signed it (--ca-file / enterprise_ca_file), or skip verification with "
                    "--insecure (not recommended)",
                    kind="tls",
                ) from None
            raise ManagementError(f"cannot reach {where}: {reason}", kind="unavailable") from None
        except httpx.HTTPError as exc:
            raise ManagementError(
                f"{method} {path} to {where} failed: {type(exc).__name__}: {_reason(exc)}",
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


# -- the operation table ----------------------------------------------------------------------

UPSTASH = "upstash"
ENTERPRISE = "enterprise"
PROVIDERS = (UPSTASH, ENTERPRISE)
#: The word a destructive admin command must end with (`--yes` on the CLI adds it).
CONFIRM = "CONFIRM"


@dataclass(frozen=True, slots=True)
class Call:
    """A provider method and its parameters: `name` required, `[name]` optional, `name...`
    one or more. Typed by name: `on|off` and `copy_cc` are booleans, `tls|notls` too,
    `memory_size` an integer (bytes, K/M/G suffixes allowed)."""

    method: str
    params: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        return " ".join(p if p.startswith("[") else f"<{p}>" for p in self.params)


@dataclass(frozen=True, slots=True)
class Operation:
    group: str
    name: str
    summary: str
    upstash: Call | None = None
    enterprise: Call | None = None
    destructive: bool = False

    def call(self, provider: str) -> Call | None:
        return self.upstash if provider == UPSTASH else self.enterprise

    def usage(self, provider: str | None = None) -> str:
        """`DB RENAME <id> <name>`; labelled by provider where they differ."""
        forms: dict[str, list[str]] = {}
        for p in (provider,) if provider else PROVIDERS:
            call = self.call(p)
            if call is not None:
                text = f"{self.group} {self.name} {call.usage}".strip()
                if self.destructive:
                    text += f" {CONFIRM}"
                forms.setdefault(text, []).append(p)
        if len(forms) == 1 and (provider or len(next(iter(forms.values()))) == len(PROVIDERS)):
            return next(iter(forms))
        return " | ".join(f"{text} ({', '.join(ps)})" for text, ps in forms.items())


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "DB", "LIST", "list the databases",
        upstash=Call("list_databases"),
        enterprise=Call("list_databases", ("[fields]",)),
    ),
    Operation(
        "DB", "INFO", "details of one database (credentials masked)",
        upstash=Call("get_database", ("id",)),
        enterprise=Call("get_database", ("uid", "[fields]")),
    ),
    Operation(
        "DB", "STATS", "usage: latest value of each series and monthly totals",
        upstash=Call("database_stats", ("id",)),
        enterprise=Call("database_stats", ("uid",)),
    ),
    Operation(
        "DB", "CREATE", "create a regional database (Upstash) or a database (Enterprise)",
        upstash=Call("create_database", ("name", "region", "[tls|notls]")),
        enterprise=Call("create_database", ("name", "memory_size")),
    ),
    Operation(
        "DB", "CREATE-GLOBAL", "create a global database with a primary and read regions",
        upstash=Call("create_global_database", ("name", "primary_region", "[read_region...]")),
    ),
    Operation(
        "DB", "DELETE", "delete a database and its data",
        upstash=Call("delete_database", ("id",)),
        enterprise=Call("delete_database", ("uid",)),
        destructive=True,
    ),
    Operation("DB", "RENAME", "rename a database", upstash=Call("rename_database", ("id", "name"))),
    Operation(
        "DB", "RESET-PASSWORD", "new password and REST tokens (the old ones stop working)",
        upstash=Call("reset_password", ("id",)),
        destructive=True,
    ),
    Operation("DB", "ENABLE-TLS", "enable TLS", upstash=Call("enable_tls", ("id",))),
    Operation(
        "DB", "EVICTION", "turn eviction on or off", upstash=Call("set_eviction", ("id", "on|off"))
    ),
    Operation(
        "DB", "AUTO-UPGRADE", "turn auto-upgrade (auto scaling) on or off",
        upstash=Call("set_auto_upgrade", ("id", "on|off")),
    ),
    Operation(
        "DB", "READ-REGIONS", "set the read regions of a global database",
        upstash=Call("update_regions", ("id", "read_region...")),
    ),
    Operation(
        "DB", "MOVE", "move a database to a team", upstash=Call("move_to_team", ("id", "team_id"))
    ),
    Operation("DB", "CLUSTER", "cluster information", enterprise=Call("cluster_info")),
    Operation("DB", "NODES", "the cluster's nodes", enterprise=Call("list_nodes")),
    Operation("TEAM", "LIST", "list your teams", upstash=Call("list_teams")),
    Operation(
        "TEAM", "CREATE", "create a team (copy_cc: copy the credit card, on|off)",
        upstash=Call("create_team", ("name", "[copy_cc]")),
    ),
    Operation(
        "TEAM", "DELETE", "delete a team", upstash=Call("delete_team", ("team_id",)),
        destructive=True,
    ),
    Operation(
        "TEAM", "MEMBERS", "list a team's members", upstash=Call("list_members", ("team_id",))
    ),
    Operation(
        "TEAM", "ADD-MEMBER", "add a member with role admin, dev or finance",
        upstash=Call("add_member", ("team_id", "email", "role")),
    ),
    Operation(
        "TEAM", "REMOVE-MEMBER", "remove a member from a team",
        upstash=Call("remove_member", ("team_id", "email")),
        destructive=True,
    ),
)  # fmt: skip
_BY_NAME = {(op.group, op.name): op for op in OPERATIONS}
GROUPS = ("DB", "TEAM")


def help_lines(group: str | None = None) -> list[str]:
    """One line per operation: usage and summary (HELP of the admin socket, CLI help)."""
    lines = []
    for op in OPERATIONS:
        if group is None or op.group == group:
            lines.append(f"{op.usage()}  -- {op.summary}")
    return lines


def _bool(param: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "yes", "true", "1", "tls", "enable"):
        return True
    if lowered in ("off", "no", "false", "0", "notls", "disable"):
        return False
    raise ManagementUsageError(f"{param}: expected on or off, got {value!r}")


def _size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = value.strip().lower().removesuffix("b")
    factor = units.get(text[-1:], 1)
    if factor != 1:
        text = text[:-1]
    try:
        size = int(text) * factor
    except ValueError:
        raise ManagementUsageError(
            f"memory_size: expected bytes such as 1073741824 or 1G, got {value!r}"
        ) from None
    if size <= 0:
        raise ManagementUsageError("memory_size: must be positive")
    return size


def _convert(param: str, value: str) -> Any:
    name = param.strip("[]").removesuffix("...")
    if name in ("on|off", "copy_cc", "tls|notls"):
        return _bool(name, value)
    if name == "memory_size":
        return _size(value)
    if name in ("id", "uid", "team_id", "name", "email") and not value.strip():
        raise ManagementUsageError(f"{name}: must not be empty")
    if name == "role" and value.lower() not in ("admin", "dev", "finance"):
        raise ManagementUsageError(f"role: expected admin, dev or finance, got {value!r}")
    return value.lower() if name == "role" else value


def bind_arguments(op: Operation, call: Call, args: Sequence[str]) -> list[Any]:
    """Positional values for `call` from the words after the operation name."""
    usage = f"usage: {op.usage(None)}"
    values: list[Any] = []
    rest = list(args)
    for param in call.params:
        if param.endswith("...]") or param.endswith("..."):
            if not rest and not param.startswith("["):
                raise ManagementUsageError(f"{param.strip('.')} missing; {usage}")
            values.append([_convert(param, v) for v in rest])
            rest = []
        elif param.startswith("["):
            if rest:
                values.append(_convert(param, rest.pop(0)))
        else:
            if not rest:
                raise ManagementUsageError(f"{param} missing; {usage}")
            values.append(_convert(param, rest.pop(0)))
    if rest:
        raise ManagementUsageError(f"unexpected argument {rest[0]!r}; {usage}")
    return values


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed management command: which operation, on which provider, with what values."""

    op: Operation
    provider: str
    call: Call
    values: list[Any]


def parse_command(
    words: Sequence[str], *, default_provider: str | None, confirmed: bool = False
) -> Request:
    """`["DB", "RENAME", "id", "new"]` (optionally with UPSTASH/ENTERPRISE after the group)
    → a Request. Destructive operations need a trailing CONFIRM (or `confirmed`)."""
    if not words or words[0].upper() not in GROUPS:
        raise ManagementUsageError(f"expected {' or '.join(GROUPS)} and an operation")
    group = words[0].upper()
    rest = list(words[1:])
    provider = default_provider
    if rest and rest[0].lower() in PROVIDERS:
        provider = rest.pop(0).lower()
    if not rest:
        raise ManagementUsageError(f"{group}: which operation? try {group} HELP")
    name = rest.pop(0).upper()
    op = _BY_NAME.get((group, name))
    if op is None:
        raise ManagementUsageError(f"unknown operation {group} {name}; try {group} HELP")
    if op.destructive and rest and rest[-1].upper() == CONFIRM:
        rest.pop()
        confirmed = True
    if provider is None:
        raise ManagementUsageError(
            "no management API is configured: set upstash_email and upstash_api_key "
            "(UPSTASH_EMAIL, UPSTASH_API_KEY) for Upstash, or enterprise_url, enterprise_user "
            "and enterprise_password for Redis Enterprise"
        )
    call = op.call(provider)
    if call is None:
        other = [p for p in PROVIDERS if op.call(p) is not None]
        raise ManagementUsageError(
            f"{group} {name} is not available for {provider} (only {', '.join(other)})"
        )
    values = bind_arguments(op, call, rest)
    if op.destructive and not confirmed:
        raise ManagementUsageError(
            f"{group} {name} is destructive: repeat it with {CONFIRM} at the end "
            "(resp-bridge db/team: --yes)"
        )
    return Request(op, provider, call, values)


def default_provider(config: BridgeConfig) -> str | None:
    """Upstash when its credentials are set, else Redis Enterprise when its URL is set."""
    if config.upstash_email or config.upstash_api_key:
        return UPSTASH
    if config.enterprise_url:
        return ENTERPRISE
    return None


def open_client(
    config: BridgeConfig, provider: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> ApiClient:
    """The provider's client from the config; ManagementUsageError names a missing setting."""
    if provider == UPSTASH:
        from bridge.upstream.upstash_api import UpstashAPI

        missing = [n for n in ("upstash_email", "upstash_api_key") if not getattr(config, n)]
        if missing:
            raise ManagementUsageError(
                f"{' and '.join(missing)} not set (env UPSTASH_EMAIL / UPSTASH_API_KEY): "
                "the Upstash developer API needs the account email and an API key"
            )
        assert config.upstash_email and config.upstash_api_key
        return UpstashAPI(
            config.upstash_email,
            config.upstash_api_key,
            base_url=config.upstash_api_url,
            transport=transport,
        )
    from bridge.upstream.enterprise_api import EnterpriseAPI

    missing = [
        n for n in ("enterprise_url", "enterprise_user", "enterprise_password")
        if not getattr(config, n)
    ]  # fmt: skip
    if missing:
        raise ManagementUsageError(
            f"{', '.join(missing)} not set: the Redis Enterprise REST API needs its URL "
            "(https://<host>:9443), a user and a password"
        )
    assert config.enterprise_url and config.enterprise_user and config.enterprise_password
    return EnterpriseAPI(
        config.enterprise_url,
        config.enterprise_user,
        config.enterprise_password,
        ca_file=config.enterprise_ca_file,
        insecure=config.enterprise_insecure,
        transport=transport,
    )


async def run_management(
    config: BridgeConfig,
    words: Sequence[str],
    *,
    confirmed: bool = False,
    show_secrets: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Any:
    """Parse and run one `DB ...` / `TEAM ...` command; the JSON result, credentials masked
    unless `show_secrets` (only the CLI offers that, never the admin socket)."""
    request = parse_command(words, default_provider=default_provider(config), confirmed=confirmed)
    client = open_client(config, request.provider, transport=transport)
    async with client:
        result = await getattr(client, request.call.method)(*request.values)
    if request.op.destructive:
        log.info(
            "management: %s %s done on %s", request.op.group, request.op.name, request.provider
        )
    return result if show_secrets else redact_secrets(result)
