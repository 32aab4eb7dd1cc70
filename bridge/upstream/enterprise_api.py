"""Client of the Redis Enterprise Software REST API (`https://<host>:9443/v1/...`).

Basic auth with a cluster user. The cluster usually presents a self-signed certificate: give
the CA that signed it (`ca_file`), or turn verification off explicitly (`insecure`), which
logs a warning each time a client is made. Requests are versioned in the path as the
reference says (`/v1/bdbs`; `api_version="v2"` for the endpoints that have a v2 form, such as
creating a database, whose v2 body wraps the database in `{"bdb": ...}`). Errors are mapped by
`ApiClient` (`bridge.upstream.api_client`); 505 means the cluster does not know that version.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx

from bridge.upstream.api_client import ApiClient, ManagementUsageError

log = logging.getLogger("bridge.management")

API_VERSIONS = ("v1", "v2")
#: Columns of DB LIST when no `fields` are asked for.
LIST_FIELDS = ("uid", "name", "type", "status", "memory_size", "port", "shards_count", "version")

INSECURE_WARNING = (
    "TLS certificate verification of the Redis Enterprise API at %s is OFF (--insecure): "
    "anyone on the path can read the credentials; give its CA with --ca-file instead"
)


def tls_verify(ca_file: str | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx should verify against: the CA file, nothing (insecure), or the system CAs."""
    if insecure:
        return False
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ManagementUsageError(
                f"enterprise_ca_file: cannot load {ca_file!r} as a PEM CA certificate: "
                f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
            ) from None
    return True


def _uid(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ManagementUsageError(
            f"uid: Redis Enterprise database ids are numbers, got {value!r}"
        ) from None


class EnterpriseAPI(ApiClient):
    provider = "the Redis Enterprise REST API"
    auth_hint = "check enterprise_user and enterprise_password (REDIS_ENTERPRISE_PASSWORD)"

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        ca_file: str | None = None,
        insecure: bool = False,
        api_version: str = "v1",
        timeout_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if api_version not in API_VERSIONS:
            raise ManagementUsageError(f"api_version: expected one of {', '.join(API_VERSIONS)}")
        verify = tls_verify(ca_file, insecure)
        kwargs: dict[str, Any] = {"transport": transport, "verify": verify}
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
        super().__init__(url, user, password, **kwargs)
        self.api_version = api_version
        self.insecure = insecure
        if insecure:
            log.warning(INSECURE_WARNING, self.display_url)

    # -- databases (bdbs) -----------------------------------------------------------------

    async def list_databases(self, fields: str | None = None) -> Any:
        params = {"fields": fields} if fields else None
        data = await self.request("GET", "/v1/bdbs", params=params)
        if fields or not isinstance(data, list):
            return data
        return [{k: bdb[k] for k in LIST_FIELDS if k in bdb} for bdb in data]

    async def get_database(self, uid: str, fields: str | None = None) -> Any:
        params = {"fields": fields} if fields else None
        return await self.request("GET", f"/v1/bdbs/{_uid(uid)}", params=params)

    async def create_database(self, name: str, memory_size: int) -> Any:
        bdb = {"name": name, "type": "redis", "memory_size": memory_size}
        if self.api_version == "v2":
            return await self.request("POST", "/v2/bdbs", body={"bdb": bdb})
        return await self.request("POST", "/v1/bdbs", body=bdb)

    async def delete_database(self, uid: str) -> Any:
        result = await self.request("DELETE", f"/v1/bdbs/{_uid(uid)}")
        return result if result is not None else "OK"

    async def database_stats(self, uid: str, *, raw: bool = False) -> Any:
        """The newest stats interval (`raw=True`: every interval of the answer)."""
        data = await self.request("GET", f"/v1/bdbs/stats/{_uid(uid)}")
        if raw or not isinstance(data, dict):
            return data
        intervals = data.get("intervals")
        if isinstance(intervals, list) and intervals:
            return {"uid": data.get("uid", uid), **intervals[-1]}
        return data

    # -- cluster --------------------------------------------------------------------------

    async def cluster_info(self) -> Any:
        return await self.request("GET", "/v1/cluster")

    async def list_nodes(self) -> Any:
        return await self.request("GET", "/v1/nodes")
