"""RESP3 replies: typed values, their encoder, and the RESP2 -> RESP3 reply shaping.

The REST upstream only returns RESP2-shaped values (as `resp.parse_frame` gives them: Status,
ErrorReply, int, bytes, None, list). A client that said `HELLO 3` must get what Redis 7 sends
in RESP3: maps, sets, doubles, verbatim strings, `_` nulls. The shape of a command's reply is
named by `CommandSpec.resp3` (the command table is the one place that says which command has
which shape); this module owns what each shape id means.

Shaping is total: a value that does not have the expected RESP2 structure (an error, an
unexpected type, a reply from a newer server) is left as it is, level by level, and encoded
generically. It never raises on upstream data. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeGuard

from bridge.core.commands import CommandSpec
from bridge.core.resp import (
    BigNumber,
    Double,
    ErrorReply,
    Map,
    Push,
    Set,
    Status,
    Verbatim,
    encode_value,
    format_double,
    parse_frame,
)

__all__ = [
    "BigNumber", "Double", "Map", "Push", "Set", "Verbatim", "encode_resp3", "encode_resp3_exec",
    "encode_resp3_frame", "encode_resp3_value", "format_double", "shape_resp3", "to_resp2",
]  # fmt: skip

# --- typed values and the encoder live in bridge.core.resp (one encoder for every RESP reply) ---


def encode_resp3_value(value: object) -> bytes:
    """Encode a value as RESP3 with no command knowledge (`resp.encode_value`, protocol 3)."""
    return encode_value(value, 3)


def to_resp2(value: object) -> object:
    """Downgrade typed values to what the same reply is in RESP2 (for `resp.encode_resp2`)."""
    if isinstance(value, (Map, dict)):
        pairs = value.items if isinstance(value, Map) else value.items()
        return [part for key, item in pairs for part in (to_resp2(key), to_resp2(item))]
    if isinstance(value, (Set, Push)):
        return [to_resp2(item) for item in value.items]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_resp2(item) for item in value]
    if isinstance(value, Double):
        return value.encoded_text()
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, Verbatim):
        return value.data
    if isinstance(value, BigNumber):
        return value.digits
    if isinstance(value, bool):
        return int(value)
    return value


# --- shapers: RESP2 value -> typed value, leaving whatever does not fit untouched ----------------

Shaper = Callable[[object], object]
ShapeFactory = Callable[[Sequence[bytes]], Shaper]


def _is_bulk(value: object) -> TypeGuard[bytes]:
    return isinstance(value, bytes) and not isinstance(value, (Status, ErrorReply))


def _same(value: object) -> object:
    return value


def _double(value: object) -> object:
    if _is_bulk(value):
        parsed = Double.parse(value)
        if parsed is not None:
            return parsed
    return value


def _set(value: object) -> object:
    return Set(tuple(value)) if isinstance(value, list) else value


def _verbatim(value: object) -> object:
    return Verbatim(value) if _is_bulk(value) else value


def _array(item: Shaper) -> Shaper:
    def shape(value: object) -> object:
        return [item(x) for x in value] if isinstance(value, list) else value

    return shape


def _set_of(item: Shaper) -> Shaper:
    def shape(value: object) -> object:
        return Set(tuple(item(x) for x in value)) if isinstance(value, list) else value

    return shape


def _tuple(*items: Shaper) -> Shaper:
    """A fixed-length array whose positions have their own shapes."""

    def shape(value: object) -> object:
        if isinstance(value, list) and len(value) == len(items):
            return [f(x) for f, x in zip(items, value, strict=True)]
        return value

    return shape


def _map(values: Shaper = _same, keys: Mapping[bytes, Shaper] | None = None) -> Shaper:
    """A flat `[k1, v1, k2, v2, ...]` array -> map; `keys` shapes the values of named keys."""
    by_key = keys or {}

    def shape(value: object) -> object:
        if not isinstance(value, list) or len(value) % 2 or not _scalar_keys(value[0::2]):
            return value
        pairs = []
        for i in range(0, len(value), 2):
            key = value[i]
            fn = by_key.get(key, values) if isinstance(key, bytes) else values
            pairs.append((key, fn(value[i + 1])))
        return Map(tuple(pairs))

    return shape


def _scalar_keys(keys: Sequence[object]) -> bool:
    """Map keys must be strings or integers: clients build dicts from maps (hiredis too)."""
    return all(isinstance(k, (bytes, int)) and not isinstance(k, ErrorReply) for k in keys)


def _pairs(first: Shaper, second: Shaper) -> Shaper:
    """A flat `[a1, b1, a2, b2, ...]` array -> `[[a1, b1], [a2, b2], ...]`."""

    def shape(value: object) -> object:
        if not isinstance(value, list) or len(value) % 2:
            return value
        return [[first(value[i]), second(value[i + 1])] for i in range(0, len(value), 2)]

    return shape


def _map_of_pairs(values: Shaper = _same) -> Shaper:
    """`[[k1, v1], [k2, v2], ...]` -> map (XREAD's per-stream arrays)."""

    def shape(value: object) -> object:
        if not isinstance(value, list) or not all(
            isinstance(x, list) and len(x) == 2 for x in value
        ):
            return value
        if not _scalar_keys([x[0] for x in value]):
            return value
        return Map(tuple((x[0], values(x[1])) for x in value))

    return shape


def _last(item: Shaper) -> Shaper:
    """Shape the last element of an array (GEOSEARCH ... WITHCOORD puts the coordinates there)."""

    def shape(value: object) -> object:
        if isinstance(value, list) and value:
            return [*value[:-1], item(value[-1])]
        return value

    return shape


# --- argument helpers ----------------------------------------------------------------------------


def _has_token(args: Sequence[bytes], start: int, token: bytes) -> bool:
    return any(arg.upper() == token for arg in args[start:])


def _numkeys_end(args: Sequence[bytes]) -> int:
    """Index just after `numkeys key [key ...]` (ZUNION/ZINTER/ZDIFF)."""
    try:
        return 2 + max(int(args[1]), 0)
    except (IndexError, ValueError):
        return len(args)


# --- the shapes ----------------------------------------------------------------------------------

_MAP = _map()
_SCORE_PAIRS = _pairs(_same, _double)
_COORDS = _tuple(_double, _double)
_MAP_ARRAY = _array(_MAP)
_NESTED_SCORE_PAIRS = _array(_tuple(_same, _double))  # already nested in RESP2 (ZMPOP)


def _key_spec() -> Shaper:
    search = _map(keys={b"spec": _MAP})
    return _map(keys={b"flags": _set, b"begin_search": search, b"find_keys": search})


_KEY_SPEC = _key_spec()


def _command_info_entry(value: object) -> object:
    if not isinstance(value, list) or len(value) != 10:
        return value
    subs = value[9]
    return [
        *value[:2],
        _set(value[2]),
        *value[3:6],
        _set(value[6]),
        _set(value[7]),
        _set_of(_KEY_SPEC)(value[8]),
        # Redis 7.0 sends an empty set, not an empty array, for "no subcommands".
        Set(()) if subs == [] else _array(_command_info_entry)(subs),
    ]


def _doc_argument(value: object) -> object:
    return _map(keys={b"flags": _set, b"arguments": _array(_doc_argument)})(value)


def _doc_entry(value: object) -> object:
    return _map(
        keys={
            b"doc_flags": _set,
            b"history": _set,
            b"arguments": _array(_doc_argument),
            b"subcommands": _map(_doc_entry),
        }
    )(value)


def _memory_stats(value: object) -> object:
    def by_key(key: object, item: object) -> object:
        if not isinstance(key, bytes):
            return item
        if key.startswith(b"db."):
            return _MAP(item)
        if key.endswith((b".ratio", b".percentage")) or key == b"fragmentation":
            return _double(item)
        return item

    if not isinstance(value, list) or len(value) % 2 or not _scalar_keys(value[0::2]):
        return value
    return Map(tuple((value[i], by_key(value[i], value[i + 1])) for i in range(0, len(value), 2)))


def _cluster_slot(value: object) -> object:
    # [start, end, [ip, port, id, {hostname...}], ...replicas]: the node metadata is a map.
    if not isinstance(value, list) or len(value) < 2:
        return value
    node = _tuple(_same, _same, _same, _MAP)
    return [*value[:2], *(node(x) for x in value[2:])]


def _fixed(shaper: Shaper) -> ShapeFactory:
    return lambda _args: shaper


def _withscores(start: int) -> ShapeFactory:
    def factory(args: Sequence[bytes]) -> Shaper:
        return _SCORE_PAIRS if _has_token(args, start, b"WITHSCORES") else _same

    return factory


def _withscores_numkeys(args: Sequence[bytes]) -> Shaper:
    return _SCORE_PAIRS if _has_token(args, _numkeys_end(args), b"WITHSCORES") else _same


def _zrandmember(args: Sequence[bytes]) -> Shaper:
    return _SCORE_PAIRS if len(args) > 3 and args[3].upper() == b"WITHSCORES" else _same


def _hrandfield(args: Sequence[bytes]) -> Shaper:
    with_values = len(args) > 3 and args[3].upper() == b"WITHVALUES"
    return _pairs(_same, _same) if with_values else _same


def _zpop(args: Sequence[bytes]) -> Shaper:
    # With a COUNT argument the pairs are nested; without it one flat [member, score].
    return _SCORE_PAIRS if len(args) > 2 else _tuple(_same, _double)


def _geosearch(args: Sequence[bytes]) -> Shaper:
    return _array(_last(_COORDS)) if _has_token(args, 2, b"WITHCOORD") else _same


#: Shape id (CommandSpec.resp3) -> shaper factory taking the command's arguments.
SHAPES: Mapping[str, ShapeFactory] = {
    "map": _fixed(_MAP),
    "set": _fixed(_set),
    "double": _fixed(_double),
    "double_array": _fixed(_array(_double)),
    "verbatim": _fixed(_verbatim),
    "map_array": _fixed(_MAP_ARRAY),
    "withscores": _withscores(4),
    "withscores_numkeys": _withscores_numkeys,
    "zrandmember": _zrandmember,
    "hrandfield": _hrandfield,
    "zpop": _zpop,
    "bzpop": _fixed(_tuple(_same, _same, _double)),
    "zmpop": _fixed(_tuple(_same, _NESTED_SCORE_PAIRS)),
    "zrank": _fixed(_tuple(_same, _double)),
    "geopos": _fixed(_array(_COORDS)),
    "geosearch": _geosearch,
    "xread": _fixed(_map_of_pairs()),
    "xinfo_stream": _fixed(_map(keys={b"groups": _array(_map(keys={b"consumers": _MAP_ARRAY}))})),
    "memory_stats": _fixed(_memory_stats),
    "function_list": _fixed(_array(_map(keys={b"functions": _array(_map(keys={b"flags": _set}))}))),
    "function_stats": _fixed(_map(keys={b"running_script": _MAP, b"engines": _map(_MAP)})),
    "acl_getuser": _fixed(_map(keys={b"flags": _set, b"selectors": _MAP_ARRAY})),
    "acl_log": _fixed(_array(_map(keys={b"age-seconds": _double}))),
    "client_trackinginfo": _fixed(_map(keys={b"flags": _set})),
    "command_info": _fixed(_array(_command_info_entry)),
    "command_docs": _fixed(_map(_doc_entry)),
    "command_getkeysandflags": _fixed(_array(_tuple(_same, _set))),
    "latency_histogram": _fixed(_map(_map(keys={b"histogram_usec": _MAP}))),
    "cluster_shards": _fixed(_array(_map(keys={b"nodes": _MAP_ARRAY}))),
    "cluster_slots": _fixed(_array(_cluster_slot)),
    "hello": _fixed(_map(keys={b"modules": _MAP_ARRAY})),
}


def shape_resp3(spec: CommandSpec | None, args: Sequence[bytes], value: object) -> object:
    """The typed RESP3 value of a RESP2 reply to `args` (unchanged when no shape applies)."""
    if spec is None or not spec.resp3:
        return value
    factory = SHAPES.get(spec.resp3)
    if factory is None:
        return value
    return factory(args)(value)


def encode_resp3(spec: CommandSpec | None, args: Sequence[bytes], value: object) -> bytes:
    """Encode the RESP2 reply to `args` (name first) as Redis 7 would send it in RESP3."""
    return encode_resp3_value(shape_resp3(spec, args, value))


def encode_resp3_frame(spec: CommandSpec | None, args: Sequence[bytes], frame: bytes) -> bytes:
    """`encode_resp3` for a raw RESP2 reply frame, passing it through when nothing changes.

    RESP2 is RESP3 apart from nulls (`$-1`, `*-1` become `_`), so an unshaped reply without a
    null needs no parsing at all: the common case costs one substring search.
    """
    shaped = spec is not None and spec.resp3 in SHAPES
    if not shaped and b"$-1\r\n" not in frame and b"*-1\r\n" not in frame:
        return frame
    return encode_resp3(spec, args, parse_frame(frame))


def encode_resp3_exec(
    items: Sequence[tuple[CommandSpec | None, Sequence[bytes]]], values: object
) -> bytes:
    """Encode an EXEC reply: each result shaped for the command queued at its position.

    A non-array EXEC reply (null after a failed WATCH, an EXECABORT error) is encoded as is;
    errors inside the array stay `-ERR` frames.
    """
    if not isinstance(values, list):
        return encode_resp3_value(values)
    out = [b"*%d\r\n" % len(values)]
    for i, value in enumerate(values):
        if i < len(items):
            spec, args = items[i]
            out.append(encode_resp3(spec, args, value))
        else:
            out.append(encode_resp3_value(value))
    return b"".join(out)
