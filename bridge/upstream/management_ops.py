"""Management commands: the operation table and the one entry point (`run_management`) used
by the admin socket and the CLI.

- `OPERATIONS`: the admin commands `DB ...` / `TEAM ...` / `KAFKA <object> ...` / `QSTASH ...`
  and `resp-bridge db|team|kafka|qstash ...` as data (name, parameters, which provider method
  implements it, destructive or not). HELP, usage errors and the README's table come from it.
- `open_client` builds the provider's client (`upstash_kafka_qstash`: the whole Upstash
  developer API, databases and teams from `upstash_api`, plus Kafka and QStash;
  `enterprise_api`: Redis Enterprise Software REST API) from the configuration; both build on
  `api_client`, which holds the HTTP client, its errors and credential masking. Results are
  plain JSON values with secrets masked by key unless asked for.

Imports go one way: this module -> providers -> api_client. Must not import trio (httpx runs
on whichever async library calls it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from bridge.upstream.api_client import (
    MASK,
    ApiClient,
    ManagementError,
    ManagementUsageError,
    redact_secrets,
    scrub,
)
from bridge.upstream.enterprise_api import EnterpriseAPI
from bridge.upstream.upstash_kafka_qstash import CLEANUP_POLICIES, PERMISSIONS, KafkaQStashAPI

if TYPE_CHECKING:
    from bridge.config import BridgeConfig

#: What the admin socket and the CLI use; the errors and masking are re-exported from
#: `api_client` so that callers of the management commands need one module only.
__all__ = [
    "ENTERPRISE",
    "MASK",
    "OPERATIONS",
    "PROVIDERS",
    "UPSTASH",
    "ManagementError",
    "ManagementUsageError",
    "default_provider",
    "help_lines",
    "open_client",
    "parse_command",
    "redact_secrets",
    "run_management",
    "scrub",
]

log = logging.getLogger("bridge.management")

# -- the operation table ----------------------------------------------------------------------

UPSTASH = "upstash"
ENTERPRISE = "enterprise"
PROVIDERS = (UPSTASH, ENTERPRISE)
#: The word a destructive admin command must end with (`--yes` on the CLI adds it).
CONFIRM = "CONFIRM"


@dataclass(frozen=True, slots=True)
class Call:
    """A provider method and its parameters: `name` required, `[name]` optional, `name...`
    one or more, `[name=kind]` optional and given as `name=value` anywhere among the words.
    Typed by name: `on|off` and `copy_cc` are booleans, `tls|notls` and
    `multizone|single-zone` too, `memory_size` an integer (bytes, K/M/G suffixes allowed),
    `property=value...` an object (`key=value` words or a JSON object)."""

    method: str
    params: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        return " ".join(p if p.startswith("[") else f"<{p}>" for p in self.params)


@dataclass(frozen=True, slots=True)
class Operation:
    group: str
    name: str
    summary: str
    upstash: Call | None = None
    enterprise: Call | None = None
    destructive: bool = False

    def call(self, provider: str) -> Call | None:
        return self.upstash if provider == UPSTASH else self.enterprise

    def usage(self, provider: str | None = None) -> str:
        """`DB RENAME <id> <name>`; labelled by provider where they differ."""
        forms: dict[str, list[str]] = {}
        for p in (provider,) if provider else PROVIDERS:
            call = self.call(p)
            if call is not None:
                text = f"{self.group} {self.name} {call.usage}".strip()
                if self.destructive:
                    text += f" {CONFIRM}"
                forms.setdefault(text, []).append(p)
        if len(forms) == 1 and (provider or len(next(iter(forms.values()))) == len(PROVIDERS)):
            return next(iter(forms))
        return " | ".join(f"{text} ({', '.join(ps)})" for text, ps in forms.items())


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "DB", "LIST", "list the databases",
        upstash=Call("list_databases"),
        enterprise=Call("list_databases", ("[fields]",)),
    ),
    Operation(
        "DB", "INFO", "details of one database (credentials masked)",
        upstash=Call("get_database", ("id",)),
        enterprise=Call("get_database", ("uid", "[fields]")),
    ),
    Operation(
        "DB", "STATS", "usage: latest value of each series and monthly totals",
        upstash=Call("database_stats", ("id",)),
        enterprise=Call("database_stats", ("uid",)),
    ),
    Operation(
        "DB", "CREATE", "create a regional database (Upstash) or a database (Enterprise)",
        upstash=Call("create_database", ("name", "region", "[tls|notls]")),
        enterprise=Call("create_database", ("name", "memory_size")),
    ),
    Operation(
        "DB", "CREATE-GLOBAL", "create a global database with a primary and read regions",
        upstash=Call("create_global_database", ("name", "primary_region", "[read_region...]")),
    ),
    Operation(
        "DB", "DELETE", "delete a database and its data",
        upstash=Call("delete_database", ("id",)),
        enterprise=Call("delete_database", ("uid",)),
        destructive=True,
    ),
    Operation("DB", "RENAME", "rename a database", upstash=Call("rename_database", ("id", "name"))),
    Operation(
        "DB", "RESET-PASSWORD", "new password and REST tokens (the old ones stop working)",
        upstash=Call("reset_password", ("id",)),
        destructive=True,
    ),
    Operation("DB", "ENABLE-TLS", "enable TLS", upstash=Call("enable_tls", ("id",))),
    Operation(
        "DB", "EVICTION", "turn eviction on or off", upstash=Call("set_eviction", ("id", "on|off"))
    ),
    Operation(
        "DB", "AUTO-UPGRADE", "turn auto-upgrade (auto scaling) on or off",
        upstash=Call("set_auto_upgrade", ("id", "on|off")),
    ),
    Operation(
        "DB", "READ-REGIONS", "set the read regions of a global database",
        upstash=Call("update_regions", ("id", "read_region...")),
    ),
    Operation(
        "DB", "MOVE", "move a database to a team", upstash=Call("move_to_team", ("id", "team_id"))
    ),
    Operation("DB", "CLUSTER", "cluster information", enterprise=Call("cluster_info")),
    Operation("DB", "NODES", "the cluster's nodes", enterprise=Call("list_nodes")),
    Operation("TEAM", "LIST", "list your teams", upstash=Call("list_teams")),
    Operation(
        "TEAM", "CREATE", "create a team (copy_cc: copy the credit card, on|off)",
        upstash=Call("create_team", ("name", "[copy_cc]")),
    ),
    Operation(
        "TEAM", "DELETE", "delete a team", upstash=Call("delete_team", ("team_id",)),
        destructive=True,
    ),
    Operation(
        "TEAM", "MEMBERS", "list a team's members", upstash=Call("list_members", ("team_id",))
    ),
    Operation(
        "TEAM", "ADD-MEMBER", "add a member with role admin, dev or finance",
        upstash=Call("add_member", ("team_id", "email", "role")),
    ),
    Operation(
        "TEAM", "REMOVE-MEMBER", "remove a member from a team",
        upstash=Call("remove_member", ("team_id", "email")),
        destructive=True,
    ),
    # -- Upstash Kafka: KAFKA <object> <operation> (objects: KAFKA_OBJECTS) --
    Operation(
        "KAFKA", "CLUSTER LIST", "list the Kafka clusters", upstash=Call("list_kafka_clusters")
    ),
    Operation(
        "KAFKA", "CLUSTER INFO", "details of one cluster (password masked)",
        upstash=Call("get_kafka_cluster", ("cluster_id",)),
    ),
    Operation(
        "KAFKA", "CLUSTER CREATE", "create a cluster (region eu-west-1 or us-east-1)",
        upstash=Call("create_kafka_cluster", ("name", "region", "[multizone|single-zone]")),
    ),
    Operation(
        "KAFKA", "CLUSTER RENAME", "rename a cluster",
        upstash=Call("rename_kafka_cluster", ("cluster_id", "name")),
    ),
    Operation(
        "KAFKA", "CLUSTER RESET-PASSWORD", "new cluster password (the old one stops working)",
        upstash=Call("reset_kafka_password", ("cluster_id",)),
        destructive=True,
    ),
    Operation(
        "KAFKA", "CLUSTER DELETE", "delete a cluster, its topics, credentials and connectors",
        upstash=Call("delete_kafka_cluster", ("cluster_id",)),
        destructive=True,
    ),
    Operation(
        "KAFKA", "TOPIC LIST", "list the topics of a cluster",
        upstash=Call("list_kafka_topics", ("cluster_id",)),
    ),
    Operation(
        "KAFKA", "TOPIC INFO", "details of one topic",
        upstash=Call("get_kafka_topic", ("topic_id",)),
    ),
    Operation(
        "KAFKA", "TOPIC CREATE",
        "create a topic; settings omitted are -1 (the highest the cluster allows), the "
        "cleanup policy delete; times in ms (or 30s/15m/12h/7d), sizes in bytes (or K/M/G)",
        upstash=Call("create_kafka_topic", (
            "cluster_id", "name", "partitions", "[cleanup_policy=delete|compact]",
            "[retention_time=ms]", "[retention_size=bytes]", "[max_message_size=bytes]",
        )),
    ),
    Operation(
        "KAFKA", "TOPIC RECONFIGURE", "change a topic's retention and message size (one or more)",
        upstash=Call("reconfigure_kafka_topic", (
            "topic_id", "[retention_time=ms]", "[retention_size=bytes]",
            "[max_message_size=bytes]",
        )),
    ),
    Operation(
        "KAFKA", "TOPIC DELETE", "delete a topic and its messages",
        upstash=Call("delete_kafka_topic", ("topic_id",)),
        destructive=True,
    ),
    Operation(
        "KAFKA", "CREDENTIAL LIST", "list the credentials (all clusters; not the default one)",
        upstash=Call("list_kafka_credentials"),
    ),
    Operation(
        "KAFKA", "CREDENTIAL CREATE", "create a credential for one topic, permissions ALL, "
        "PRODUCE or CONSUME (password masked)",
        upstash=Call("create_kafka_credential", ("cluster_id", "name", "topic", "permissions")),
    ),
    Operation(
        "KAFKA", "CREDENTIAL DELETE", "delete a credential (its clients are refused)",
        upstash=Call("delete_kafka_credential", ("credential_id",)),
        destructive=True,
    ),
    Operation(
        "KAFKA", "CONNECTOR LIST", "list the connectors of a cluster",
        upstash=Call("list_kafka_connectors", ("cluster_id",)),
    ),
    Operation(
        "KAFKA", "CONNECTOR INFO", "details of one connector (credentials in properties masked)",
        upstash=Call("get_kafka_connector", ("connector_id",)),
    ),
    Operation(
        "KAFKA", "CONNECTOR CREATE", "create a connector; properties as key=value words "
        "(connector.class=... required) or one JSON object",
        upstash=Call("create_kafka_connector", ("cluster_id", "name", "property=value...")),
    ),
    Operation(
        "KAFKA", "CONNECTOR RECONFIGURE", "change the given properties of a connector",
        upstash=Call("reconfigure_kafka_connector", ("connector_id", "property=value...")),
    ),
    Operation(
        "KAFKA", "CONNECTOR RESTART", "restart a connector",
        upstash=Call("restart_kafka_connector", ("connector_id",)),
    ),
    Operation(
        "KAFKA", "CONNECTOR START", "start a paused connector",
        upstash=Call("start_kafka_connector", ("connector_id",)),
    ),
    Operation(
        "KAFKA", "CONNECTOR PAUSE", "pause a connector",
        upstash=Call("pause_kafka_connector", ("connector_id",)),
    ),
    Operation(
        "KAFKA", "CONNECTOR DELETE", "delete a connector",
        upstash=Call("delete_kafka_connector", ("connector_id",)),
        destructive=True,
    ),
    Operation(
        "KAFKA", "STATS CLUSTER", "a cluster's usage: latest value of each series, monthly totals",
        upstash=Call("kafka_cluster_stats", ("cluster_id",)),
    ),
    Operation(
        "KAFKA", "STATS TOPIC", "a topic's usage: latest value of each series, monthly totals",
        upstash=Call("kafka_topic_stats", ("topic_id",)),
    ),
    # -- QStash --
    Operation(
        "QSTASH", "USER", "the QStash user: limits, state (password and token masked)",
        upstash=Call("qstash_user"),
    ),
    Operation(
        "QSTASH", "ROTATE-TOKEN", "new QStash token and password (the old ones stop working)",
        upstash=Call("rotate_qstash_token"),
        destructive=True,
    ),
)  # fmt: skip
_BY_NAME = {(op.group, op.name): op for op in OPERATIONS}
GROUPS = ("DB", "TEAM", "KAFKA", "QSTASH")
#: Groups whose operations are two words, an object and a verb (`KAFKA TOPIC CREATE`).
KAFKA_OBJECTS = ("CLUSTER", "TOPIC", "CREDENTIAL", "CONNECTOR", "STATS")
#: Groups only the Upstash developer API offers: they never default to Redis Enterprise.
UPSTASH_GROUPS = ("KAFKA", "QSTASH")


def help_lines(group: str | None = None) -> list[str]:
    """One line per operation: usage and summary (HELP of the admin socket, CLI help)."""
    lines = []
    for op in OPERATIONS:
        if group is None or op.group == group:
            lines.append(f"{op.usage()}  -- {op.summary}")
    return lines


def _bool(param: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "yes", "true", "1", "tls", "enable"):
        return True
    if lowered in ("off", "no", "false", "0", "notls", "disable"):
        return False
    raise ManagementUsageError(f"{param}: expected on or off, got {value!r}")


def _size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = value.strip().lower().removesuffix("b")
    factor = units.get(text[-1:], 1)
    if factor != 1:
        text = text[:-1]
    try:
        size = int(text) * factor
    except ValueError:
        raise ManagementUsageError(
            f"memory_size: expected bytes such as 1073741824 or 1G, got {value!r}"
        ) from None
    if size <= 0:
        raise ManagementUsageError("memory_size: must be positive")
    return size


#: Units of the Kafka settings given as `name=value` (plain numbers are ms or bytes).
_MS_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_BYTE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Parameters that must not be empty (ids and names).
_NON_EMPTY = (
    "id", "uid", "team_id", "name", "email", "cluster_id", "topic_id", "credential_id",
    "connector_id", "topic",
)  # fmt: skip


def _integer(name: str, value: str, units: dict[str, int], *, highest: bool) -> int:
    """An integer with an optional unit suffix; -1 (the highest possible) if `highest`."""
    text = value.strip().lower()
    if highest and text == "-1":
        return -1
    number, factor = text, 1
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            number, factor = text[: -len(unit)], units[unit]
            break
    if not number.isdigit() or int(number) <= 0:
        allowed = "a positive number"
        if units:
            allowed += f" ({', '.join(units)} suffixes)"
        if highest:
            allowed += " or -1 (the highest possible)"
        raise ManagementUsageError(f"{name}: expected {allowed}, got {value!r}")
    return int(number) * factor


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ManagementUsageError(f"{name}: expected {' or '.join(choices)}, got {value!r}")


def _properties(words: Sequence[str]) -> dict[str, Any]:
    """Connector properties from `key=value` words and/or JSON object words."""
    properties: dict[str, Any] = {}
    for word in words:
        if word.lstrip().startswith("{"):
            try:
                value = orjson.loads(word)
            except orjson.JSONDecodeError as exc:
                raise ManagementUsageError(f"properties: not a JSON object ({exc})") from None
            if not isinstance(value, dict):
                raise ManagementUsageError("properties: expected a JSON object")
            properties.update(value)
            continue
        key, sep, item = word.partition("=")
        if not sep or not key.strip():
            raise ManagementUsageError(
                f"property: expected key=value (e.g. connector.class=...), got {word!r}"
            )
        properties[key.strip()] = item
    return properties


def _convert(param: str, value: str) -> Any:
    name = param.strip("[]").removesuffix("...").partition("=")[0]
    if name in ("on|off", "copy_cc", "tls|notls"):
        return _bool(name, value)
    if name == "multizone|single-zone":
        if value.lower() in ("multizone", "multi-zone"):
            return True
        if value.lower() in ("single-zone", "singlezone"):
            return False
        return _bool("multizone", value)
    if name == "memory_size":
        return _size(value)
    if name == "partitions":
        return _integer(name, value, {}, highest=False)
    if name == "retention_time":
        return _integer(name, value, _MS_UNITS, highest=True)
    if name in ("retention_size", "max_message_size"):
        return _integer(name, value.removesuffix("b").removesuffix("B"), _BYTE_UNITS, highest=True)
    if name == "cleanup_policy":
        return _choice(name, value, CLEANUP_POLICIES)
    if name == "permissions":
        return _choice(name, value, PERMISSIONS)
    if name in _NON_EMPTY and not value.strip():
        raise ManagementUsageError(f"{name}: must not be empty")
    if name == "role" and value.lower() not in ("admin", "dev", "finance"):
        raise ManagementUsageError(f"role: expected admin, dev or finance, got {value!r}")
    return value.lower() if name == "role" else value


def _keyword(param: str) -> str | None:
    """`retention_time` for `[retention_time=ms]`; None for other parameters."""
    if param.startswith("[") and "=" in param and not param.endswith("..."):
        return param.strip("[]").partition("=")[0]
    return None


def bind_arguments(op: Operation, call: Call, args: Sequence[str]) -> list[Any]:
    """Positional values for `call` from the words after the operation name (`name=value`
    words first taken by the parameters of that name)."""
    usage = f"usage: {op.usage(None)}"
    values: list[Any] = []
    rest = list(args)
    given: dict[str, str] = {}
    names = [k for k in map(_keyword, call.params) if k is not None]
    if names:
        positional = []
        for word in rest:
            key, sep, value = word.partition("=")
            if sep and key.lower() in names:
                if key.lower() in given:
                    raise ManagementUsageError(f"{key.lower()} given twice; {usage}")
                given[key.lower()] = value
            else:
                positional.append(word)
        rest = positional
    for param in call.params:
        keyword = _keyword(param)
        if keyword is not None:
            raw = given.get(keyword)
            values.append(None if raw is None else _convert(param, raw))
        elif param.endswith("...]") or param.endswith("..."):
            if not rest and not param.startswith("["):
                raise ManagementUsageError(f"{param.strip('.')} missing; {usage}")
            if param == "property=value...":
                values.append(_properties(rest))
            else:
                values.append([_convert(param, v) for v in rest])
            rest = []
        elif param.startswith("["):
            if rest:
                values.append(_convert(param, rest.pop(0)))
        else:
            if not rest:
                raise ManagementUsageError(f"{param} missing; {usage}")
            values.append(_convert(param, rest.pop(0)))
    if rest:
        raise ManagementUsageError(f"unexpected argument {rest[0]!r}; {usage}")
    return values


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed management command: which operation, on which provider, with what values."""

    op: Operation
    provider: str
    call: Call
    values: list[Any]


def parse_command(
    words: Sequence[str], *, default_provider: str | None, confirmed: bool = False
) -> Request:
    """`["DB", "RENAME", "id", "new"]` (optionally with UPSTASH/ENTERPRISE after the group)
    → a Request. Destructive operations need a trailing CONFIRM (or `confirmed`)."""
    if not words or words[0].upper() not in GROUPS:
        raise ManagementUsageError(f"expected {' or '.join(GROUPS)} and an operation")
    group = words[0].upper()
    rest = list(words[1:])
    provider = default_provider
    explicit = bool(rest) and rest[0].lower() in PROVIDERS
    if explicit:
        provider = rest.pop(0).lower()
    if not rest:
        raise ManagementUsageError(f"{group}: which operation? try {group} HELP")
    name = rest.pop(0).upper()
    if group == "KAFKA":
        if name not in KAFKA_OBJECTS:
            objects = ", ".join(o.lower() for o in KAFKA_OBJECTS)
            raise ManagementUsageError(f"unknown KAFKA object {name} (one of {objects})")
        if not rest:
            raise ManagementUsageError(f"KAFKA {name}: which operation? try KAFKA HELP")
        name = f"{name} {rest.pop(0).upper()}"
    op = _BY_NAME.get((group, name))
    if op is None:
        raise ManagementUsageError(f"unknown operation {group} {name}; try {group} HELP")
    if group in UPSTASH_GROUPS and not explicit:
        provider = UPSTASH
    if op.destructive and rest and rest[-1].upper() == CONFIRM:
        rest.pop()
        confirmed = True
    if provider is None:
        raise ManagementUsageError(
            "no management API is configured: set upstash_email and upstash_api_key "
            "(UPSTASH_EMAIL, UPSTASH_API_KEY) for Upstash, or enterprise_url, enterprise_user "
            "and enterprise_password for Redis Enterprise"
        )
    call = op.call(provider)
    if call is None:
        other = [p for p in PROVIDERS if op.call(p) is not None]
        raise ManagementUsageError(
            f"{group} {name} is not available for {provider} (only {', '.join(other)})"
        )
    values = bind_arguments(op, call, rest)
    if op.destructive and not confirmed:
        raise ManagementUsageError(
            f"{group} {name} is destructive: repeat it with {CONFIRM} at the end "
            f"(resp-bridge {'db/team' if group in ('DB', 'TEAM') else group.lower()}: --yes)"
        )
    return Request(op, provider, call, values)


def default_provider(config: BridgeConfig) -> str | None:
    """Upstash when its credentials are set, else Redis Enterprise when its URL is set."""
    if config.upstash_email or config.upstash_api_key:
        return UPSTASH
    if config.enterprise_url:
        return ENTERPRISE
    return None


def open_client(
    config: BridgeConfig, provider: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> ApiClient:
    """The provider's client from the config; ManagementUsageError names a missing setting."""
    if provider == UPSTASH:
        missing = [n for n in ("upstash_email", "upstash_api_key") if not getattr(config, n)]
        if missing:
            raise ManagementUsageError(
                f"{' and '.join(missing)} not set (env UPSTASH_EMAIL / UPSTASH_API_KEY): "
                "the Upstash developer API needs the account email and an API key"
            )
        assert config.upstash_email and config.upstash_api_key
        return KafkaQStashAPI(
            config.upstash_email,
            config.upstash_api_key,
            base_url=config.upstash_api_url,
            transport=transport,
        )
    missing = [
        n for n in ("enterprise_url", "enterprise_user", "enterprise_password")
        if not getattr(config, n)
    ]  # fmt: skip
    if missing:
        raise ManagementUsageError(
            f"{', '.join(missing)} not set: the Redis Enterprise REST API needs its URL "
            "(https://<host>:9443), a user and a password"
        )
    assert config.enterprise_url and config.enterprise_user and config.enterprise_password
    return EnterpriseAPI(
        config.enterprise_url,
        config.enterprise_user,
        config.enterprise_password,
        ca_file=config.enterprise_ca_file,
        insecure=config.enterprise_insecure,
        transport=transport,
    )


async def run_management(
    config: BridgeConfig,
    words: Sequence[str],
    *,
    confirmed: bool = False,
    show_secrets: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Any:
    """Parse and run one `DB ...` / `TEAM ...` / `KAFKA ...` / `QSTASH ...` command; the JSON
    result, credentials masked
    unless `show_secrets` (only the CLI offers that, never the admin socket)."""
    request = parse_command(words, default_provider=default_provider(config), confirmed=confirmed)
    client = open_client(config, request.provider, transport=transport)
    async with client:
        result = await getattr(client, request.call.method)(*request.values)
    if request.op.destructive:
        log.info(
            "management: %s %s done on %s", request.op.group, request.op.name, request.provider
        )
    return result if show_secrets else redact_secrets(result)
