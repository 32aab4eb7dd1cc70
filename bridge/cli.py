"""Command-line entry point: a thin click layer over the typed configs of each subcommand.

`serve`'s options are generated from `BridgeConfig`'s fields, so every setting has a flag,
a config-file key and (where conventional) an env var, with one help text.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from bridge import __version__
from bridge.config import FIELDS, BridgeConfig, load_config
from bridge.errors import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="resp-bridge")
def main() -> None:
    """resp-bridge: let unmodified Redis clients use a Redis reachable only over HTTP.

    \b
    serve      run the RESP bridge (default 127.0.0.1:6379) in front of an
               Upstash-compatible REST API
    devserver  run a local Upstash-compatible REST server in front of redis-server
    admin      talk to a running bridge's admin socket (stats, clients, pause, ...)
    db, team   manage databases (Upstash developer API, Redis Enterprise REST API)
    kafka      manage Upstash Kafka clusters, topics, credentials, connectors
    qstash     the Upstash account's QStash user and token
    """


def _config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per BridgeConfig field (default None: 'not given on the command line')."""
    for f in reversed(dataclasses.fields(BridgeConfig)):
        if f.metadata.get("table"):
            continue  # [databases.N] tables: config file only
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if f.metadata.get("env"):
            help_text += f" [env: {f.metadata['env']}]"
        default = f.default
        if default is not None and not f.metadata.get("secret"):
            shown = oct(default) if f.name == "unixsocketperm" else default
            help_text += f" [default: {shown}]"
        if f.type == "bool":
            decl = f"{flag}/--no-{flag[2:]}"
            func = click.option(decl, f.name, default=None, help=help_text)(func)
        else:
            kind: Any = {"int": int, "float": float}.get(str(f.type), str)
            if f.name == "unixsocketperm":
                kind = str
            func = click.option(flag, f.name, type=kind, default=None, help=help_text)(func)
    return func


def _setup_logging(config: BridgeConfig) -> None:
    """stderr, one line per event, journald priorities under systemd, secrets masked."""
    from bridge.logs import setup_logging

    setup_logging(
        config.log_level,
        log_format=config.log_format,
        secrets=config.secret_values(),
    )


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file; keys are the option names with underscores (e.g. max_in_flight).",
)
@_config_options
def serve(config_file: str | None, **options: Any) -> None:
    """Accept Redis clients (RESP2 and RESP3) and execute their commands on a REST API.

    The upstream comes from --url/--token, UPSTASH_REDIS_REST_URL/UPSTASH_REDIS_REST_TOKEN or
    the config file. With none of them, an embedded local redis-server + devserver is started,
    so the bridge works out of the box. Precedence: flag > env var > config file > default.
    """
    import trio

    from bridge.server.runner import serve_forever

    cli_values = {k: v for k, v in options.items() if k in FIELDS}
    try:
        config = load_config(cli=cli_values, config_file=config_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _setup_logging(config)
    try:
        _check_ports(config)
    except ConfigError as exc:
        logging.getLogger("bridge").error("cannot start: %s", exc)
        sys.exit(1)

    def reload_config() -> BridgeConfig:
        # SIGHUP: the same sources again (the file may have changed; flags still win).
        return load_config(cli=cli_values, config_file=config_file)

    try:
        trio.run(serve_forever, config, reload_config)
    except BaseException as exc:  # trio wraps task errors in exception groups
        leaf = first_leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            return
        if isinstance(leaf, ConfigError):
            logging.getLogger("bridge").error("%s", leaf)
            sys.exit(2)
        if isinstance(leaf, OSError):
            logging.getLogger("bridge").error("cannot start: %s%s", leaf, _os_error_hint(leaf))
            sys.exit(1)
        raise


def _check_ports(config: BridgeConfig) -> None:
    """Taken ports and foreign bind addresses, reported before anything is started."""
    from bridge.config import parse_host_port
    from bridge.server.preflight import check_tcp_listen

    if config.port > 0 and "LISTEN_FDS" not in os.environ:  # systemd gives the sockets
        check_tcp_listen(config.bind, config.port)
    if config.metrics_bind:
        host, port = parse_host_port(config.metrics_bind)
        check_tcp_listen(host, port, what="metrics_bind")


def _os_error_hint(exc: OSError) -> str:
    hints = {
        errno.EADDRINUSE: " (another server is using that address: stop it or change the port)",
        errno.EADDRNOTAVAIL: " (that address is not on this host: check --bind/metrics_bind)",
        errno.EACCES: " (permission denied: ports below 1024 and some paths need privileges)",
    }
    return hints.get(exc.errno or 0, "")


def first_leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@main.command("check-config")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file to check (as given to serve --config).",
)
@_config_options
def check_config(config_file: str | None, **options: Any) -> None:
    """Validate the configuration serve would use and print it, secrets redacted.

    Reads the same sources as serve (flags > env vars > config file > defaults). Exits 0 and
    prints the effective settings as TOML when valid; exits 2 with a message naming the key
    otherwise.
    """
    cli_values = {k: v for k, v in options.items() if k in FIELDS}
    try:
        config = load_config(cli=cli_values, config_file=config_file)
    except ConfigError as exc:
        click.echo(f"resp-bridge: invalid configuration: {exc}", err=True)
        sys.exit(2)
    click.echo(_as_toml(config.redacted()), nl=False)
    where = "the embedded local devserver" if config.embedded else "the configured upstream"
    click.echo(f"# configuration is valid; upstream: {where}", err=True)


def _as_toml(values: dict[str, Any]) -> str:
    lines = []
    tables: list[str] = []
    for name, value in values.items():
        if isinstance(value, dict):  # [databases.N] tables go after the plain keys
            for key, table in value.items():
                tables += ["", f"[{name}.{key}]"]
                tables += [f'{k} = "{v}"' for k, v in table.items()]
            continue
        if value is None:
            lines.append(f"# {name} = (not set)")
        elif isinstance(value, bool):
            lines.append(f"{name} = {'true' if value else 'false'}")
        elif name == "unixsocketperm":
            lines.append(f"{name} = {oct(value)}")
        elif isinstance(value, int | float):
            lines.append(f"{name} = {value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{name} = "{escaped}"')
    return "\n".join(lines + tables) + "\n"


@main.command("config-reference", hidden=True)
def config_reference_cmd() -> None:
    """Print the README's table of serve settings (generated from the config schema)."""
    from bridge.config import config_markdown

    click.echo(config_markdown(), nl=False)


@main.command("commands")
@click.option("--markdown", is_flag=True, help="Print the README's markdown summary.")
def commands_cmd(markdown: bool) -> None:
    """List how the bridge handles each Redis command: local, forwarded or refused (and why)."""
    from bridge.core.command_docs import commands_markdown, commands_text

    click.echo(commands_markdown() if markdown else commands_text(), nl=False)


def _register() -> None:
    from bridge.admin_cli import admin, db, kafka, qstash, team
    from bridge.devserver.command_line import devserver

    main.add_command(devserver)
    for command in (admin, db, team, kafka, qstash):
        main.add_command(command)


_register()
