"""Fixtures every reliability test module shares (the helpers themselves are in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from bridge.devserver.redis_process import RedisServerProcess
from tests.reliability.helpers import Stack


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    """The module's devservers and bridges, stopped after its last test."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    s = Stack(str(tmp_path_factory.mktemp(name)), redis_server.url)
    yield s
    s.close()


@pytest.fixture
def direct(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    """redis-py straight to the test Redis, to check what the upstream really holds."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()
