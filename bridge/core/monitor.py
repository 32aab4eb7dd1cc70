"""MONITOR lines in Redis 7.0's exact format, for commands the bridge answers itself.

Forwarded commands appear in the upstream's own MONITOR stream; a command answered locally
(PING, ECHO, CLIENT SETNAME, HELLO ...) never reaches it, so the bridge writes its line:
`1700000000.123456 [0 127.0.0.1:54321] "PING"`, arguments quoted as Redis' sdscatrepr does,
AUTH's and HELLO AUTH's credentials `(redacted)`. Commands Redis does not show (flagged
`admin` or `skip_monitor`) are not shown. No I/O.
"""

from __future__ import annotations

from bridge.core.commands import CommandSpec

_REDACTED = b'"(redacted)"'
_ESCAPES = {
    0x5C: b"\\\\", 0x22: b'\\"', 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x07: b"\\a",
    0x08: b"\\b",
}  # fmt: skip


def shown(spec: CommandSpec) -> bool:
    """Whether Redis 7.0 feeds this command to MONITOR clients."""
    return not ("admin" in spec.flags or "skip_monitor" in spec.flags)


def quote(arg: bytes) -> bytes:
    """One argument as Redis' sdscatrepr writes it."""
    out = bytearray(b'"')
    for byte in arg:
        escape = _ESCAPES.get(byte)
        if escape is not None:
            out += escape
        elif 0x20 <= byte < 0x7F:
            out.append(byte)
        else:
            out += b"\\x%02x" % byte
    out += b'"'
    return bytes(out)


def monitor_line(now: float, db: int, addr: str, args: list[bytes]) -> bytes:
    """The MONITOR line (without the `+` and CRLF) for `args` sent by the client at `addr`."""
    name = args[0].lower()
    parts = [quote(args[0])]
    redact_from = -1
    if name == b"auth":
        redact_from = 1
    for i, arg in enumerate(args[1:], start=1):
        if 0 < redact_from <= i or (name == b"hello" and _hello_credential(args, i)):
            parts.append(_REDACTED)
        else:
            parts.append(quote(arg))
    return b"%.6f [%d %s] " % (now, db, addr.encode("latin-1")) + b" ".join(parts)


def _hello_credential(args: list[bytes], i: int) -> bool:
    """Whether args[i] is the user or password of HELLO's AUTH option."""
    return any(j >= 2 and args[j].lower() == b"auth" for j in (i - 1, i - 2))
