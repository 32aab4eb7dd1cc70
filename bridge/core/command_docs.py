"""Human documentation of the command table: the README summary and `resp-bridge commands`.

Generated from `bridge.core.commands`, so the docs cannot drift from what the bridge does.
"""

from __future__ import annotations

from collections import defaultdict

from bridge.core.commands import CommandSpec, Route, all_commands

# What happens to each route, in words (the session's behaviour, see bridge/core/session.py).
ROUTE_TITLES = {
    Route.LOCAL: "Answered by the bridge itself",
    Route.TRANSACTION: "Transactions (queued in the bridge, EXEC sent as one /multi-exec)",
    Route.FORWARD: "Forwarded to the REST API (auto-batched into /pipeline)",
    Route.PUBSUB: "Pub/Sub and MONITOR (relayed from shared SSE streams)",
    Route.BLOCKING: "Blocking commands (emulated: polling with local wake-ups)",
    Route.REFUSED: "Refused, with the reason",
}


def _entries() -> list[CommandSpec]:
    """Top-level commands, with containers replaced by their subcommands."""
    out: list[CommandSpec] = []
    for spec in sorted(all_commands(), key=lambda s: s.name):
        if spec.subcommands:
            out.extend(sorted(spec.subcommands.values(), key=lambda s: s.name))
        else:
            out.append(spec)
    return out


def _display(spec: CommandSpec) -> str:
    return spec.name.replace("|", " ").upper()


def commands_markdown() -> str:
    by_route: dict[Route, list[CommandSpec]] = defaultdict(list)
    for spec in _entries():
        by_route[spec.route].append(spec)
    lines: list[str] = []
    for route, title in ROUTE_TITLES.items():
        specs = by_route.get(route, [])
        if not specs:
            continue
        lines.append(f"**{title}** ({len(specs)}):")
        lines.append("")
        if route is Route.REFUSED:
            reasons: dict[str, list[str]] = defaultdict(list)
            for spec in specs:
                reasons[spec.reason or "not available over the REST API"].append(_display(spec))
            lines.append("| commands | reason |")
            lines.append("|---|---|")
            for reason, names in sorted(reasons.items()):
                lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {reason} |")
        elif route is Route.FORWARD:
            groups: dict[str, list[str]] = defaultdict(list)
            for spec in specs:
                groups[spec.group or "other"].append(_display(spec))
            lines.append("| group | commands |")
            lines.append("|---|---|")
            for group, names in sorted(groups.items()):
                lines.append(f"| {group} | {', '.join(f'`{n}`' for n in names)} |")
        else:
            lines.append(", ".join(f"`{_display(s)}`" for s in specs))
        lines.append("")
    lines.append(
        "Commands unknown to the table (newer Redis versions, modules such as RedisJSON) are "
        "forwarded: the upstream decides."
    )
    return "\n".join(lines) + "\n"


def commands_text() -> str:
    lines = []
    for spec in _entries():
        route = spec.route.name.lower()
        reason = f"  ({spec.reason})" if spec.reason else ""
        lines.append(f"{_display(spec):<28} {route}{reason}")
    return "\n".join(lines) + "\n"
