"""Command-line entry point: a thin click group over the typed configs of each subcommand."""

from __future__ import annotations

import click

from bridge import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="resp-bridge")
def main() -> None:
    """resp-bridge: let unmodified Redis clients use a Redis reachable only over HTTP.

    `serve` runs the RESP bridge; `devserver` runs a local Upstash-compatible REST server in
    front of a real redis-server.
    """


def _register() -> None:
    from bridge.devserver.cli import devserver

    main.add_command(devserver)


_register()
