"""Emulation of the Kafka and QStash groups of the Upstash developer API (`/v2/kafka/...`,
`/v2/qstash/...`), for tests and offline development.

Bookkeeping only: a created Kafka cluster is a record with made-up endpoints and credentials,
not a broker (nothing listens on its `tcp_endpoint`); topics, credentials and connectors are
records in it; stats are zeros; a connector is `pending` in the create answer and `running`
from then on (pause, start and restart move it), no connector code runs. The QStash user is
one record whose token and password `rotate-token` replaces.

The JSON shapes are those of `spec/upstash-developer-api.txt` (field names, types and which
answer carries which fields, as its examples show); validation is strict so a client bug fails
a test: bodies must be JSON objects with the documented fields of the right types and no other
(400), enums are checked (region `eu-west-1`/`us-east-1`, cleanup policy `compact`/`delete`,
permissions `ALL`/`PRODUCE`/`CONSUME`), unknown ids answer 404, a wrong method 405. State lives
as long as the object (the devserver process).

`KafkaQStashEmulator.route` is called by `ManagementEmulator` (`management_emulation`) after it
checked the Basic credentials; it answers `(status, JSON value)` and raises nothing. It must not
import `management_emulation` (that module imports this one).
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

KAFKA_REGIONS = ("eu-west-1", "us-east-1")
#: Short region names in the made-up endpoints (as the reference's `...-eu1-kafka...`).
REGION_SHORT = {"eu-west-1": "eu1", "us-east-1": "us1"}
CLEANUP_POLICIES = ("compact", "delete")
PERMISSIONS = ("ALL", "PRODUCE", "CONSUME")
#: Limits of every emulated cluster (the reference's example values).
CLUSTER_LIMITS = {
    "max_retention_size": 1073741824000,
    "max_retention_time": 2592000000,
    "max_messages_per_second": 1000,
    "max_message_size": 1048576,
    "max_partitions": 100,
}
#: How long after creation the reference's connector answer says it lives (`TTL`), seconds.
CONNECTOR_TTL_S = 1800
#: Most properties one connector may carry (the API takes small JSON objects).
MAX_CONNECTOR_PROPERTIES = 200
QSTASH_LIMITS = {
    "max_message_size": 1048576,
    "max_requests_per_day": 500000,
    "max_endpoints_per_topic": 100,
    "max_retries": 5,
    "max_topics": 20,
    "max_schedules": 100,
    "retention": 2592000,
    "timeout": 30,
}
#: Fields of a topic answer, in the reference's order (cluster fields filled in).
TOPIC_KEYS = (
    "topic_id", "topic_name", "cluster_id", "region", "creation_time", "state", "partitions",
    "multizone", "tcp_endpoint", "rest_endpoint", "username", "password", "cleanup_policy",
    "retention_size", "retention_time", "max_message_size",
)  # fmt: skip
#: Fields of the connector answers: create carries TTL, list/get carry properties (as the
#: reference's examples).
CONNECTOR_KEYS = (
    "connector_id", "name", "customer_id", "cluster_id", "creation_time", "deletion_time",
    "state", "state_error_message", "connector_state", "tasks", "topics", "connector_class",
)  # fmt: skip

Result = tuple[int, Any]


class _Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _fields(body: Any, required: dict[str, type], optional: dict[str, type] | None = None) -> dict:
    """The body as a dict with exactly these fields of these types (400 otherwise)."""
    optional = optional or {}
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _Refused(400, "request body must be a JSON object")
    unknown = set(body) - set(required) - set(optional)
    if unknown:
        raise _Refused(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    for name, kind in {**required, **optional}.items():
        if name not in body:
            if name in required:
                raise _Refused(400, f"{name} is required")
            continue
        value = body[name]
        if kind is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise _Refused(400, f"{name} must be {_kind_name(kind)}")
        if kind is str and not value.strip():
            raise _Refused(400, f"{name} must not be empty")
    return body


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", dict: "an object"}.get(
        kind, kind.__name__
    )


def _no_body(body: Any) -> None:
    if body not in (None, {}):
        raise _Refused(400, "this endpoint takes no request body")


def _password(size: int = 48) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).decode()


def _username(slug: str) -> str:
    raw = f"{slug}$".encode() + secrets.token_bytes(24)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class KafkaQStashModel:
    """The records, by id (insertion order is listing order)."""

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    qstash_user: dict[str, Any] = field(default_factory=dict)


class KafkaQStashEmulator:
    """The Kafka and QStash endpoints over `KafkaQStashModel`; see the module docstring."""

    def __init__(self, *, customer_id: str = "dev@example.com") -> None:
        self.customer_id = customer_id
        self.model = KafkaQStashModel()
        self._slugs = itertools.count(10000)
        #: cluster_id -> the made-up name in its endpoints (credentials' `cluster_slug`).
        self._slug_of: dict[str, str] = {}
        self.model.qstash_user = {
            "customer_id": customer_id,
            "id": str(uuid.uuid4()),
            "password": "",
            "token": "",
            "active": True,
            "state": "active",
            **QSTASH_LIMITS,
            "creation_time": int(time.time()),
        }
        self._new_qstash_token()

    def route(self, method: str, path: str, seg: list[str], body: Any) -> Result:
        """`seg`: the path's segments after `v2` (`["kafka", "cluster", id]`)."""
        try:
            return self._route(method, path, seg, body)
        except _Refused as exc:
            return exc.status, exc.body

    def _route(self, method: str, path: str, seg: list[str], body: Any) -> Result:
        fixed: dict[tuple[str, ...], tuple[str, Callable[..., Result]]] = {
            ("kafka", "cluster"): ("POST", self._create_cluster),
            ("kafka", "clusters"): ("GET", self._list_clusters),
            ("kafka", "topic"): ("POST", self._create_topic),
            ("kafka", "credentials"): ("GET", self._list_credentials),
            ("kafka", "credential"): ("POST", self._create_credential),
            ("kafka", "connector"): ("POST", self._create_connector),
            ("qstash", "user"): ("GET", self._qstash_user),
            ("qstash", "rotate-token"): ("POST", self._rotate_token),
        }
        with_id: dict[tuple[str, ...], tuple[str, Callable[..., Result]]] = {
            ("kafka", "cluster"): ("GET|DELETE", self._cluster),
            ("kafka", "rename-cluster"): ("POST", self._rename_cluster),
            ("kafka", "reset-password"): ("POST", self._reset_password),
            ("kafka", "topic"): ("GET|DELETE", self._topic),
            ("kafka", "update-topic"): ("POST", self._update_topic),
            ("kafka", "topics"): ("GET", self._list_topics),
            ("kafka", "credential"): ("DELETE", self._delete_credential),
            ("kafka", "stats", "cluster"): ("GET", self._cluster_stats),
            ("kafka", "stats", "topic"): ("GET", self._topic_stats),
            ("kafka", "connector"): ("GET|DELETE", self._connector),
            ("kafka", "update-connector"): ("POST", self._update_connector),
            ("kafka", "connectors"): ("GET", self._list_connectors),
        }
        actions = {"restart", "start", "pause"}
        key = tuple(seg)
        args: tuple[Any, ...] = (method, body)
        if key in fixed:
            allowed, handler = fixed[key]
        elif len(seg) == 4 and seg[:2] == ["kafka", "connector"] and seg[3] in actions and seg[2]:
            allowed, handler = "POST", self._connector_action
            args = (method, body, seg[2], seg[3])
        elif tuple(seg[:-1]) in with_id and seg[-1]:
            allowed, handler = with_id[tuple(seg[:-1])]
            args = (method, body, seg[-1])
        else:
            raise _Refused(404, f"no such endpoint: {path}")
        if method not in allowed.split("|"):
            raise _Refused(405, f"method {method} not allowed on {path}")
        return handler(*args)

    # -- clusters -------------------------------------------------------------------------

    def _cluster_record(self, cluster_id: str) -> dict[str, Any]:
        cluster = self.model.clusters.get(cluster_id)
        if cluster is None:
            raise _Refused(404, "kafka cluster not found")
        return cluster

    def _create_cluster(self, method: str, body: Any) -> Result:
        fields = _fields(body, {"name": str, "region": str}, {"multizone": bool})
        region = fields["region"]
        if region not in KAFKA_REGIONS:
            raise _Refused(400, f"invalid region: {region} (expected {' or '.join(KAFKA_REGIONS)})")
        if any(c["name"] == fields["name"] for c in self.model.clusters.values()):
            raise _Refused(400, f"a kafka cluster named {fields['name']} already exists")
        slug = f"emulated-{next(self._slugs)}"
        short = REGION_SHORT[region]
        cluster_id = str(uuid.uuid4())
        cluster = {
            "cluster_id": cluster_id,
            "name": fields["name"],
            "region": region,
            "type": "paid",
            "multizone": fields.get("multizone", False),
            "tcp_endpoint": f"{slug}-{short}-kafka.upstash.io",
            "rest_endpoint": f"{slug}-{short}-rest-kafka.upstash.io",
            "state": "active",
            "username": _username(slug),
            "password": _password(),
            "max_retention_size": CLUSTER_LIMITS["max_retention_size"],
            "max_retention_time": CLUSTER_LIMITS["max_retention_time"],
            "max_messages_per_second": CLUSTER_LIMITS["max_messages_per_second"],
            "creation_time": int(time.time()),
            "max_message_size": CLUSTER_LIMITS["max_message_size"],
            "max_partitions": CLUSTER_LIMITS["max_partitions"],
        }
        self.model.clusters[cluster_id] = cluster
        self._slug_of[cluster_id] = slug
        return 200, dict(cluster)

    def _list_clusters(self, method: str, body: Any) -> Result:
        _no_body(body)
        return 200, [dict(c) for c in self.model.clusters.values()]

    def _cluster(self, method: str, body: Any, cluster_id: str) -> Result:
        _no_body(body)
        cluster = self._cluster_record(cluster_id)
        if method == "GET":
            return 200, dict(cluster)
        del self.model.clusters[cluster_id]
        for table in (self.model.topics, self.model.credentials, self.model.connectors):
            for key in [k for k, v in table.items() if v["cluster_id"] == cluster_id]:
                del table[key]
        return 200, "OK"

    def _rename_cluster(self, method: str, body: Any, cluster_id: str) -> Result:
        fields = _fields(body, {"name": str})
        cluster = self._cluster_record(cluster_id)
        cluster["name"] = fields["name"]
        return 200, dict(cluster)

    def _reset_password(self, method: str, body: Any, cluster_id: str) -> Result:
        _no_body(body)
        cluster = self._cluster_record(cluster_id)
        cluster["password"] = secrets.token_hex(16)
        return 200, dict(cluster)

    def _cluster_stats(self, method: str, body: Any, cluster_id: str) -> Result:
        _no_body(body)
        self._cluster_record(cluster_id)
        minute, daily = _now_labels()
        return 200, {
            **_zero_series(minute),
            "days": _last_days(),
            "dailyproduce": [{"x": daily, "y": 0}],
            "dailyconsume": [{"x": daily, "y": 0}],
            "total_monthly_storage": 0,
            "total_monthly_billing": 0,
            "total_monthly_produce": 0,
            "total_monthly_consume": 0,
        }

    # -- topics ---------------------------------------------------------------------------

    def _topic_record(self, topic_id: str) -> dict[str, Any]:
        topic = self.model.topics.get(topic_id)
        if topic is None:
            raise _Refused(404, "kafka topic not found")
        return topic

    def _topic_view(self, topic: dict[str, Any]) -> dict[str, Any]:
        """The topic with its cluster's region, endpoints and credentials, as answered."""
        cluster = self.model.clusters[topic["cluster_id"]]
        merged = {**cluster, **topic}
        return {k: merged[k] for k in TOPIC_KEYS}

    @staticmethod
    def _limit(cluster: dict[str, Any], name: str, value: int, maximum_key: str) -> int:
        """-1 means the highest possible value; anything else must be in 1..maximum."""
        maximum = int(cluster[maximum_key])
        if value == -1:
            return maximum
        if value <= 0 or value > maximum:
            raise _Refused(400, f"{name} must be -1 or between 1 and {maximum}")
        return value

    def _settings(self, cluster: dict[str, Any], fields: dict[str, Any]) -> dict[str, int]:
        limits = {
            "retention_time": "max_retention_time",
            "retention_size": "max_retention_size",
            "max_message_size": "max_message_size",
        }
        return {
            name: self._limit(cluster, name, fields[name], maximum)
            for name, maximum in limits.items()
            if name in fields
        }

    def _create_topic(self, method: str, body: Any) -> Result:
        fields = _fields(
            body,
            {
                "name": str, "partitions": int, "retention_time": int, "retention_size": int,
                "max_message_size": int, "cleanup_policy": str, "cluster_id": str,
            },
        )  # fmt: skip
        cluster = self._cluster_record(fields["cluster_id"])
        if fields["cleanup_policy"] not in CLEANUP_POLICIES:
            raise _Refused(400, "cleanup_policy must be compact or delete")
        in_cluster = [
            t for t in self.model.topics.values() if t["cluster_id"] == cluster["cluster_id"]
        ]
        if any(t["topic_name"] == fields["name"] for t in in_cluster):
            raise _Refused(400, f"topic {fields['name']} already exists in this cluster")
        used = sum(int(t["partitions"]) for t in in_cluster)
        if fields["partitions"] < 1:
            raise _Refused(400, "partitions must be at least 1")
        if used + fields["partitions"] > int(cluster["max_partitions"]):
            raise _Refused(
                400, f"partition limit reached: {used} of {cluster['max_partitions']} in use"
            )
        topic_id = str(uuid.uuid4())
        topic = {
            "topic_id": topic_id,
            "topic_name": fields["name"],
            "cluster_id": cluster["cluster_id"],
            "creation_time": int(time.time()),
            "state": "active",
            "partitions": fields["partitions"],
            "cleanup_policy": fields["cleanup_policy"],
            **self._settings(cluster, fields),
        }
        self.model.topics[topic_id] = topic
        return 200, self._topic_view(topic)

    def _update_topic(self, method: str, body: Any, topic_id: str) -> Result:
        fields = _fields(
            body, {}, {"retention_time": int, "retention_size": int, "max_message_size": int}
        )
        topic = self._topic_record(topic_id)
        if not fields:
            raise _Refused(
                400, "nothing to change: give retention_time, retention_size or max_message_size"
            )
        topic.update(self._settings(self.model.clusters[topic["cluster_id"]], fields))
        return 200, self._topic_view(topic)

    def _topic(self, method: str, body: Any, topic_id: str) -> Result:
        _no_body(body)
        topic = self._topic_record(topic_id)
        if method == "GET":
            return 200, self._topic_view(topic)
        del self.model.topics[topic_id]
        return 200, "OK"

    def _list_topics(self, method: str, body: Any, cluster_id: str) -> Result:
        _no_body(body)
        self._cluster_record(cluster_id)
        return 200, [
            self._topic_view(t) for t in self.model.topics.values() if t["cluster_id"] == cluster_id
        ]

    def _topic_stats(self, method: str, body: Any, topic_id: str) -> Result:
        _no_body(body)
        self._topic_record(topic_id)
        minute, _ = _now_labels()
        return 200, {
            **_zero_series(minute),
            "total_monthly_storage": 0,
            "total_monthly_produce": 0,
            "total_monthly_consume": 0,
        }

    # -- credentials ----------------------------------------------------------------------

    def _list_credentials(self, method: str, body: Any) -> Result:
        _no_body(body)
        return 200, [dict(c) for c in self.model.credentials.values()]

    def _create_credential(self, method: str, body: Any) -> Result:
        fields = _fields(
            body, {"credential_name": str, "cluster_id": str, "topic": str, "permissions": str}
        )
        cluster = self._cluster_record(fields["cluster_id"])
        if fields["permissions"] not in PERMISSIONS:
            raise _Refused(400, "permissions must be ALL, PRODUCE or CONSUME")
        slug = self._slug_of[cluster["cluster_id"]]
        credential = {
            "credential_id": str(uuid.uuid4()),
            "credential_name": fields["credential_name"],
            "topic": fields["topic"],
            "permissions": fields["permissions"],
            "cluster_id": cluster["cluster_id"],
            "cluster_slug": slug,
            "username": _username(slug),
            "creation_time": int(time.time()),
            "password": _password(72),
            "state": "active",
        }
        self.model.credentials[credential["credential_id"]] = credential
        return 200, dict(credential)

    def _delete_credential(self, method: str, body: Any, credential_id: str) -> Result:
        _no_body(body)
        if credential_id not in self.model.credentials:
            raise _Refused(404, "kafka credential not found")
        del self.model.credentials[credential_id]
        return 200, "OK"

    # -- connectors -----------------------------------------------------------------------

    def _connector_record(self, connector_id: str) -> dict[str, Any]:
        connector = self.model.connectors.get(connector_id)
        if connector is None:
            raise _Refused(404, "kafka connector not found")
        return connector

    @staticmethod
    def _properties(value: Any, *, what: str) -> dict[str, Any]:
        """Connector properties: a non-empty flat object of scalar values."""
        if not isinstance(value, dict) or not value:
            raise _Refused(400, f"{what} must be a non-empty JSON object")
        if len(value) > MAX_CONNECTOR_PROPERTIES:
            raise _Refused(400, f"at most {MAX_CONNECTOR_PROPERTIES} properties")
        for key, item in value.items():
            if not key.strip():
                raise _Refused(400, "property names must not be empty")
            if isinstance(item, dict | list) or item is None:
                raise _Refused(
                    400, f"property {key}: values are strings, numbers or booleans (flat)"
                )
        return value

    @staticmethod
    def _topics_of(properties: dict[str, Any]) -> list[str]:
        topics = properties.get("topics")
        if not isinstance(topics, str):
            return []
        return [t.strip() for t in topics.split(",") if t.strip()]

    def _connector_view(self, connector: dict[str, Any], *extra: str) -> dict[str, Any]:
        view = {k: connector[k] for k in CONNECTOR_KEYS}
        view["topics"] = list(view["topics"])
        if "properties" in extra:
            view["properties"] = dict(connector["properties"])
        view["encoded_username"] = connector["encoded_username"]
        if "TTL" in extra:
            view["TTL"] = connector["TTL"]
        return view

    def _settle(self, connector: dict[str, Any]) -> None:
        """A pending connector is running from the first read after its creation."""
        if connector["state"] == "pending":
            connector["state"] = "running"
            connector["connector_state"] = "RUNNING"

    def _create_connector(self, method: str, body: Any) -> Result:
        fields = _fields(body, {"name": str, "cluster_id": str, "properties": dict})
        cluster = self._cluster_record(fields["cluster_id"])
        properties = self._properties(fields["properties"], what="properties")
        connector_class = properties.get("connector.class")
        if not isinstance(connector_class, str) or not connector_class.strip():
            raise _Refused(400, "properties must name the connector.class")
        in_cluster = [
            c for c in self.model.connectors.values() if c["cluster_id"] == cluster["cluster_id"]
        ]
        if any(c["name"] == fields["name"] for c in in_cluster):
            raise _Refused(400, f"connector {fields['name']} already exists in this cluster")
        now = int(time.time())
        connector = {
            "connector_id": str(uuid.uuid4()),
            "name": fields["name"],
            "customer_id": self.customer_id,
            "cluster_id": cluster["cluster_id"],
            "creation_time": now,
            "deletion_time": 0,
            "state": "pending",
            "state_error_message": "",
            "connector_state": "",
            "tasks": [],
            "topics": self._topics_of(properties),
            "connector_class": connector_class,
            "properties": dict(properties),
            "encoded_username": _username(self._slug_of[cluster["cluster_id"]]),
            "TTL": now + CONNECTOR_TTL_S,
        }
        self.model.connectors[connector["connector_id"]] = connector
        return 200, self._connector_view(connector, "TTL")

    def _update_connector(self, method: str, body: Any, connector_id: str) -> Result:
        # The reference's examples send the properties themselves as the body.
        if isinstance(body, dict) and isinstance(body.get("properties"), dict):
            raise _Refused(400, "send the properties themselves as the body, not under properties")
        properties = self._properties(body, what="the request body (the properties)")
        connector = self._connector_record(connector_id)
        self._settle(connector)
        connector["properties"].update(properties)
        if isinstance(properties.get("connector.class"), str):
            connector["connector_class"] = properties["connector.class"]
        connector["topics"] = self._topics_of(connector["properties"])
        return 200, self._connector_view(connector)

    def _connector(self, method: str, body: Any, connector_id: str) -> Result:
        _no_body(body)
        connector = self._connector_record(connector_id)
        if method == "GET":
            self._settle(connector)
            return 200, self._connector_view(connector, "properties")
        del self.model.connectors[connector_id]
        return 200, "OK"

    def _list_connectors(self, method: str, body: Any, cluster_id: str) -> Result:
        _no_body(body)
        self._cluster_record(cluster_id)
        found = [c for c in self.model.connectors.values() if c["cluster_id"] == cluster_id]
        for connector in found:
            self._settle(connector)
        return 200, [self._connector_view(c, "properties") for c in found]

    def _connector_action(self, method: str, body: Any, connector_id: str, action: str) -> Result:
        _no_body(body)
        connector = self._connector_record(connector_id)
        state = {"pause": ("paused", "PAUSED")}.get(action, ("running", "RUNNING"))
        connector["state"], connector["connector_state"] = state
        return 200, "OK"

    # -- QStash ---------------------------------------------------------------------------

    def _new_qstash_token(self) -> None:
        user = self.model.qstash_user
        user["password"] = _password(24)
        claims = orjson.dumps({"UserID": user["id"], "Password": user["password"]})
        user["token"] = base64.b64encode(claims).decode()

    def _qstash_user(self, method: str, body: Any) -> Result:
        _no_body(body)
        return 200, dict(self.model.qstash_user)

    def _rotate_token(self, method: str, body: Any) -> Result:
        _no_body(body)
        self._new_qstash_token()
        return 200, dict(self.model.qstash_user)


def _zero_series(minute: str) -> dict[str, list[dict[str, Any]]]:
    """The four usage series of a stats answer, each one zero point (nothing runs here)."""
    series = [{"x": minute, "y": 0}]
    return {name: series for name in _SERIES}


_SERIES = ("throughput", "produce_throughput", "consume_throughput", "diskusage")


def _now_labels() -> tuple[str, str]:
    """Time labels as the reference writes them: series points and daily points."""
    now = time.gmtime()
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", now),
        time.strftime("%Y-%m-%d %H:%M:%S.000000000 +0000 UTC", now),
    )


def _last_days() -> list[str]:
    """Five weekday names ending today (the reference: "last 5 days of the week")."""
    today = time.time()
    return [time.strftime("%A", time.gmtime(today - 86400 * back)) for back in range(4, -1, -1)]
