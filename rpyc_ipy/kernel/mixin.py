"""``RemoteKernelMixin``: an ipykernel ``IPythonKernel`` whose cells run on a remote Python.

Mix it in front of ipykernel's kernel (:class:`~rpyc_ipy.kernel.kernel.RemoteKernel`
does exactly that)::

    class RemoteKernel(RemoteKernelMixin, IPythonKernel): ...

Every cell runs in one remote session, as ``%%remote`` would run it: output
streams live (``stream`` messages), ``display()`` and the last expression come
back by value (``display_data`` / ``execute_result``, filtered by
``RPyCPolicy``), a remote exception becomes an error reply carrying the remote
traceback. A cell whose first line is ``%%local`` runs in the kernel itself
(ipykernel's own ``do_execute``), where the ``%rpyc_*`` magics are loaded and
the session is bound to the name ``RemoteKernel.session_name`` (``remote``)::

    %%local
    %rpyc_pull remote results       # copy a remote value here, by value
    %rpyc_policy                    # what the server grants, and what we grant it

Completion (TAB) and ``?`` are answered by the remote namespace, one request
each. The stop button (``interrupt_mode`` ``signal`` or ``message``) cancels
the remote work (the worker gets a SIGINT, which also ends a ``time.sleep``), and
the kernel answers again at once.

On an rpyc_ipy execution server the session runs in a worker process that
outlives connections, and the kernel ties the two lifetimes together:

* a kernel process starts its server-side session afresh (``open_session(...,
  new=True)``) on its first remote cell: a new kernel process is a new notebook
  session, so a Jupyter kernel restart replaces the old worker (its namespace is
  gone, as the restart promised) instead of re-attaching to it;
* within the kernel process's life a dropped connection is re-attached: while a
  cell runs the execution layer does it and the output resumes; between cells
  the next cell finds the session closed, reconnects and re-attaches by name.
  A stderr line of the cell says which it was: the same worker (the namespace is
  as you left it) or a new one (the server restarted: a new remote namespace).
  Shutting the kernel down only closes the connection: the server ends the idle
  session after its timeout.

Two kernels with the same ``session_name`` and user share one server-side session,
so each starting replaces the other's worker: give kernelspecs that may run side
by side their own ``session_name``. On other servers (classic, plain services) a
lost connection is replaced by a new one, with a new remote namespace.

The connection settings are traits (``--RemoteKernel.host=...`` in a kernelspec's
argv, ``c.RemoteKernel.port = ...`` in ``ipython_kernel_config.py``). The
password is never one of them: it comes from the environment variable named by
``password_env``, from an owner-only ``credentials_file``, or from a prompt in
the frontend (then it is kept in memory for reconnects, never written).
The cell-running behaviour (timeouts, streaming, display trust, size limits) is
the extension's: ``RPyCMagics`` and ``RPyCPolicy`` traits.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from rpyc_ipy.credentials import read_password
from rpyc_ipy.errors import AuthenticationError, CredentialsError
from rpyc_ipy.target import (
    DEFAULT_PORT,
    DEFAULT_SESSION_NAME,
    DEFAULT_TIMEOUT,
    ConnectionTarget,
    format_address,
)

if TYPE_CHECKING:
    from rpyc_ipy.ipython.extension import Extension
    from rpyc_ipy.ipython.session import RemoteSession

__all__ = ["LOCAL_MAGIC", "RemoteKernelMixin", "split_local"]

LOCAL_MAGIC = "%%local"
RED, DIM, RESET = "\x1b[31m", "\x1b[2m", "\x1b[0m"


def split_local(code: str) -> str | None:
    """The body of a ``%%local`` cell, or ``None`` for a cell that runs remotely."""
    stripped = code.lstrip()
    first, _, rest = stripped.partition("\n")
    if first.rstrip() != LOCAL_MAGIC:
        return None
    return rest


def _reply(status: str, count: int, **extra: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"status": status, "execution_count": count}
    if status == "ok":
        content.update(payload=[], user_expressions={})
    content.update(extra)
    return content


class RemoteKernelMixin(Configurable):
    """Cells run in a remote session; see the module docstring."""

    if TYPE_CHECKING:  # provided by ipykernel's Kernel / IPythonKernel
        shell: Any
        session: Any
        iopub_socket: Any
        log: Any
        _allow_stdin: bool

        def getpass(self, prompt: str = "", stream: Any = None, *,
                    echo_char: str | None = None) -> str: ...
        def get_parent(self, channel: str = "shell") -> dict[str, Any]: ...
        def _topic(self, topic: str) -> bytes: ...

    host = Unicode(
        "127.0.0.1", help="The server to run cells on (an rpyc_ipy execution service)."
    ).tag(config=True)
    port = Int(DEFAULT_PORT, help="Its TCP port.").tag(config=True)
    srp_user = Unicode(
        "", help="""Log in with TLS-SRP as this user (the password comes from password_env,
        credentials_file or a prompt; never from the configuration)."""
    ).tag(config=True)
    password_env = Unicode(
        "", help="Name of the environment variable that holds the SRP password."
    ).tag(config=True)
    credentials_file = Unicode(
        "", help="""A file whose first line is the SRP password. It must be yours and
        owner-only (chmod 600): one that the group or others can read is refused."""
    ).tag(config=True)
    cert = Unicode("", help="TLS client certificate (PEM).").tag(config=True)
    key = Unicode("", help="TLS client private key (PEM).").tag(config=True)
    ca = Unicode("", help="CA bundle that signed the server certificate (PEM).").tag(
        config=True)
    fingerprint = Unicode(
        "", help="Pin the server certificate by its SHA-256 fingerprint."
    ).tag(config=True)
    tls = Bool(
        False, help="TLS verified against the system CA store (no client certificate)."
    ).tag(config=True)
    classic = Bool(
        False, help="""The server is a classic RPyC server (it runs anything sent to it).
        Never a default; a warning is shown when the kernel connects."""
    ).tag(config=True)
    insecure = Bool(
        False, help="""Allow plaintext TCP to a host that is not this machine (anyone on the
        path can read and change the traffic)."""
    ).tag(config=True)
    timeout = Float(
        DEFAULT_TIMEOUT, help="Seconds to connect and authenticate, and for the liveness "
        "check before each cell."
    ).tag(config=True)
    session_name = Unicode(
        DEFAULT_SESSION_NAME, help="The name the session is bound to in %%local cells (and "
        "in the %rpyc_* magics)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._remote: RemoteSession | None = None
        self._password: str | None = None  # only a prompted one, for reconnects
        self._lost: str | None = None
        with contextlib.suppress(Exception):
            self._extension()

    # -- facts ----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """``host:port`` of the server."""
        return format_address(self.host, self.port)

    def connection_target(self) -> ConnectionTarget:
        """The target these traits describe (``TargetError`` if they cannot work)."""
        return ConnectionTarget(
            self.host, self.port, srp_user=self.srp_user, password_env=self.password_env,
            credentials_file=self.credentials_file, cert=self.cert, key=self.key, ca=self.ca,
            fingerprint=self.fingerprint, tls=self.tls, classic=self.classic,
            insecure=self.insecure, session_name=self.session_name, timeout=self.timeout)

    @property
    def remote_session(self) -> RemoteSession | None:
        """The current session (``None`` before the first remote cell)."""
        return self._remote

    def _extension(self) -> Extension:
        """The rpyc_ipy extension of this kernel's shell (loaded on first use)."""
        from rpyc_ipy.ipython.extension import extension_of

        ext = extension_of(self.shell)
        if ext is None:
            self.shell.extension_manager.load_extension("rpyc_ipy")
            ext = extension_of(self.shell)
            if ext is None:  # pragma: no cover - load_extension swallowed a failure
                raise RuntimeError("the rpyc_ipy extension did not load")
        return ext

    # -- the connection ------------------------------------------------------------------------

    def _password_for(self, target: ConnectionTarget, interactive: bool) -> str:
        return read_password(target,
                             lambda prompt: self._ask_password(target, prompt, interactive))

    def _ask_password(self, target: ConnectionTarget, prompt: str, interactive: bool) -> str:
        """The password typed in the frontend, kept for reconnects."""
        if self._password:
            return self._password
        if not interactive:
            raise CredentialsError("no password: set RemoteKernel.password_env or "
                                   "RemoteKernel.credentials_file, or run a cell in a "
                                   "frontend that can ask for it")
        try:
            password = self.getpass(prompt)
        except Exception as exc:  # StdinNotImplementedError: the frontend cannot ask
            raise CredentialsError(
                f"no password for {target.label}: this frontend cannot ask for one; set "
                "RemoteKernel.password_env (the name of an environment variable) or "
                f"RemoteKernel.credentials_file (an owner-only file) ({exc})") from None
        self._password = password or None
        return password

    def _open(self, interactive: bool, new: bool) -> RemoteSession:
        """A new connection; ``new`` starts the server-side session afresh."""
        from rpyc_ipy.ipython.progress import Progress
        from rpyc_ipy.ipython.session import open_session

        ext = self._extension()
        magics, policy = ext.magics, ext.policy
        target = self.connection_target()
        policy.check_target(target)
        password = self._password_for(target, interactive) if target.srp_user else None
        # a slow connect shows its steps in the cell that waits for it (none otherwise)
        bar = Progress(f"connect {target.label}", unit="items", shell=self.shell,
                       delay=magics.progress_delay if interactive else float("inf"),
                       quiet_unseen=True)
        try:
            with bar:
                session = open_session(target, password=password,
                                       config=policy.client_config(magics.request_timeout),
                                       capture_fd=magics.capture_fd, new=new,
                                       on_stage=bar.stage)
        except AuthenticationError:
            self._password = None  # ask again next time
            raise
        finally:
            password = None
        session.request_timeout = magics.request_timeout
        self._bind(session)
        return session

    def _bind(self, session: RemoteSession) -> None:
        """Make ``session`` the magics' default and a name in ``%%local`` cells."""
        ext = self._extension()
        ext.registry.add(session)
        ext.magics.default_session = session.name
        self.shell.user_ns[session.name] = session

    def _ensure_session(self, interactive: bool = True, announce: bool = True) -> RemoteSession:
        """The open session: opened fresh on the first remote cell of this kernel process,
        then checked with one ping and re-attached (or replaced) if it was lost."""
        session = self._remote
        if session is None:
            session = self._remote = self._open(interactive, new=True)
            if announce:
                self._greet(session)
            return session
        lost = self._lost_because(session)
        if lost is None:
            return session
        self._lost = lost  # kept until a reconnect works: the next cell says it again
        if announce:
            self._notify(f"the connection to {self.where} was lost ({lost}); reconnecting…")
        if session.has_worker:
            note = self._reattach(session)
        else:
            session = self._remote = self._open(interactive, new=False)
            note = (f"reconnected to {self.where}: this is a new remote namespace; names "
                    "defined there before are gone")
        self._lost = None
        if announce:
            self._notify(note)
            self._greet(session)
        return session

    def _lost_because(self, session: RemoteSession) -> str | None:
        """Why ``session`` cannot be used any more, or ``None`` if it answers a ping."""
        if session.closed:
            return self._lost or f"session {session.name!r} was closed"
        try:
            session.conn.ping(timeout=self.timeout)
            return None
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                session.close()
            return f"{type(exc).__name__}: {_first_line(exc)}"

    def _reattach(self, session: RemoteSession) -> str:
        """Reconnect ``session`` to its server-side session, by name (one attempt: a
        server that is down fails this cell, and the next one tries again); returns
        what to tell the user."""
        worker = session.remote.get("pid")
        facts = session.reconnect()
        self._bind(session)
        died = facts.get("died")
        if died:  # the worker ended on its own while nobody was attached
            facts = session.restart()
            return (f"reconnected to {self.where}: the worker of session {session.name!r} "
                    f"{died}; a fresh one (worker {facts.get('pid')}) runs it: this is a new "
                    "remote namespace; names defined there before are gone")
        if facts.get("reattached") and facts.get("pid") == worker:
            return (f"reconnected to {self.where} and re-attached to session "
                    f"{session.name!r} (worker {worker}): its namespace is as you left it")
        return self._new_worker_note(session)

    def _new_worker_note(self, session: RemoteSession) -> str:
        # the server restarted (the session was gone), or someone replaced its worker
        return (f"reconnected to {self.where}: this is a new remote namespace (session "
                f"{session.name!r}, worker {session.remote.get('pid')}); names defined there "
                "before are gone")

    def _greet(self, session: RemoteSession) -> None:
        """What a (re)connected session shows: the classic warning and its card."""
        if self.classic:
            self._notify("classic mode: the server runs any code sent to it; use only "
                         "servers you own")
        if self._extension().magics.show_card:
            from IPython.display import display

            display(session)

    def _notify(self, text: str) -> None:
        """A note on the cell's stderr, sanitized (it may quote the server)."""
        from rpyc_ipy.ipython.text import say

        say(f"{RED}[rpyc_ipy] {text}{RESET}", sys.stderr)

    # -- execute ----------------------------------------------------------------------------------

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict[str, Any] | None = None,
                         allow_stdin: bool = False, *, cell_meta: Any = None,
                         cell_id: Any = None) -> dict[str, Any]:
        """Run a cell remotely, or locally when its first line is ``%%local``."""
        body = split_local(code)
        if body is not None:
            kwargs = {"cell_meta": cell_meta, "cell_id": cell_id}
            parent: Any = super()
            accepted = inspect.signature(parent.do_execute).parameters
            reply = parent.do_execute(body, silent, store_history, user_expressions,
                                      allow_stdin, **{k: v for k, v in kwargs.items()
                                                      if k in accepted})
            return await reply if inspect.isawaitable(reply) else reply
        return self._execute_remote(code, silent, store_history, allow_stdin,
                                    user_expressions or {})

    def _execute_remote(self, code: str, silent: bool, store_history: bool,
                        allow_stdin: bool, user_expressions: dict[str, Any]
                        ) -> dict[str, Any]:
        shell = self.shell
        count = shell.execution_count
        if not code.strip():
            return _reply("ok", count - 1 if count > 1 else count)
        self._allow_stdin = allow_stdin
        if store_history:
            with contextlib.suppress(Exception):
                shell.history_manager.store_inputs(count, code, code)
        try:
            reply = self._run_remote(code, count, silent)
            if reply["status"] == "ok" and user_expressions:
                reply["user_expressions"] = self._user_expressions(user_expressions)
            return reply
        except KeyboardInterrupt:  # outside the wait for the cell (which handles its own)
            return self._error(count, silent, "KeyboardInterrupt", "", [
                f"{RED}KeyboardInterrupt{RESET}"])
        except Exception as exc:  # a bug here must not leave the frontend without a reply
            self.log.error("the remote cell failed in the kernel", exc_info=True)
            return self._error(count, silent, type(exc).__name__, str(exc), [
                f"{RED}{type(exc).__name__}{RESET}: {exc} (in the rpyc_ipy kernel)"])
        finally:
            if store_history:
                shell.execution_count = count + 1

    def _run_remote(self, code: str, count: int, silent: bool) -> dict[str, Any]:
        from rpyc_ipy.ipython.backlog import EventBacklog
        from rpyc_ipy.ipython.display import CellOutput, policy_bundle
        from rpyc_ipy.ipython.execution import (
            ExecutionOutcome,
            RemoteExecution,
            RemoteExecutionError,
            RemoteTimeoutError,
            wait_all,
        )

        try:
            session = self._ensure_session(interactive=True, announce=not silent)
        except KeyboardInterrupt:
            return self._error(count, silent, "KeyboardInterrupt", "interrupted while connecting",
                               [f"{RED}KeyboardInterrupt{RESET}: interrupted while connecting "
                                f"to {self.where}"])
        except Exception as exc:
            return self._error(count, silent, type(exc).__name__, str(exc), [
                f"{RED}{type(exc).__name__}{RESET}: cannot connect to {self.where}: "
                f"{_first_line(exc)}", "The next cell tries again."])
        ext = self._extension()
        magics, policy = ext.magics, ext.policy
        output = CellOutput(policy, labels=False, stream=magics.stream)
        events = EventBacklog(policy.max_output_backlog)
        try:
            run = session.start(code, events, silent=silent,
                                include=tuple(sorted(policy.mimetypes())),
                                stream_interval=magics.stream_interval,
                                grace=magics.cancel_grace,
                                max_bundle_bytes=policy.max_bundle_bytes,
                                max_value_bytes=policy.max_pull_bytes)
        except KeyboardInterrupt:
            return self._error(count, silent, "KeyboardInterrupt", "", ["KeyboardInterrupt"])
        except Exception as exc:
            return self._error(count, silent, type(exc).__name__, str(exc), [
                f"{RED}{type(exc).__name__}{RESET}: cannot start the cell on {self.where}: "
                f"{_first_line(exc)}"])

        notify = (lambda text: None) if silent else self._notify
        worker = session.remote.get("pid")

        def handle(execution: RemoteExecution, event: tuple[Any, ...]) -> None:
            if event[0] == "done":
                outcome: ExecutionOutcome = event[1]
                if outcome.status == "cancelled" and outcome.note:
                    notify(f"{outcome.session}: {outcome.note}")
            if not silent:
                output(execution, event)

        timeout = magics.default_timeout or None
        try:
            outcomes = wait_all([run], events, handle, timeout=timeout,
                                grace=magics.interrupt_grace, notify=notify)
        except KeyboardInterrupt:
            return self._error(count, silent, "KeyboardInterrupt", "", [
                f"{RED}KeyboardInterrupt{RESET}: the cell was interrupted and cancelled on "
                f"{self.where}"])
        except RemoteTimeoutError as exc:
            return self._error(count, silent, "RemoteTimeoutError", str(exc), [
                f"{RED}RemoteTimeoutError{RESET}: {exc}"])
        if session.remote.get("pid") not in (None, worker) and not run.restarting:
            # re-attached while the cell ran, but the session there had to start afresh
            notify(self._new_worker_note(session))
        outcome = outcomes[0] if outcomes else ExecutionOutcome(session.name, "error")
        if outcome.status == "ok":
            if outcome.data and not silent:
                data, metadata = policy_bundle(outcome.data, outcome.metadata, policy)
                self._publish("execute_result", {"execution_count": count, "data": data,
                                                 "metadata": metadata})
            return _reply("ok", count)
        if outcome.status == "cancelled":
            note = outcome.note or "the cell was cancelled on the server"
            return self._error(count, silent, "Cancelled", note,
                               [f"{RED}Cancelled{RESET}: {note}"])
        ename, evalue, _ = outcome.error or ("Error", "", "")
        lines = RemoteExecutionError([outcome], count)._render_traceback_()
        if session.closed:
            self._lost = f"{ename}: {_first_line_text(evalue)}"
            lines.append(f"{RED}The connection to {self.where} was lost while the cell ran; "
                         f"the next cell reconnects.{RESET}")
        return self._error(count, silent, ename, evalue, lines)

    def _user_expressions(self, expressions: dict[str, Any]) -> dict[str, Any]:
        """Evaluate a request's ``user_expressions`` remotely (one request each; their
        output is dropped)."""
        from rpyc_ipy.ipython.display import policy_bundle

        session = self._open_session()
        policy = self._extension().policy
        timeout = self._extension().magics.request_timeout
        results: dict[str, Any] = {}
        for key, expression in expressions.items():
            if session is None or type(expression) is not str:
                results[key] = {"status": "error", "ename": "TypeError",
                                "evalue": "not evaluated", "traceback": []}
                continue
            try:
                outcome = session.execute(expression, timeout=timeout,
                                          include=tuple(sorted(policy.mimetypes())))
            except Exception as exc:
                outcome = None
                error = (type(exc).__name__, str(exc))
            if outcome is not None and outcome.status == "ok":
                data, metadata = policy_bundle(outcome.data, outcome.metadata, policy)
                results[key] = {"status": "ok", "data": data, "metadata": metadata}
                continue
            if outcome is not None:
                error = (outcome.error or ("Error", "", ""))[:2]
            results[key] = {"status": "error", "ename": error[0], "evalue": error[1],
                            "traceback": []}
        return results

    def _error(self, count: int, silent: bool, ename: str, evalue: str,
               traceback: list[str]) -> dict[str, Any]:
        """An error reply (and message), every text sanitized: it may quote the server."""
        from rpyc_ipy.ipython.text import sanitize_text

        ename, evalue = sanitize_text(ename), sanitize_text(evalue)
        traceback = [sanitize_text(line) for line in traceback]
        if not silent:
            self._publish("error", {"ename": ename, "evalue": evalue, "traceback": traceback})
        return _reply("error", count, ename=ename, evalue=evalue, traceback=traceback,
                      user_expressions={}, payload=[])

    def _publish(self, msg_type: str, content: dict[str, Any]) -> None:
        """Send an IOPub message for the running cell (after the output so far)."""
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.flush()
        self.session.send(self.iopub_socket, msg_type, content,
                          parent=self.get_parent("shell"), ident=self._topic(msg_type))

    # -- completion and inspection --------------------------------------------------------------

    def _open_session(self) -> RemoteSession | None:
        session = self._remote
        return session if session is not None and not session.closed else None

    async def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        """Completions from the remote namespace (one request); ``%%local`` cells locally."""
        if cursor_pos is None:
            cursor_pos = len(code)
        if split_local(code) is not None:
            parent: Any = super()
            reply = parent.do_complete(code, cursor_pos)
            return await reply if inspect.isawaitable(reply) else reply
        empty = {"matches": [], "cursor_start": cursor_pos, "cursor_end": cursor_pos,
                 "metadata": {}, "status": "ok"}
        session = self._open_session()
        if session is None or not session.has_engine:
            return empty
        try:
            matches, start, end, types = session.complete(
                code, cursor_pos, timeout=self._extension().magics.completion_timeout)
        except Exception as exc:
            self.log.debug("remote completion failed: %s", exc)
            return empty
        if not matches:
            return empty
        start = min(max(start, 0), len(code))
        end = min(max(end, start), len(code))
        metadata: dict[str, Any] = {}
        if types:
            metadata["_jupyter_types_experimental"] = [
                {"start": start, "end": end, "text": text, "type": kind}
                for text, kind in zip(matches, types, strict=True)]
        return {"matches": matches, "cursor_start": start, "cursor_end": end,
                "metadata": metadata, "status": "ok"}

    async def do_inspect(self, code: str, cursor_pos: int | None, detail_level: int = 0,
                         omit_sections: Any = ()) -> dict[str, Any]:
        """``?`` / shift-tab from the remote namespace (one request)."""
        if cursor_pos is None:
            cursor_pos = len(code)
        if split_local(code) is not None:
            parent: Any = super()
            reply = parent.do_inspect(code, cursor_pos, detail_level, omit_sections)
            return await reply if inspect.isawaitable(reply) else reply
        not_found: dict[str, Any] = {"status": "ok", "found": False, "data": {},
                                     "metadata": {}}
        session = self._open_session()
        if session is None or not session.has_engine:
            return not_found
        from rpyc_ipy.ipython.inspection import info_bundle

        ext = self._extension()
        try:
            info = session.inspect(code, cursor_pos, detail_level,
                                   timeout=ext.magics.request_timeout)
        except Exception as exc:
            self.log.debug("remote inspection failed: %s", exc)
            return not_found
        if not info:
            return not_found
        name = str(info.get("name") or "")
        data = info_bundle(self.shell.inspector, info, name, detail_level)
        if not getattr(self.shell, "enable_html_pager", True):
            data.pop("text/html", None)
        return {"status": "ok", "found": True, "data": data, "metadata": {}}

    # -- shutdown ----------------------------------------------------------------------------------

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:
        """Close the remote session, then shut down as ipykernel does."""
        session, self._remote = self._remote, None
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()
        parent: Any = super()
        reply = parent.do_shutdown(restart)
        return await reply if inspect.isawaitable(reply) else reply


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return _first_line_text(text) or type(exc).__name__


def _first_line_text(text: str) -> str:
    return text.strip().split("\n", 1)[0][:300]

