"""The one way a URL is shown in a log line, an error, a stat or an admin reply.

A URL can carry credentials in its userinfo (`https://user:secret@host`) and in its query
(`?_token=...`); a mistyped setting may not be a URL at all but a pasted token. `redact_url`
keeps only what says where the URL points (scheme, host, port, path), with IPv6 hosts kept in
brackets, and shows anything it cannot parse as `<not a URL>` rather than echoing it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: What replaces a secret value wherever one is hidden.
MASK = "<redacted>"
#: How a value that is not a URL is shown (it could be a token pasted in the wrong place).
NOT_A_URL = "<not a URL>"
#: How a kept username's password is shown (`keep_user=True`).
PASSWORD_MASK = "***"


def redact_url(url: str, *, keep_user: bool = False) -> str:
    """`scheme://host:port/path` of `url`: no userinfo, query or fragment.

    `keep_user` keeps the username and shows a password as `***` (Redis URLs, where the user
    name tells which account is used and is no secret).
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced IPv6 brackets
        return NOT_A_URL
    if not parts.scheme or not parts.netloc:
        return NOT_A_URL
    try:
        port = parts.port
    except ValueError:  # not a number or out of range: shown without it
        port = None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    if keep_user and (parts.username or parts.password is not None):
        password = f":{PASSWORD_MASK}" if parts.password is not None else ""
        host = f"{parts.username or ''}{password}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
