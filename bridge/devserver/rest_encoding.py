"""Upstash REST request decoding and response encoding for the devserver (no I/O).

Owns the byte-level mapping between the REST API and Redis commands/replies:
- request side: percent-decoding of path segments and query pairs to exact bytes, the JSON
  command forms (`["SET","k",1]` and 2-D arrays), argument conversion (JSON numbers keep their
  literal text, booleans become `true`/`false`);
- response side: one Redis reply frame (exact RESP2 bytes) to the JSON `result` value, plain
  (UTF-8 with U+FFFD for invalid bytes) or with `Upstash-Encoding: base64`; or the same
  from hiredis' parsed values (`values_json`, `values_json_b64` where they suffice).

Speed: the common /pipeline body (arrays of strings only) is parsed by orjson and checked with
a few C-level passes over the whole batch (`plain_commands`); anything else (numbers, whose
literal text must be kept, booleans, errors) takes the exact `json` path.

Invariants: a malformed request raises `BadRequest` with the JSON error text, never anything
else; only a top-level simple-string `OK` escapes base64 encoding.
"""

from __future__ import annotations

import base64
import json
from itertools import chain
from operator import itemgetter
from urllib.parse import unquote_to_bytes

import hiredis
import orjson

from bridge.core.resp import parse_frame, split_frames

#: Most commands accepted in one /pipeline or /multi-exec body (Upstash's SDK caps at 1000).
MAX_PIPELINE_COMMANDS = 100_000
#: Most arguments in one command (Redis itself allows far more, but JSON bodies are bounded).
MAX_COMMAND_ARGS = 1_000_000


class BadRequest(Exception):
    """The request cannot be turned into commands; `str(exc)` is the JSON error text."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Number(str):
    """The literal text of a JSON number (kept apart from JSON strings for validation)."""

    __slots__ = ()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# -- request side -----------------------------------------------------------------------------


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into (raw path, raw query)."""
    path, _, query = target.partition(b"?")
    return path, query


def path_segments(path: bytes) -> list[bytes]:
    """`/set/a%2Fb/%FF` -> [b"set", b"a/b", b"\\xff"]: split on `/`, then decode each segment.

    Every `/` separates arguments, so empty segments are empty arguments (`/set/k/` is
    `SET k ""`); `+` stays a plus sign (path semantics, not form encoding).
    """
    segments = path[1:].split(b"/")
    if b"%" not in path:
        return segments  # nothing percent-encoded: the segments are the bytes themselves
    return [unquote_to_bytes(seg) for seg in segments]


def query_pairs(query: bytes) -> list[tuple[bytes, bytes | None]]:
    """Decode `a=1&b&c=` in order; a key without `=` has value None."""
    pairs: list[tuple[bytes, bytes | None]] = []
    if not query:
        return pairs
    for item in query.split(b"&"):
        if not item:
            continue
        key, eq, value = item.partition(b"=")
        pairs.append((unquote_to_bytes(key), unquote_to_bytes(value) if eq else None))
    return pairs


def query_token(pairs: list[tuple[bytes, bytes | None]]) -> bytes | None:
    for key, value in pairs:
        if key == b"_token":
            return value or b""
    return None


def query_args(pairs: list[tuple[bytes, bytes | None]]) -> list[bytes]:
    """Extra arguments from the query string: `EX=100` -> EX, 100; `NX` -> NX; `_token` skipped."""
    args: list[bytes] = []
    for key, value in pairs:
        if key == b"_token":
            continue
        args.append(key)
        if value is not None:
            args.append(value)
    return args


def _load_json(body: bytes) -> object:
    if not body.strip():
        raise BadRequest("ERR invalid JSON body: the body is empty")
    try:
        return json.loads(
            body, parse_int=_Number, parse_float=_Number, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"ERR invalid JSON body: {exc}") from None


def _to_command(item: object, where: str) -> list[bytes]:
    if not isinstance(item, list):
        raise BadRequest(f"ERR {where} must be a JSON array of strings, got {_json_type(item)}")
    if not item:
        raise BadRequest(f"ERR {where} is empty")
    if len(item) > MAX_COMMAND_ARGS:
        raise BadRequest(f"ERR {where} has more than {MAX_COMMAND_ARGS} arguments")
    name = item[0]
    if type(name) is not str or not name:
        raise BadRequest(
            f"ERR {where}: the command name must be a non-empty string, got {_json_type(name)}"
        )
    try:  # fast path: every argument is a string (or the literal text of a number)
        return [arg.encode() for arg in item]
    except (AttributeError, UnicodeEncodeError):
        pass  # booleans, null, nested values, lone surrogates: the slow path says which
    args: list[bytes] = []
    for i, arg in enumerate(item):
        if isinstance(arg, str):  # JSON strings and the literal text of JSON numbers
            try:
                args.append(arg.encode())
            except UnicodeEncodeError:
                raise BadRequest(
                    f"ERR {where}: argument {i} is not valid Unicode (lone surrogate)"
                ) from None
        elif arg is True:
            args.append(b"true")
        elif arg is False:
            args.append(b"false")
        else:
            raise BadRequest(
                f"ERR {where}: argument {i} must be a string, number or boolean, "
                f"got {_json_type(arg)}"
            )
    return args


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_json_command(body: bytes) -> list[bytes]:
    """Body of `POST /`: `["SET","k","v","EX",100]`."""
    return _to_command(_load_json(body), "the command")


_FIRST = itemgetter(0)


def plain_commands(body: bytes) -> list[list[str]] | None:
    """The commands of a /pipeline or /multi-exec body in the common case: a non-empty JSON
    array of non-empty arrays of strings, within the limits (what `parse_json_commands` would
    return, as str). None for anything else: `parse_json_commands` then decides exactly,
    with its error messages (orjson refuses what needs them: lone surrogates, not UTF-8)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not list or not data or len(data) > MAX_PIPELINE_COMMANDS:
        return None
    if set(map(type, data)) != {list} or not all(data):
        return None
    if max(map(len, data)) > MAX_COMMAND_ARGS:
        return None
    if set(map(type, chain.from_iterable(data))) != {str} or not all(map(_FIRST, data)):
        return None
    return data


def parse_json_commands(body: bytes) -> list[list[bytes]]:
    """Body of `/pipeline` and `/multi-exec`: `[["SET","k","v"],["GET","k"]]` (may be empty)."""
    plain = plain_commands(body)
    if plain is not None:
        return [list(map(str.encode, item)) for item in plain]
    data = _load_json(body)
    if not isinstance(data, list):
        raise BadRequest(f"ERR the body must be a JSON array of commands, got {_json_type(data)}")
    if len(data) > MAX_PIPELINE_COMMANDS:
        raise BadRequest(f"ERR more than {MAX_PIPELINE_COMMANDS} commands in one request")
    return [_to_command(item, f"command {i}") for i, item in enumerate(data)]


# -- response side ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def is_error_frame(frame: bytes) -> bool:
    return frame[:1] == b"-"


def error_text(frame: bytes) -> str:
    """`-ERR foo\\r\\n` -> `ERR foo`."""
    return frame[1:-2].decode("utf-8", "replace")


def reply_to_json(frame: bytes, b64: bool) -> object:
    """A non-error top-level reply frame as the JSON `result` value.

    Fast paths for the common flat replies; arrays go through `parse_frame`. In base64 mode
    every string at every depth is encoded except a top-level simple-string `OK`.
    """
    kind = frame[:1]
    if kind == b"$":
        if frame[1:2] == b"-":
            return None
        data = frame[frame.index(b"\r\n") + 2 : -2]
        return _b64(data) if b64 else _text(data)
    if kind == b"+":
        line = frame[1:-2]
        if b64 and line != b"OK":
            return _b64(line)
        return _text(line)
    if kind == b":":
        return int(frame[1:-2])
    return _value(parse_frame(frame), b64)


def _value(value: object, b64: bool) -> object:
    """Nested values: Status and ErrorReply texts are strings like any other (no OK exemption)."""
    if isinstance(value, bytes):  # includes Status and ErrorReply (nested errors, e.g. EVAL)
        return _b64(value) if b64 else _text(value)
    if isinstance(value, list):
        return [_value(item, b64) for item in value]
    if value is None or isinstance(value, int):
        return int(value) if isinstance(value, bool) else value
    return _b64(str(value).encode()) if b64 else str(value)  # RESP3 doubles: never in RESP2


def item_json(frame: bytes, b64: bool) -> dict[str, object]:
    """One /pipeline or /multi-exec item: `{"result": ...}` or `{"error": "..."}`."""
    if frame[:1] == b"-":
        return {"error": error_text(frame)}
    return {"result": reply_to_json(frame, b64)}


def values_json(values: list[object]) -> list[dict[str, object]]:
    """/pipeline items from hiredis' values of the replies (plain, not base64): the same as
    `item_json` of their frames (simple and bulk strings are alike in plain JSON)."""
    items: list[dict[str, object]] = []
    append = items.append
    for value in values:
        kind = type(value)
        if kind is bytes:
            append({"result": value.decode("utf-8", "replace")})  # type: ignore[attr-defined]
        elif kind is int or value is None:
            append({"result": value})
        elif isinstance(value, hiredis.ReplyError):
            append({"error": str(value)})
        else:
            append({"result": plain_value(value)})
    return items


class _Ambiguous(Exception):
    """hiredis' values cannot say what the exact frames would give (see `values_json_b64`)."""


def values_json_b64(values: list[object]) -> list[dict[str, object]] | None:
    """/pipeline items in base64 mode from hiredis' values, or None where those are not
    enough: a top-level `OK` (a simple string stays raw, a bulk string is encoded, and
    hiredis returns both as bytes) or a nested error (its exact bytes are gone)."""
    items: list[dict[str, object]] = []
    append = items.append
    for value in values:
        kind = type(value)
        if kind is bytes:
            if value == b"OK":
                return None
            append({"result": _b64(value)})  # type: ignore[arg-type]
        elif kind is int or value is None:
            append({"result": value})
        elif isinstance(value, hiredis.ReplyError):
            append({"error": str(value)})
        else:
            try:
                append({"result": _b64_value(value)})
            except _Ambiguous:
                return None
    return items


def _b64_value(value: object) -> object:
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, list):
        return [_b64_value(item) for item in value]
    if value is None or type(value) is int:
        return value
    raise _Ambiguous


def plain_value(value: object) -> object:
    """A hiredis value as its plain JSON `result` (nested errors are their text)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [plain_value(item) for item in value]
    if value is None or type(value) is int:
        return value
    return str(value)  # a nested hiredis.ReplyError: its text


def array_items(frame: bytes) -> list[bytes] | None:
    """The exact frames inside a top-level array frame (an EXEC reply); None for a nil array."""
    header_end = frame.index(b"\r\n")
    if frame[:1] != b"*":
        raise ValueError("not an array reply")
    if int(frame[1:header_end]) < 0:
        return None
    return split_frames(frame[header_end + 2 :])
