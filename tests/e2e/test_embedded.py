"""The README's main command: `resp-bridge serve` with no credentials runs the embedded default."""

from __future__ import annotations

import re
import socket
import time

from tests.e2e.conftest import start_bridge


def test_serve_without_credentials_starts_the_embedded_default(tmp_path) -> None:
    bridge = start_bridge(str(tmp_path), None, None)
    try:
        client = bridge.client()
        assert client.set("embedded", "yes") is True
        assert client.get("embedded") == b"yes"
        assert client.hgetall("nothing") == {}
        log = bridge.log()
        assert "using the embedded default" in log
        match = re.search(r"local redis-server \(redis://127\.0\.0\.1:(\d+)\)", log)
        assert match, log
        redis_port = int(match.group(1))
    finally:
        bridge.stop()
    # The redis-server child goes away with the bridge.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", redis_port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the embedded redis-server on port {redis_port} outlived the bridge")


def test_unix_socket_listener(tmp_path, devserver) -> None:
    import os
    import stat

    import redis

    path = str(tmp_path / "bridge.sock")
    bridge = start_bridge(str(tmp_path), devserver.url, devserver.token, "--unixsocket", path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = redis.Redis(unix_socket_path=path, protocol=2, socket_timeout=10)
        assert client.set("via-unix", "1") is True
        assert client.get("via-unix") == b"1"
        assert any(c["addr"].startswith(path) for c in client.client_list())
        client.close()
    finally:
        bridge.stop()
    assert not os.path.exists(path)  # removed on shutdown


def test_upstream_from_env_vars_and_config_file(tmp_path, devserver) -> None:
    env = {"UPSTASH_REDIS_REST_URL": devserver.url, "UPSTASH_REDIS_REST_TOKEN": devserver.token}
    bridge = start_bridge(str(tmp_path), None, None, env=env)
    try:
        assert bridge.client().ping() is True
        assert bridge.client().set("from-env", "1") is True
        assert "embedded default" not in bridge.log()
    finally:
        bridge.stop()
    config = tmp_path / "bridge.toml"
    config.write_text(f'url = "{devserver.url}"\ntoken = "{devserver.token}"\nmax_in_flight = 4\n')
    bridge = start_bridge(str(tmp_path), None, None, "--config", str(config))
    try:
        assert bridge.client().get("from-env") == b"1"
        assert devserver.token not in bridge.log()
    finally:
        bridge.stop()
