"""SSE endpoints: /subscribe, /psubscribe, /monitor, heartbeats, release on disconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import redis
import trio

from tests.conftest import DevServerHandle

SSE = {"Accept": "text/event-stream"}
#: Upper bound for anything the tests wait for (a failure, not a timing assertion).
WAIT_S = 10.0


async def events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """SSE parsing as a conforming reader does it: data lines joined with LF, comments kept."""
    data: list[str] = []
    async for line in lines:
        if line.startswith(":"):
            yield line
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield "\n".join(data)
            data = []


async def next_event(stream: AsyncIterator[str], *, skip_comments: bool = True) -> str:
    with trio.fail_after(WAIT_S):
        async for event in stream:
            if skip_comments and event.startswith(":"):
                continue
            return event
    raise AssertionError("stream ended")


async def wait_until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not predicate():
            await trio.sleep(0.05)


async def test_subscribe_and_messages(
    devserver: DevServerHandle, redis_client: redis.Redis
) -> None:
    async with (
        httpx.AsyncClient(base_url=devserver.url, headers=devserver.headers) as client,
        client.stream("POST", "/subscribe/chat", headers=SSE, content=b"[]") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["upstash-sync-token"]
        stream = events(response.aiter_lines())
        assert await next_event(stream) == "subscribe,chat,1"
        assert redis_client.publish("chat", "hello") == 1
        assert await next_event(stream) == "message,chat,hello"
        redis_client.publish("chat", "how are you, today?")
        assert await next_event(stream) == "message,chat,how are you, today?"
        # Newlines: several data lines, joined back with LF (CRLF and CR arrive as LF).
        redis_client.publish("chat", "line1\nline2\r\nline3")
        assert await next_event(stream) == "message,chat,line1\nline2\nline3"
        # Invalid UTF-8 is replaced with U+FFFD.
        redis_client.publish("chat", b"\xffab")
        assert await next_event(stream) == "message,chat,\ufffdab"
        # Published through the devserver itself.
        published = await client.post("/publish/chat/via%20rest")
        assert published.json() == {"result": 1}
        assert await next_event(stream) == "message,chat,via rest"


async def test_subscribe_decodes_channel_and_takes_several(
    devserver: DevServerHandle, redis_client: redis.Redis
) -> None:
    async with (
        httpx.AsyncClient(base_url=devserver.url, headers=devserver.headers) as client,
        client.stream("GET", "/subscribe/a%2Fb%20c/second", headers=SSE) as response,
    ):
        stream = events(response.aiter_lines())
        assert await next_event(stream) == "subscribe,a/b c,1"
        assert await next_event(stream) == "subscribe,second,2"
        redis_client.publish("a/b c", "x")
        redis_client.publish("second", "y")
        assert await next_event(stream) == "message,a/b c,x"
        assert await next_event(stream) == "message,second,y"


async def test_psubscribe(devserver: DevServerHandle, redis_client: redis.Redis) -> None:
    async with (
        httpx.AsyncClient(base_url=devserver.url, headers=devserver.headers) as client,
        client.stream("POST", "/psubscribe/news.*", headers=SSE) as response,
    ):
        stream = events(response.aiter_lines())
        assert await next_event(stream) == "psubscribe,news.*,1"
        redis_client.publish("other", "ignored")
        redis_client.publish("news.tech", "payload,with,commas")
        assert await next_event(stream) == "pmessage,news.*,news.tech,payload,with,commas"


async def test_monitor(devserver: DevServerHandle) -> None:
    async with (
        httpx.AsyncClient(base_url=devserver.url, headers=devserver.headers) as client,
        client.stream("POST", "/monitor", headers=SSE) as response,
    ):
        stream = events(response.aiter_lines())
        assert await next_event(stream) == '"OK"'
        await client.get("/set/monitored-key/v1")
        with trio.fail_after(WAIT_S):
            while '"monitored-key"' not in (line := await next_event(stream)):
                pass
        assert '"set" "monitored-key" "v1"' in line.lower()


async def test_stream_released_when_client_disconnects(
    devserver: DevServerHandle, redis_client: redis.Redis
) -> None:
    channel = "released-channel"
    before = devserver.stats()["sse_streams_open"]
    async with httpx.AsyncClient(base_url=devserver.url, headers=devserver.headers) as client:
        async with client.stream("POST", f"/subscribe/{channel}", headers=SSE) as response:
            stream = events(response.aiter_lines())
            assert await next_event(stream) == f"subscribe,{channel},1"
            assert redis_client.pubsub_numsub(channel) == [(channel.encode(), 1)]
            assert devserver.stats()["sse_streams_open"] == before + 1
        # The HTTP connection is closed: the Redis subscription must go away.
        await wait_until(lambda: redis_client.pubsub_numsub(channel) == [(channel.encode(), 0)])
        await wait_until(lambda: devserver.stats()["sse_streams_open"] == before)


async def test_stream_ends_when_redis_drops_it(
    devserver: DevServerHandle, redis_client: redis.Redis
) -> None:
    async with (
        httpx.AsyncClient(base_url=devserver.url, headers=devserver.headers) as client,
        client.stream("POST", "/subscribe/killed", headers=SSE) as response,
    ):
        stream = events(response.aiter_lines())
        assert await next_event(stream) == "subscribe,killed,1"
        redis_client.client_kill_filter(_type="pubsub")
        with trio.fail_after(WAIT_S):
            remaining = [event async for event in stream]
        assert remaining == []


async def test_heartbeat_comments(
    devserver_factory: Callable[..., DevServerHandle],
) -> None:
    server = devserver_factory(sse_heartbeat_s=0.2)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=server.headers) as client,
        client.stream("POST", "/subscribe/quiet", headers=SSE) as response,
    ):
        stream = events(response.aiter_lines())
        assert await next_event(stream) == "subscribe,quiet,1"
        assert await next_event(stream, skip_comments=False) == ": heartbeat"
        assert await next_event(stream, skip_comments=False) == ": heartbeat"


async def test_readonly_token_can_subscribe_but_not_monitor(
    devserver: DevServerHandle, redis_client: redis.Redis
) -> None:
    async with httpx.AsyncClient(
        base_url=devserver.url, headers=devserver.readonly_headers
    ) as client:
        response = await client.post("/monitor", headers=SSE)
        assert response.status_code == 400
        assert response.json()["error"].startswith("NOPERM")
        async with client.stream("POST", "/subscribe/ro-chat", headers=SSE) as streamed:
            stream = events(streamed.aiter_lines())
            assert await next_event(stream) == "subscribe,ro-chat,1"
            redis_client.publish("ro-chat", "hi")
            assert await next_event(stream) == "message,ro-chat,hi"


async def test_sse_needs_token_and_accept(devserver: DevServerHandle) -> None:
    async with httpx.AsyncClient(base_url=devserver.url) as client:
        assert (await client.post("/subscribe/x", headers=SSE)).status_code == 401
        response = await client.post("/monitor", headers=devserver.headers)
        assert response.status_code == 400
        response = await client.post(
            "/subscribe", headers={**SSE, **devserver.headers}
        )  # no channel
        assert response.status_code == 400
