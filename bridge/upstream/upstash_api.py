"""Client of the Upstash developer API (`https://api.upstash.com/v2/...`): databases and teams.

HTTP Basic auth with the account email and an API key (not a database's REST token). One
method per documented endpoint, each returning the decoded JSON answer; errors are mapped by
`ApiClient` (`bridge.upstream.api_client`). Listings and stats are condensed for people
(`summarize_*`): the full answers stay available through the methods' `raw=True`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from bridge.upstream.api_client import ApiClient, ManagementUsageError

DEFAULT_URL = "https://api.upstash.com"
#: Columns of DB LIST (the API returns every field, credentials included).
LIST_FIELDS = (
    "database_id", "database_name", "region", "type", "state", "endpoint", "tls",
    "creation_time",
)  # fmt: skip


def _id(value: str) -> str:
    """A path segment: ids are UUIDs, but never let one add a path or a query."""
    return quote(value, safe="")


class UpstashAPI(ApiClient):
    provider = "the Upstash developer API"
    auth_hint = "check UPSTASH_EMAIL and UPSTASH_API_KEY (an API key from the Upstash console)"

    def __init__(
        self,
        email: str,
        api_key: str,
        *,
        base_url: str = DEFAULT_URL,
        timeout_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"transport": transport}
        if timeout_s is not None:
            kwargs["timeout_s"] = timeout_s
        super().__init__(base_url, email, api_key, **kwargs)

    # -- databases ------------------------------------------------------------------------

    async def list_databases(self, *, raw: bool = False) -> Any:
        data = await self.request("GET", "/v2/redis/databases")
        if raw or not isinstance(data, list):
            return data
        return [{k: db.get(k) for k in LIST_FIELDS if k in db} for db in data]

    async def get_database(self, database_id: str) -> Any:
        return await self.request("GET", f"/v2/redis/database/{_id(database_id)}")

    async def create_database(self, name: str, region: str, tls: bool = True) -> Any:
        if region.lower() == "global":
            raise ManagementUsageError(
                "region global needs a primary region: use DB CREATE-GLOBAL <name> "
                "<primary_region> [read_region...]"
            )
        body = {"name": name, "region": region, "tls": tls}
        return await self.request("POST", "/v2/redis/database", body=body)

    async def create_global_database(
        self, name: str, primary_region: str, read_regions: list[str], tls: bool = True
    ) -> Any:
        body = {
            "name": name,
            "region": "global",
            "primary_region": primary_region,
            "read_regions": list(read_regions),
            "tls": tls,
        }
        return await self.request("POST", "/v2/redis/database", body=body)

    async def delete_database(self, database_id: str) -> Any:
        result = await self.request("DELETE", f"/v2/redis/database/{_id(database_id)}")
        return result if result is not None else "OK"

    async def rename_database(self, database_id: str, name: str) -> Any:
        return await self.request(
            "POST", f"/v2/redis/rename/{_id(database_id)}", body={"name": name}
        )

    async def reset_password(self, database_id: str) -> Any:
        return await self.request("POST", f"/v2/redis/reset-password/{_id(database_id)}")

    async def enable_tls(self, database_id: str) -> Any:
        return await self.request("POST", f"/v2/redis/enable-tls/{_id(database_id)}")

    async def set_eviction(self, database_id: str, enabled: bool) -> Any:
        verb = "enable" if enabled else "disable"
        return await self.request("POST", f"/v2/redis/{verb}-eviction/{_id(database_id)}")

    async def set_auto_upgrade(self, database_id: str, enabled: bool) -> Any:
        verb = "enable" if enabled else "disable"
        return await self.request("POST", f"/v2/redis/{verb}-autoupgrade/{_id(database_id)}")

    async def update_regions(self, database_id: str, read_regions: list[str]) -> Any:
        return await self.request(
            "POST",
            f"/v2/redis/update-regions/{_id(database_id)}",
            body={"read_regions": list(read_regions)},
        )

    async def move_to_team(self, database_id: str, team_id: str) -> Any:
        result = await self.request(
            "POST",
            "/v2/redis/move-to-team",
            body={"team_id": team_id, "database_id": database_id},
        )
        return result if result is not None else "OK"

    async def database_stats(self, database_id: str, *, raw: bool = False) -> Any:
        data = await self.request("GET", f"/v2/redis/stats/{_id(database_id)}")
        return data if raw else summarize_stats(data)

    # -- teams ----------------------------------------------------------------------------

    async def list_teams(self) -> Any:
        return await self.request("GET", "/v2/teams")

    async def create_team(self, name: str, copy_cc: bool = False) -> Any:
        return await self.request("POST", "/v2/team", body={"team_name": name, "copy_cc": copy_cc})

    async def delete_team(self, team_id: str) -> Any:
        result = await self.request("DELETE", f"/v2/team/{_id(team_id)}")
        return result if result is not None else "OK"

    async def list_members(self, team_id: str) -> Any:
        return await self.request("GET", f"/v2/teams/{_id(team_id)}")

    async def add_member(self, team_id: str, email: str, role: str) -> Any:
        body = {"team_id": team_id, "member_email": email, "member_role": role}
        return await self.request("POST", "/v2/teams/member", body=body)

    async def remove_member(self, team_id: str, email: str) -> Any:
        body = {"team_id": team_id, "member_email": email}
        result = await self.request("DELETE", "/v2/teams/member", body=body)
        return result if result is not None else "OK"


def summarize_stats(data: Any) -> Any:
    """Stats for people: the latest point of each time series, scalars as they are."""
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list):
            points = [p for p in value if isinstance(p, dict) and "y" in p]
            if points:
                out[key] = points[-1]["y"]
            elif value and all(isinstance(v, str) for v in value):
                out[key] = ", ".join(value)
        elif value is not None:
            out[key] = value
    return out
