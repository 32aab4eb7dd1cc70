"""A `ServerContext` for session tests without I/O, and helpers to drive one session."""

from __future__ import annotations

from collections.abc import Iterable

from bridge.core.actions import Reply
from bridge.core.session import Session


class FakeServer:
    """A server with databases 0..databases-1; `shared`: all on one Redis server (embedded)."""

    def __init__(
        self, requirepass: str | None = None, *, databases: int = 1, shared: bool = False
    ) -> None:
        self.requirepass = requirepass
        self.databases = databases
        self.shared = shared
        self.server_version = "7.2.4"
        self.read_only = False
        self.refusals: list[tuple[str, str]] = []
        self.monitors = False
        self.all: list[Session] = []

    def sessions(self) -> Iterable[Session]:
        return self.all

    def bridge_info(self) -> str:
        return "# Bridge\r\nbridge_version:test\r\n"

    def kill_client(self, client_id: int) -> bool:
        return False

    def note_refusal(self, client: object, command: str, reason: str) -> None:
        self.refusals.append((command, reason))

    def database_problem(self, index: int) -> str | None:
        if 0 <= index < self.databases:
            return None
        return f"ERR DB index {index} is not configured: add a [databases.{index}] table"

    def database_count(self) -> int:
        return self.databases

    def databases_share_server(self) -> bool:
        return self.shared


def make_session(server: FakeServer) -> Session:
    session = Session(1, server, "127.0.0.1:5000", "127.0.0.1:6379")
    server.all.append(session)
    return session


def reply(session: Session, *args: bytes) -> bytes:
    action = session.handle(list(args))
    assert isinstance(action, Reply), action
    return action.data
