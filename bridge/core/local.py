"""Commands the bridge answers itself: the connection handshake, introspection, and what only
the bridge knows (its clients: CLIENT LIST/PAUSE, PUBSUB NUMSUB; WAIT without replicas).

Real clients send these on connect (redis-py: HELLO, AUTH, CLIENT SETNAME/SETINFO, SELECT;
redis-cli: COMMAND DOCS; redis-benchmark: CONFIG GET save/appendonly) and must get exactly
what Redis gives. Each handler returns `(reply_bytes, close_after)`, or a `Forward` when the
answer needs the upstream (INFO, CONFIG GET: its reply merged with local values). No I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge import errors
from bridge.core import commands
from bridge.core.actions import Forward
from bridge.core.client_state import ClientState
from bridge.core.commands import CommandSpec
from bridge.core.glob import glob_match
from bridge.core.resp import (
    OK,
    encode_array,
    encode_bulk,
    encode_error,
    encode_int,
    encode_map,
    encode_null,
    encode_resp2,
    encode_status,
    encode_verbatim,
    frame_end,
    parse_frame,
)
from bridge.core.resp3 import encode_resp3

#: Version announced in HELLO when the upstream's is unknown (feature checks like RQ's need >= 6.2).
DEFAULT_SERVER_VERSION = "7.2.0"

#: CONFIG GET answers for what clients and tools read at start; the provider manages the rest.
STATIC_CONFIG: dict[str, str] = {
    "save": "",
    "appendonly": "no",
    "databases": "1",
    "maxmemory": "0",
    "maxmemory-policy": "noeviction",
    "timeout": "0",
    "maxclients": "10000",
    "cluster-enabled": "no",
    "slowlog-log-slower-than": "10000",
    "notify-keyspace-events": "",
    "proto-max-bulk-len": str(100 * 1024 * 1024),
    "lua-time-limit": "5000",
    "busy-reply-threshold": "5000",
}


def run(session: ClientState, args: list[bytes], spec: CommandSpec) -> tuple[bytes, bool] | Forward:
    handler = _HANDLERS.get(spec.name)
    if handler is None:
        container = spec.name.split("|")[0]
        if "|" in spec.name or (len(args) > 1 and spec.subcommands):
            return encode_error(errors.unknown_subcommand(args[1], container)), False
        return encode_error(errors.refused(spec.name, "not implemented by the bridge")), False
    return handler(session, args)


def _ok(data: bytes) -> tuple[bytes, bool]:
    return data, False


def _err(text: str) -> tuple[bytes, bool]:
    return encode_error(text), False


# -- connection ------------------------------------------------------------------------------


def _ping(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    if len(args) > 2:
        return _err(errors.wrong_arity("ping"))
    if session.protocol == 2 and session.subscribed:
        # Subscribed-mode PING is a ["pong", message] array (redis-py health checks need it).
        return _ok(b"*2\r\n$4\r\npong\r\n" + encode_bulk(args[1] if len(args) == 2 else b""))
    return _ok(encode_bulk(args[1]) if len(args) == 2 else b"+PONG\r\n")


def _echo(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_bulk(args[1]))


def _quit(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return OK, True


def _reset(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    session.reset()
    return _ok(b"+RESET\r\n")


def _db_index(arg: bytes) -> int | None:
    try:
        return int(arg)
    except ValueError:
        return None


def _select(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    index = _db_index(args[1])
    if index is None:
        return _err("ERR value is not an integer or out of range")
    if index == session.db:
        return _ok(OK)
    if session.multi is not None:
        # Queued commands run as one request on one REST database: refused at queue time,
        # and the transaction aborts at EXEC (nothing of it runs).
        session.multi_dirty = True
        return _err(
            "ERR SELECT inside MULTI is not supported by the bridge: a transaction runs on "
            "one REST database (SELECT before MULTI)"
        )
    if session.watches:
        return _err(
            "ERR SELECT with WATCHed keys is not supported by the bridge: the watched keys are "
            "checked on the database EXEC runs on (UNWATCH first, or SELECT before WATCH)"
        )
    problem = session.context.database_problem(index)
    if problem is not None:
        return _err(problem)
    session.db = index
    return _ok(OK)


def _cross_database(session: ClientState, name: str, indexes: list[int | None]) -> str | None:
    """Why MOVE / SWAPDB / COPY ... DB between these databases cannot run, or None."""
    if any(i is None for i in indexes):
        return "ERR value is not an integer or out of range"
    for index in indexes:
        assert index is not None
        problem = session.context.database_problem(index)
        if problem is not None:
            return problem
    others = sorted({i for i in indexes if i is not None and i != session.db})
    if others and not session.context.databases_share_server():
        numbers = ", ".join(str(i) for i in sorted({session.db, *others}))
        return (
            f"ERR {name} across databases is not supported by the bridge: databases {numbers} "
            "are separate REST databases, so it could not be atomic"
        )
    return None


def _move(session: ClientState, args: list[bytes]) -> tuple[bytes, bool] | Forward:
    index = _db_index(args[2])
    if index == session.db:
        return _err("ERR source and destination objects are the same")
    problem = _cross_database(session, "MOVE", [index])
    if problem is not None:
        return _err(problem)
    # One Redis server holds every number (embedded default): Redis moves it, atomically.
    return Forward(args, commands.lookup(b"move"))


def _swapdb(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    first, second = _db_index(args[1]), _db_index(args[2])
    if first is None:
        return _err("ERR invalid first DB index")
    if second is None:
        return _err("ERR invalid second DB index")
    for index in (first, second):
        problem = session.context.database_problem(index)
        if problem is not None:
            return _err(problem)
    if first == second:
        return _ok(OK)  # Redis answers OK and changes nothing
    # Even on one Redis server (the embedded default) the REST API refuses it: each token is
    # bound to its logical database, which SWAPDB would exchange under every other client.
    return _err(
        "ERR SWAPDB is not supported by the bridge: over the REST API each database number is "
        "its own REST database, which cannot be swapped"
    )


def copy_problem(session: ClientState, args: list[bytes]) -> str | None:
    """COPY source destination DB n: the error when database n is not reachable in the same
    atomic command (another REST database, or not configured); None to forward it."""
    for i in range(3, len(args) - 1):
        if args[i].lower() == b"db":
            index = _db_index(args[i + 1])
            if index == session.db:
                return None
            return _cross_database(session, "COPY ... DB", [index])
    return None


def _auth(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    if len(args) == 2:
        failure = session.check_password(None, args[1])
    elif len(args) == 3:
        failure = session.check_password(args[1], args[2])
    else:
        return _err("ERR syntax error")
    return _err(failure) if failure else _ok(OK)


def _hello(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    proto = session.protocol
    i = 1
    if len(args) > 1:
        try:
            proto = int(args[1])
        except ValueError:
            return _err("ERR Protocol version is not an integer or out of range")
        if proto not in (2, 3):
            return _err(errors.NOPROTO)
        i = 2
    setname: bytes | None = None
    while i < len(args):
        opt = args[i].lower()
        if opt == b"auth" and i + 2 < len(args):
            failure = session.check_password(args[i + 1], args[i + 2])
            if failure:
                return _err(failure)
            i += 3
        elif opt == b"setname" and i + 1 < len(args):
            setname = args[i + 1]
            if not _valid_name(setname):
                return _err(_BAD_NAME)
            i += 2
        else:
            return _err(f"ERR Syntax error in HELLO option '{args[i].decode('utf-8', 'replace')}'")
    if not session.authenticated:
        return _err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if setname is not None:
        session.name = setname
    session.protocol = proto
    version = session.context.server_version or DEFAULT_SERVER_VERSION
    pairs = [
        (encode_bulk(b"server"), encode_bulk(b"redis")),
        (encode_bulk(b"version"), encode_bulk(version.encode())),
        (encode_bulk(b"proto"), encode_int(proto)),
        (encode_bulk(b"id"), encode_int(session.id)),
        (encode_bulk(b"mode"), encode_bulk(b"standalone")),
        (encode_bulk(b"role"), encode_bulk(b"master")),
        (encode_bulk(b"modules"), b"*0\r\n"),
    ]
    return _ok(encode_map(pairs, proto))


# -- CLIENT ----------------------------------------------------------------------------------

_BAD_NAME = "ERR Client names cannot contain spaces, newlines or special characters."


def _valid_name(name: bytes) -> bool:
    return all(33 <= b <= 126 for b in name)


def _client_setname(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    if not _valid_name(args[2]):
        return _err(_BAD_NAME)
    session.name = args[2]
    return _ok(OK)


def _client_getname(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_bulk(session.name) if session.name else encode_null(session.protocol))


def _client_setinfo(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    attr = args[2].lower()
    if attr == b"lib-name":
        if not _valid_name(args[3]):
            return _err("ERR lib-name cannot contain spaces, newlines or special characters.")
        session.lib_name = args[3]
    elif attr == b"lib-ver":
        if not _valid_name(args[3]):
            return _err("ERR lib-ver cannot contain spaces, newlines or special characters.")
        session.lib_ver = args[3]
    else:
        return _err(f"ERR Unrecognized option '{args[2].decode('utf-8', 'replace')}'")
    return _ok(OK)


def _client_id(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_int(session.id))


def client_line(session: ClientState) -> bytes:
    """One CLIENT LIST / CLIENT INFO line in Redis 7's format (RQ parses `addr=`)."""
    multi = -1 if session.multi is None else len(session.multi)
    fields = (
        f"id={session.id} addr={session.addr} laddr={session.laddr} fd=-1 "
        f"name={session.name.decode('latin-1')} age={session.age_s} idle={session.idle_s} "
        f"flags={session.flags()} db={session.db} sub={len(session.channels)} "
        f"psub={len(session.patterns)} "
        f"ssub=0 multi={multi} qbuf=0 qbuf-free=0 "
        f"argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r "
        f"cmd={session.last_command} user=default redir=-1 resp={session.protocol} "
        f"lib-name={session.lib_name.decode('latin-1')} lib-ver={session.lib_ver.decode('latin-1')}"
    )
    return fields.encode("latin-1") + b"\n"


def _client_info(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_verbatim(client_line(session), session.protocol))


def _client_list(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    wanted: set[int] | None = None
    if len(args) > 2:
        if args[2].lower() == b"id" and len(args) > 3:
            try:
                wanted = {int(a) for a in args[3:]}
            except ValueError:
                return _err("ERR Invalid client ID")
        elif args[2].lower() == b"type" and len(args) == 4:
            if args[3].lower() not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
                return _err(f"ERR Unknown client type '{args[3].decode('utf-8', 'replace')}'")
            kind = args[3].lower()
            wanted = {
                s.id
                for s in session.context.sessions()
                if (kind == b"pubsub" and s.subscribed) or (kind == b"normal" and not s.subscribed)
            }
        else:
            return _err("ERR syntax error")
    lines = b"".join(
        client_line(s)
        for s in sorted(session.context.sessions(), key=lambda s: s.id)
        if wanted is None or s.id in wanted
    )
    return _ok(encode_verbatim(lines, session.protocol))


def _client_ok(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(OK)


def _client_reply(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    mode = args[2].lower()
    if mode == b"on":
        session.reply_mode = "on"
        return _ok(OK)
    if mode in (b"off", b"skip"):
        session.reply_mode = mode.decode()
        return _ok(b"")  # Redis sends nothing for OFF and SKIP
    return _err("ERR syntax error")


def _client_kill(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    if len(args) == 3:  # old form: CLIENT KILL addr:port
        target = args[2].decode("latin-1")
        for other in session.context.sessions():
            if other.addr == target and session.context.kill_client(other.id):
                return _ok(OK)
        return _err("ERR No such client")
    killed = 0
    i = 2
    want_id: int | None = None
    want_addr: str | None = None
    want_laddr: str | None = None
    skip_me = True
    while i + 1 < len(args):
        key, value = args[i].lower(), args[i + 1]
        if key == b"id":
            try:
                want_id = int(value)
            except ValueError:
                return _err("ERR client-id should be greater than 0")
        elif key == b"addr":
            want_addr = value.decode("latin-1")
        elif key == b"laddr":
            want_laddr = value.decode("latin-1")
        elif key == b"skipme":
            skip_me = value.lower() != b"no"
        elif key not in (b"user", b"type", b"maxage"):
            return _err("ERR syntax error")
        i += 2
    if i != len(args):
        return _err("ERR syntax error")

    def matches(other: ClientState) -> bool:
        return (
            (want_id is None or other.id == want_id)
            and (want_addr is None or other.addr == want_addr)
            and (want_laddr is None or other.laddr == want_laddr)
            and not (skip_me and other is session)
        )

    for other in list(session.context.sessions()):
        if matches(other) and session.context.kill_client(other.id):
            killed += 1
    return _ok(encode_int(killed))


def _client_pause(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    """CLIENT PAUSE <ms> [WRITE|ALL]: the bridge holds its own clients' commands (the
    upstream server itself is not paused)."""
    try:
        timeout_ms = int(args[2])
    except ValueError:
        return _err("ERR timeout is not an integer or out of range")
    if timeout_ms < 0:
        return _err("ERR timeout is negative")
    mode = "all"
    if len(args) == 4:
        word = args[3].lower()
        if word not in (b"write", b"all"):
            return _err("ERR CLIENT PAUSE mode must be WRITE or ALL")
        mode = word.decode()
    elif len(args) > 4:
        return _err(
            "ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP."
        )
    session.context.pause_clients(mode, timeout_ms / 1000)
    return _ok(OK)


def _client_unpause(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    session.context.unpause_clients()
    return _ok(OK)


def _wait(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    """WAIT as a standalone Redis with no replicas: 0 replicas acknowledged. Replies go out
    in command order, so the client has its earlier writes' replies (each acknowledged by
    the upstream) before this one. Unlike Redis, WAIT n>0 does not sit out its timeout."""
    try:
        int(args[1])
    except ValueError:
        return _err("ERR value is not an integer or out of range")
    try:
        timeout = int(args[2])
    except ValueError:
        return _err("ERR timeout is not an integer or out of range")
    if timeout < 0:
        return _err("ERR timeout is negative")
    return _ok(encode_int(0))


# -- PUBSUB introspection: this bridge's own subscribers ---------------------------------------


def _pubsub_channels(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    pattern = args[2] if len(args) > 2 else None
    names = {ch for s in session.context.sessions() for ch in s.live_channels()}
    found = sorted(n for n in names if pattern is None or glob_match(pattern, n))
    return _ok(encode_array([encode_bulk(n) for n in found]))


def _pubsub_numsub(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    live = [s.live_channels() for s in session.context.sessions()]
    items: list[bytes] = []
    for ch in args[2:]:  # a flat array in RESP3 too, as Redis 7.0 sends it
        items += [encode_bulk(ch), encode_int(sum(ch in channels for channels in live))]
    return _ok(encode_array(items))


def _pubsub_numpat(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    # Redis 7.0 counts distinct patterns, not subscriptions.
    return _ok(encode_int(len({p for s in session.context.sessions() for p in s.live_patterns()})))


def _client_getredir(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_int(-1))


def _client_help(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    lines = [
        "CLIENT <subcommand> [<arg> ...]. Subcommands handled by resp-bridge are:",
        "ID, INFO, LIST [TYPE normal|pubsub|ID id ...], KILL, GETNAME, SETNAME <name>,",
        "SETINFO <LIB-NAME|LIB-VER> <value>, REPLY ON|OFF|SKIP, NO-EVICT, NO-TOUCH, GETREDIR,",
        "PAUSE <timeout-ms> [WRITE|ALL] and UNPAUSE (this bridge's clients).",
    ]
    return _ok(encode_array([encode_status(line) for line in lines]))


# -- COMMAND ---------------------------------------------------------------------------------


def _shaped(session: ClientState, name: str, args: list[bytes], value: object) -> bytes:
    """A locally built RESP2 value, encoded as Redis would for this client's protocol."""
    if session.protocol == 3:
        return encode_resp3(commands.lookup(name), args, value)
    return encode_resp2(value)


def _command(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    specs = sorted(commands.all_commands(), key=lambda s: s.name)
    value = [commands.command_info_reply(s) for s in specs]
    return _ok(_shaped(session, "command", args, value))


def _command_count(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_int(sum(1 for _ in commands.all_commands())))


def _command_list(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    """Every command and subcommand (`config|get`), as Redis 7.0, optionally FILTERBY
    MODULE (no module commands here: empty), ACLCAT (case-insensitive) or PATTERN (a
    case-insensitive glob over the full name)."""
    specs = list(commands.walk_commands())
    if len(args) > 2:
        # Redis' parser: FILTERBY <type> <arg> must be the last three arguments.
        if len(args) != 5 or args[2].lower() != b"filterby":
            return _err("ERR syntax error")
        kind, arg = args[3].lower(), args[4]
        if kind == b"module":
            specs = []
        elif kind == b"aclcat":
            category = "@" + arg.decode("utf-8", "replace").lower()
            specs = [s for s in specs if category in (c.lower() for c in s.acl_categories)]
        elif kind == b"pattern":
            specs = [s for s in specs if glob_match(arg, s.name.encode(), nocase=True)]
        else:
            return _err("ERR syntax error")
    names = sorted(s.name for s in specs)
    return _ok(encode_array([encode_bulk(n.encode()) for n in names]))


def _command_info(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    if len(args) == 2:
        return _command(session, args)
    out = []
    for name in args[2:]:
        spec = commands.lookup(name)
        out.append(commands.command_info_reply(spec) if spec else None)
    return _ok(_shaped(session, "command|info", args, out))


def _command_docs(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    specs = (
        [s for s in (commands.lookup(n) for n in args[2:]) if s is not None]
        if len(args) > 2
        else sorted(commands.all_commands(), key=lambda s: s.name)
    )
    value: list[object] = []
    for spec in specs:
        value += [spec.name.encode(), commands.command_docs_reply(spec)]
    return _ok(_shaped(session, "command|docs", args, value))


# -- CONFIG GET / INFO -----------------------------------------------------------------------


def _config_get(session: ClientState, args: list[bytes]) -> Forward:
    """CONFIG GET goes upstream (it decides what it shows; Upstash: notify-keyspace-events);
    a parameter it leaves out comes from STATIC_CONFIG when a pattern matches it, so tools
    reading `save`, `appendonly` or `databases` still get plausible values. An upstream
    error gives the local answers alone when there are any."""
    local_pairs: dict[bytes, bytes] = {}
    for pattern in args[2:]:
        for key, value in STATIC_CONFIG.items():
            if glob_match(pattern, key.encode(), nocase=True):
                local_pairs[key.encode()] = value.encode()
    if b"databases" in local_pairs:  # the numbers this bridge serves (SELECT 0..n-1)
        local_pairs[b"databases"] = str(session.context.database_count()).encode()

    def post(frame: bytes) -> bytes:
        if frame[:1] == b"-":
            return encode_resp2(_flat(local_pairs)) if local_pairs else frame
        value = parse_frame(frame)
        if not isinstance(value, list):
            return frame
        found = dict(zip(value[0::2], value[1::2], strict=False))
        missing = {k: v for k, v in local_pairs.items() if k not in found}
        if not missing:
            return frame
        return encode_resp2(value + _flat(missing))

    return Forward(args, commands.lookup("config|get"), post=post)


def _flat(pairs: dict[bytes, bytes]) -> list[object]:
    out: list[object] = []
    for key, value in pairs.items():
        out += [key, value]
    return out


def _info(session: ClientState, args: list[bytes]) -> tuple[bytes, bool] | Forward:
    sections = {a.lower() for a in args[1:]}
    if sections == {b"bridge"}:  # ours alone: answered even when the upstream is down
        body = session.context.bridge_info().encode()
        return _ok(encode_verbatim(body, session.protocol))
    wants_bridge = not sections or sections & {b"all", b"everything", b"default", b"bridge"}
    extra = session.context.bridge_info() if wants_bridge else ""

    def post(frame: bytes) -> bytes:
        if frame[:1] == b"-":
            if not extra:
                return frame
            # The upstream failed: still show the bridge's own section, and why.
            error = frame[1:].rstrip(b"\r\n").replace(b"\r", b" ")
            return encode_bulk(extra.encode() + b"upstream_error:" + error + b"\r\n")
        if not extra or not frame.startswith(b"$") or frame_end(frame) != len(frame):
            return frame
        body = parse_frame(frame)
        assert isinstance(body, bytes)
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        return encode_bulk(body + (b"\r\n" if body else b"") + extra.encode())

    return Forward(args, commands.lookup(b"info"), post=post)


def _client_trackinginfo(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    pairs = [
        (encode_bulk(b"flags"), encode_array([encode_bulk(b"off")])),
        (encode_bulk(b"redirect"), encode_int(-1)),
        (encode_bulk(b"prefixes"), b"*0\r\n"),
    ]
    return _ok(encode_map(pairs, session.protocol))


def _client_unblock(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
    return _ok(encode_int(0))  # no client of the bridge is ever blocked in the server


def _forward(session: ClientState, args: list[bytes]) -> Forward:
    """Introspection the upstream server answers exactly (COMMAND GETKEYS)."""
    return Forward(args, commands.resolve(args))


def _help(lines: list[str]) -> Callable[[ClientState, list[bytes]], tuple[bytes, bool]]:
    def handler(session: ClientState, args: list[bytes]) -> tuple[bytes, bool]:
        return _ok(encode_array([encode_status(line) for line in lines]))

    return handler


_HANDLERS: dict[str, Callable[[ClientState, list[bytes]], tuple[bytes, bool] | Forward]] = {
    "ping": _ping,
    "echo": _echo,
    "quit": _quit,
    "reset": _reset,
    "select": _select,
    "move": _move,
    "swapdb": _swapdb,
    "auth": _auth,
    "hello": _hello,
    "client|setname": _client_setname,
    "client|getname": _client_getname,
    "client|setinfo": _client_setinfo,
    "client|id": _client_id,
    "client|info": _client_info,
    "client|list": _client_list,
    "client|no-evict": _client_ok,
    "client|no-touch": _client_ok,
    "client|reply": _client_reply,
    "client|kill": _client_kill,
    "client|getredir": _client_getredir,
    "client|pause": _client_pause,
    "client|unpause": _client_unpause,
    "wait": _wait,
    "pubsub|channels": _pubsub_channels,
    "pubsub|numsub": _pubsub_numsub,
    "pubsub|numpat": _pubsub_numpat,
    "client|help": _client_help,
    "command": _command,
    "command|count": _command_count,
    "command|list": _command_list,
    "command|info": _command_info,
    "command|docs": _command_docs,
    "config|get": _config_get,
    "info": _info,
    "client|trackinginfo": _client_trackinginfo,
    "client|unblock": _client_unblock,
    "command|getkeys": _forward,
    "command|getkeysandflags": _forward,
    "command|help": _help(
        [
            "COMMAND <subcommand> [<arg> ...]. Subcommands are:",
            "(no subcommand): details about all commands.",
            "COUNT, LIST, INFO [<command-name> ...], DOCS [<command-name> ...],",
            "GETKEYS <full-command>, GETKEYSANDFLAGS <full-command>.",
        ]
    ),
    "config|help": _help(
        [
            "CONFIG <subcommand> [<arg> ...]. Through resp-bridge:",
            "GET <pattern> [<pattern> ...]: the upstream's answer, plus plausible values for",
            "    what it does not show that clients read at start (save, appendonly, ...).",
            "SET, REWRITE, RESETSTAT: the upstream decides (Upstash: only",
            "    notify-keyspace-events can be set).",
        ]
    ),
}
