"""Logging set-up for a daemon whose stderr goes to journald, a terminal or a file.

Owns the one stderr handler of `resp-bridge serve`: one line per event, and

- under systemd with stderr connected to the journal (`JOURNAL_STREAM` names our stderr, see
  systemd.exec(5)), a `<N>` syslog priority prefix (`sd-daemon(3)`) and no timestamp, since
  journald stamps every line itself;
- elsewhere, `time level logger: message`.

Messages are kept on one line (newlines escaped, so a client-supplied name cannot forge log
lines); a traceback keeps its lines, each carrying the record's priority. Every formatted line
passes through a redaction step that masks registered secrets (the REST token, requirepass)
and anything that looks like a bearer token or a `_token=` query, so a token can never reach
the logs, whatever code logs it. Must not import trio or httpx.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

#: syslog priorities of logging levels (`<N>` prefixes understood by journald).
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
MASK = "<redacted>"
#: Shorter secrets are not masked by value: masking "a" would garble every line.
MIN_SECRET_CHARS = 4
#: Loggers too chatty at INFO: httpx logs each request with its full URL.
QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "h2")
#: Patterns masked even when the value was never registered.
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:^|[?&\s])_token=)[^&\s'\"]+"),
)

_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Mask this value in every later log line (the token, requirepass; also after RELOAD)."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _secrets.add(value)


def redact(text: str) -> str:
    """The text with registered secrets and bearer/_token values masked."""
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def journal_stderr(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when stderr is the journal stream systemd connected (not merely under systemd).

    `JOURNAL_STREAM=dev:inode` identifies the journal socket; if stderr was redirected since
    (a file, a terminal), it no longer matches and timestamps are wanted again. When only
    `INVOCATION_ID` says we run under systemd (old systemd), a socket or pipe on stderr counts.
    """
    env = os.environ if environ is None else environ
    target = sys.stderr if stream is None else stream
    try:
        st = os.fstat(target.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    journal = env.get("JOURNAL_STREAM", "")
    if journal:
        dev, _, ino = journal.partition(":")
        try:
            return (st.st_dev, st.st_ino) == (int(dev), int(ino))
        except ValueError:
            return False
    if env.get("INVOCATION_ID"):
        return stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode)
    return False


class BridgeFormatter(logging.Formatter):
    """One line per event, optional `<N>` prefix, secrets masked."""

    def __init__(self, *, journal: bool) -> None:
        fmt = "%(name)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s %(levelname)s " + fmt)
        self.journal = journal

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _one_line(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        if not self.journal:
            return text
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


def priority(levelno: int) -> int:
    """syslog priority of a logging level (custom levels round down to the next known one)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7


def _one_line(message: str) -> str:
    if "\n" not in message and "\r" not in message:
        return message
    return message.replace("\r", "\\r").replace("\n", "\\n")


def setup_logging(
    level: str = "info",
    *,
    log_format: str = "auto",
    secrets: Iterable[str | None] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Install the stderr handler on the root logger (replacing earlier ones); returns it.

    `log_format`: "journal" (priority prefixes, no time), "text" (timestamps) or "auto".
    """
    target = sys.stderr if stream is None else stream
    journal = journal_stderr(environ, target) if log_format == "auto" else log_format == "journal"
    for secret in secrets:
        add_secret(secret)
    handler = logging.StreamHandler(target)
    handler.setFormatter(BridgeFormatter(journal=journal))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def set_level(level: str) -> None:
    """Change the level at run time (RELOAD)."""
    logging.getLogger().setLevel(LEVELS.get(level.lower(), logging.INFO))
