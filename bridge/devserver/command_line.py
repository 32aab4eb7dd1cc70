"""`resp-bridge devserver`: the click command over `DevServerConfig` / `run_devserver`.

Thin on purpose: parse flags (each also an env var RESP_BRIDGE_DEVSERVER_<NAME>), set up
logging to stderr, run the server under trio, print `READY <url>` on stdout once listening,
and stop cleanly on Ctrl-C or SIGTERM (the redis-server child, if any, is stopped too).
"""

from __future__ import annotations

import errno
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import trio

from bridge.devserver.faults import CLI_HELP, Faults
from bridge.devserver.http_server import server_tls_context
from bridge.devserver.redis_conn import DEFAULT_POOL_SIZE, RedisAddress
from bridge.devserver.redis_process import RedisProcessError
from bridge.devserver.rest_server import (
    DEFAULT_MAX_REQUEST_BYTES,
    DevServerConfig,
    SetupError,
    run_devserver,
)
from bridge.devserver.sse_endpoints import DEFAULT_HEARTBEAT_S
from bridge.gc_tuning import tune_for_serving

log = logging.getLogger("bridge.devserver")

_ENV = "RESP_BRIDGE_DEVSERVER_"
_F = TypeVar("_F", bound=Callable[..., Any])


def _fault_options(func: _F) -> _F:
    """One `--fault-<name>` flag (env RESP_BRIDGE_DEVSERVER_FAULT_<NAME>) per `Faults` field."""
    defaults = Faults()
    for name, help_text in reversed(CLI_HELP.items()):
        kind: Any = int if name == "seed" else click.FloatRange(0, 1 if "rate" in name else None)
        func = click.option(
            "--fault-" + name.replace("_", "-"),
            "fault_" + name,
            type=kind,
            default=getattr(defaults, name),
            show_default=name != "seed",
            envvar=_ENV + "FAULT_" + name.upper(),
            help=help_text,
        )(func)
    return func


async def _serve(config: DevServerConfig) -> None:
    async with trio.open_nursery() as nursery:
        info = await nursery.start(run_devserver, config)
        print(f"READY {info.url}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("devserver stopping (%s)", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@click.command(
    "devserver",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    envvar=_ENV + "BIND",
    help="Address to listen on.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8079,
    show_default=True,
    envvar=_ENV + "PORT",
    help="TCP port to listen on; 0 picks a free port (see the READY line).",
)
@click.option(
    "--redis-url",
    default=None,
    envvar=_ENV + "REDIS_URL",
    metavar="URL",
    help="Redis to front, redis://[user:password@]host:port[/db]. "
    "Default: start a redis-server child on a free loopback port (stopped on exit).",
)
@click.option(
    "--token",
    default=None,
    envvar=_ENV + "TOKEN",
    help="Standard token (full access). Default: a random one, printed at start.",
)
@click.option(
    "--readonly-token",
    default=None,
    envvar=_ENV + "READONLY_TOKEN",
    help="Read-only token (Redis ACL user with read rights). Default: random, printed at start.",
)
@click.option(
    "--databases",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    envvar=_ENV + "DATABASES",
    help="Serve numbered databases 0..N-1: database n is Redis logical database <redis-url db>+n, "
    "with the tokens <token>.db<n> and <readonly-token>.db<n> (database 0: the tokens as given).",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    envvar=_ENV + "LATENCY_MS",
    help="Emulated round trip: every response leaves no sooner than N ms after its request "
    "arrived; the devserver's own processing within that time is hidden, as in a network round "
    "trip. On Linux a timerfd wakes it without rounding up to whole ms (about 0.1-0.2 ms late).",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(1),
    default=DEFAULT_MAX_REQUEST_BYTES,
    show_default=True,
    envvar=_ENV + "MAX_REQUEST_BYTES",
    help="Largest request body accepted; larger ones get 413 'ERR max request size exceeded'.",
)
@click.option(
    "--sse-heartbeat-s",
    type=click.FloatRange(0.01),
    default=DEFAULT_HEARTBEAT_S,
    show_default=True,
    envvar=_ENV + "SSE_HEARTBEAT_S",
    help="Seconds between ': heartbeat' comments on idle SSE streams.",
)
@click.option(
    "--redis-pool-size",
    type=click.IntRange(1),
    default=DEFAULT_POOL_SIZE,
    show_default=True,
    envvar=_ENV + "REDIS_POOL_SIZE",
    help="Pooled Redis connections per token role (SSE streams use their own).",
)
@click.option(
    "--management-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar=_ENV + "MANAGEMENT_PORT",
    help="Also serve the Upstash developer API and Redis Enterprise REST API emulation on this "
    "port (0: a free one, logged); each database created there is a real one on this "
    "devserver (its own Redis logical database and REST tokens).",
)
@click.option(
    "--management-email",
    default="dev@example.com",
    show_default=True,
    envvar=_ENV + "MANAGEMENT_EMAIL",
    help="Account email the Upstash developer API emulation accepts (HTTP Basic user).",
)
@click.option(
    "--management-api-key",
    default="upstash-api-key",
    show_default=True,
    envvar=_ENV + "MANAGEMENT_API_KEY",
    help="API key the Upstash developer API emulation accepts (HTTP Basic password).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar=_ENV + "TLS_CERT",
    metavar="FILE",
    help="Serve the REST API over HTTPS (HTTP/1.1) with this PEM certificate (chain first); "
    "needs --tls-key. The READY line then shows https://.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar=_ENV + "TLS_KEY",
    metavar="FILE",
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar=_ENV + "LOG_LEVEL",
    help="Logging threshold (logs go to stderr).",
)
@_fault_options
def devserver(
    bind: str,
    port: int,
    redis_url: str | None,
    token: str | None,
    readonly_token: str | None,
    databases: int,
    latency_ms: float,
    max_request_bytes: int,
    sse_heartbeat_s: float,
    redis_pool_size: int,
    management_port: int | None,
    management_email: str,
    management_api_key: str,
    tls_cert: str | None,
    tls_key: str | None,
    log_level: str,
    **fault_flags: Any,
) -> None:
    """Run a local Upstash-compatible Redis REST server in front of a real redis-server.

    Implements the Upstash REST API (path, raw-body and JSON command forms, /pipeline,
    /multi-exec, base64 and resp2 response formats, SSE /subscribe, /psubscribe and /monitor,
    standard and read-only tokens), over HTTPS with --tls-cert/--tls-key. Prints
    `READY http://HOST:PORT` (or https://) on stdout once listening.
    Devserver extensions: GET /_devserver/stats, POST /_devserver/reset-stats, and
    GET/POST /_devserver/faults (the --fault-* switches, changeable at runtime with a JSON
    object such as {"error_rate": 1.0}; never applied to /_devserver/* itself).
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    if token is not None and token == readonly_token:
        raise click.BadParameter("must differ from --token", param_hint="--readonly-token")
    if redis_url is not None:
        try:
            RedisAddress.from_url(redis_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--redis-url") from None
    if (tls_cert is None) != (tls_key is None):
        missing = "--tls-key" if tls_key is None else "--tls-cert"
        raise click.UsageError(f"--tls-cert and --tls-key go together: add {missing}")
    if tls_cert is not None and tls_key is not None:
        try:
            server_tls_context(tls_cert, tls_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key") from None
    try:
        faults = Faults(**{k.removeprefix("fault_"): v for k, v in fault_flags.items()})
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault-*") from None
    config = DevServerConfig(
        bind=bind,
        port=port,
        redis_url=redis_url,
        token=token or None,
        readonly_token=readonly_token or None,
        databases=databases,
        latency_ms=latency_ms,
        max_request_bytes=max_request_bytes,
        sse_heartbeat_s=sse_heartbeat_s,
        redis_pool_size=redis_pool_size,
        faults=faults,
        management_port=management_port,
        management_email=management_email,
        management_api_key=management_api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    tune_for_serving()
    try:
        trio.run(_serve, config)
    except BaseException as exc:  # trio wraps task errors in exception groups
        leaf = _leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            return
        if isinstance(leaf, (RedisProcessError, SetupError)):
            raise click.ClickException(str(leaf)) from None
        if isinstance(leaf, OSError) and leaf.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise click.ClickException(f"cannot listen on {bind}:{port}: {leaf}") from None
        raise


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside nested exception groups (or the group itself if several)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
