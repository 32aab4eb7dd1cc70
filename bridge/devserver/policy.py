"""Which commands the devserver refuses before they reach Redis, and why.

Owns one decision: can this command run on a pooled, shared Redis connection? Commands that
change connection state (SELECT, HELLO, AUTH, CLIENT REPLY, MULTI/EXEC as plain commands, the
SUBSCRIBE family, MONITOR, ...) would poison the connection for the next request, so they are
refused with an `ERR` that says what to use instead. Blocking commands run, but only with a
timeout of at most MAX_BLOCKING_TIMEOUT_S; the reply deadline grows by that timeout.

CONFIG is Upstash's: `CONFIG GET` sees only `notify-keyspace-events` (other patterns match
nothing: an empty array, no error), `CONFIG SET` may change only that parameter (so keyspace
notifications work offline), `CONFIG REWRITE`/`RESETSTAT` are refused. `plan` applies it.

Read-only permissions are *not* decided here: Redis enforces them through an ACL user.
Pure functions, no I/O.
"""

from __future__ import annotations

from bridge.core.glob import glob_match as core_glob_match

#: The one configuration parameter the REST API exposes (and lets clients change).
KEYSPACE_EVENTS = b"notify-keyspace-events"
#: A RESP empty array: the reply of a CONFIG GET whose patterns match nothing exposed.
EMPTY_ARRAY = b"*0\r\n"
#: CONFIG subcommands refused over REST (the provider owns the server's configuration).
REFUSED_CONFIG_SUBCOMMANDS = frozenset({b"REWRITE", b"RESETSTAT"})

#: Longest block a blocking command may ask for; a pooled connection is held meanwhile.
MAX_BLOCKING_TIMEOUT_S = 30.0

_USE_MULTI_EXEC = "use the /multi-exec endpoint for transactions"
_USE_SSE = "use the /subscribe or /psubscribe SSE endpoint"

#: Command (upper-case) -> reason it is refused on the REST API.
REFUSED: dict[bytes, str] = {
    b"SELECT": "each database has its own REST tokens "
    "(this devserver's database n: <token>.db<n>, with --databases)",
    b"SWAPDB": "it would swap the database every REST request uses",
    b"AUTH": "authenticate with the REST token instead",
    b"HELLO": "the REST API speaks RESP2 to Redis",
    b"RESET": "it would reset a shared connection",
    b"QUIT": "there is no connection to quit over REST",
    b"MULTI": _USE_MULTI_EXEC,
    b"EXEC": _USE_MULTI_EXEC,
    b"DISCARD": _USE_MULTI_EXEC,
    b"WATCH": "WATCH/UNWATCH have no REST equivalent",
    b"UNWATCH": "WATCH/UNWATCH have no REST equivalent",
    b"SUBSCRIBE": _USE_SSE,
    b"PSUBSCRIBE": _USE_SSE,
    b"SSUBSCRIBE": _USE_SSE,
    b"UNSUBSCRIBE": _USE_SSE,
    b"PUNSUBSCRIBE": _USE_SSE,
    b"SUNSUBSCRIBE": _USE_SSE,
    b"MONITOR": "use the /monitor SSE endpoint",
    b"SYNC": "replication is not available over REST",
    b"PSYNC": "replication is not available over REST",
    b"REPLCONF": "replication is not available over REST",
    b"SHUTDOWN": "the devserver owns the Redis life cycle",
}

#: CLIENT subcommands that change the state of the (shared) connection.
REFUSED_CLIENT_SUBCOMMANDS = frozenset(
    {b"REPLY", b"TRACKING", b"CACHING", b"SETNAME", b"SETINFO", b"NO-EVICT", b"NO-TOUCH"}
)

#: Blocking commands whose timeout (seconds) is the last argument.
_TIMEOUT_LAST = frozenset({b"BLPOP", b"BRPOP", b"BRPOPLPUSH", b"BLMOVE", b"BZPOPMIN", b"BZPOPMAX"})
#: Blocking commands whose timeout (seconds) is the first argument.
_TIMEOUT_FIRST = frozenset({b"BLMPOP", b"BZMPOP"})


#: Upper-case names `plan` may refuse, rewrite or give a block time: any other command is
#: sent as it is, with no block time (a batch of only those needs no `plan` per command).
SPECIAL_NAMES = frozenset(
    {b"CONFIG", b"CLIENT", b"XREAD", b"XREADGROUP", b"WAIT", b"WAITAOF"}
    | REFUSED.keys()
    | _TIMEOUT_LAST
    | _TIMEOUT_FIRST
)


class Refused(Exception):
    """The command cannot run over REST; `str(exc)` is the RESP error text."""


def plan(args: list[bytes]) -> tuple[list[bytes] | bytes, float]:
    """What to do with one command: (the args to send to Redis, or a local RESP reply; block s).

    Raises Refused like `check_command`. Only CONFIG is rewritten or answered locally; every
    other command is sent as given.
    """
    if len(args[0]) == 6 and args[0].upper() == b"CONFIG":
        return config_plan(args), 0.0
    return args, check_command(args)


def config_plan(args: list[bytes]) -> list[bytes] | bytes:
    """CONFIG as Upstash serves it: see the module docstring. Malformed calls go to Redis as
    they are (it answers its own arity/subcommand errors without changing anything)."""
    if len(args) < 2:
        return args
    sub = args[1].upper()
    if sub == b"GET":
        if len(args) < 3:
            return args
        if any(glob_match(pattern, KEYSPACE_EVENTS) for pattern in args[2:]):
            return [b"CONFIG", b"GET", KEYSPACE_EVENTS]
        return EMPTY_ARRAY
    if sub == b"SET":
        for param in args[2::2]:
            if param.lower() != KEYSPACE_EVENTS:
                name = param.decode("utf-8", "replace")
                raise Refused(
                    f"ERR CONFIG SET {name} is not allowed over REST: only "
                    "notify-keyspace-events can be changed (nothing was changed)"
                )
        return args
    if sub in REFUSED_CONFIG_SUBCOMMANDS:
        raise Refused(
            f"ERR CONFIG {sub.decode('ascii', 'replace')} is not allowed over REST: the "
            "provider owns the server's configuration"
        )
    return args


def glob_match(pattern: bytes, subject: bytes) -> bool:
    """Redis' glob (`*`, `?`, `[a-z]`, `[^x]`, `\\x`), case-insensitive as CONFIG GET uses it."""
    return core_glob_match(pattern, subject, nocase=True)


def check_command(args: list[bytes]) -> float:
    """Raise Refused for commands the REST API does not run; else return its block time (s).

    `args[0]` is the command name in any case. The returned block time (0 for ordinary
    commands) extends the reply deadline.
    """
    name = args[0].upper()
    reason = REFUSED.get(name)
    if reason is not None:
        raise Refused(f"ERR {name.decode('ascii', 'replace')} is not supported over REST: {reason}")
    if name == b"CLIENT" and len(args) > 1 and args[1].upper() in REFUSED_CLIENT_SUBCOMMANDS:
        sub = args[1].upper().decode("ascii", "replace")
        raise Refused(
            f"ERR CLIENT {sub} is not supported over REST: "
            "it would change a connection shared by other requests"
        )
    if name in _TIMEOUT_LAST and len(args) >= 3:
        return _bounded(name, args[-1], 1.0)
    if name in _TIMEOUT_FIRST and len(args) >= 2:
        return _bounded(name, args[1], 1.0)
    if name in (b"XREAD", b"XREADGROUP"):
        block = _xread_block(args)
        return _bounded(name, block, 0.001) if block is not None else 0.0
    if name == b"WAIT" and len(args) == 3:
        return _bounded(name, args[2], 0.001)
    if name == b"WAITAOF" and len(args) == 4:
        return _bounded(name, args[3], 0.001)
    return 0.0


def _xread_block(args: list[bytes]) -> bytes | None:
    for i in range(1, len(args) - 1):
        word = args[i].upper()
        if word == b"STREAMS":
            return None
        if word == b"BLOCK":
            return args[i + 1]
    return None


def _bounded(name: bytes, raw: bytes, unit_s: float) -> float:
    try:
        timeout_s = float(raw) * unit_s
    except ValueError:
        return 0.0  # not a number: Redis answers with its own error at once
    if timeout_s != timeout_s or timeout_s < 0:
        return 0.0
    if timeout_s == 0 or timeout_s > MAX_BLOCKING_TIMEOUT_S:
        what = "0 (block forever)" if timeout_s == 0 else f"{timeout_s:g} s"
        raise Refused(
            f"ERR {name.decode('ascii', 'replace')} with timeout {what} is not supported over "
            f"REST: use a timeout of at most {MAX_BLOCKING_TIMEOUT_S:g} s"
        )
    return timeout_s
