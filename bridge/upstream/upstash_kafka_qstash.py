"""Client of the Kafka and QStash groups of the Upstash developer API (`/v2/kafka/...`,
`/v2/qstash/...`).

The same API, account and credentials as databases and teams (`UpstashAPI`, HTTP Basic with the
account email and an API key), so `KafkaQStashAPI` extends it with one method per documented
endpoint; each sends exactly the reference's request body (`spec/upstash-developer-api.txt`)
and returns the decoded answer. Listings are condensed to the columns people need (the full
answers come with `raw=True` or the single-object operations); stats show the latest point of
each series (`summarize_stats`). Credentials in answers (cluster and credential passwords,
the QStash token, secrets inside connector properties) are masked later, by the caller
(`redact_secrets`): this module returns what the API said.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from bridge.upstream.api_client import ManagementUsageError
from bridge.upstream.upstash_api import UpstashAPI, summarize_stats

#: Columns of the listings (the API answers every field, credentials included).
CLUSTER_FIELDS = (
    "cluster_id", "name", "region", "type", "multizone", "state", "tcp_endpoint",
    "creation_time",
)  # fmt: skip
TOPIC_FIELDS = (
    "topic_id", "topic_name", "partitions", "cleanup_policy", "retention_time",
    "retention_size", "max_message_size", "state",
)  # fmt: skip
CREDENTIAL_FIELDS = (
    "credential_id", "credential_name", "cluster_id", "topic", "permissions", "state",
    "creation_time",
)  # fmt: skip
CONNECTOR_FIELDS = (
    "connector_id", "name", "connector_class", "state", "connector_state", "topics",
    "creation_time",
)  # fmt: skip
CLEANUP_POLICIES = ("delete", "compact")
PERMISSIONS = ("ALL", "PRODUCE", "CONSUME")
#: What an omitted topic setting is sent as: the reference's "highest possible value".
HIGHEST = -1


def _id(value: str) -> str:
    """A path segment: ids are UUIDs, but never let one add a path or a query."""
    return quote(value, safe="")


def _columns(data: Any, fields: tuple[str, ...]) -> Any:
    if not isinstance(data, list):
        return data
    return [
        {k: item.get(k) for k in fields if k in item} for item in data if isinstance(item, dict)
    ]


def _ok(result: Any) -> Any:
    return result if result is not None else "OK"


class KafkaQStashAPI(UpstashAPI):
    """`UpstashAPI` plus Kafka clusters, topics, credentials, connectors, stats and QStash."""

    # -- clusters -------------------------------------------------------------------------

    async def list_kafka_clusters(self, *, raw: bool = False) -> Any:
        data = await self.request("GET", "/v2/kafka/clusters")
        return data if raw else _columns(data, CLUSTER_FIELDS)

    async def get_kafka_cluster(self, cluster_id: str) -> Any:
        return await self.request("GET", f"/v2/kafka/cluster/{_id(cluster_id)}")

    async def create_kafka_cluster(self, name: str, region: str, multizone: bool = False) -> Any:
        body = {"name": name, "region": region, "multizone": multizone}
        return await self.request("POST", "/v2/kafka/cluster", body=body)

    async def delete_kafka_cluster(self, cluster_id: str) -> Any:
        return _ok(await self.request("DELETE", f"/v2/kafka/cluster/{_id(cluster_id)}"))

    async def rename_kafka_cluster(self, cluster_id: str, name: str) -> Any:
        return await self.request(
            "POST", f"/v2/kafka/rename-cluster/{_id(cluster_id)}", body={"name": name}
        )

    async def reset_kafka_password(self, cluster_id: str) -> Any:
        return await self.request("POST", f"/v2/kafka/reset-password/{_id(cluster_id)}")

    # -- topics ---------------------------------------------------------------------------

    async def list_kafka_topics(self, cluster_id: str, *, raw: bool = False) -> Any:
        data = await self.request("GET", f"/v2/kafka/topics/{_id(cluster_id)}")
        return data if raw else _columns(data, TOPIC_FIELDS)

    async def get_kafka_topic(self, topic_id: str) -> Any:
        return await self.request("GET", f"/v2/kafka/topic/{_id(topic_id)}")

    async def create_kafka_topic(
        self,
        cluster_id: str,
        name: str,
        partitions: int,
        cleanup_policy: str | None = None,
        retention_time: int | None = None,
        retention_size: int | None = None,
        max_message_size: int | None = None,
    ) -> Any:
        """Every field of the reference's body is sent; omitted settings are -1 (the highest
        value the cluster allows) and the cleanup policy `delete`."""
        body = {
            "name": name,
            "partitions": partitions,
            "retention_time": HIGHEST if retention_time is None else retention_time,
            "retention_size": HIGHEST if retention_size is None else retention_size,
            "max_message_size": HIGHEST if max_message_size is None else max_message_size,
            "cleanup_policy": cleanup_policy or "delete",
            "cluster_id": cluster_id,
        }
        return await self.request("POST", "/v2/kafka/topic", body=body)

    async def reconfigure_kafka_topic(
        self,
        topic_id: str,
        retention_time: int | None = None,
        retention_size: int | None = None,
        max_message_size: int | None = None,
    ) -> Any:
        """Only the given settings are sent (each is optional in the reference)."""
        given = {
            "retention_time": retention_time,
            "retention_size": retention_size,
            "max_message_size": max_message_size,
        }
        body = {k: v for k, v in given.items() if v is not None}
        if not body:
            raise ManagementUsageError(
                "nothing to change: give retention_time=<ms>, retention_size=<bytes> or "
                "max_message_size=<bytes>"
            )
        return await self.request("POST", f"/v2/kafka/update-topic/{_id(topic_id)}", body=body)

    async def delete_kafka_topic(self, topic_id: str) -> Any:
        return _ok(await self.request("DELETE", f"/v2/kafka/topic/{_id(topic_id)}"))

    # -- credentials ----------------------------------------------------------------------

    async def list_kafka_credentials(self, *, raw: bool = False) -> Any:
        data = await self.request("GET", "/v2/kafka/credentials")
        return data if raw else _columns(data, CREDENTIAL_FIELDS)

    async def create_kafka_credential(
        self, cluster_id: str, name: str, topic: str, permissions: str
    ) -> Any:
        body = {
            "credential_name": name,
            "cluster_id": cluster_id,
            "topic": topic,
            "permissions": permissions,
        }
        return await self.request("POST", "/v2/kafka/credential", body=body)

    async def delete_kafka_credential(self, credential_id: str) -> Any:
        return _ok(await self.request("DELETE", f"/v2/kafka/credential/{_id(credential_id)}"))

    # -- stats ----------------------------------------------------------------------------

    async def kafka_cluster_stats(self, cluster_id: str, *, raw: bool = False) -> Any:
        data = await self.request("GET", f"/v2/kafka/stats/cluster/{_id(cluster_id)}")
        return data if raw else summarize_stats(data)

    async def kafka_topic_stats(self, topic_id: str, *, raw: bool = False) -> Any:
        data = await self.request("GET", f"/v2/kafka/stats/topic/{_id(topic_id)}")
        return data if raw else summarize_stats(data)

    # -- connectors -----------------------------------------------------------------------

    async def create_kafka_connector(
        self, cluster_id: str, name: str, properties: Mapping[str, Any]
    ) -> Any:
        body = {"name": name, "cluster_id": cluster_id, "properties": dict(properties)}
        return await self.request("POST", "/v2/kafka/connector", body=body)

    async def reconfigure_kafka_connector(
        self, connector_id: str, properties: Mapping[str, Any]
    ) -> Any:
        """The properties are the body itself, as in the reference's examples."""
        return await self.request(
            "POST", f"/v2/kafka/update-connector/{_id(connector_id)}", body=dict(properties)
        )

    async def list_kafka_connectors(self, cluster_id: str, *, raw: bool = False) -> Any:
        data = await self.request("GET", f"/v2/kafka/connectors/{_id(cluster_id)}")
        return data if raw else _columns(data, CONNECTOR_FIELDS)

    async def get_kafka_connector(self, connector_id: str) -> Any:
        return await self.request("GET", f"/v2/kafka/connector/{_id(connector_id)}")

    async def delete_kafka_connector(self, connector_id: str) -> Any:
        return _ok(await self.request("DELETE", f"/v2/kafka/connector/{_id(connector_id)}"))

    async def restart_kafka_connector(self, connector_id: str) -> Any:
        return _ok(await self.request("POST", f"/v2/kafka/connector/{_id(connector_id)}/restart"))

    async def start_kafka_connector(self, connector_id: str) -> Any:
        return _ok(await self.request("POST", f"/v2/kafka/connector/{_id(connector_id)}/start"))

    async def pause_kafka_connector(self, connector_id: str) -> Any:
        return _ok(await self.request("POST", f"/v2/kafka/connector/{_id(connector_id)}/pause"))

    # -- QStash ---------------------------------------------------------------------------

    async def qstash_user(self) -> Any:
        return await self.request("GET", "/v2/qstash/user")

    async def rotate_qstash_token(self) -> Any:
        return await self.request("POST", "/v2/qstash/rotate-token")
