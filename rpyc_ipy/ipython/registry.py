"""The sessions of one IPython shell, by name, and which one is the default."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rpyc_ipy.core.connection import Connection
from rpyc_ipy.errors import UsageError

if TYPE_CHECKING:
    from rpyc_ipy.ipython.session import RemoteSession

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """The sessions of one IPython shell, by name, and the default one."""

    def __init__(self) -> None:
        self._sessions: dict[str, RemoteSession] = {}
        self.default: str = ""

    def __iter__(self) -> Iterator[RemoteSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, name: object) -> bool:
        return name in self._sessions

    def names(self) -> list[str]:
        return list(self._sessions)

    def add(self, session: RemoteSession) -> None:
        old = self._sessions.get(session.name)
        if old is not None and old is not session:
            old.close()
        self._sessions[session.name] = session
        if not self.default or self.default not in self._sessions:
            self.default = session.name

    def get(self, name: str | None = None) -> RemoteSession:
        """The named session, or the default one; ``UsageError`` if there is none."""
        key = name or self.default
        if not key:
            raise UsageError("no session: connect with %rpyc_connect [NAME=]HOST:PORT")
        session = self._sessions.get(key)
        if session is None:
            known = ", ".join(self._sessions) or "none"
            raise UsageError(f"no session named {key!r} (sessions: {known})")
        return session

    def for_conn(self, conn: Connection) -> RemoteSession | None:
        """The session a connection belongs to (its data channel or its control
        connection, whichever it uses now: they change when it re-attaches)."""
        for session in self._sessions.values():
            if session.conn is conn or session.control is conn:
                return session
        return None

    def remove(self, name: str) -> RemoteSession:
        session = self.get(name)
        del self._sessions[name]
        session.close()
        if self.default == name:
            self.default = next(iter(self._sessions), "")
        return session

    def close_all(self) -> None:
        for name in list(self._sessions):
            with contextlib.suppress(Exception):
                self.remove(name)
