"""Exception trees of each layer and the one table of error texts clients see.

Error prefixes are chosen for what redis-py does with them (`redis/_parsers/base.py`): the first
word picks the exception class, and a ConnectionError-class word (LOADING, MASTERDOWN, NOAUTH,
"max number of clients reached") makes it reconnect and re-send. Only replies for which a retry
is safe may use one. Every text here is pinned by tests.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key and what to do."""


# --- upstream layer --------------------------------------------------------------------------


class UpstreamError(BridgeError):
    """The REST upstream did not give a usable answer.

    `executed` says whether the commands may have run: False only when the request certainly
    never reached the server (connect refused, circuit open), so a retry is safe.
    """

    executed: bool = True
    kind: str = "upstream"

    def __init__(self, message: str, *, executed: bool | None = None) -> None:
        super().__init__(message)
        if executed is not None:
            self.executed = executed


class UpstreamUnavailable(UpstreamError):
    """The request never reached the upstream (DNS, connect refused, TLS handshake)."""

    executed = False
    kind = "unavailable"


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time after the request was sent: outcome unknown."""

    kind = "timeout"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with an HTTP error status and no per-command results."""

    kind = "http"

    def __init__(self, status: int, message: str, *, executed: bool | None = None) -> None:
        super().__init__(message, executed=executed)
        self.status = status


class UpstreamProtocolError(UpstreamError):
    """The upstream answered 2xx with a body we cannot interpret."""

    kind = "protocol"


class UpstreamAuthError(UpstreamHTTPError):
    """The upstream refused the token (HTTP 401)."""

    kind = "auth"


# --- client-visible error texts ----------------------------------------------------------------

NOAUTH = "NOAUTH Authentication required."
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_NOT_CONFIGURED = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPROTO = "NOPROTO unsupported protocol version"
MAX_CLIENTS = "ERR max number of clients reached"
MULTI_NESTED = "ERR MULTI calls can not be nested"
EXEC_WITHOUT_MULTI = "ERR EXEC without MULTI"
DISCARD_WITHOUT_MULTI = "ERR DISCARD without MULTI"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."
WATCH_IN_MULTI = "ERR WATCH inside MULTI is not allowed"
READ_ONLY = (
    "READONLY resp-bridge is read-only (--read-only, or the REST token is read-only): "
    "write commands are refused"
)


def wrong_arity(name: str) -> str:
    return f"ERR wrong number of arguments for '{name}' command"


def unknown_command(args: list[bytes]) -> str:
    """Redis 7.0's text for a command name it does not know (CR/LF become spaces)."""
    name = args[0][:128].decode("utf-8", "replace")
    quoted = ""
    for arg in args[1:]:
        if len(quoted) >= 128:
            break
        text = arg.decode("utf-8", "replace")[: 128 - len(quoted)]
        quoted += f"'{text}' "
    text = f"ERR unknown command '{name}', with args beginning with: {quoted}"
    return text.replace("\r", " ").replace("\n", " ")


def unknown_subcommand(sub: bytes, container: str) -> str:
    text = sub.decode("utf-8", "replace")
    return f"ERR unknown subcommand '{text}'. Try {container.upper()} HELP."


def refused(name: str, reason: str) -> str:
    return f"ERR '{name}' is not supported by resp-bridge: {reason}"


def upstream_error_reply(exc: UpstreamError) -> str:
    """The error line every command of a failed upstream request gets (never the token)."""
    if isinstance(exc, UpstreamAuthError):
        return (
            "ERR upstream refused the REST token (HTTP 401), command not executed: check "
            "UPSTASH_REDIS_REST_TOKEN or the bridge's token setting"
        )
    if isinstance(exc, UpstreamHTTPError):
        if not exc.executed:
            return f"ERR upstream HTTP {exc.status}, command not executed: {exc}"
        return f"ERR upstream HTTP {exc.status}, outcome unknown (the command may have run): {exc}"
    if not exc.executed:
        return f"ERR upstream unavailable, command not executed: {exc}"
    if isinstance(exc, UpstreamTimeout):
        return f"ERR upstream timeout, outcome unknown (the command may have run): {exc}"
    return f"ERR upstream error, outcome unknown: {exc}"
