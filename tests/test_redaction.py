"""The one URL redaction (bridge/redaction.py) and the places that show URLs through it."""

from __future__ import annotations

import pytest

from bridge.config import BridgeConfig, validate
from bridge.devserver.redis_conn import RedisAddress
from bridge.errors import ConfigError
from bridge.redaction import NOT_A_URL, redact_url
from bridge.upstream.api_client import ApiClient
from bridge.upstream.rest import RestClient


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://db.upstash.io", "https://db.upstash.io"),
        ("https://db.upstash.io/base/", "https://db.upstash.io/base/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://[::1]/x", "http://[::1]/x"),
        ("https://[2001:db8::7]:443", "https://[2001:db8::7]:443"),
        ("https://[fe80::1%25eth0]:9443/v1", "https://[fe80::1%25eth0]:9443/v1"),
        ("https://user:secret@Host.Example:8443/p", "https://host.example:8443/p"),
        ("https://secret@host/p", "https://host/p"),
        ("http://[::1]:1/x?_token=secret#frag", "http://[::1]:1/x"),
        ("https://host:notaport/p", "https://host/p"),
        ("http://[::1/x", NOT_A_URL),
        ("AXsecretTokenPastedAsTheUrl", NOT_A_URL),
        ("", NOT_A_URL),
        ("http:/only-a-path", NOT_A_URL),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "secret" not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:secret@h:1/0", "redis://user:***@h:1/0"),
        ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
        ("redis://user@[::1]:6380/2", "redis://user@[::1]:6380/2"),
        ("redis://h:6379/0?password=secret", "redis://h:6379/0"),
    ],
)
def test_redact_url_keeping_the_user(url: str, shown: str) -> None:
    assert redact_url(url, keep_user=True) == shown


async def test_clients_show_their_urls_redacted() -> None:
    rest = RestClient("http://[::1]:8080/db/", "token", timeout_s=1, connect_timeout_s=1)
    assert rest.display_url == "http://[::1]:8080/db"
    rest.switch("https://[2001:db8::1]:443/other", "token2")
    assert rest.display_url == "https://[2001:db8::1]:443/other"
    await rest.aclose()
    api = ApiClient("https://u:pw@[::1]:9443/", "user", "pw")
    assert api.display_url == "https://[::1]:9443"
    await api.aclose()


def test_config_error_never_echoes_what_is_not_a_url() -> None:
    with pytest.raises(ConfigError) as caught:
        validate(BridgeConfig(url="AXsecretToken", token="t"))
    assert "AXsecretToken" not in str(caught.value) and NOT_A_URL in str(caught.value)


def test_devserver_redis_url_error_masks_the_password() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL") as caught:
        RedisAddress.from_url("redis://user:secret@h:1/notadb")
    assert "secret" not in str(caught.value) and "user:***@h:1" in str(caught.value)
