"""The command table: the one place for what the bridge knows about each Redis command.

Owns, per command and subcommand: arity, flags, key positions, ACL categories, docs (all as
redis-server 7.0 reports them, generated into `command_data.py`), plus the bridge's own policy:
the route (answered locally, forwarded, refused with a reason, ...) and the RESP3 reply shape
id that `resp3.py` applies. Also builds the `COMMAND INFO`/`COMMAND DOCS` reply values and
finds key arguments from key specs.

Sans-I/O: imports only the standard library and `bridge.core` modules. The table is built once
at import and never mutated; specs are frozen.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bridge.core import command_data
from bridge.core.resp import Status


class Route(enum.Enum):
    """Where a command is executed."""

    LOCAL = "local"  # answered by the bridge itself (connection commands etc.)
    FORWARD = "forward"  # sent upstream via /pipeline
    TRANSACTION = "transaction"  # MULTI / EXEC / DISCARD / WATCH / UNWATCH: session bookkeeping
    PUBSUB = "pubsub"  # SUBSCRIBE family and MONITOR: relayed from SSE streams
    BLOCKING = "blocking"  # blocking pops: emulated by the bridge
    REFUSED = "refused"  # cannot be served over REST; `CommandSpec.reason` says why


_EMPTY: Mapping[str, CommandSpec] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command or subcommand (then `name` is "container|sub", as in Redis 7)."""

    name: str
    arity: int
    flags: frozenset[str]
    first_key: int
    last_key: int
    step: int
    acl_categories: tuple[str, ...]
    group: str
    summary: str
    since: str
    route: Route
    reason: str = ""
    subcommands: Mapping[str, CommandSpec] = field(
        default_factory=lambda: _EMPTY, compare=False, hash=False, repr=False
    )
    resp3: str = ""
    tips: tuple[str, ...] = ()
    complexity: str = ""
    #: Key specs and docs exactly as the server reports them (nested dicts/lists of str/int).
    key_specs: tuple[Mapping[str, Any], ...] = field(
        default=(), compare=False, hash=False, repr=False
    )
    docs: Mapping[str, Any] = field(
        default_factory=lambda: _EMPTY, compare=False, hash=False, repr=False
    )
    #: Summary of Valkey's reply_schema: "map", "double", "unique", "tuple", "bool".
    reply_hints: frozenset[str] = frozenset()
    #: `flags` in the order Redis prints them.
    flag_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def is_write(self) -> bool:
        return "write" in self.flags

    def is_readonly(self) -> bool:
        return "readonly" in self.flags

    @property
    def container(self) -> str:
        """The container's name for a subcommand, "" for a top-level command."""
        return self.name.partition("|")[0] if "|" in self.name else ""


# --- routing policy ------------------------------------------------------------------------------
# A subcommand without its own entry takes its container's route (and reason).

_LOCAL = frozenset(
    {
        "ping",
        "echo",
        "quit",
        "reset",
        "select",  # a database number served (or a clear error naming the setting to add)
        "move",  # forwarded when one Redis server holds both numbers, else refused (why)
        "swapdb",
        "auth",
        "hello",
        "info",  # the upstream's INFO merged with a "# Bridge" section
        "client",  # the bridge's own clients: SETNAME, LIST, KILL, UNBLOCK, REPLY, ...
        "command",  # answered from this table
        "config|get",  # forwarded, merged with a few local values the upstream leaves out
        "wait",  # a standalone Redis without replicas: 0
        "pubsub|channels",  # this bridge's subscribers (its upstream streams are shared)
        "pubsub|numsub",
        "pubsub|numpat",
        "config|help",
    }
)

_TRANSACTION = frozenset({"multi", "exec", "discard", "watch", "unwatch"})

_PUBSUB = frozenset({"subscribe", "psubscribe", "unsubscribe", "punsubscribe", "monitor"})

_BLOCKING = frozenset(
    {"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop"}
)

REASON_CLUSTER = "cluster commands are not supported by the REST API"
REASON_REPLICATION = "replication is not available over the REST API"
REASON_PERSISTENCE = "persistence is managed by the provider"
REASON_TRACKING = "client-side caching is not supported by the bridge"

_REFUSED: Mapping[str, str] = {
    "cluster": REASON_CLUSTER,
    "asking": REASON_CLUSTER,
    "readonly": REASON_CLUSTER,
    "readwrite": REASON_CLUSTER,
    "restore-asking": REASON_CLUSTER,
    "replicaof": REASON_REPLICATION,
    "slaveof": REASON_REPLICATION,
    "sync": REASON_REPLICATION,
    "psync": REASON_REPLICATION,
    "replconf": REASON_REPLICATION,
    "failover": REASON_REPLICATION,
    "waitaof": REASON_REPLICATION,
    "shutdown": "would shut down the upstream server",
    "debug": "DEBUG is not available over the REST API",
    "save": REASON_PERSISTENCE,
    "bgsave": REASON_PERSISTENCE,
    "bgrewriteaof": REASON_PERSISTENCE,
    "migrate": "MIGRATE needs a direct connection between servers; not available over the REST API",
    "ssubscribe": "sharded pub/sub is not available over the REST API",
    "sunsubscribe": "sharded pub/sub is not available over the REST API",
    "client|tracking": REASON_TRACKING,
    "client|caching": REASON_TRACKING,
    "module|load": "modules are managed by the provider",
    "module|loadex": "modules are managed by the provider",
    "module|unload": "modules are managed by the provider",
    "script|debug": "script debugging needs its own connection to the server",
}

# --- RESP3 reply shapes --------------------------------------------------------------------------
# Shape ids for resp3.py, derived from Valkey's reply_schema and checked against redis-server 7.0
# in RESP3 (tests/core/test_resp3.py). Commands not listed reply the same as in RESP2 (with `_`
# for nulls); tests/core/test_commands.py fails when a command whose reply_schema has maps,
# doubles or unique items is neither listed here nor in RESP3_SAME_AS_RESP2.

RESP3_SHAPES: Mapping[str, str] = {
    "hgetall": "map",
    "config|get": "map",
    "lcs": "map",
    "hello": "hello",
    "smembers": "set",
    "sinter": "set",
    "sunion": "set",
    "sdiff": "set",
    "spop": "set",
    "zscore": "double",
    "zincrby": "double",
    "zadd": "double",
    "zmscore": "double_array",
    "zrange": "withscores",
    "zrangebyscore": "withscores",
    "zrevrange": "withscores",
    "zrevrangebyscore": "withscores",
    "zunion": "withscores_numkeys",
    "zinter": "withscores_numkeys",
    "zdiff": "withscores_numkeys",
    "zrandmember": "zrandmember",
    "zpopmin": "zpop",
    "zpopmax": "zpop",
    "bzpopmin": "bzpop",
    "bzpopmax": "bzpop",
    "zmpop": "zmpop",
    "bzmpop": "zmpop",
    "zrank": "zrank",
    "zrevrank": "zrank",
    "hrandfield": "hrandfield",
    "geopos": "geopos",
    "georadius": "geosearch",
    "georadius_ro": "geosearch",
    "georadiusbymember": "geosearch",
    "georadiusbymember_ro": "geosearch",
    "geosearch": "geosearch",
    "xread": "xread",
    "xreadgroup": "xread",
    "xinfo|stream": "xinfo_stream",
    "xinfo|groups": "map_array",
    "xinfo|consumers": "map_array",
    "module|list": "map_array",
    "memory|stats": "memory_stats",
    "function|list": "function_list",
    "function|stats": "function_stats",
    "acl|getuser": "acl_getuser",
    "acl|log": "acl_log",
    "client|trackinginfo": "client_trackinginfo",
    "command": "command_info",
    "command|info": "command_info",
    "command|docs": "command_docs",
    "command|getkeysandflags": "command_getkeysandflags",
    "latency|histogram": "latency_histogram",
    "cluster|shards": "cluster_shards",
    "cluster|links": "map_array",
    "cluster|slots": "cluster_slots",
    "info": "verbatim",
    "client|info": "verbatim",
    "client|list": "verbatim",
    "latency|doctor": "verbatim",
    "latency|graph": "verbatim",
    "memory|doctor": "verbatim",
    "memory|malloc-stats": "verbatim",
    "lolwut": "verbatim",
    "cluster|info": "verbatim",
    "cluster|nodes": "verbatim",
}

#: Commands whose Valkey reply_schema mentions maps, doubles, unique items or fixed-length
#: tuples but whose RESP3 reply is the RESP2 one (checked against redis-server 7.0).
RESP3_SAME_AS_RESP2: Mapping[str, str] = {
    "blpop": "[key, element]",
    "brpop": "[key, element]",
    "lmpop": "[key, [elements]]",
    "blmpop": "[key, [elements]]",
    "scan": "[cursor, [keys]]",
    "sscan": "[cursor, [members]]",
    "hscan": "[cursor, [field, value, ...]] stays flat",
    "zscan": "[cursor, [member, score, ...]] stays flat, scores stay bulk strings",
    "xpending": "arrays of entries",
    "xrevrange": "stream entries are arrays",
    "role": "array",
    "latency|history": "arrays of [timestamp, latency]",
    "latency|latest": "arrays of events",
    "hkeys": "array, not a set",
    "lpos": "array of positions",
    "command|getkeys": "array of key names",
    "command|list": "array of names",
    "pubsub|channels": "array of channel names",
    "pubsub|shardchannels": "array of channel names",
    "slowlog|get": "arrays of entries",
    "xautoclaim": "stream entries are arrays",
    "xclaim": "stream entries are arrays",
    "xrange": "stream entries are arrays",
    "zrangebylex": "array of members",
    "zrevrangebylex": "array of members",
    "waitaof": "two integers (refused anyway)",
}


# --- the table -----------------------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _route(full: str, inherited: tuple[Route, str]) -> tuple[Route, str]:
    if full in _REFUSED:
        return Route.REFUSED, _REFUSED[full]
    if full in _LOCAL:
        return Route.LOCAL, ""
    if full in _TRANSACTION:
        return Route.TRANSACTION, ""
    if full in _PUBSUB:
        return Route.PUBSUB, ""
    if full in _BLOCKING:
        return Route.BLOCKING, ""
    return inherited


def _build(full: str, raw: Mapping[str, Any], inherited: tuple[Route, str]) -> CommandSpec:
    route, reason = _route(full, inherited)
    subs = {
        sub: _build(f"{full}|{sub}", body, (route, reason))
        for sub, body in raw.get("subcommands", {}).items()
    }
    docs = raw["docs"]
    return CommandSpec(
        name=full,
        arity=raw["arity"],
        flags=frozenset(raw["flags"]),
        first_key=raw["first_key"],
        last_key=raw["last_key"],
        step=raw["step"],
        acl_categories=tuple(raw["acl_categories"]),
        group=docs.get("group", ""),
        summary=docs.get("summary", ""),
        since=docs.get("since", ""),
        route=route,
        reason=reason,
        subcommands=MappingProxyType(subs) if subs else _EMPTY,
        resp3=RESP3_SHAPES.get(full, ""),
        tips=tuple(raw["tips"]),
        complexity=docs.get("complexity", ""),
        key_specs=_freeze(raw["key_specs"]),
        docs=_freeze(docs),
        reply_hints=frozenset(raw.get("reply_hints", ())),
        flag_order=tuple(raw["flags"]),
    )


_TABLE: Mapping[str, CommandSpec] = MappingProxyType(
    {name: _build(name, raw, (Route.FORWARD, "")) for name, raw in command_data.COMMANDS.items()}
)


def _lower(name: bytes | str) -> str:
    if isinstance(name, bytes):
        return name.decode("latin-1").lower()
    return name.lower()


def lookup(name: bytes | str) -> CommandSpec | None:
    """The spec of a command by name, case-insensitive; "container|sub" finds a subcommand."""
    key = _lower(name)
    spec = _TABLE.get(key)
    if spec is None and "|" in key:
        container, _, sub = key.partition("|")
        parent = _TABLE.get(container)
        return parent.subcommands.get(sub) if parent else None
    return spec


def resolve(args: Sequence[bytes]) -> CommandSpec | None:
    """The spec for a command line: the subcommand's for containers, if it is known.

    An unknown subcommand (or none) gives the container spec, so that the caller can reply
    with Redis' own error for it.
    """
    if not args:
        return None
    spec = _TABLE.get(_lower(args[0]))
    if spec is None or not spec.subcommands or len(args) < 2:
        return spec
    return spec.subcommands.get(_lower(args[1]), spec)


def check_arity(spec: CommandSpec, argc: int) -> bool:
    """Redis' arity rule: positive means exactly, negative means at least its absolute value."""
    if spec.arity >= 0:
        return argc == spec.arity
    return argc >= -spec.arity


def all_commands() -> Iterable[CommandSpec]:
    """Every top-level command (subcommands hang off their containers)."""
    return _TABLE.values()


def walk_commands() -> Iterable[CommandSpec]:
    """Every command and subcommand."""
    for spec in _TABLE.values():
        yield spec
        yield from spec.subcommands.values()


# --- COMMAND replies -----------------------------------------------------------------------------


def _resp(value: Any, key: str = "") -> Any:
    """Nested data from the table -> RESP2 values (flags as simple strings, text as bulk)."""
    if isinstance(value, Mapping):
        out: list[Any] = []
        for k, v in value.items():
            out += (k.encode(), _resp(v, k))
        return out
    if isinstance(value, (tuple, list)):
        return [_resp(v, key) for v in value]
    if isinstance(value, str):
        return Status(value.encode()) if key in ("flags", "doc_flags") else value.encode()
    return value


def command_info_reply(spec: CommandSpec) -> list[Any]:
    """One `COMMAND INFO` entry in the Redis 7 layout (RESP2 value; resp3.py reshapes it)."""
    return [
        spec.name.encode(),
        spec.arity,
        [Status(f.encode()) for f in spec.flag_order],
        spec.first_key,
        spec.last_key,
        spec.step,
        [Status(c.encode()) for c in spec.acl_categories],
        [t.encode() for t in spec.tips],
        [_resp(ks) for ks in spec.key_specs],
        [command_info_reply(sub) for sub in spec.subcommands.values()],
    ]


def command_docs_reply(spec: CommandSpec) -> list[Any]:
    """The value of one `COMMAND DOCS` entry (its key is `spec.name`): the docs map as a flat
    RESP2 list `[b"summary", ..., b"since", ..., b"subcommands", [name, docs, ...]]`."""
    body: list[Any] = _resp(spec.docs)
    if spec.subcommands:
        subs: list[Any] = []
        for sub in spec.subcommands.values():
            subs += [sub.name.encode(), command_docs_reply(sub)]
        body += [b"subcommands", subs]
    return body


def help_reply(spec: CommandSpec) -> list[Status]:
    """`<CONTAINER> HELP` lines built from the subcommands' summaries, Redis style."""
    name = spec.name.upper()
    lines = [f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"]
    for sub in sorted(spec.subcommands.values(), key=lambda s: s.name):
        sub_name = sub.name.partition("|")[2].upper()
        if sub_name == "HELP":
            continue
        lines += [sub_name, f"    {sub.summary}"]
    lines += ["HELP", "    Print this help."]
    return [Status(line.encode()) for line in lines]


# --- key positions -------------------------------------------------------------------------------


def key_positions(spec: CommandSpec, args: Sequence[bytes]) -> list[int]:
    """Indexes in `args` (command name at 0) of the key arguments, from the key specs.

    Follows Redis 7's getKeysUsingKeySpecs, plus the two commands whose specs are marked
    incomplete/unknown (SORT's STORE, MIGRATE's KEYS). Returns [] when the arguments do not
    fit the spec (Redis leaves reporting that to the command itself).
    """
    argc = len(args)
    if spec.name == "migrate":
        return _migrate_keys(args)
    found: list[int] = []
    for ks in spec.key_specs:
        span = _spec_span(ks, args)
        if span is None:
            continue
        first, last, step = span
        if last >= argc or step <= 0:
            return []
        found.extend(range(first, last + 1, step))
    if spec.name in ("sort", "sort_ro"):
        return _sort_keys(args)
    return found


def _spec_span(ks: Mapping[str, Any], args: Sequence[bytes]) -> tuple[int, int, int] | None:
    argc = len(args)
    begin, find = ks["begin_search"], ks["find_keys"]
    if begin["type"] == "index":
        first = begin["spec"]["index"]
    elif begin["type"] == "keyword":
        first = _find_keyword(args, begin["spec"]["keyword"], begin["spec"]["startfrom"])
        if first is None:
            return None
    else:
        return None
    if find["type"] == "range":
        lastkey, step, limit = (find["spec"][k] for k in ("lastkey", "keystep", "limit"))
        if lastkey >= 0:
            last = first + lastkey
        elif not limit:
            last = argc + lastkey
        else:
            last = first + ((argc - first) // limit + lastkey)
        return first, last, step
    if find["type"] == "keynum":
        numidx, firstkey, step = (find["spec"][k] for k in ("keynumidx", "firstkey", "keystep"))
        if first + numidx >= argc:
            return first, argc, 1  # out of range: reported as "no keys"
        try:
            numkeys = int(args[first + numidx])
        except ValueError:
            return first, argc, 1
        if numkeys < 0:
            return first, argc, 1
        first += firstkey
        return first, first + (numkeys - 1) * step, step
    return None


def _find_keyword(args: Sequence[bytes], keyword: str, startfrom: int) -> int | None:
    argc = len(args)
    want = keyword.lower()
    if startfrom >= 0:
        indexes: Iterable[int] = range(startfrom, argc - 1)
    else:
        indexes = range(argc + startfrom, 0, -1)
    for i in indexes:
        if 0 < i < argc - 1 and _lower(args[i]) == want:
            return i + 1
    return None


def _sort_keys(args: Sequence[bytes]) -> list[int]:
    if len(args) < 2:
        return []
    store = 0
    skip = {"by": 1, "get": 1, "limit": 2}
    i = 2
    while i < len(args):
        word = _lower(args[i])
        if word == "store" and i + 1 < len(args):
            store = i + 1  # STORE may repeat; like Redis, the last one counts
            i += 2
        else:
            i += 1 + skip.get(word, 0)
    return [1, store] if store else [1]


def _migrate_keys(args: Sequence[bytes]) -> list[int]:
    if len(args) < 6:
        return []
    if args[3]:
        return [3]
    for i in range(6, len(args)):
        if _lower(args[i]) == "keys":
            return list(range(i + 1, len(args)))
    return []


def get_keys(spec: CommandSpec, args: Sequence[bytes]) -> list[bytes]:
    """The key arguments of a command line (see `key_positions`)."""
    return [args[i] for i in key_positions(spec, args)]
