"""The start-up probe is repeated until the upstream answers, then its result is adopted.

A scripted stand-in for the REST client's `probe()` (the loop's logic, not HTTP, is under
test; the end-to-end case is in tests/e2e/test_metrics_http.py); trio's autojump clock makes
the backoff instant.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from bridge.cli import first_leaf
from bridge.errors import ConfigError, UpstreamAuthError
from bridge.server.probe import probe_until_reachable
from bridge.upstream.rest import ProbeResult

DOWN = ProbeResult(False, False, None, "ConnectError: connection refused")
PROXY_502 = ProbeResult(False, False, None, "HTTP 502 to resp2 probe")
UP = ProbeResult(True, True, "7.2.4", "resp2 supported")


class ScriptedUpstream:
    display_url = "https://db.example"

    def __init__(self, *results: ProbeResult | Exception) -> None:
        self.results = list(results)
        self.calls: list[float] = []

    async def probe(self) -> ProbeResult:
        self.calls.append(trio.current_time())
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_retries_until_reachable_then_adopts_resp2(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = ScriptedUpstream(DOWN, DOWN, PROXY_502, UP)
    applied: list[ProbeResult] = []
    caplog.set_level(logging.INFO, logger="bridge")
    async with trio.open_nursery() as nursery:
        first = await nursery.start(probe_until_reachable, upstream, applied.append)
        assert first == DOWN and applied == [DOWN], "the start waits for the first probe only"
    assert applied == [DOWN, UP] and upstream.results == []
    gaps = [b - a for a, b in zip(upstream.calls, upstream.calls[1:], strict=False)]
    assert gaps == [0.5, 1.0, 2.0], "backoff doubles"
    assert "upstream reachable: https://db.example after 4 probes" in caplog.text
    assert "not reachable yet" in caplog.text


async def test_reachable_at_once_probes_once() -> None:
    upstream = ScriptedUpstream(UP)
    applied: list[ProbeResult] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(probe_until_reachable, upstream, applied.append)
    assert applied == [UP] and len(upstream.calls) == 1


async def test_a_refused_token_stops_the_start() -> None:
    upstream = ScriptedUpstream(UpstreamAuthError(401, "unauthorized"))
    with pytest.raises(BaseException) as info:  # a ConfigError, maybe in a group
        async with trio.open_nursery() as nursery:
            await nursery.start(probe_until_reachable, upstream, lambda _: None)
    leaf = first_leaf(info.value)
    assert isinstance(leaf, ConfigError) and "refused the token (HTTP 401)" in str(leaf)


async def test_backoff_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    upstream = ScriptedUpstream(*[DOWN] * 9, UP)
    async with trio.open_nursery() as nursery:
        await nursery.start(probe_until_reachable, upstream, lambda _: None)
    gaps = [b - a for a, b in zip(upstream.calls, upstream.calls[1:], strict=False)]
    assert max(gaps) == 30.0 and gaps[-1] == 30.0
