"""Blocking commands and WATCH, expressed with what the REST API has (sans-I/O plans).

The REST API has no blocking pops and no WATCH. A blocking command becomes a `BlockPlan`: its
non-blocking, atomic equivalent (LMPOP, LMOVE, ZMPOP, XREAD without BLOCK: the first
non-empty key wins, as in Redis), polled by the server layer until it returns something or
the client's timeout passes; plus how to turn the poll's reply into the blocking command's
reply, and how to put a popped result back if its client has gone (so nothing is lost).

WATCH becomes fingerprints: at WATCH the bridge fetches, per key, a hash of `DUMP` and the
absolute expiry; at EXEC it runs the queued commands in one Lua script that first compares
the fingerprints and returns nil (EXEC's null reply, redis-py's WatchError) if any changed.
Differences from Redis: a value changed and changed back is not detected; a change of the
internal encoding without a logical change aborts (safe: the client retries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.core.resp import encode_resp2, parse_frame

#: Replies of a poll that found nothing.
EMPTY_FRAMES = frozenset({b"*-1\r\n", b"$-1\r\n", b"*0\r\n", b"_\r\n"})
#: What a blocking command answers when its timeout passes (Redis: a null array for all).
TIMEOUT_FRAME = b"*-1\r\n"


class BlockingSyntaxError(ValueError):
    """The blocking command's arguments are invalid; the text is Redis' error."""


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """How to emulate one blocking command."""

    name: str
    timeout_s: float | None  # None: wait forever (timeout 0)
    keys: tuple[bytes, ...]
    poll: tuple[bytes, ...]
    kind: str  # "pop1" (BLPOP/BRPOP), "mpop", "move", "zpop1", "zmpop", "stream"
    side: bytes = b""  # LEFT/RIGHT for list pops, MIN/MAX for zset pops
    #: Stream IDs given as `$`: resolved to the stream's last ID before the first poll.
    dollar_positions: tuple[int, ...] = ()
    #: XREADGROUP reading history (an ID other than `>`) never blocks.
    blocks: bool = True
    #: kind "watch": the WatchGroup (bridge.core.actions) whose fingerprints `poll` reads.
    group: Any = field(default=None, compare=False)

    def with_resolved_ids(self, ids: Sequence[bytes]) -> BlockPlan:
        poll = list(self.poll)
        for pos, value in zip(self.dollar_positions, ids, strict=True):
            poll[pos] = value
        return replace(self, poll=tuple(poll), dollar_positions=())


def _timeout(raw: bytes) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        raise BlockingSyntaxError("ERR timeout is not a float or out of range") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BlockingSyntaxError("ERR timeout is not a float or out of range")
    if value < 0:
        raise BlockingSyntaxError("ERR timeout is negative")
    return None if value == 0 else value


def _ms_timeout(raw: bytes) -> float | None:
    try:
        value = int(raw)
    except ValueError:
        raise BlockingSyntaxError("ERR timeout is not an integer or out of range") from None
    if value < 0:
        raise BlockingSyntaxError("ERR timeout is negative")
    return None if value == 0 else value / 1000


def _numkeys(args: Sequence[bytes], pos: int) -> int:
    try:
        n = int(args[pos])
    except (ValueError, IndexError):
        raise BlockingSyntaxError("ERR numkeys should be greater than 0") from None
    if n <= 0:
        raise BlockingSyntaxError("ERR numkeys should be greater than 0")
    if pos + 1 + n > len(args):
        raise BlockingSyntaxError("ERR syntax error")
    return n


def plan_blocking(args: Sequence[bytes]) -> BlockPlan:
    """The plan for a blocking command (arity already checked); BlockingSyntaxError if bad."""
    name = args[0].lower().decode("ascii", "replace")
    if name in ("blpop", "brpop"):
        keys = tuple(args[1:-1])
        side = b"LEFT" if name == "blpop" else b"RIGHT"
        poll = (b"LMPOP", str(len(keys)).encode(), *keys, side)
        return BlockPlan(name, _timeout(args[-1]), keys, poll, "pop1", side)
    if name == "brpoplpush":
        poll = (b"RPOPLPUSH", args[1], args[2])
        return BlockPlan(name, _timeout(args[3]), (args[1],), poll, "move")
    if name == "blmove":
        poll = (b"LMOVE", *args[1:5])
        return BlockPlan(name, _timeout(args[5]), (args[1],), poll, "move")
    if name in ("blmpop", "bzmpop"):
        timeout = _timeout(args[1])
        n = _numkeys(args, 2)
        keys = tuple(args[3 : 3 + n])
        rest = tuple(args[3 + n :])
        side = rest[0].upper() if rest else b""
        command = b"LMPOP" if name == "blmpop" else b"ZMPOP"
        kind = "mpop" if name == "blmpop" else "zmpop"
        return BlockPlan(name, timeout, keys, (command, args[2], *keys, *rest), kind, side)
    if name in ("bzpopmin", "bzpopmax"):
        keys = tuple(args[1:-1])
        side = b"MIN" if name == "bzpopmin" else b"MAX"
        poll = (b"ZMPOP", str(len(keys)).encode(), *keys, side)
        return BlockPlan(name, _timeout(args[-1]), keys, poll, "zpop1", side)
    if name in ("xread", "xreadgroup"):
        return _plan_stream(name, args)
    raise BlockingSyntaxError(f"ERR '{name}' cannot be emulated as a blocking command")


def _plan_stream(name: str, args: Sequence[bytes]) -> BlockPlan:
    timeout: float | None = None
    poll: list[bytes] = [args[0]]
    i = 1
    streams_at = -1
    while i < len(args):
        word = args[i].lower()
        if word == b"block" and i + 1 < len(args):
            timeout = _ms_timeout(args[i + 1])
            i += 2
            continue
        if word == b"streams":
            streams_at = len(poll)
            poll.extend(args[i:])
            break
        poll.append(args[i])
        i += 1
    if streams_at < 0:
        raise BlockingSyntaxError("ERR syntax error")
    rest = poll[streams_at + 1 :]
    if not rest or len(rest) % 2:
        raise BlockingSyntaxError(
            "ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be "
            "specified."
            if name == "xread"
            else "ERR Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' "
            "must be specified."
        )
    n = len(rest) // 2
    keys = tuple(rest[:n])
    ids = rest[n:]
    dollars = tuple(streams_at + 1 + n + j for j, v in enumerate(ids) if v == b"$")
    blocks = name == "xread" or all(v == b">" for v in ids)
    return BlockPlan(name, timeout, keys, tuple(poll), "stream", b"", dollars, blocks)


def last_id_script(keys: Sequence[bytes]) -> tuple[bytes, ...]:
    """EVAL that returns each stream's last entry ID ("0-0" when empty or missing)."""
    script = (
        b"local r = {} for i, k in ipairs(KEYS) do "
        b"local e = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1) "
        b"if e[1] then r[i] = e[1][1] else r[i] = '0-0' end end return r"
    )
    return (b"EVAL", script, str(len(keys)).encode(), *keys)


def poll_result(plan: BlockPlan, frame: bytes) -> bytes | None:
    """The blocking command's RESP2 reply for a poll reply, or None if it found nothing."""
    if frame[:1] == b"-":
        return frame  # WRONGTYPE and co: Redis answers them at once too
    if frame in EMPTY_FRAMES:
        return None
    if plan.kind == "pop1":
        value = parse_frame(frame)
        if isinstance(value, list) and len(value) == 2 and isinstance(value[1], list):
            return encode_resp2([value[0], value[1][0]])
        return frame
    if plan.kind == "zpop1":
        value = parse_frame(frame)
        if isinstance(value, list) and len(value) == 2 and value[1]:
            member, score = value[1][0]
            return encode_resp2([value[0], member, score])
        return frame
    return frame


def pushback(plan: BlockPlan, frame: bytes) -> tuple[bytes, ...] | None:
    """The command that restores what a poll popped, for a client that is gone.

    Moves (BLMOVE/BRPOPLPUSH) need none: the element sits in the destination list. Stream reads
    need none: XREAD does not consume and XREADGROUP's entries stay pending for the group.
    """
    if frame[:1] == b"-" or frame in EMPTY_FRAMES or plan.kind in ("move", "stream"):
        return None
    value = parse_frame(frame)
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], list)):
        return None
    key, items = value[0], value[1]
    assert isinstance(key, bytes)
    if plan.kind in ("pop1", "mpop"):
        # Popped first-to-last from one end: pushing them back reversed restores the order.
        command = b"LPUSH" if plan.side == b"LEFT" else b"RPUSH"
        return (command, key, *reversed(items))  # type: ignore[arg-type]
    pairs: list[bytes] = []
    for member, score in items:  # type: ignore[misc]
        pairs += [score, member]
    return (b"ZADD", key, *pairs)


# --- WATCH ---------------------------------------------------------------------------------

#: Fingerprint of a key: sha1 of DUMP plus the absolute expiry; "" when the key is missing.
FINGERPRINT_LUA = (
    b"local function fp(k) local d = redis.call('DUMP', k) "
    b"if not d then return '' end "
    b"return redis.sha1hex(d) .. ':' .. redis.call('PEXPIRETIME', k) end "
)


def watch_command(keys: Sequence[bytes]) -> tuple[bytes, ...]:
    """EVAL returning the fingerprint of each key."""
    script = FINGERPRINT_LUA + b"local r = {} for i, k in ipairs(KEYS) do r[i] = fp(k) end return r"
    return (b"EVAL", script, str(len(keys)).encode(), *keys)


def watch_plan(group: Any) -> BlockPlan:
    """WATCH as the server layer runs it: register the group (so writes mark it dirty) and,
    with keyspace events, wait for its keys' streams to be live, then read the fingerprints.
    `group` is the session's WatchGroup; its `record` turns the reply into WATCH's."""
    keys = tuple(group.keys)
    return BlockPlan("watch", None, keys, watch_command(keys), "watch", blocks=False, group=group)


def exec_plan(transaction: Any) -> BlockPlan:
    """EXEC of a transaction whose watched keys have keyspace streams: the server layer syncs
    with the streams (so a write from anywhere before EXEC has marked the watch dirty), then
    runs the checking script. `transaction` is the session's Transaction."""
    keys = tuple(dict.fromkeys(k for g in transaction.watches for k in g.keys))
    return BlockPlan("exec", None, keys, (), "exec", blocks=False, group=transaction)


#: Replies of a write that changed nothing (Redis does not signal the key: a WATCH stays
#: clean), for the commands whose reply tells: `:0` of these ...
_NOOP_ON_ZERO = frozenset({
    "del", "unlink", "sadd", "srem", "smove", "zrem", "hdel", "lrem", "setnx", "hsetnx",
    "msetnx", "expire", "pexpire", "expireat", "pexpireat", "persist", "lpushx", "rpushx",
    "zremrangebyscore", "zremrangebyrank", "zremrangebylex", "hpersist",
})  # fmt: skip
#: ... and a null (or empty) reply of any write: a pop of nothing, SET NX/XX not done.
_NULL_FRAMES = frozenset({b"$-1\r\n", b"*-1\r\n", b"_\r\n", b"*0\r\n"})


def write_changed_nothing(name: str, frame: bytes) -> bool:
    """True when the reply of write `name` shows it touched no key (no WATCH is broken)."""
    if frame in _NULL_FRAMES:
        return name not in ("set", "getset", "getex", "restore", "rename")
    return frame == b":0\r\n" and name in _NOOP_ON_ZERO


_EXEC_LUA = FINGERPRINT_LUA + (
    b"local n = tonumber(ARGV[1]) "
    b"for i = 1, n do if fp(KEYS[i]) ~= ARGV[1 + i] then return false end end "
    b"local results, pos, idx = {}, n + 2, 1 "
    b"while pos <= #ARGV do "
    b"local argc = tonumber(ARGV[pos]) local cmd = {} "
    b"for j = 1, argc do cmd[j] = ARGV[pos + j] end "
    b"pos = pos + argc + 1 "
    b"results[idx] = redis.pcall(unpack(cmd)) idx = idx + 1 end "
    b"return results"
)


def exec_script_command(
    watched: Sequence[tuple[bytes, bytes]], commands: Sequence[Sequence[bytes]]
) -> tuple[bytes, ...]:
    """EVAL running `commands` atomically after checking the watched keys' fingerprints."""
    argv: list[bytes] = [str(len(watched)).encode(), *(fp for _, fp in watched)]
    for command in commands:
        argv.append(str(len(command)).encode())
        argv.extend(command)
    keys = [k for k, _ in watched]
    return (b"EVAL", _EXEC_LUA, str(len(keys)).encode(), *keys, *argv)


def exec_script_reply(frame: bytes) -> bytes:
    """The script's reply as EXEC's: false (a changed watched key) is EXEC's null array."""
    if frame in (b"$-1\r\n", b"_\r\n"):
        return b"*-1\r\n"
    return frame
