"""Fault injection for the devserver: the switches, the random draws and their counters.

Owns what a fault does to one HTTP request of the REST API; it never touches Redis and never
applies to `/_devserver/*` (the app does not call it for those, so tests can always read the
stats and flip the switches). Kinds, each a probability per request, drawn in this order:

  error        answer 500 `{"error": ...}` WITHOUT running the request (`before`);
  error_after  run it, then answer 500 instead of its result: the "unknown outcome" case;
  reset        run it, then close the TCP connection without any response;
  garbage      run it, then answer 200 with a body no client can parse as a valid reply
               (binary noise, a truncated body, an HTML page, a JSON object of the wrong
               shape, nothing): never a plausible-looking but wrong result;
  stall        run it, then hold the response `stall_s` seconds before sending it;
  slow_sse     every SSE chunk (event or heartbeat) of a stream is delayed `slow_sse_ms`.

The after-execution kinds are exclusive (at most one per request, the first drawn wins).
Streams get only `error` (instead of opening) and `slow_sse`. Settings are immutable values
(`Faults`); `FaultInjector` holds the current one and can be switched at runtime
(`POST /_devserver/faults`); a `seed` makes the draws reproducible for a given order of
requests. Error texts avoid the phrases the bridge uses to classify outcomes ("not executed",
"outcome unknown"), so a test can never mistake the devserver's words for the bridge's.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from bridge.devserver.http_server import Response, StreamingResponse

#: Default seconds a stalled response is held: above the bridge's 3 s upstream timeout, below
#: the devserver's own 30 s response deadline.
DEFAULT_STALL_S = 5.0
#: Longest accepted stall / SSE delay: a fault must never outlive a test run by much.
MAX_STALL_S = 600.0
MAX_SLOW_SSE_MS = 60_000.0
#: Bytes of random noise in a binary garbage body.
GARBAGE_NOISE_BYTES = 64

#: Every counter in `faults_injected`, in the order the kinds are drawn.
KINDS = ("error", "error_after", "reset", "garbage", "stall", "slow_sse")

ERROR_TEXT = "ERR devserver fault injection (error): HTTP 500 before running the request"
ERROR_AFTER_TEXT = "ERR devserver fault injection (error-after): HTTP 500 after running it"
_HTML = b"<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"

_RATES = ("error_rate", "error_after_rate", "reset_rate", "garbage_rate", "stall_rate")


@dataclass(frozen=True, slots=True)
class Faults:
    """The fault switches (all off by default). Rates are probabilities per HTTP request."""

    error_rate: float = 0.0
    error_after_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = DEFAULT_STALL_S
    reset_rate: float = 0.0
    garbage_rate: float = 0.0
    slow_sse_ms: float = 0.0
    #: None: seeded from the OS; an int makes the sequence of draws reproducible.
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also refuses nan
                raise ValueError(f"{name}: must be a fraction between 0 and 1, got {value!r}")
        if not 0.0 <= self.stall_s <= MAX_STALL_S:
            raise ValueError(f"stall_s: must be between 0 and {MAX_STALL_S:g}")
        if not 0.0 <= self.slow_sse_ms <= MAX_SLOW_SSE_MS:
            raise ValueError(f"slow_sse_ms: must be between 0 and {MAX_SLOW_SSE_MS:g}")

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in _RATES) or self.slow_sse_ms > 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, object]) -> Faults:
        """A copy with `changes` applied (JSON values); ValueError names a bad key or value."""
        known = {f.name for f in dataclasses.fields(self)}
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown fault setting {key!r}: use one of {sorted(known)}")
            if key == "seed":
                if value is not None and (type(value) is not int):
                    raise ValueError("seed: must be an integer or null")
                values[key] = value
            elif type(value) in (int, float) and math.isfinite(value):  # type: ignore[arg-type]
                values[key] = float(value)  # type: ignore[arg-type]
            else:
                raise ValueError(f"{key}: must be a number, got {value!r}")
        return dataclasses.replace(self, **values)


class InjectedReset(ConnectionResetError):
    """Raised out of the request handler: the HTTP layer closes the connection silently (it
    treats any OSError as the peer being gone), so the client gets no response at all."""


def _error(text: str) -> Response:
    return Response(500, orjson.dumps({"error": text}), b"application/json")


class FaultInjector:
    """The current `Faults`, its random generator and the counters of injected faults."""

    def __init__(self, faults: Faults) -> None:
        self.settings = faults
        self._rng = random.Random(faults.seed)
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)

    @property
    def active(self) -> bool:
        return self.settings.active

    def configure(self, faults: Faults) -> None:
        """Switch to new settings at once (requests in progress keep their draws); a seed
        in the new settings restarts the sequence of draws."""
        if faults.seed is not None:
            self._rng = random.Random(faults.seed)
        self.settings = faults

    def reset_counts(self) -> None:
        self.counts = dict.fromkeys(KINDS, 0)

    def _hit(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    # -- the request path ---------------------------------------------------------------------

    def before(self) -> Response | None:
        """Before the request runs: a 500 that replaces it, or None to run it."""
        if self._hit(self.settings.error_rate):
            self.counts["error"] += 1
            return _error(ERROR_TEXT)
        return None

    async def after(self, response: Response | StreamingResponse) -> Response | StreamingResponse:
        """After the request ran: the response to send instead (or raise `InjectedReset`)."""
        faults = self.settings
        if isinstance(response, StreamingResponse):
            if faults.slow_sse_ms > 0:
                return self._slow_stream(response, faults.slow_sse_ms / 1000.0)
            return response
        if self._hit(faults.error_after_rate):
            self.counts["error_after"] += 1
            return _error(ERROR_AFTER_TEXT)
        if self._hit(faults.reset_rate):
            self.counts["reset"] += 1
            raise InjectedReset("devserver fault injection: connection reset")
        if self._hit(faults.garbage_rate):
            self.counts["garbage"] += 1
            return Response(200, self._garbage(response.body), response.content_type)
        if self._hit(faults.stall_rate):
            self.counts["stall"] += 1
            await trio.sleep(faults.stall_s)
        return response

    def _garbage(self, body: bytes) -> bytes:
        """A body that is neither valid JSON of a reply's shape nor complete RESP frames.

        A proper prefix of a JSON object/array is never valid JSON, and a proper prefix of N
        RESP frames holds fewer than N complete frames, so truncation is always detectable.
        """
        choice = self._rng.randrange(5)
        if choice == 0:
            return b"\x00\xff" + self._rng.randbytes(GARBAGE_NOISE_BYTES)
        if choice == 1 and len(body) >= 2:
            return body[: self._rng.randrange(1, len(body))]
        if choice == 2:
            return _HTML
        if choice == 3:
            return b'{"garbage":true}'
        return b""

    def _slow_stream(self, response: StreamingResponse, delay_s: float) -> StreamingResponse:
        produce = response.producer

        async def slow_producer(send: Any) -> None:
            async def slow_send(chunk: bytes) -> None:
                await trio.sleep(delay_s)
                self.counts["slow_sse"] += 1
                await send(chunk)

            await produce(slow_send)

        return dataclasses.replace(response, producer=slow_producer)

    # -- GET/POST /_devserver/faults -----------------------------------------------------------

    def endpoint(self, method: bytes, body: bytes) -> tuple[int, dict[str, Any]]:
        """GET: the settings and counters. POST/PUT: a JSON object of settings to change
        (others keep their values), e.g. {"error_rate": 1.0}; answers like GET."""
        if method in (b"POST", b"PUT"):
            try:
                changes = orjson.loads(body or b"{}")
            except orjson.JSONDecodeError as exc:
                return 400, {"error": f"ERR invalid JSON body: {exc}"}
            if not isinstance(changes, dict):
                return 400, {"error": 'ERR send a JSON object, e.g. {"error_rate": 0.5}'}
            try:
                self.configure(self.settings.updated(changes))
            except ValueError as exc:
                return 400, {"error": f"ERR {exc}"}
        elif method not in (b"GET", b"HEAD"):
            return 405, {"error": "ERR use GET or POST on /_devserver/faults"}
        return 200, {"faults": self.settings.as_dict(), "faults_injected": dict(self.counts)}


#: The CLI flags (`--fault-<name>`, env RESP_BRIDGE_DEVSERVER_FAULT_<NAME>): field -> help.
CLI_HELP = {
    "error_rate": "Fraction of REST requests answered HTTP 500 without being run.",
    "error_after_rate": "Fraction of REST requests run, then answered HTTP 500 (unknown outcome).",
    "stall_rate": "Fraction of REST requests run, then held --fault-stall-s before answering.",
    "stall_s": "Seconds a stalled response is held.",
    "reset_rate": "Fraction of REST requests run, then their connection closed with no response.",
    "garbage_rate": "Fraction of REST requests run, then answered 200 with an unparsable body.",
    "slow_sse_ms": "Delay added before every chunk of every SSE stream (milliseconds).",
    "seed": "Seed of the fault draws (reproducible runs); default: random.",
}
