"""The start-up probe of the upstream, repeated until the upstream answers.

An upstream that is down when the bridge starts must not leave it on the slower JSON reply
format forever: the probe is retried with backoff until it reaches the upstream, then its
result (reply format, server version) is applied and "upstream reachable" is logged. The first
attempt runs before the bridge accepts clients (a refused token stops the start); the retries
run in the background while clients already get errors for the outage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from bridge.errors import ConfigError, UpstreamAuthError
from bridge.upstream.rest import ProbeResult

log = logging.getLogger("bridge")

#: First pause between probes while the upstream is unreachable; doubles up to the maximum.
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


class Probeable(Protocol):
    """What the probe needs from the REST client."""

    display_url: str

    async def probe(self) -> ProbeResult: ...


async def probe_until_reachable(
    upstream: Probeable,
    apply_result: Callable[[ProbeResult], None],
    *,
    first_retry_s: float = FIRST_RETRY_S,
    max_retry_s: float = MAX_RETRY_S,
    task_status: trio.TaskStatus[ProbeResult] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Probe now and report the first result through `task_status` (use `nursery.start`);
    while the upstream is unreachable keep probing in the background, then apply the result.

    `apply_result` is called with the first result (unreachable ones too: the bridge starts on
    the JSON format) and again with the first one that reached the upstream. A token refused
    (HTTP 401) raises ConfigError, before or after the start.
    """
    result = await _probe_once(upstream)
    apply_result(result)
    task_status.started(result)
    if result.reachable:
        return
    log.warning(
        "upstream %s is not reachable yet (%s); serving anyway: commands get errors until it "
        "is, and the probe is retried",
        upstream.display_url,
        result.detail,
    )
    delay = first_retry_s
    attempts = 1
    while True:
        await trio.sleep(delay)
        delay = min(delay * 2, max_retry_s)
        attempts += 1
        result = await _probe_once(upstream)
        if result.reachable:
            apply_result(result)
            log.info(
                "upstream reachable: %s after %d probes (%s)",
                upstream.display_url,
                attempts,
                result.detail,
            )
            return
        log.debug("upstream %s still unreachable: %s", upstream.display_url, result.detail)


async def _probe_once(upstream: Probeable) -> ProbeResult:
    try:
        return await upstream.probe()
    except UpstreamAuthError:
        raise ConfigError(
            f"the upstream {upstream.display_url} refused the token (HTTP 401): check "
            "UPSTASH_REDIS_REST_TOKEN / --token"
        ) from None
