"""REST ↔ RESP translation: request bodies for the REST API and replies back to RESP2 frames.

Everything the upstream returns is turned into RESP2 frames (exact bytes) here, whatever the
response format was; the server layer then re-encodes for RESP3 clients. JSON results arrive
with `Upstash-Encoding: base64`, so strings are binary-exact; the one raw top-level "OK" is a
status reply. No I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from urllib.parse import quote_from_bytes

import orjson

from bridge.core.resp import (
    RespProtocolError,
    Status,
    encode_error,
    encode_resp2,
    split_frames,
)


class CodecError(ValueError):
    """An upstream body that does not have the shape the REST API promises."""


def json_args(args: Sequence[bytes]) -> list[str] | None:
    """The command as JSON strings, or None when an argument is not valid UTF-8."""
    try:
        return [a.decode() for a in args]
    except UnicodeDecodeError:
        return None


def pipeline_body(commands: Sequence[Sequence[str]]) -> bytes:
    return orjson.dumps(commands)


def path_form(args: Sequence[bytes]) -> tuple[str, bytes]:
    """Path form for commands with binary arguments: all but the last percent-encoded in the
    path, the last one as the raw POST body (Upstash appends the body as the last argument)."""
    head = "/".join(quote_from_bytes(a, safe="") for a in args[:-1])
    return "/" + head, bytes(args[-1])


def decode_b64_value(value: object, *, top: bool) -> object:
    """Undo `Upstash-Encoding: base64` on one result (recursively; raw top-level "OK" stays)."""
    if isinstance(value, str):
        if top and value == "OK":
            return Status(b"OK")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError("a result string is not valid base64") from None
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, list):
        return [decode_b64_value(v, top=False) for v in value]
    raise CodecError(f"unexpected JSON value of type {type(value).__name__} in a result")


def item_to_frame(item: object) -> bytes:
    """One `{"result": ...}` / `{"error": ...}` object (base64 encoding) → a RESP2 frame."""
    if not isinstance(item, dict):
        raise CodecError("a pipeline item is not an object")
    if "error" in item:
        error = item["error"]
        if not isinstance(error, str):
            raise CodecError("an error item is not a string")
        return encode_error(error if error.split(" ", 1)[0].isupper() else "ERR " + error)
    if "result" not in item:
        raise CodecError("an item has neither result nor error")
    return encode_resp2(decode_b64_value(item["result"], top=True))


def json_pipeline_frames(body: bytes, expected: int) -> list[bytes]:
    """A JSON /pipeline response → one RESP2 frame per command."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CodecError("the response body is not JSON") from None
    if not isinstance(items, list) or len(items) != expected:
        raise CodecError(f"expected a JSON array of {expected} results")
    return [item_to_frame(item) for item in items]


def resp2_pipeline_frames(body: bytes, expected: int) -> list[bytes]:
    """A resp2 /pipeline response (concatenated replies) → one frame per command."""
    try:
        frames = split_frames(body)
    except RespProtocolError as exc:
        raise CodecError(f"the RESP2 body is invalid: {exc}") from None
    if len(frames) != expected:
        raise CodecError(f"expected {expected} RESP2 replies, got {len(frames)}")
    return frames


def multi_exec_frame(body: bytes, expected: int) -> bytes:
    """A /multi-exec JSON response → the EXEC reply frame (an array, or an error)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CodecError("the response body is not JSON") from None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return encode_error(data["error"])
    if not isinstance(data, list) or len(data) != expected:
        raise CodecError(f"expected a JSON array of {expected} results")
    frames = [item_to_frame(item) for item in data]
    return b"*%d\r\n" % len(frames) + b"".join(frames)


def error_text_of(body: bytes) -> str | None:
    """The `error` of a JSON error body, if it is one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return None
