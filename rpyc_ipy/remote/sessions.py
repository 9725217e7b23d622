"""Notebook sessions on the server: each one a worker process that outlives connections.

A session is named by (authenticated user, session name). The first client to
attach starts its worker; a client that reconnects after a dropped connection
attaches to the same worker, with its namespace, running cells and their output.
A session nobody is attached to is reaped after ``idle_timeout`` seconds unless a
cell or a background job is still running in it::

    registry = SessionRegistry(RuntimeSettings(idle_timeout=3600))
    session, reattached = registry.attach("alice", "lab")
    session.engine().execute("x = 1")      # the worker's engine, as a netref
    registry.detach(session)                # the client went away; the worker stays
    registry.close()                        # the server stops: every worker ends

:class:`~rpyc_ipy.remote.service.ExecutionService` is what clients talk to; it
calls this module.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rpyc_ipy.core.connection import user_of
from rpyc_ipy.errors import (
    AuthenticationError,
    ConfigError,
    ConnectionClosed,
    SessionLimitError,
    WorkerError,
)
from rpyc_ipy.remote.supervisor import RunAs, Spawner, WorkerProcess, WorkerSpec

__all__ = ["RuntimeSettings", "Session", "SessionRegistry", "user_name"]

log = logging.getLogger("rpyc_ipy.remote")

#: how long a busy check of a detached worker may take before the reaper moves on
_BUSY_CHECK_TIMEOUT = 5.0
#: seconds a data channel ticket stays valid
_TICKET_LIFETIME = 60.0


@dataclass(frozen=True)
class RuntimeSettings:
    """How a server runs sessions; every field is checked once, here.

    * ``idle_timeout``: seconds a session with nobody attached and nothing running
      is kept (default 4 hours);
    * ``max_sessions_per_user``, ``max_sessions``: caps, each with a clear error;
    * ``allow_pickle``, ``capture_fd``: what each worker's engine allows;
    * ``max_buffered_output``: characters of output kept per cell for a client
      that is away (the oldest is dropped past it, and the client is told);
    * ``limits``: resource limits of each worker, e.g. ``{"RLIMIT_NOFILE": 1024,
      "RLIMIT_AS": 8 << 30, "RLIMIT_CPU": 3600}``;
    * ``run_as``: authenticated user name -> OS account its workers run as (the
      server must run as root); a user without an entry runs as the server's account
      unless ``require_run_as`` is set;
    * ``file_roots``: the folders where sessions may read and write files
      (``%rpyc_upload``/``%rpyc_download``); empty (the default): each worker's
      working directory and the home of the account it runs as.
    """

    idle_timeout: float = 4 * 3600.0
    max_sessions_per_user: int = 8
    max_sessions: int = 64
    allow_pickle: bool = False
    capture_fd: bool = True
    max_buffered_output: int = 4 << 20
    limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    run_as: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    require_run_as: bool = False
    file_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.idle_timeout, (int, float)) and self.idle_timeout > 0):
            raise ConfigError("idle_timeout must be a positive number of seconds")
        for name in ("max_sessions_per_user", "max_sessions", "max_buffered_output"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}")
        for name in ("allow_pickle", "capture_fd", "require_run_as"):
            if type(getattr(self, name)) is not bool:
                raise ConfigError(f"{name} must be True or False")
        import resource

        for key, value in self.limits.items():
            if not key.startswith("RLIMIT_") or not hasattr(resource, key) or \
                    type(value) is not int or value < 0:
                raise ConfigError(f"limits: {key}={value!r} is not a resource limit this "
                                  "system knows (e.g. RLIMIT_AS=8589934592)")
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))
        object.__setattr__(self, "run_as", MappingProxyType(dict(self.run_as)))
        import os

        roots = tuple(self.file_roots)
        if not all(type(r) is str and os.path.isabs(os.path.expanduser(r)) for r in roots):
            raise ConfigError("file_roots must be absolute folder paths, e.g. ('/srv/data',)")
        object.__setattr__(self, "file_roots", roots)
        if self.run_as or self.require_run_as:
            if os.geteuid() != 0:
                raise ConfigError("running workers as other accounts (run_as) needs a "
                                  "server running as root")

    def spec_for(self, user: str, session: str) -> WorkerSpec:
        account = self.run_as.get(user)
        if account is None and self.require_run_as:
            raise WorkerError(f"user {user!r} has no OS account to run as on this server; "
                              "ask its administrator to map one")
        return WorkerSpec(user=user, session=session, allow_pickle=self.allow_pickle,
                          capture_fd=self.capture_fd,
                          max_buffered_output=self.max_buffered_output, limits=self.limits,
                          file_roots=self.file_roots,
                          run_as=RunAs.for_account(account) if account else None)


class Session:
    """One (user, name) session and its worker; made by :class:`SessionRegistry`."""

    def __init__(self, registry: SessionRegistry, user: str, name: str) -> None:
        self.registry = registry
        self.user = user
        self.name = name
        self.created_at = time.time()
        self.worker: WorkerProcess | None = None
        #: why the last worker ended, when it ended on its own (reported to the user)
        self.death: str | None = None
        self.restarts = 0
        self.attached = 0
        self.detached_since: float | None = time.monotonic()
        self.closed = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        pid = self.worker.pid if self.worker else None
        return f"<Session {self.user or '(local)'}/{self.name} worker={pid}>"

    # -- the worker ---------------------------------------------------------------------

    def start(self) -> WorkerProcess:
        """The live worker, started now if the session has none yet. A worker that died
        is not replaced here: its death is reported until :meth:`restart`."""
        with self._lock:
            if self.closed:
                raise WorkerError(f"session {self.name!r} was closed")
            if self.death is not None:
                raise WorkerError(self.death_report())
            if self.worker is None or not self.worker.alive:
                spec = self.registry.settings.spec_for(self.user, self.name)
                self.worker = WorkerProcess.spawn(spec, on_exit=self._on_exit,
                                                  spawner=self.registry.spawner)
                log.info("session %s/%s: worker %d started", self.user or "(local)", self.name,
                         self.worker.pid)
            return self.worker

    def engine(self) -> Any:
        """The worker's engine as a netref; a dead worker is reported, not replaced."""
        with self._lock:
            worker = self.worker
            if worker is None or not worker.alive:
                raise WorkerError(self.death_report())
            return worker.root

    def call(self, method: str, *args: Any) -> Any:
        """Call the worker's engine; a worker that dies meanwhile is reported as such."""
        with self._lock:
            worker = self.worker
            if worker is None or not worker.alive:
                raise WorkerError(self.death_report())
        try:
            return worker.call(method, *args)
        except ConnectionClosed:
            worker.exited.wait(2.0)  # its watcher records the cause
            if worker.terminated_on_request:
                raise WorkerError(f"the worker of session {self.name!r} was restarted while "
                                  "this ran; its namespace is gone") from None
            raise WorkerError(self.death_report()) from None

    def death_report(self) -> str:
        """One line for the user: why there is no worker, and what to do."""
        if self.death:
            return (f"the worker of session {self.name!r} {self.death}; its namespace is "
                    "gone: %rpyc_restart starts a fresh one")
        return f"session {self.name!r} has no worker: %rpyc_restart starts one"

    def interrupt(self) -> str:
        """``SIGINT`` to the worker's process group (the stop button)."""
        worker = self.worker
        if worker is None or not worker.alive:
            raise WorkerError(self.death_report())
        return "interrupted" if worker.interrupt() else "the worker is gone"

    def restart(self, grace: float = 2.0) -> WorkerProcess:
        """End the worker (SIGTERM, then SIGKILL) and start a fresh one."""
        with self._lock:
            old = self.worker
            if old is not None and old.alive:
                old.terminate(grace)
            self.worker = None
            self.death = None
            self.restarts += 1
            return self.start()

    def close(self, grace: float = 2.0) -> None:
        with self._lock:
            self.closed = True
            worker, self.worker = self.worker, None
        if worker is not None and worker.alive:
            worker.terminate(grace)

    def busy(self) -> bool:
        """True if a cell or background job runs (or the worker does not answer)."""
        worker = self.worker
        if worker is None or not worker.alive:
            return False
        try:
            result = worker.call_async("running")
            result.wait(_BUSY_CHECK_TIMEOUT)
            return bool(result.value)
        except Exception:
            return True  # a worker too busy to answer is busy

    def info(self) -> tuple[tuple[str, Any], ...]:
        worker = self.worker
        alive = worker is not None and worker.alive
        return (("session", self.name), ("user", self.user),
                ("pid", worker.pid if alive and worker else None),
                ("created", self.created_at), ("restarts", self.restarts),
                ("attached", self.attached), ("died", None if alive else self.death))

    def _on_exit(self, worker: WorkerProcess) -> None:
        if worker.terminated_on_request:
            return
        self.death = f"{worker.exit_cause}{worker.last_words()}"
        log.warning("session %s/%s: worker %d %s", self.user or "(local)", self.name,
                    worker.pid, self.death)


class SessionRegistry:
    """Every session of one server; see the module docstring."""

    def __init__(self, settings: RuntimeSettings | None = None,
                 spawner: Spawner | None = None) -> None:
        self.settings = settings or RuntimeSettings()
        self.spawner = spawner
        self._sessions: dict[tuple[str, str], Session] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._counter = 0
        self._tickets: dict[str, tuple[Session, float]] = {}

    def attach(self, user: str, name: str | None = None, new: bool = False
               ) -> tuple[Session, bool]:
        """The session (user, name), started if needed; ``new`` replaces an existing
        one with a fresh worker. Returns ``(session, reattached)``."""
        with self._cond:
            if self._closed:
                raise WorkerError("the server is shutting down")
            if name is None:
                self._counter += 1
                name = f"session{self._counter}"
                while (user, name) in self._sessions:
                    self._counter += 1
                    name = f"session{self._counter}"
            key = (user, name)
            session = self._sessions.get(key)
            existed = session is not None
            if session is None:
                self._check_caps(user)
                session = self._sessions[key] = Session(self, user, name)
            session.attached += 1
            session.detached_since = None
            self._ensure_reaper()
        try:
            if new and existed:
                session.restart()
            elif session.death is None:
                session.start()
        except BaseException:
            self.detach(session)
            with self._cond:
                if session.worker is None and self._sessions.get(key) is session:
                    del self._sessions[key]
            raise
        return session, existed and not new

    def detach(self, session: Session) -> None:
        """A client of ``session`` went away."""
        with self._cond:
            session.attached = max(0, session.attached - 1)
            if session.attached == 0:
                session.detached_since = time.monotonic()
                self._cond.notify_all()

    def issue_ticket(self, session: Session) -> str:
        """A one-time token that lets a data channel of the same user reach ``session``'s
        worker (:mod:`rpyc_ipy.servers.channels`); it expires after a minute."""
        ticket = secrets.token_hex(16)
        now = time.monotonic()
        with self._cond:
            for old, (_, issued) in list(self._tickets.items()):
                if now - issued > _TICKET_LIFETIME:
                    del self._tickets[old]
            self._tickets[ticket] = (session, now)
        return ticket

    def redeem(self, ticket: str, user: str) -> Session:
        """The session a ticket was issued for; ``AuthenticationError`` if it is unknown,
        used, expired, or another user's."""
        with self._cond:
            entry = self._tickets.pop(ticket, None)
        if entry is None or time.monotonic() - entry[1] > _TICKET_LIFETIME or \
                entry[0].user != user:
            raise AuthenticationError("unknown or expired channel ticket")
        return entry[0]

    def sessions_of(self, user: str) -> list[Session]:
        with self._cond:
            return [s for (u, _), s in self._sessions.items() if u == user]

    def close_session(self, session: Session) -> None:
        """End a session and its worker."""
        with self._cond:
            if self._sessions.get((session.user, session.name)) is session:
                del self._sessions[(session.user, session.name)]
        session.close()

    def close(self) -> None:
        """End every session (the server stops)."""
        with self._cond:
            self._closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._cond.notify_all()
        for session in sessions:
            session.close(grace=1.0)

    def __len__(self) -> int:
        with self._cond:
            return len(self._sessions)

    def _check_caps(self, user: str) -> None:
        settings = self.settings
        if len(self._sessions) >= settings.max_sessions:
            raise SessionLimitError(
                f"this server runs its maximum of {settings.max_sessions} sessions; close "
                "one (%rpyc_disconnect --close) or ask its administrator")
        mine = sum(1 for u, _ in self._sessions if u == user)
        if mine >= settings.max_sessions_per_user:
            raise SessionLimitError(
                f"you have {mine} sessions on this server, its maximum per user; close one "
                "(%rpyc_disconnect --close NAME) first")

    # -- reaping ------------------------------------------------------------------------

    def _ensure_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="rpyc_ipy-reaper",
                                            daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        """Sleep until the earliest idle deadline (not at all while none is pending)."""
        timeout = self.settings.idle_timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                due = [s for s in self._sessions.values()
                       if s.detached_since is not None and now - s.detached_since >= timeout]
                if due:
                    self._cond.release()
                    try:
                        self._reap(due)
                    finally:
                        self._cond.acquire()
                    continue
                pending = [s.detached_since + timeout for s in self._sessions.values()
                           if s.detached_since is not None]
                self._cond.wait(max(0.0, min(pending) - now) if pending else None)

    def _reap(self, due: list[Session]) -> None:
        for session in due:
            if session.busy():
                with self._cond:  # busy: look again after another idle period
                    if session.detached_since is not None:
                        session.detached_since = time.monotonic()
                continue
            with self._cond:
                if session.detached_since is None:  # somebody attached meanwhile
                    continue
                self._sessions.pop((session.user, session.name), None)
            idle = self.settings.idle_timeout
            log.info("session %s/%s: reaped after %.0f s with nobody attached",
                     session.user or "(local)", session.name, idle)
            session.close()


def user_name(credentials: Any) -> str:
    """The user a connection authenticated as: an SRP name, a certificate's common
    name (``"certificate"`` if it has none), or ``""`` for an unauthenticated peer."""
    name = user_of(credentials)
    if name is not None:
        return name
    return "certificate" if isinstance(credentials, dict) else ""

