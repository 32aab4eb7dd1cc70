"""`resp-bridge admin`, `db`, `team`, `kafka` and `qstash`: the operator's command line.

- `admin` is a client of a running bridge's admin socket (`bridge.server.admin`): it sends one
  command in RESP3 (`HELLO 3` first, so maps stay maps) and prints a table for people or, with
  `--json`, JSON for scripts. When no bridge listens it says so and exits 2.
- `db` / `team` call the management APIs directly from this process, with the same
  configuration sources as `serve` (flags > env > config file), through the same operation
  table as the admin socket's `DB` / `TEAM` (`bridge.upstream.management_ops`).
- `kafka` / `qstash` do the same for the Upstash developer API's Kafka and QStash groups
  (the admin socket's `KAFKA` / `QSTASH`); their help spells each operation as typed here.

Exit codes: 0 success, 1 the command failed (the error is printed on stderr), 2 usage error or
no bridge on the admin socket. Secrets are never printed, except credentials with an explicit
`--show-secrets` (db, kafka, qstash).
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click
import hiredis
import orjson

from bridge.config import BridgeConfig, default_admin_socket, load_config
from bridge.core.resp import encode_command
from bridge.errors import ConfigError

#: How long `admin` waits for the bridge's reply (PAUSE may wait for in-flight requests).
ADMIN_CLIENT_TIMEOUT_S = 60.0
READ_BYTES = 64 * 1024
#: Longest cell in a table (longer values are cut with an ellipsis; --json has them whole).
MAX_CELL_CHARS = 60


class AdminUnavailable(Exception):
    """Nothing (or nothing we may use) listens on the admin socket."""


class AdminCommandError(Exception):
    """The bridge answered with an error reply."""


class AdminClient:
    """A blocking RESP3 client of the admin socket (one command per call)."""

    def __init__(self, path: str, *, timeout_s: float = ADMIN_CLIENT_TIMEOUT_S) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise AdminUnavailable(describe_connect_error(path, exc)) from None
        self.call("HELLO", "3")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, *args: str) -> Any:
        try:
            self._sock.sendall(encode_command(list(args)))
            while True:
                reply = self._reader.gets()
                if reply is not False:
                    break
                data = self._sock.recv(READ_BYTES)
                if not data:
                    raise AdminUnavailable(
                        f"the bridge closed the admin connection on {self.path} without a reply"
                    )
                self._reader.feed(data)
        except TimeoutError:
            raise AdminUnavailable(
                f"no reply on {self.path} within {self._sock.gettimeout():g} s"
            ) from None
        except OSError as exc:
            raise AdminUnavailable(describe_connect_error(self.path, exc)) from None
        except hiredis.ProtocolError as exc:
            raise AdminUnavailable(f"unreadable reply on {self.path}: {exc}") from None
        if isinstance(reply, hiredis.ReplyError):
            raise AdminCommandError(str(reply))
        return reply


def describe_connect_error(path: str, exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
        what = "no such socket" if exc.errno == errno.ENOENT else "stale socket, nobody accepts"
        return (
            f"no bridge is listening on the admin socket {path} ({what}): is `resp-bridge "
            "serve` running, and with this --admin-socket?"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied on the admin socket {path}: it is mode 0600, run this as the "
            "bridge's user (or root)"
        )
    return f"cannot use the admin socket {path}: {exc.strerror or exc}"


# -- rendering --------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == {} or value == []:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        text = ", ".join(_cell(v) for v in value)
    elif isinstance(value, dict | list):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def _flatten(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            rows += _flatten(item, name + ".")
        else:
            rows.append((name, item))
    return rows


def render_table(value: Any) -> str:
    """A value as text for people: key/value rows for maps, columns for lists of maps."""
    if isinstance(value, str):
        return value if value.endswith("\n") else value + "\n"
    if isinstance(value, dict):
        rows = _flatten(value)
        if not rows:
            return "(empty)\n"
        width = max(len(k) for k, _ in rows)
        return "".join(f"{k.ljust(width)}  {_cell(v)}\n" for k, v in rows)
    if isinstance(value, list):
        if not value:
            return "(none)\n"
        if all(isinstance(v, dict) for v in value):
            columns: list[str] = []
            for item in value:
                columns += [k for k in item if k not in columns]
            table = [[c.upper() for c in columns]]
            table += [[_cell(item.get(c)) for c in columns] for item in value]
            widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
            return "".join(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                + "\n"
                for row in table
            )
        return "".join(_cell(v) + "\n" if not isinstance(v, str) else v + "\n" for v in value)
    return _cell(value) + "\n"


def render_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"resp-bridge: {message}", err=True)
    sys.exit(code)


# -- resp-bridge admin ------------------------------------------------------------------------


def admin_socket_path(socket_path: str | None, config_file: str | None) -> str:
    """--socket, else the admin_socket of the config sources (env, file), else the default."""
    if socket_path:
        return socket_path
    try:
        config = load_config(config_file=config_file)
    except ConfigError as exc:
        _fail(f"invalid configuration: {exc}", 2)
    configured = config.admin_socket
    if configured and configured.strip().lower() in ("off", "none", "no", "false", "disabled"):
        _fail("the admin socket is disabled in the configuration (admin_socket = off)", 2)
    return configured or default_admin_socket()


@click.command(
    "admin",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Admin socket of the bridge [default: admin_socket of the config, else "
    "$RUNTIME_DIRECTORY/admin.sock, $XDG_RUNTIME_DIR/resp-bridge/admin.sock or "
    "/tmp/resp-bridge-<uid>/admin.sock].",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file of the bridge (to find its admin_socket).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=ADMIN_CLIENT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the reply.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def admin(
    socket_path: str | None,
    config_file: str | None,
    as_json: bool,
    timeout_s: float,
    command: tuple[str, ...],
) -> None:
    """Send COMMAND to a running bridge's admin socket and print the reply.

    \b
    Commands (HELP prints them with their arguments):
      STATS, COST, CLIENTS, KILL <id>, UPSTREAM [PROBE], PAUSE [wait_s], RESUME,
      RELOAD, SHUTDOWN [GRACEFUL|NOW], METRICS, CONFIG [name ...],
      DB ..., TEAM ... (database management; DB HELP)

    \b
    Examples:
      resp-bridge admin stats
      resp-bridge admin cost
      resp-bridge admin --json clients
      resp-bridge admin kill 12
    """
    path = admin_socket_path(socket_path, config_file)
    try:
        with AdminClient(path, timeout_s=timeout_s) as client:
            reply = client.call(*command)
    except AdminUnavailable as exc:
        _fail(str(exc), 2)
    except AdminCommandError as exc:
        _fail(str(exc), 1)
    click.echo(render_json(reply) if as_json else render_table(reply), nl=False)


# -- resp-bridge db / team --------------------------------------------------------------------


def _apply(func: Any, *options: Callable[[Any], Any]) -> Any:
    """Decorate `func` with click options, listed in the order --help shows them."""
    for option in reversed(options):
        func = option(func)
    return func


def _config_option(keys: str) -> Callable[[Any], Any]:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"TOML config file (same keys as serve: {keys}, ...).",
    )


_UPSTASH_OPTIONS = (
    click.option(
        "--upstash-email", default=None, help="Upstash account email [env: UPSTASH_EMAIL]."
    ),
    click.option(
        "--upstash-api-url",
        default=None,
        help="Upstash developer API base URL [default: https://api.upstash.com]. The API "
        "key comes from UPSTASH_API_KEY or the config file.",
    ),
)


def _output_options(secrets: str) -> tuple[Callable[[Any], Any], ...]:
    """--yes, --show-secrets and --json, shared by every management command."""
    return (
        click.option("--yes", is_flag=True, help="Confirm a destructive operation."),
        click.option(
            "--show-secrets",
            is_flag=True,
            help=f"Print {secrets} in the answer (masked by default).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
    )


def _management_options(func: Any) -> Any:
    """db / team: either provider."""
    return _apply(
        func,
        _config_option("upstash_email, enterprise_url"),
        click.option(
            "--provider",
            type=click.Choice(["upstash", "enterprise"]),
            default=None,
            help="Which API [default: upstash when its credentials are set, else enterprise].",
        ),
        *_UPSTASH_OPTIONS,
        click.option(
            "--enterprise-url",
            default=None,
            help="Redis Enterprise REST API, https://<host>:9443 [env: REDIS_ENTERPRISE_URL]. "
            "The password comes from REDIS_ENTERPRISE_PASSWORD or the config file.",
        ),
        click.option(
            "--enterprise-user",
            default=None,
            help="Redis Enterprise user [env: REDIS_ENTERPRISE_USER].",
        ),
        click.option(
            "--ca-file",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            help="CA certificate (PEM) of the Redis Enterprise API's self-signed certificate.",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="Do not verify the Redis Enterprise API's TLS certificate (warns; prefer "
            "--ca-file).",
        ),
        *_output_options("database passwords and REST tokens"),
    )


def management_config(
    config_file: str | None,
    *,
    upstash_email: str | None,
    upstash_api_url: str | None,
    enterprise_url: str | None,
    enterprise_user: str | None,
    ca_file: str | None,
    insecure: bool,
) -> BridgeConfig:
    cli: dict[str, Any] = {
        "upstash_email": upstash_email,
        "upstash_api_url": upstash_api_url,
        "enterprise_url": enterprise_url,
        "enterprise_user": enterprise_user,
        "enterprise_ca_file": ca_file,
        "enterprise_insecure": True if insecure else None,
    }
    try:
        return load_config(cli=cli, config_file=config_file)
    except ConfigError as exc:
        _fail(f"invalid configuration: {exc}", 2)


def run_management_cli(
    group: str,
    words: Sequence[str],
    *,
    config: BridgeConfig,
    provider: str | None,
    yes: bool,
    show_secrets: bool,
    as_json: bool,
) -> None:
    import trio

    from bridge.upstream import management_ops

    if not words or words[0].upper() == "HELP":
        click.echo("\n".join(management_ops.help_lines(group)))
        return
    full = [group, *([provider] if provider else []), *words]
    # Warnings of the management layer (--insecure) go to this command's stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("resp-bridge: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("bridge.management")
    logger.addHandler(handler)
    try:
        result = trio.run(
            lambda: management_ops.run_management(
                config, full, confirmed=yes, show_secrets=show_secrets
            )
        )
    except management_ops.ManagementUsageError as exc:
        _fail(str(exc), 2)
    except management_ops.ManagementError as exc:
        _fail(str(exc), 1)
    finally:
        logger.removeHandler(handler)
    click.echo(render_json(result) if as_json else render_table(result), nl=False)


def management_cli_lines(group: str) -> list[str]:
    """Each DB/TEAM operation as `resp-bridge db|team` takes it (`list`, `--yes delete <id>`),
    not in the admin socket's words (`DB LIST`, `DB DELETE <id> CONFIRM`); providers labelled
    where their forms differ."""
    from bridge.upstream.management_ops import OPERATIONS, PROVIDERS

    lines = []
    for op in OPERATIONS:
        if op.group != group:
            continue
        forms: dict[str, list[str]] = {}
        for provider in PROVIDERS:
            call = op.call(provider)
            if call is not None:
                text = f"{'--yes ' if op.destructive else ''}{op.name.lower()} {call.usage}"
                forms.setdefault(text.strip(), []).append(provider)
        everywhere = len(forms) == 1 and len(next(iter(forms.values()))) == len(PROVIDERS)
        shown = " | ".join(
            text if everywhere else f"{text} ({', '.join(ps)})" for text, ps in forms.items()
        )
        lines.append(f"{shown}  -- {op.summary}")
    return lines


def _management_command(group: str) -> click.Command:
    lines = "\n  ".join(management_cli_lines(group))
    doc = (
        f"Manage {'databases' if group == 'DB' else 'Upstash teams'} through the provider's "
        "API (directly, not through a bridge).\n\n"
        "OPERATION and its arguments as below (case-insensitive); destructive operations need "
        "--yes.\n\n"
        f"\b\n  {lines}"
    )

    @click.command(
        group.lower(),
        help=doc,
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    )
    @_management_options
    @click.argument("operation", nargs=-1, type=click.UNPROCESSED)
    def command(
        config_file: str | None,
        provider: str | None,
        upstash_email: str | None,
        upstash_api_url: str | None,
        enterprise_url: str | None,
        enterprise_user: str | None,
        ca_file: str | None,
        insecure: bool,
        yes: bool,
        show_secrets: bool,
        as_json: bool,
        operation: tuple[str, ...],
    ) -> None:
        config = management_config(
            config_file,
            upstash_email=upstash_email,
            upstash_api_url=upstash_api_url,
            enterprise_url=enterprise_url,
            enterprise_user=enterprise_user,
            ca_file=ca_file,
            insecure=insecure,
        )
        run_management_cli(
            group,
            operation,
            config=config,
            provider=provider,
            yes=yes,
            show_secrets=show_secrets,
            as_json=as_json,
        )

    return command


db = _management_command("DB")
team = _management_command("TEAM")


# -- resp-bridge kafka / qstash ---------------------------------------------------------------

#: Flags of `kafka` / `qstash` also understood after the operation's words.
_TRAILING_FLAGS = ("--yes", "--json", "--show-secrets")


def cli_usage_lines(group: str) -> list[str]:
    """Each operation as the command line spells it (`cluster create <name> ...`; destructive
    ones with `--yes`), its summary indented on the next line."""
    from bridge.upstream.management_ops import OPERATIONS, UPSTASH

    lines = []
    for op in OPERATIONS:
        call = op.call(UPSTASH)
        if op.group != group or call is None:
            continue
        lines.append(f"{'--yes ' if op.destructive else ''}{op.name.lower()} {call.usage}".strip())
        lines.append(f"    {op.summary}")
    return lines


def _upstash_options(func: Any) -> Any:
    """kafka / qstash: the Upstash developer API only."""
    return _apply(
        func,
        _config_option("upstash_email, upstash_api_key"),
        *_UPSTASH_OPTIONS,
        *_output_options("passwords, tokens and connector credentials"),
    )


def _upstash_command(
    group: str, what: str, shape: str, example: str, notes: str = ""
) -> click.Command:
    lines = "\n  ".join(cli_usage_lines(group))
    name = group.lower()
    doc = (
        f"Manage {what} through the Upstash developer API (directly, not through a bridge).\n\n"
        f"{shape} and its arguments as below (case-insensitive); destructive operations need "
        f"--yes.{notes}\n\n"
        f"\b\n  {lines}\n\n"
        f"\b\nExample:\n  {example}"
    )

    @click.command(
        name,
        help=doc,
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    )
    @_upstash_options
    @click.argument("operation", nargs=-1, type=click.UNPROCESSED)
    def command(
        config_file: str | None,
        upstash_email: str | None,
        upstash_api_url: str | None,
        yes: bool,
        show_secrets: bool,
        as_json: bool,
        operation: tuple[str, ...],
    ) -> None:
        words = [w for w in operation if w not in _TRAILING_FLAGS]
        yes = yes or "--yes" in operation
        show_secrets = show_secrets or "--show-secrets" in operation
        as_json = as_json or "--json" in operation
        if not words or words[-1].upper() == "HELP":
            click.echo("\n".join(cli_usage_lines(group)))
            return
        config = management_config(
            config_file,
            upstash_email=upstash_email,
            upstash_api_url=upstash_api_url,
            enterprise_url=None,
            enterprise_user=None,
            ca_file=None,
            insecure=False,
        )
        run_management_cli(
            group,
            words,
            config=config,
            provider="upstash",
            yes=yes,
            show_secrets=show_secrets,
            as_json=as_json,
        )

    return command


kafka = _upstash_command(
    "KAFKA",
    "Upstash Kafka: clusters, topics, credentials, connectors and their stats",
    "OBJECT OPERATION",
    "resp-bridge kafka cluster create events eu-west-1 multizone",
    " Ids are the API's (from a list); name=value arguments go in any order; times are ms "
    "(or 30s, 15m, 12h, 7d), sizes bytes (or 512K, 10M, 1G), -1 the highest the cluster allows.",
)
qstash = _upstash_command(
    "QSTASH",
    "the QStash user of the Upstash account",
    "OPERATION",
    "resp-bridge qstash --show-secrets user",
)
