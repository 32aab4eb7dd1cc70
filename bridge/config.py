"""The bridge's one typed configuration schema: defaults, help text, TOML keys, flags, env vars.

Each field of `BridgeConfig` carries its help text and optional env var in its metadata; the
CLI options, the config-file keys and `check-config` output are all derived from it, so a new
setting is added in exactly one place. Precedence: flag > env var > config file > default.
Validation happens once, at load; every problem is reported at once, each naming the key,
quoting the (masked) value and saying what to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bridge.errors import ConfigError
from bridge.redaction import redact_url

MB = 1024 * 1024


def _opt(default: Any, help: str, *, env: str | None = None, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "env": env, "secret": secret})


#: Env var that can give the token of a `[databases.N]` table (N replaces the braces).
DATABASE_TOKEN_ENV = "RESP_BRIDGE_DB{}_TOKEN"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """A `[databases.N]` table: the REST database that serves Redis database number N."""

    number: int
    url: str
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Effective settings of `resp-bridge serve` (see README for the full table)."""

    url: str | None = _opt(
        None,
        "REST URL of the upstream database (https://...upstash.io). Without URL and token the "
        "bridge starts an embedded local redis-server + devserver.",
        env="UPSTASH_REDIS_REST_URL",
    )
    token: str | None = _opt(
        None, "REST token of the upstream database.", env="UPSTASH_REDIS_REST_TOKEN", secret=True
    )
    bind: str = _opt("127.0.0.1", "Address to listen on for Redis clients.")
    port: int = _opt(6379, "TCP port for Redis clients (0 picks a free port; -1 disables TCP).")
    unixsocket: str | None = _opt(None, "Also listen on this unix socket path.")
    unixsocketperm: int = _opt(0o600, "Permissions of the unix socket (octal in files: 0o600).")
    requirepass: str | None = _opt(None, "Require clients to AUTH with this password.", secret=True)
    max_clients: int = _opt(10000, "Most simultaneous client connections (like maxclients).")
    max_batch_commands: int = _opt(
        1000, "Most commands in one /pipeline request (Upstash's own SDK caps at 1000)."
    )
    max_batch_bytes: int = _opt(
        2 * MB, "Soft cap on the request body of one /pipeline (one big command may exceed it)."
    )
    max_request_bytes: int = _opt(
        10 * MB,
        "Largest request the upstream accepts (Upstash free tier: 10 MB); bigger commands "
        "are refused locally.",
    )
    max_in_flight: int = _opt(8, "Most upstream HTTP requests in flight at once.")
    upstream_timeout_s: float = _opt(
        3.0, "Seconds to wait for an upstream answer; kept below clients' usual 5 s timeout."
    )
    connect_timeout_s: float = _opt(2.0, "Seconds to establish an upstream connection.")
    response_format: str = _opt(
        "auto", "Upstream reply format for /pipeline: auto (probe at start), resp2 or json."
    )
    http2: bool = _opt(
        True,
        "Deprecated, ignored: commands use HTTP/1.1 keep-alive (measured 5x less CPU than HTTP/2).",
    )
    max_query_buffer_bytes: int = _opt(
        256 * MB, "Most unparsed bytes buffered per client (Redis: client-query-buffer-limit)."
    )
    max_bulk_bytes: int = _opt(
        100 * MB, "Largest single argument accepted (Redis: proto-max-bulk-len)."
    )
    max_args: int = _opt(1024 * 1024, "Most arguments in one command.")
    max_inline_bytes: int = _opt(64 * 1024, "Longest inline (telnet-style) command line.")
    max_pending_replies: int = _opt(
        10000, "Replies a client may have outstanding before the bridge stops reading from it."
    )
    idle_timeout_s: float = _opt(0.0, "Close clients idle this long (0 = never, like Redis).")
    read_only: bool = _opt(
        False,
        "Refuse write commands locally with -READONLY (also switched on by itself when the "
        "upstream answers NOPERM to a write, i.e. a read-only token).",
    )
    breaker_failures: int = _opt(
        5, "Consecutive failed upstream requests that open the circuit breaker."
    )
    breaker_open_s: float = _opt(
        1.0,
        "Seconds the breaker stays open (commands fail at once, not executed) before a probe; "
        "doubles while the outage lasts, up to 30 s.",
    )
    max_output_buffer_bytes: int = _opt(
        64 * MB,
        "Reply bytes a client may leave unread before it is disconnected (Redis: "
        "client-output-buffer-limit).",
    )
    ca_file: str | None = _opt(
        None,
        "CA bundle (PEM) to verify the upstream's TLS certificate (verification is always on).",
    )
    blocking_poll_min_ms: float = _opt(
        50.0,
        "First interval between polls of an emulated blocking command (BLPOP & co.); it doubles "
        "up to blocking_poll_max_ms. Writes through this bridge wake waiters at once.",
    )
    blocking_poll_max_ms: float = _opt(
        1000.0,
        "Longest interval between polls of a blocking command: an idle waiter costs about "
        "60000 / this upstream commands per minute.",
    )
    keyspace_events: str = _opt(
        "auto",
        "Wake blocked clients and dirty WATCHes from the upstream's keyspace notifications: "
        "auto (when its notify-keyspace-events already has the needed classes), on (also sets "
        "them at start: a database-wide setting) or off (poll only).",
    )
    blocking_fallback_poll_s: float = _opt(
        30.0,
        "With keyspace events, a blocked client still polls this often (covers lost events).",
    )
    keyspace_max_streams: int = _opt(
        64,
        "Most keyspace streams (one per key a blocked client or WATCH waits on); beyond, "
        "blocked clients poll.",
    )
    price_per_100k_commands: float = _opt(
        0.20,
        "Price of 100,000 upstream commands in the admin COST estimate (Upstash "
        "pay-as-you-go: 0.20 USD).",
    )
    command_budget_per_day: int = _opt(
        0, "Upstream commands allowed per UTC day (0: no budget); warns at 80% and 100%."
    )
    command_budget_per_month: int = _opt(
        0, "Upstream commands allowed per UTC calendar month (0: no budget)."
    )
    budget_enforce: bool = _opt(
        False,
        "Refuse commands past a budget (bridge polls and probes first, client commands last) "
        "instead of only warning.",
    )
    log_level: str = _opt("info", "Log level: debug, info, warning or error.")
    log_format: str = _opt(
        "auto",
        "Log lines: journal (<N> priority prefix, no timestamp), text (timestamped) or auto "
        "(journal when stderr is systemd's journal stream).",
    )
    shutdown_timeout_s: float = _opt(
        10.0,
        "On SIGTERM, seconds to let in-flight commands finish before closing clients "
        "(keep below the unit's TimeoutStopSec).",
    )
    redis_server: str = _opt(
        "redis-server", "redis-server binary for the embedded default upstream."
    )
    metrics_bind: str | None = _opt(
        None,
        "Serve HTTP /metrics (Prometheus), /healthz and /readyz on this HOST:PORT (such as "
        "127.0.0.1:9121); off when unset.",
        env="RESP_BRIDGE_METRICS_BIND",
    )
    metrics_ready_upstream_s: float = _opt(
        30.0,
        "/readyz needs an upstream reply within this many seconds; when commands brought none, "
        "it sends one PING (a billed command) at most this often.",
    )
    admin_socket: str | None = _opt(
        None,
        "Unix socket of the admin console (RESP: resp-bridge admin, redis-cli -s), created "
        "0600. Default: $RUNTIME_DIRECTORY/admin.sock, else $XDG_RUNTIME_DIR/resp-bridge/"
        "admin.sock, else /tmp/resp-bridge-<uid>/admin.sock; 'off' disables it.",
        env="RESP_BRIDGE_ADMIN_SOCKET",
    )
    upstash_email: str | None = _opt(
        None, "Email of the Upstash account (developer API, database management).",
        env="UPSTASH_EMAIL",
    )  # fmt: skip
    upstash_api_key: str | None = _opt(
        None, "Upstash developer API key (database management; not the REST token).",
        env="UPSTASH_API_KEY", secret=True,
    )  # fmt: skip
    upstash_api_url: str = _opt(
        "https://api.upstash.com", "Base URL of the Upstash developer API (/v2/... below it)."
    )
    enterprise_url: str | None = _opt(
        None, "Redis Enterprise Software REST API, https://<host>:9443 (/v1/... below it).",
        env="REDIS_ENTERPRISE_URL",
    )  # fmt: skip
    enterprise_user: str | None = _opt(
        None, "Redis Enterprise REST API user (Basic auth).", env="REDIS_ENTERPRISE_USER"
    )
    enterprise_password: str | None = _opt(
        None, "Redis Enterprise REST API password.", env="REDIS_ENTERPRISE_PASSWORD", secret=True
    )
    enterprise_ca_file: str | None = _opt(
        None, "CA certificate (PEM) that signed the Redis Enterprise API's certificate."
    )
    enterprise_insecure: bool = _opt(
        False, "Do not verify the Redis Enterprise API's TLS certificate (warns on every use)."
    )
    databases: tuple[DatabaseTarget, ...] = field(
        default=(),
        metadata={
            "help": "Config file only: a [databases.N] table (url, token) per extra Redis database "
            "number N that SELECT and redis://host/N may use, each a REST database of its own "
            "(the embedded default serves 0-15 without tables). The token may come from "
            "RESP_BRIDGE_DB<N>_TOKEN instead.",
            "env": None,
            "secret": False,
            "table": True,
        },
    )

    def redacted(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for logs, check-config and admin."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "<redacted>"
            out[f.name] = value
        out["databases"] = {
            str(d.number): {"url": redact_url(d.url), "token": "<redacted>"} for d in self.databases
        }
        return out

    def secret_values(self) -> list[str]:
        """Every credential in the settings: the secret fields and the databases' tokens."""
        values = [
            getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("secret")
        ]
        return [v for v in values if v] + [d.token for d in self.databases]

    @property
    def embedded(self) -> bool:
        """True when no upstream is configured: run the local redis-server + devserver."""
        return not self.url and not self.token


FIELDS = {f.name: f for f in dataclasses.fields(BridgeConfig)}


def config_markdown() -> str:
    """The README's table of settings, generated from the schema so it cannot drift."""
    lines = ["| flag / config key | env | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(BridgeConfig):
        if f.metadata.get("table"):
            env = "`" + DATABASE_TOKEN_ENV.format("<N>") + "`"
            help_text = str(f.metadata["help"]).replace("|", "\\|")
            lines.append(f"| `[{f.name}.N]` (file only) | {env} | - | {help_text} |")
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            flag += "/--no-" + f.name.replace("_", "-")
        default = f.default
        if f.metadata.get("secret") or default is None:
            shown = "-"
        elif f.name == "unixsocketperm":
            shown = f"`{oct(default)}`"  # type: ignore[arg-type]
        else:
            shown = f"`{default}`"
        env = f"`{f.metadata['env']}`" if f.metadata.get("env") else ""
        help_text = str(f.metadata["help"]).replace("|", "\\|")
        lines.append(f"| `{flag}` / `{f.name}` | {env} | {shown} | {help_text} |")
    return "\n".join(lines) + "\n"


def default_admin_socket(environ: Mapping[str, str] | None = None) -> str:
    """Where the admin socket goes when `admin_socket` is not set (see its help)."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return os.path.join(runtime, "admin.sock")
    if env.get("XDG_RUNTIME_DIR"):
        return os.path.join(env["XDG_RUNTIME_DIR"], "resp-bridge", "admin.sock")
    return f"/tmp/resp-bridge-{os.getuid()}/admin.sock"


_CHOICES = {
    "response_format": ("auto", "resp2", "json"),
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("auto", "journal", "text"),
    "keyspace_events": ("auto", "on", "off"),
}


def load_config(
    *,
    cli: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> BridgeConfig:
    """Merge file, environment and flags (in rising precedence) and validate the result.

    Raises one ConfigError listing every problem found (unknown keys, unconvertible values,
    invalid settings), not just the first."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    if config_file is not None:
        values.update(_read_file(Path(config_file), problems))
    env = os.environ if environ is None else environ
    for name, f in FIELDS.items():
        var = f.metadata.get("env")
        if var and env.get(var):
            values[name] = env[var]
    for name, value in (cli or {}).items():
        if value is not None:
            values[name] = value
    tables = values.pop("databases", None)
    converted: dict[str, Any] = {}
    if tables is not None:
        converted["databases"] = _database_tables(tables, env, problems)
    for name, value in values.items():
        try:
            converted[name] = _convert(name, value)
        except ConfigError as exc:
            problems.append(str(exc))
    config = BridgeConfig(**converted)
    # Settings that failed to convert keep their defaults here: no second message about them.
    problems += config_problems(config)
    if problems:
        raise ConfigError(format_problems(problems))
    return config


def format_problems(problems: list[str]) -> str:
    """One problem as is; several as a count and one indented line each."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _read_file(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Accept both a flat file and one with a [bridge] table.
    if isinstance(data.get("bridge"), dict):
        data = {**{k: v for k, v in data.items() if k != "bridge"}, **data["bridge"]}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in FIELDS:
            out[name] = value
            continue
        close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "the keys are serve's option names with underscores (resp-bridge serve --help)"
        )
        problems.append(f"{path}: unknown key {key!r}; {hint}")
    return out


def _database_tables(
    tables: Any, env: Mapping[str, str], problems: list[str]
) -> tuple[DatabaseTarget, ...]:
    """`[databases.N]` tables -> targets, sorted by number; each problem names its key."""
    if not isinstance(tables, dict):
        problems.append("databases: must be tables such as [databases.1] (url, token)")
        return ()
    targets: list[DatabaseTarget] = []
    for key, table in tables.items():
        where = f"databases.{key}"
        number = int(key) if str(key).isdigit() else -1
        if number == 0:
            problems.append(
                f"{where}: database 0 is the main upstream: give url and token at the top"
            )
            continue
        if number < 0:
            problems.append(f"{where}: {key!r} is not a database number ([databases.1], ...)")
            continue
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table with url and token")
            continue
        for extra in sorted(set(table) - {"url", "token"}):
            problems.append(f"{where}: unknown key {extra!r} (a table has url and token)")
        url = table.get("url")
        token = table.get("token") or env.get(DATABASE_TOKEN_ENV.format(number))
        if not isinstance(url, str) or not url:
            problems.append(f"{where}.url: missing (the REST URL of the database, https://...)")
            continue
        if not isinstance(token, str) or not token:
            problems.append(
                f"{where}.token: missing (give token in the table or set "
                f"{DATABASE_TOKEN_ENV.format(number)})"
            )
            continue
        targets.append(DatabaseTarget(number, url, token))
    return tuple(sorted(targets, key=lambda t: t.number))


def _convert(name: str, value: Any) -> Any:
    kind = FIELDS[name].type
    try:
        if kind in ("int", int) or kind == "int":
            if isinstance(value, str):
                return int(value, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(value)
            return value
        if kind == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return None if value is None else str(value)
    except (TypeError, ValueError):
        shown = "<redacted>" if FIELDS[name].metadata.get("secret") else repr(value)
        expected = {"int": "an integer", "float": "a number", "bool": "true or false"}
        raise ConfigError(
            f"{name}: invalid value {shown} (expected {expected.get(str(kind), kind)})"
        ) from None


#: A host name (at least one dot, alphabetic top label) or an IPv4 address, optional port and
#: path: what a URL pasted without its scheme looks like (a pasted token does not match).
_BARE_HOST = re.compile(
    r"^(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"|localhost|\d{1,3}(?:\.\d{1,3}){3})(?::\d{1,5})?(?:/[^\s?#@]*)?$"
)


def url_problem(name: str, value: str) -> str | None:
    """What is wrong with an http(s) URL setting, quoting it masked, with what to do; None
    when it is fine. Never echoes text that could be a pasted token."""
    example = "such as https://<name>.upstash.io"
    try:
        parts = urlsplit(value)
    except ValueError:
        return f"{name}: {redact_url(value)!r} is not a URL (unbalanced [ ] around IPv6 host?)"
    if not parts.scheme or "://" not in value:
        if _BARE_HOST.match(value):
            scheme = "http" if value.startswith(("localhost", "127.")) else "https"
            return f"{name}: {value!r} has no scheme: did you mean {scheme}://{value}?"
        return f"{name}: {redact_url(value)!r} is not an http(s) URL ({example})"
    shown = redact_url(value)
    if parts.scheme in ("redis", "rediss"):
        return (
            f"{name}: {shown!r} is a Redis URL; give the database's REST URL "
            "(https://..., shown in the Upstash console under REST API)"
        )
    if parts.scheme not in ("http", "https"):
        return f"{name}: {shown!r} is not an http(s) URL (the scheme must be https or http)"
    if not parts.hostname:
        return f"{name}: {parts.scheme + '://'!r} has no host: give the whole URL, {example}"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        return f"{name}: {shown!r} has an invalid port (a number up to 65535)"
    return None


def _choice_problem(name: str, value: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{name}: {value!r} is not one of {', '.join(choices)}{hint}"


def config_problems(config: BridgeConfig) -> list[str]:
    """Every problem of the settings, each naming the key and saying what to do."""
    problems: list[str] = []
    add = problems.append
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            add(_choice_problem(name, getattr(config, name), choices))
    if bool(config.url) != bool(config.token):
        missing = "token" if config.url else "url"
        add(
            f"{missing}: an upstream needs both a URL and a token "
            "(UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN); give both or neither"
        )
    if config.url:
        problem = url_problem("url", config.url)
        parts = urlsplit(config.url) if problem is None else None
        if problem:
            add(problem)
        # Credentials in the URL would end up wherever the URL is shown (errors, logs).
        elif parts is not None and (parts.query or parts.username or parts.password):
            add(
                "url: must not carry credentials or a query (such as ?_token=); give the token "
                "with --token or UPSTASH_REDIS_REST_TOKEN"
            )
    if not -1 <= config.port <= 65535:
        add(f"port: {config.port} is not between 0 and 65535 (or -1 to disable TCP)")
    if config.port < 0 and not config.unixsocket:
        add("port: TCP is disabled (-1) and no unixsocket is set: nothing to serve")
    positive = (
        "max_clients", "max_batch_commands", "max_batch_bytes", "max_request_bytes",
        "max_in_flight", "max_query_buffer_bytes", "max_bulk_bytes", "max_args",
        "max_inline_bytes", "max_pending_replies",
    )  # fmt: skip
    for name in positive:
        if getattr(config, name) <= 0:
            add(f"{name}: must be a positive number")
    for name in ("upstream_timeout_s", "connect_timeout_s", "metrics_ready_upstream_s"):
        if getattr(config, name) <= 0:
            add(f"{name}: must be a positive number of seconds")
    if not 0 <= config.shutdown_timeout_s <= 3600:  # also refuses nan and inf
        add("shutdown_timeout_s: must be between 0 (close at once) and 3600 seconds")
    if not 0 < config.blocking_poll_min_ms <= config.blocking_poll_max_ms:
        add("blocking_poll_min_ms: must be positive and at most blocking_poll_max_ms")
    if not 0 < config.blocking_fallback_poll_s <= 3600:
        add("blocking_fallback_poll_s: must be between 0 and 3600 seconds (exclusive of 0)")
    if config.keyspace_max_streams < 0:
        add("keyspace_max_streams: must be 0 (no keyspace streams) or positive")
    if not 0 <= config.price_per_100k_commands < math.inf:
        add("price_per_100k_commands: must be a non-negative number")
    for name in ("command_budget_per_day", "command_budget_per_month"):
        if getattr(config, name) < 0:
            add(f"{name}: must be 0 (no budget) or a positive number of commands")
    if config.breaker_failures < 1 or config.breaker_open_s <= 0:
        add("breaker_failures / breaker_open_s: must be positive")
    if config.max_output_buffer_bytes <= 0:
        add("max_output_buffer_bytes: must be a positive number")
    if config.ca_file and not Path(config.ca_file).is_file():
        add(f"ca_file: {config.ca_file} does not exist or is not a file")
    if config.idle_timeout_s < 0:
        add("idle_timeout_s: must be 0 (off) or positive")
    if not 0 <= config.unixsocketperm <= 0o777:
        add("unixsocketperm: must be a file mode such as 0o600")
    for name in ("upstash_api_url", "enterprise_url"):
        value = getattr(config, name)
        problem = url_problem(name, value) if value else None
        if problem:
            add(problem)
    if config.metrics_bind is not None:
        try:
            parse_host_port(config.metrics_bind)
        except ValueError as exc:
            add(f"metrics_bind: {exc}")
    if config.databases and config.embedded:
        add(
            "databases: [databases.N] tables need a configured upstream (url and token for "
            "database 0); the embedded default already serves databases 0-15"
        )
    for target in config.databases:
        problem = url_problem(f"databases.{target.number}.url", target.url)
        if problem:
            add(problem)
        elif urlsplit(target.url).query or urlsplit(target.url).username:
            add(f"databases.{target.number}.url: must not carry credentials or a query")
    return problems


def validate(config: BridgeConfig) -> None:
    """Raise one ConfigError listing every problem of `config` (see `config_problems`)."""
    problems = config_problems(config)
    if problems:
        raise ConfigError(format_problems(problems))


def parse_host_port(text: str) -> tuple[str, int]:
    """("127.0.0.1", 9121) from "127.0.0.1:9121"; IPv6 in brackets ("[::1]:9121")."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (such as 127.0.0.1:9121)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, such as [::1]:9121")
    return host, int(port)
