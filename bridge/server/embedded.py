"""The embedded default upstream: a local redis-server child + the devserver, in-process.

Used when no upstream credentials are configured, so `resp-bridge serve` works out of the
box on a laptop. The devserver listens on a free loopback port with a random token; both
are stopped when the bridge stops. The redis-server child is spawned from the thread running
the trio loop, so the kernel also stops it when the bridge is killed (SIGKILL, OOM killer).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

import trio

from bridge.config import BridgeConfig
from bridge.server.databases import EMBEDDED_DATABASES

log = logging.getLogger("bridge.embedded")


def embedded_database_token(token: str, number: int) -> str:
    """The devserver's token for database `number` (the scheme of `--databases`)."""
    from bridge.devserver.rest_server import database_token

    return database_token(token, number)


@contextlib.asynccontextmanager
async def start_embedded(
    config: BridgeConfig, nursery: trio.Nursery
) -> AsyncIterator[tuple[str, str]]:
    from bridge.devserver.redis_process import RedisServerProcess
    from bridge.devserver.rest_server import DevServerConfig, run_devserver

    redis = RedisServerProcess(executable=config.redis_server)
    await redis.start_async()
    try:
        token = secrets.token_urlsafe(24)
        dev_config = DevServerConfig(
            bind="127.0.0.1",
            port=0,
            redis_url=redis.url,
            token=token,
            readonly_token=secrets.token_urlsafe(24),
            databases=EMBEDDED_DATABASES,
        )
        info = await nursery.start(run_devserver, dev_config)
        log.info(
            "no upstream configured (UPSTASH_REDIS_REST_URL/UPSTASH_REDIS_REST_TOKEN unset): "
            "using the embedded default, a local redis-server (%s) behind the devserver at %s",
            redis.url,
            info.url,
        )
        yield info.url, token
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(redis.stop)
