"""Dispatcher + REST client against a mock HTTP layer: batching, order, error paths, retries.

The mock transport is the seam for error paths only; the real path is covered end to end.
"""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest
import trio

from bridge.core import commands
from bridge.server.counters import Stats
from bridge.server.dispatcher import PIPE, ClientQueue, Dispatcher, DispatchLimits, Pending
from bridge.upstream.rest import RestClient

TOKEN = "secret-token-value"


def echo_results(body: list[list[str]]) -> list[dict[str, object]]:
    """What a REST server would answer: INCR-like integers, base64 strings for GET."""
    out: list[dict[str, object]] = []
    for cmd in body:
        if cmd[0] == "GET":
            out.append({"result": base64.b64encode(cmd[1].encode()).decode()})
        else:
            out.append({"result": len(cmd)})
    return out


class Recorder:
    def __init__(self, delay: float = 0.0, fail: list[object] | None = None) -> None:
        self.bodies: list[list[list[str]]] = []
        self.delay = delay
        self.fail = list(fail or [])
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if self.delay:
            await trio.sleep(self.delay)
        if self.fail:
            failure = self.fail.pop(0)
            if isinstance(failure, Exception):
                raise failure
            if isinstance(failure, httpx.Response):
                return failure
        body = orjson.loads(request.content)
        self.bodies.append(body)
        return httpx.Response(
            200, content=orjson.dumps(echo_results(body)), headers={"Upstash-Sync-Token": "t1"}
        )


def make_dispatcher(recorder: Recorder, **limits: object) -> tuple[Dispatcher, Stats, RestClient]:
    client = RestClient(
        "http://upstream.test",
        TOKEN,
        timeout_s=2,
        connect_timeout_s=1,
        transport=httpx.MockTransport(recorder),
    )
    stats = Stats()
    return Dispatcher(client, DispatchLimits(**limits), stats), stats, client  # type: ignore[arg-type]


def submit(dispatcher: Dispatcher, queue: ClientQueue, args: list[bytes], out: list[bytes]) -> None:
    json = [a.decode() for a in args]
    spec = commands.resolve(args)
    dispatcher.submit(queue, Pending(PIPE, args, json, spec, out.append))


async def wait_for(out: list[bytes], n: int) -> None:
    with trio.fail_after(5):
        while len(out) < n:
            await trio.sleep(0.005)


async def test_commands_queued_during_a_request_ride_in_the_next_one() -> None:
    recorder = Recorder(delay=0.05)
    dispatcher, stats, _ = make_dispatcher(recorder, max_in_flight=1)
    out: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        queues = [ClientQueue() for _ in range(20)]
        submit(dispatcher, queues[0], [b"SET", b"a", b"1"], out)
        await trio.sleep(0.01)  # the first request is now in flight
        for q in queues[1:]:
            submit(dispatcher, q, [b"GET", b"k"], out)
        await wait_for(out, 20)
        nursery.cancel_scope.cancel()
    assert [len(b) for b in recorder.bodies] == [1, 19]
    assert stats.http_requests == 2 and stats.batched_commands == 20


async def test_one_client_pipeline_is_split_in_order() -> None:
    recorder = Recorder()
    dispatcher, _, _ = make_dispatcher(recorder, max_batch_commands=7)
    out: list[bytes] = []
    queue = ClientQueue()
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        for i in range(30):
            submit(dispatcher, queue, [b"GET", str(i).encode()], out)
        await wait_for(out, 30)
        nursery.cancel_scope.cancel()
    assert out == [b"$%d\r\n%d\r\n" % (len(str(i)), i) for i in range(30)]
    assert all(len(body) <= 7 for body in recorder.bodies)
    assert [cmd[1] for body in recorder.bodies for cmd in body] == [str(i) for i in range(30)]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            httpx.Response(500, json={"error": "boom"}),
            b"-ERR upstream HTTP 500, outcome unknown (the command may have run): boom\r\n",
        ),
        (httpx.Response(200, content=b"<html>"), b"-ERR upstream error, outcome unknown"),
        (httpx.Response(401, json={"error": "WRONGPASS"}), b"-ERR upstream refused the REST token"),
        (httpx.ReadTimeout("slow"), b"-ERR upstream timeout, outcome unknown"),
        (httpx.RemoteProtocolError("reset"), b"-ERR upstream error, outcome unknown"),
    ],
)
async def test_write_errors_are_reported_not_retried(failure: object, expected: bytes) -> None:
    recorder = Recorder(fail=[failure])
    dispatcher, _, _ = make_dispatcher(recorder)
    out: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        submit(dispatcher, ClientQueue(), [b"INCR", b"counter"], out)
        await wait_for(out, 1)
        nursery.cancel_scope.cancel()
    assert out[0].startswith(expected), out
    assert recorder.calls == 1  # a write that may have run is never re-sent
    assert TOKEN.encode() not in out[0]


async def test_read_only_batch_is_retried_once_after_a_timeout() -> None:
    recorder = Recorder(fail=[httpx.ReadTimeout("slow")])
    dispatcher, stats, _ = make_dispatcher(recorder)
    out: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        submit(dispatcher, ClientQueue(), [b"GET", b"v"], out)
        await wait_for(out, 1)
        nursery.cancel_scope.cancel()
    assert out == [b"$1\r\nv\r\n"]
    assert recorder.calls == 2 and stats.retries == 1


async def test_unsent_request_is_retried_even_for_writes() -> None:
    recorder = Recorder(fail=[httpx.ConnectError("refused")])
    dispatcher, _, _ = make_dispatcher(recorder)
    out: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        submit(dispatcher, ClientQueue(), [b"INCR", b"n"], out)
        await wait_for(out, 1)
        nursery.cancel_scope.cancel()
    assert out == [b":2\r\n"] and recorder.calls == 2


async def test_sync_token_is_kept_and_sent() -> None:
    seen: list[str | None] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("upstash-sync-token"))
        return httpx.Response(
            200, json=[{"result": 1}], headers={"Upstash-Sync-Token": f"tok{len(seen)}"}
        )

    client = RestClient("http://u.test", TOKEN, timeout_s=1, connect_timeout_s=1,
                        transport=httpx.MockTransport(handler))  # fmt: skip
    await client.pipeline([["INCR", "a"]])
    await client.pipeline([["INCR", "a"]])
    assert seen == [None, "tok1"]
    assert client.sync_token == "tok2"
