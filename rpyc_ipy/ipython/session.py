"""Sessions: named, authenticated connections to a remote Python, and what you do with them.

The magics build sessions with :func:`open_session`; the kernel (and your own
code) can too::

    target = ConnectionTarget("10.0.0.5", 18861, srp_user="alice", session_name="gpu")
    sess = open_session(target, password=pw)
    outcome = sess.execute("import torch; torch.cuda.device_count()",
                           on_stream=lambda name, text: print(text, end=""))
    outcome.data["text/plain"]           # '2'
    sess.ns.torch.__version__            # the remote namespace, as netrefs
    sess.complete("torch.cu", 8)         # one request
    sess.close()

A session talks to one of three kinds of server:

* ``"execution"``: an :class:`~rpyc_ipy.remote.ExecutionService` (the full feature set).
  The session there is named like this one; it runs in a worker process that outlives
  the connection: :meth:`RemoteSession.reconnect` re-attaches to it (a running cell's
  output resumes where it stopped), :meth:`~RemoteSession.restart` replaces the worker,
  :meth:`~RemoteSession.interrupt` sends it SIGINT. Cells and requests go through a
  data channel that the server relays to the worker undecoded;
* ``"classic"``: a classic RPyC server (``--classic``): the engine is shipped there by
  source (:mod:`rpyc_ipy.remote.bootstrap`), or, if that fails, cells fall back to
  plain ``execute``/``eval``;
* ``"service"``: any other service: netrefs work, cells do not.

This module does not import IPython: a kernel can use it as is.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from rpyc_ipy import factory
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.helpers import async_
from rpyc_ipy.core.service import ClassicClient, VoidService
from rpyc_ipy.errors import RPyCError, UsageError
from rpyc_ipy.ipython.backlog import EventBacklog
from rpyc_ipy.ipython.cards import session_html, session_text
from rpyc_ipy.ipython.events import DisplayCallback, StreamCallback, dispatch_event, parse_bundle
from rpyc_ipy.ipython.execution import (
    CellInterrupted,
    ExecutionOutcome,
    RemoteExecution,
    wait_all,
)
from rpyc_ipy.ipython.plain_classic import PlainClassic
from rpyc_ipy.ipython.text import sanitize_text
from rpyc_ipy.ipython.transfer import Progress, TransferResult, download, upload
from rpyc_ipy.remote.bootstrap import install_engine
from rpyc_ipy.remote.values import (
    CHUNK,
    DATA_EXTRA,
    NotByValue,
    Outbox,
    TooLarge,
    available_kinds,
    pack,
    unpack,
)
from rpyc_ipy.target import ConnectionTarget
from rpyc_ipy.transports.sockets import is_loopback

__all__ = ["PUSH_BATCH_BYTES", "RemoteSession", "SessionError", "open_session"]

#: packed bytes of values one push request carries (a larger value goes alone)
PUSH_BATCH_BYTES = 4 << 20
#: ``on_progress(done, total)``: how far a transfer is (``Progress.update`` fits)
ProgressCallback = Callable[[int, int], None]


class SessionError(RPyCError):
    """A session cannot do what was asked (cannot connect, refused, closed, wrong kind
    of server). IPython shows it as one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{type(self).__name__}: {sanitize_text(str(self))}\x1b[0m"]


def open_session(target: ConnectionTarget, *, password: str | None = None,
                 config: dict[str, Any] | None = None, capture_fd: bool = True,
                 new: bool = False, on_stage: Callable[[str], None] | None = None
                 ) -> RemoteSession:
    """Connect to ``target``, authenticate and identify the server; returns a
    :class:`RemoteSession` named ``target.session_name``.

    An SRP target needs ``password`` (kept by the session, in memory only, to
    re-attach after a dropped connection); other targets take none. On an execution
    server the session of that name is re-attached if it exists; ``new`` starts it
    afresh instead. ``on_stage(text)`` is told each step as it starts ("connecting to
    host:port", "TLS handshake", "SRP login", "starting the session's worker", ...),
    for a progress line; a ``KeyboardInterrupt`` at any step closes what was opened.
    """
    if target.srp_user is None and password is not None:
        raise UsageError(f"a password goes with SRP (srp_user); the target {target.address} "
                         f"is {'TLS with certificates' if target.auth == 'tls' else 'plaintext'}")
    if target.srp_user is not None and not password:
        raise UsageError(f"SRP needs a password for {target.label}")
    service = ClassicClient if target.classic else VoidService
    transport = {"srp": "TLS-SRP", "tls": "TLS"}.get(target.auth, "TCP")

    def connector(channel_ticket: str | None = None,
                  on_stage: Callable[[str], None] | None = None) -> Connection:
        if target.srp_user is not None:
            assert password is not None
            return factory.srp_connect(target.host, target.port, target.srp_user, password,
                                       service=service, config=config, timeout=target.timeout,
                                       channel_ticket=channel_ticket, on_stage=on_stage)
        if target.auth == "tls":
            return factory.ssl_connect(target.host, target.port, keyfile=target.key,
                                       certfile=target.cert, ca_certs=target.ca,
                                       service=service, config=config,
                                       fingerprint=target.fingerprint, timeout=target.timeout,
                                       channel_ticket=channel_ticket, on_stage=on_stage)
        return factory.connect(target.host, target.port, service=service, config=config,
                               insecure=target.insecure, timeout=target.timeout,
                               channel_ticket=channel_ticket, on_stage=on_stage)

    started = time.monotonic()
    conn = connector(on_stage=on_stage)
    try:
        session = RemoteSession(target.session_name, conn, host=target.host, port=target.port,
                                transport=transport, classic=target.classic,
                                capture_fd=capture_fd, connector=connector, new=new,
                                on_stage=on_stage)
        session.connect_time = time.monotonic() - started
        return session
    except BaseException:
        conn.close()
        raise


class RemoteSession:
    """One named connection and the remote interpreter behind it; see the module docstring.

    ``sess.ns`` is the remote namespace as a netref; :meth:`execute`,
    :meth:`complete`, :meth:`inspect`, :meth:`describe`, :meth:`push`,
    :meth:`pull` are one request each (plus streamed output for ``execute``).
    """

    def __init__(self, name: str, conn: Connection, *, host: str = "", port: int = 0,
                 transport: str = "", classic: bool = False, capture_fd: bool = True,
                 request_timeout: float = 30.0,
                 connector: Callable[..., Connection] | None = None, new: bool = False,
                 on_stage: Callable[[str], None] | None = None) -> None:
        self.name = name
        #: the connection cells and requests use: the worker's data channel, if there is one
        self.conn = conn
        #: the connection to the server itself (attach, interrupt, restart), if it has sessions
        self.control: Connection | None = None
        #: the server-side session: its worker pid, whether this connect re-attached, ...
        self.remote: dict[str, Any] = {}
        self._connector = connector
        #: why cells go through the server rather than a data channel, if they do
        self.channel_note = ""
        self.host = host
        self.port = port
        self.transport = transport
        self.capture_fd = capture_fd
        self.request_timeout = request_timeout
        self.connect_time = 0.0
        self.rtt: float | None = None
        self.executions = 0
        self.info: dict[str, Any] = {}
        self.backend: Any = None
        self.blocking_execute = True
        self.fallback_reason = ""
        self._ns: Any = None
        self._serving = 0
        self._serving_lock = threading.Lock()
        stage = on_stage or _no_stage
        try:
            if classic:
                self.kind = "classic"
                stage("installing the engine")
                self._attach_classic()
            else:
                stage("identifying the server")
                self._attach_service(new, stage)
            self.ping()
        except BaseException:  # Ctrl-C or a failure: the data channel too is closed
            self.close()
            raise

    def _attach_service(self, new: bool, stage: Callable[[str], None]) -> None:
        root = self.conn.root
        try:
            service = root.get_service_name()
        except Exception as exc:  # an ExecutionService refusing an unauthenticated peer
            raise SessionError(f"the server refused: {_message(exc)}") from None
        try:
            hello = root.hello(())
        except Exception:
            self.kind = "service"
            self.info = {"service": service if type(service) is str else "?"}
            return
        self.kind = "execution"
        self.backend = root
        self.info = _pairs_dict(hello)
        features = self.info.get("features", ())
        if type(features) is tuple and "sessions" in features:
            self.control = self.conn
            self._attach_worker(new, stage)

    def _attach_worker(self, new: bool, stage: Callable[[str], None] | None = None) -> None:
        """Attach to the server-side session of this name; open its data channel."""
        assert self.control is not None
        stage = stage or _no_stage
        stage("starting the session's worker")
        try:
            self.remote = _pairs_dict(self.control.root.attach(self.name, new))
        except Exception as exc:
            raise SessionError(f"the server cannot start session {self.name!r}: "
                               f"{_message(exc)}") from None
        self._open_channel(stage)

    def _open_channel(self, stage: Callable[[str], None] | None = None) -> None:
        """Talk to the worker through a data channel where the server relays them; a
        session whose worker died has none (requests then report the death)."""
        assert self.control is not None
        features = self.info.get("features", ())
        self.channel_note = ""
        if "channels" in features and self._connector is not None and \
                not self.remote.get("died"):
            try:
                (stage or _no_stage)("opening the data channel")
                ticket = self.control.root.channel_ticket()
                channel = self._connector(channel_ticket=ticket)
                self.backend = channel.root
            except (OSError, RPyCError) as exc:
                # the server forwards every request as well: slower for bulk, but it works
                self.channel_note = (f"no data channel ({_message(exc)}); requests go "
                                     "through the server")
                self.conn = self.control
            else:
                self.conn = channel
                self._keep_serving()
                self._ns = None
                return
        self.backend = self.conn.root
        self._ns = None

    def _keep_serving(self) -> None:
        with self._serving_lock:
            if self._serving:  # cells in flight: the worker calls back on the new connection
                self.conn.start_serving()

    # -- the server-side session (execution servers) ----------------------------------------

    @property
    def has_worker(self) -> bool:
        """The server runs this session in a worker process that outlives connections."""
        return self.control is not None

    def reconnect(self) -> dict[str, Any]:
        """Connect again and re-attach to the server-side session (after a dropped
        connection); returns its facts (``running``: ids of cells still running)."""
        if self._connector is None or not self.has_worker:
            raise SessionError(f"session {self.name!r} cannot re-attach: it has no worker "
                               "on the server")
        for conn in (self.conn, self.control):
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
        conn = self._connector()
        try:
            self.conn = conn
            self.control = conn
            self._attach_worker(False)
        except BaseException:
            conn.close()
            raise
        if self.conn is conn:  # no data channel: the cells' callbacks come on this one
            self._keep_serving()
        self.ping()
        return self.remote

    def reattach(self, attempts: int = 5, delay: float = 0.5,
                 give_up: threading.Event | None = None) -> dict[str, Any]:
        """:meth:`reconnect`, tried ``attempts`` times ``delay`` seconds apart (doubling),
        until ``give_up`` is set: what a cell does when its connection drops."""
        failure: BaseException | None = None
        stop = give_up or threading.Event()
        for attempt in range(attempts):
            if stop.is_set():
                break
            try:
                return self.reconnect()
            except (OSError, RPyCError) as exc:
                failure = exc
                stop.wait(delay * 2 ** attempt)
        raise failure or SessionError(f"stopped re-attaching session {self.name!r}")

    def interrupt(self) -> str:
        """SIGINT to the session's worker process (what the stop button escalates to)."""
        if self.control is None:
            raise SessionError(f"session {self.name!r} has no worker to interrupt")
        return str(self.control.root.interrupt())

    def restart(self) -> dict[str, Any]:
        """Replace the session's worker with a fresh one: its namespace is lost."""
        if self.control is None:
            raise SessionError(f"session {self.name!r} has no worker to restart (only "
                               "rpyc_ipy execution servers run sessions in workers)")
        data = self.conn if self.conn is not self.control else None
        self.remote = _pairs_dict(self.control.root.restart())
        if data is not None:
            with contextlib.suppress(Exception):
                data.close()
            self.conn = self.control
        self._open_channel()
        return self.remote

    def status(self) -> dict[str, Any]:
        """The server-side session's facts now (``died``: why its worker ended, if it did)."""
        if self.control is None:
            return {}
        for info in self.control.root.sessions():
            facts = _pairs_dict(info)
            if facts.get("session") == self.name:
                return facts
        return {}

    def jobs(self) -> list[dict[str, Any]]:
        """The session's running and kept executions, oldest first (``id``, ``status``,
        ``background``, ``started``, ``elapsed``, ``code``)."""
        self._require_jobs()
        raw = self._call("jobs")
        return [_pairs_dict(job) for job in raw] if type(raw) is tuple else []

    def start_job(self, code: str, *, include: tuple[str, ...] | None = None,
                  max_bundle_bytes: int = 8 << 20, grace: float = 0.25) -> str:
        """Start ``code`` as a background job: it runs on the server whether or not
        anybody is attached; returns its id for :meth:`follow` and :meth:`cancel_job`."""
        self._require_jobs()
        options = (("background", True), ("include", include),
                   ("max_bundle_bytes", int(max_bundle_bytes)), ("grace", float(grace)),
                   ("capture_fd", self.capture_fd))
        self.executions += 1
        return str(self._call("start", code, None, options))

    def follow(self, exec_id: str, events: EventBacklog) -> RemoteExecution:
        """Follow a job (or any kept execution): its output so far, then what it prints,
        then its outcome go to ``events`` as for :meth:`start`; wait with ``wait_all``."""
        self._require_jobs()
        self._serve_in_background()
        execution = RemoteExecution(self, events, {}, on_finish=self._stop_background,
                                    exec_id=exec_id)
        try:
            execution.resume()
        except BaseException as exc:
            execution.finish_failure(exc)
            raise
        return execution

    def cancel_job(self, exec_id: str) -> str:
        """Stop a running job: ``"cancelling"`` or ``"not running"``."""
        self._require_jobs()
        return str(self._call("cancel", exec_id, False))

    def _require_jobs(self) -> None:
        self._require_engine("jobs")
        if not self.blocking_execute:  # following a job would block its only request thread
            raise SessionError(f"session {self.name!r}: background jobs need an rpyc_ipy "
                               "execution server (a classic server serves one request at "
                               "a time)")
        if "jobs" not in self.info.get("features", ()):
            raise SessionError(f"session {self.name!r}: the server's engine "
                               f"{self.info.get('engine', '?')!r} runs no background jobs")

    def _attach_classic(self) -> None:
        try:
            self.backend = install_engine(self.conn, capture_fd=self.capture_fd)
            self.blocking_execute = False
            self.info = _pairs_dict(self.backend.hello())
        except Exception as exc:  # an old Python there, or a restricted classic server
            self.backend = PlainClassic(self.conn)
            self.fallback_reason = f"{type(exc).__name__}: {exc}"
            self.info = {"service": "classic", "engine": "plain execute/eval",
                         "grants": (("classic", "full control of the server process"),)}

    # -- facts ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return session_text(self)

    def _repr_html_(self) -> str:
        return session_html(self)

    @property
    def closed(self) -> bool:
        return self.conn.closed and (self.control is None or self.control.closed)

    def closed_error(self) -> SessionError:
        """The error for using a closed session: what happened and how to get back."""
        where = f"{self.host}:{self.port}" if self.host else "HOST:PORT"
        return SessionError(f"session {self.name!r} is closed (its connection ended, e.g. the "
                            f"server restarted): %rpyc_connect {self.name}={where} with the "
                            "same options connects it again")

    @property
    def user(self) -> str | None:
        credentials = self.conn.credentials
        if isinstance(credentials, str):
            return credentials
        return self.conn.transport_info.srp_user

    @property
    def pickle_allowed(self) -> bool:
        """Pickle may be used for values: both this side's policy and the server's agree."""
        return bool(self.conn.policy.allow_pickle) and self.info.get("allow_pickle") is True

    def unpickles(self, requested: bool) -> bool:
        """The one rule for every value this notebook might unpickle: only when the user
        asked for it for this value (``--pickle``), ``RPyCPolicy.allow_pickle`` is on
        here and the server says it allows pickle too. The server's word alone is
        never enough: unpickling runs code the server chose."""
        return requested is True and self.pickle_allowed

    @property
    def can_execute(self) -> bool:
        return self.kind in ("execution", "classic")

    @property
    def has_engine(self) -> bool:
        """The server runs our engine (completion, inspection, browsing in one request)."""
        return self.kind == "execution" or (self.kind == "classic" and
                                            not isinstance(self.backend, PlainClassic))

    def transport_facts(self) -> dict[str, Any]:
        """Transport, protocol version, cipher and peer certificate fingerprint, if any."""
        info = self.conn.transport_info
        facts: dict[str, Any] = {"transport": self.transport, "peer": f"{self.host}:{self.port}",
                                 "encrypted": self.transport != "TCP",
                                 "loopback": is_loopback(self.host),
                                 "version": info.tls_version, "cipher": info.cipher}
        digest = info.peer_cert_sha256
        if digest is not None:
            digest = digest.upper()
            facts["fingerprint"] = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
        return facts

    # -- the namespace ----------------------------------------------------------------------

    @property
    def ns(self) -> Any:
        """The remote namespace as a netref: ``sess.ns.x``, ``dir(sess.ns)``, ``sess.ns.y = 1``."""
        if self._ns is None:
            if self.kind == "classic" and isinstance(self.backend, PlainClassic):
                self._ns = self.conn.namespace  # a dict netref: sess.ns["x"]
            else:
                self._require_engine("the namespace")
                self._ns = self.backend.namespace_view() if self.kind == "classic" \
                    else self.backend.namespace()
        return self._ns

    def _require_engine(self, what: str) -> None:
        if self.closed:
            raise self.closed_error()
        if not self.has_engine:
            raise SessionError(f"{what} needs an execution service; session {self.name!r} "
                               f"talks to {self.info.get('service', '?')!r}"
                               + (f" ({self.fallback_reason})" if self.fallback_reason else ""))

    # -- requests -----------------------------------------------------------------------------

    def _call(self, name: str, *args: Any, timeout: float | None = None) -> Any:
        if self.closed:
            raise self.closed_error()
        result = async_(getattr(self.backend, name))(*args)
        result.wait(self.request_timeout if timeout is None else timeout)
        return result.value

    def ping(self) -> float:
        """Measure one round trip (seconds); also kept in :attr:`rtt`."""
        started = time.perf_counter()
        self.conn.ping(timeout=self.request_timeout)
        self.rtt = time.perf_counter() - started
        return self.rtt

    def complete(self, code: str, cursor_pos: int | None = None, *,
                 timeout: float | None = None) -> tuple[list[str], int, int, list[str]]:
        """``(matches, cursor_start, cursor_end, types)`` from the remote namespace."""
        self._require_engine("remote completion")
        raw = self._call("complete", code, cursor_pos, 1000, timeout=timeout)
        if type(raw) is not tuple or len(raw) != 4:
            return [], 0, 0, []
        matches, start, end, types = raw
        if type(matches) is not tuple or type(start) is not int or type(end) is not int:
            return [], 0, 0, []
        names = [m for m in matches if type(m) is str]
        kinds = [t for t in types if type(t) is str] if type(types) is tuple else []
        return names, start, end, kinds if len(kinds) == len(names) else []

    def inspect(self, code: str, cursor_pos: int | None = None, detail_level: int = 0, *,
                obj: Any = None, timeout: float | None = None) -> dict[str, Any] | None:
        """IPython ``?`` info for the name at the cursor (or for the netref ``obj``)."""
        self._require_engine("remote inspection")
        if obj is not None:
            raw = self._call("inspect_object", obj, code, detail_level, timeout=timeout)
        else:
            raw = self._call("inspect", code, cursor_pos, detail_level, timeout=timeout)
        info = _pairs_dict(raw, values=(str, bool, type(None)))
        return info or None

    def describe(self, paths: tuple[str, ...], *, root: Any = None, max_items: int = 50,
                 private: bool = False, timeout: float | None = None) -> list[dict[str, Any]]:
        """Bounded summaries for browsing, one per path, in one request."""
        self._require_engine("browsing")
        raw = self._call("describe", tuple(paths), max_items, private, root, timeout=timeout)
        return [_pairs_dict(node) for node in raw] if type(raw) is tuple else []

    def repr_text(self, obj: Any, max_chars: int, *, timeout: float | None = None) -> str:
        """A netref's ``repr``, cut to ``max_chars`` by the server (one request)."""
        self._require_engine("a bounded repr")
        text = self._call("repr_text", obj, max_chars, timeout=timeout)
        return text if type(text) is str else ""

    def mimebundle(self, obj: Any, include: tuple[str, ...] | None, max_bytes: int, *,
                   timeout: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """A netref's own display bundle, by value, in one request."""
        self._require_engine("remote display")
        return parse_bundle(self._call("mimebundle", obj, include, max_bytes, timeout=timeout))

    def push(self, values: dict[str, Any], *, allow_pickle: bool = False,
             max_bytes: int = 64 << 20, on_progress: ProgressCallback | None = None,
             batch_bytes: int = PUSH_BATCH_BYTES) -> dict[str, int]:
        """Bind local values in the remote namespace, by value; returns bytes per name.

        Values go in batches of about ``batch_bytes`` (packed), one request each;
        ``on_progress(done, total)`` is told the packed bytes sent. The names are bound
        together by the last request: a ``KeyboardInterrupt`` in between binds none.
        """
        self._require_engine("push")
        use_pickle = allow_pickle and self.pickle_allowed
        # numpy arrays and pandas frames go typed when the server builds them (its hello
        # says so); large buffers stay in our outbox, and the server reads them in chunks
        # while the request that unpacks them waits
        arrays = self.moves_arrays
        remote_kinds = self.info.get("data", ())
        accept = remote_kinds if arrays and type(remote_kinds) is tuple else ()
        outbox = Outbox()
        items, sizes = [], {}
        for key, value in values.items():
            streamed = outbox.added
            try:
                packed = pack(value, max_bytes=max_bytes, allow_pickle=use_pickle,
                              accept=accept, stream=outbox.add if arrays else None)
            except (NotByValue, TooLarge) as exc:
                hint = "" if use_pickle or not allow_pickle else \
                    " (pickle needs allow_pickle on both sides)"
                message = str(exc).replace("the receiving side", "the server")
                raise UsageError(f"cannot push {key!r}: {message}{hint}") from None
            items.append((key, packed))
            sizes[key] = _packed_size(packed) + outbox.added - streamed
        extra = (outbox.read if len(outbox) else None, max_bytes) if arrays else ()
        timeout = self._transfer_timeout(max_bytes) if len(outbox) else None
        report = on_progress or _no_progress
        total = sum(sizes.values())
        report(0, total)
        batches = _batches(items, sizes, batch_bytes)
        if len(batches) == 1 or "staged_push" not in self.info.get("features", ()):
            self._bind(tuple(items), use_pickle, False, extra, timeout)  # one request
            report(total, total)
            return sizes
        done = 0
        try:
            for index, batch in enumerate(batches[:-1]):
                self._call("stage", tuple(batch), use_pickle, index == 0, *extra,
                           timeout=timeout)
                done += sum(sizes[key] for key, _ in batch)
                report(done, total)
        except BaseException:
            # stopped or failed between batches: nothing is bound there; free what it holds
            with contextlib.suppress(Exception):
                self._call("stage", (), False, True)
            raise
        self._bind(tuple(batches[-1]), use_pickle, True, extra, timeout)
        report(total, total)
        return sizes

    def _bind(self, items: tuple[tuple[str, Any], ...], use_pickle: bool, staged: bool,
              extra: tuple[Any, ...], timeout: float | None) -> None:
        """The request that binds a push's names (with what was staged, if ``staged``);
        ``extra``: the reader of our outbox and the size limit, for an engine that moves
        arrays."""
        try:
            self._call("push_staged" if staged else "push", items, use_pickle, *extra,
                       timeout=timeout)
        except KeyboardInterrupt:
            raise CellInterrupted(f"push to {self.name} stopped while its last request was "
                                  "under way: the names may be bound there") from None

    def pull(self, names: list[str], *, allow_pickle: bool = False,
             max_bytes: int = 64 << 20, on_progress: ProgressCallback | None = None,
             on_bytes: ProgressCallback | None = None,
             batch_bytes: int = PUSH_BATCH_BYTES) -> dict[str, tuple[Any, int]]:
        """Remote values by value: ``{name: (value, bytes)}``; a failure raises UsageError.

        With ``on_progress(done, total)`` the names are fetched in groups, told how many
        have come after each: the first alone, then twice as many each time while the
        values are small (a group brings about ``batch_bytes``), so a
        ``KeyboardInterrupt`` can stop between them (nothing is returned then).
        ``on_bytes(done, total)`` follows each large buffer read in chunks.
        """
        self._require_engine("pull")
        use_pickle = self.unpickles(allow_pickle)
        report = on_progress or _no_progress
        out: dict[str, tuple[Any, int]] = {}
        report(0, len(names))
        done, group = 0, 1 if on_progress is not None else max(1, len(names))
        # what this notebook builds: numpy arrays and pandas frames arrive as local objects,
        # their large buffers read in chunks straight into them
        accept = (available_kinds(),) if self.moves_arrays else ()
        while done < len(names):  # each round takes at least one name
            chunk = names[done:done + group]
            raw = self._call("pull", tuple(chunk), use_pickle, max_bytes, *accept)
            _unpack_pulled(raw, use_pickle, out, max_bytes,
                           lambda: self.stream_reader(on_bytes))
            done += len(chunk)
            report(done, len(names))
            per_value = sum(out[name][1] for name in chunk if name in out) // len(chunk)
            group = max(1, min(group * 2, batch_bytes // max(1, per_value)))
        return out

    @property
    def moves_arrays(self) -> bool:
        """The server's engine moves numpy/pandas values typed, in chunks (``arrays``)."""
        features = self.info.get("features", ())
        return type(features) is tuple and "arrays" in features

    def stream_reader(self, on_progress: Callable[[int, int], None] | None = None,
                      window: int = 3, chunk: int = CHUNK) -> StreamReader:
        """Reads streamed values from the server's outbox (see :class:`StreamReader`)."""
        return StreamReader(self, on_progress, window, chunk)

    def _transfer_timeout(self, nbytes: int) -> float:
        """A request that moves ``nbytes`` in chunks: the usual timeout per 64 MiB."""
        return self.request_timeout * max(1, -(-nbytes // (64 << 20)))

    # -- files ------------------------------------------------------------------------------------

    def upload(self, local: str, remote: str, *, resume: bool = False,
               on_progress: Progress | None = None, **tuning: Any) -> TransferResult:
        """Send a file or folder to the server, in chunks, verified by SHA-256, keeping
        modes and times; ``resume`` continues a stopped transfer. ``on_progress(done,
        total)`` is called per chunk (a :class:`~rpyc_ipy.ipython.progress.Progress`
        fits). See :mod:`rpyc_ipy.ipython.transfer`."""
        return upload(self._file_store(), local, remote, resume=resume,
                      on_progress=on_progress, **tuning)

    def download(self, remote: str, local: str, *, resume: bool = False,
                 on_progress: Progress | None = None, **tuning: Any) -> TransferResult:
        """Fetch a file or folder from the server; the counterpart of :meth:`upload`."""
        return download(self._file_store(), remote, local, resume=resume,
                        on_progress=on_progress, **tuning)

    def _file_store(self) -> Any:
        self._require_engine("moving files")
        if "files" not in self.info.get("features", ()):
            raise SessionError(f"session {self.name!r}: the server's engine "
                               f"{self.info.get('engine', '?')!r} does not move files "
                               "(its rpyc_ipy is older)")
        return self._call("files")

    # -- running cells ------------------------------------------------------------------------

    def start(self, code: str, events: EventBacklog, *, silent: bool = False,
              want_value: bool = False, include: tuple[str, ...] | None = None,
              stream_interval: float = 0.05,
              capture_fd: bool | None = None, grace: float = 0.25,
              max_bundle_bytes: int = 8 << 20, max_value_bytes: int = 64 << 20
              ) -> RemoteExecution:
        """Start a cell; its events go to ``events`` (see :mod:`.execution`)."""
        if self.closed:
            raise self.closed_error()
        if not self.can_execute:
            raise SessionError(
                f"session {self.name!r} talks to the service "
                f"{self.info.get('service', '?')!r}, which does not run cells: serve "
                "rpyc_ipy.remote:ExecutionService, or connect to a classic server with --classic")
        options = {"silent": silent, "want_value": want_value, "include": include,
                   "stream_interval": float(stream_interval),
                   "capture_fd": self.capture_fd if capture_fd is None else capture_fd,
                   "grace": float(grace), "max_bundle_bytes": int(max_bundle_bytes),
                   "max_value_bytes": int(max_value_bytes), "accept": available_kinds()}
        self._serve_in_background()
        execution = RemoteExecution(self, events, options, on_finish=self._stop_background)
        self.executions += 1
        try:
            if isinstance(self.backend, PlainClassic):
                self.backend.run(code, execution)
            else:
                execution.launch(code)
        except BaseException as exc:
            execution.finish_failure(exc)
            raise
        return execution

    def execute(self, code: str, *, on_stream: StreamCallback | None = None,
                on_display: DisplayCallback | None = None,
                on_clear: Callable[[bool], None] | None = None, timeout: float | None = None,
                grace: float = 2.0, notify: Callable[[str], None] | None = None,
                **options: Any) -> ExecutionOutcome:
        """Run a cell and wait; output goes to the callbacks on this thread.

        ``KeyboardInterrupt`` cancels the cell on the server (escalating), then
        propagates; ``timeout`` does the same and raises ``RemoteTimeoutError``.
        Errors are in the outcome (``status == "error"``), not raised.
        """
        events = EventBacklog()
        run = self.start(code, events, **options)

        def handle(_: RemoteExecution, event: tuple[Any, ...]) -> None:
            dispatch_event(event, on_stream, on_display, on_clear)

        return wait_all([run], events, handle, timeout=timeout, grace=grace, notify=notify)[0]

    # -- background serving while cells run -----------------------------------------------------

    def _serve_in_background(self) -> None:
        # the server calls back (output batches) while nobody waits on this connection
        with self._serving_lock:
            self._serving += 1
            if self._serving == 1:
                self.conn.start_serving()

    def _stop_background(self) -> None:
        with self._serving_lock:
            if self._serving > 0:
                self._serving -= 1
                if self._serving == 0:
                    self.conn.stop_serving()

    def close(self) -> None:
        """Close the connection (netrefs of this session stop working). The session on
        the server keeps running until it is idle for its timeout: see :meth:`end`."""
        self.conn.close()
        if self.control is not None:
            self.control.close()

    def end(self) -> None:
        """End the server-side session and its worker, then close."""
        if self.control is not None and not self.control.closed:
            with contextlib.suppress(Exception):
                self.control.root.close_session(self.name)
        self.close()


def _unpack_pulled(raw: Any, use_pickle: bool, out: dict[str, tuple[Any, int]],
                   max_bytes: int, new_reader: Callable[[], StreamReader]) -> None:
    """A pull's answer into ``out``: ``{name: (value, bytes)}``; a refused value raises
    ``UsageError``. Arrays and frames are checked against ``max_bytes`` before anything
    is allocated; their streamed buffers are read with a ``new_reader()`` each."""
    for item in raw if type(raw) is tuple else ():
        if type(item) is not tuple or len(item) != 3 or type(item[0]) is not str:
            continue
        name, status, payload = item
        if status != "ok":
            why = payload.replace("the receiving side", "this notebook") \
                if type(payload) is str else "?"
            raise UsageError(f"cannot pull {name!r}: {why}")
        reader = new_reader()
        try:
            value = unpack(payload, allow_pickle=use_pickle, max_bytes=max_bytes, read=reader)
        except ImportError as exc:
            raise UsageError(f"cannot pull {name!r}: it needs {exc.name} here: "
                             f"{DATA_EXTRA}") from None
        except (NotByValue, ValueError, TypeError) as exc:
            raise UsageError(f"cannot pull {name!r}: {exc}") from None
        out[name] = (value, _packed_size(payload) + reader.received)


class StreamReader:
    """Reads a streamed buffer from the server's outbox for
    :func:`~rpyc_ipy.remote.values.unpack`: ``window`` chunk requests in flight (the
    worker, the relay and this side each work on one); ``on_progress(done, total)``
    after each chunk; :attr:`received` counts the bytes of every stream read."""

    def __init__(self, session: RemoteSession, on_progress: Callable[[int, int], None] | None,
                 window: int, chunk: int) -> None:
        self.session = session
        self.on_progress = on_progress
        self.window = window
        self.chunk = chunk
        self.received = 0

    def __call__(self, token: str, nbytes: int) -> Generator[bytes, None, None]:
        session, chunk = self.session, self.chunk
        offsets = iter(range(0, nbytes, chunk))
        pending: list[Any] = []
        done = 0
        try:
            while True:  # bounded by nbytes / chunk requests
                while len(pending) < self.window:
                    offset = next(offsets, None)
                    if offset is None:
                        break
                    pending.append(async_(session.backend.pull_chunk)(
                        token, offset, min(chunk, nbytes - offset)))
                if not pending:
                    return
                result = pending.pop(0)
                result.wait(session.request_timeout)
                data = result.value
                done += len(data) if type(data) is bytes else 0
                self.received += len(data) if type(data) is bytes else 0
                if self.on_progress is not None:
                    self.on_progress(done, nbytes)
                yield data
        finally:
            if done < nbytes and not session.closed:  # stopped early: the server forgets it
                with contextlib.suppress(Exception):
                    async_(session.backend.pull_release)(token)


def _no_progress(done: int, total: int) -> None:
    """Nobody follows this transfer."""


def _batches(items: list[tuple[str, Any]], sizes: dict[str, int], batch_bytes: int
             ) -> list[list[tuple[str, Any]]]:
    """``items`` in order, cut into runs of about ``batch_bytes`` (a larger value alone)."""
    batches: list[list[tuple[str, Any]]] = [[]]
    filled = 0
    for item in items:
        if batches[-1] and filled + sizes[item[0]] > batch_bytes:
            batches.append([])
            filled = 0
        batches[-1].append(item)
        filled += sizes[item[0]]
    return batches


def _no_stage(text: str) -> None:
    """Nobody follows this connect's steps."""


def _message(exc: BaseException) -> str:
    """An exception's own message, without a remote traceback appended."""
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return type(exc).__name__


def _packed_size(packed: Any) -> int:
    from rpyc_ipy.protocol import brine

    try:
        return len(brine.dump(packed))
    except Exception:
        return 0


def _pairs_dict(raw: Any, values: tuple[type, ...] | None = None) -> dict[str, Any]:
    """``((key, value), ...)`` from a server as a dict; malformed pairs are dropped."""
    out: dict[str, Any] = {}
    if type(raw) is not tuple:
        return out
    for pair in raw:
        if type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str:
            if values is None or type(pair[1]) in values:
                out[pair[0]] = pair[1]
    return out
