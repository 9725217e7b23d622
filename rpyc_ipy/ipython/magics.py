"""The ``%rpyc_*`` and ``%remote`` magics (``%load_ext rpyc_ipy`` registers them).

Start with ``%rpyc_connect``, run cells with ``%%remote``, look around with
``%rpyc_browse`` and ``sess.ns.<TAB>``, check what is granted with
``%rpyc_policy``. Each magic's ``%name?`` shows its options. Settings are the
``RPyCMagics`` traits (:class:`~rpyc_ipy.ipython.settings.MagicsSettings`) and
``RPyCPolicy``; change them with ``%config``.

Over 600 lines because each magic's ``@argument`` declarations are its help text;
what the magics do is in session, execution, browse, display and completion.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import observe

from rpyc_ipy.credentials import read_password
from rpyc_ipy.errors import AuthenticationError, RPyCError
from rpyc_ipy.errors import UsageError as CoreUsageError
from rpyc_ipy.ipython.backlog import EventBacklog
from rpyc_ipy.ipython.browse import Browser, TreeView, widget
from rpyc_ipy.ipython.cards import JobTable, PolicyReport, SessionTable
from rpyc_ipy.ipython.display import CellOutput, RemoteResult, policy_bundle
from rpyc_ipy.ipython.execution import (
    CellInterrupted,
    ExecutionOutcome,
    RemoteExecution,
    RemoteExecutionError,
    wait_all,
)
from rpyc_ipy.ipython.progress import Progress, Unit, format_amount, in_kernel
from rpyc_ipy.ipython.registry import SessionRegistry
from rpyc_ipy.ipython.session import RemoteSession, SessionError, open_session
from rpyc_ipy.ipython.settings import MagicsSettings, RPyCPolicy
from rpyc_ipy.ipython.syntax import split_options
from rpyc_ipy.ipython.text import RED, RESET, sanitize_text, say
from rpyc_ipy.ipython.transfer import TransferError
from rpyc_ipy.target import ConnectionTarget

__all__ = ["RPyCMagics"]

_TARGET = re.compile(r"^(?:(?P<name>[A-Za-z_]\w*)=)?(?P<host>\[[^\]]+\]|[^:\s]+):(?P<port>\d+)$")


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Show our UsageError (a bad name, a value that cannot travel) as IPython's
    one-line ``UsageError``, sanitized (it may quote a server), and an interrupt as
    one line (:class:`CellInterrupted`, still a ``KeyboardInterrupt``)."""
    @functools.wraps(func)
    def magic(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (CoreUsageError, UsageError) as exc:
            raise UsageError(sanitize_text(str(exc))) from None
        except CellInterrupted:
            raise
        except KeyboardInterrupt:  # outside a wait for a cell: one line, not our frames
            raise CellInterrupted(f"%{func.__name__} was interrupted") from None

    return magic


def _ask_password(prompt: str) -> str:
    """The password from the front end's prompt; a front end without one (nbclient, some
    hosted notebooks) gets a one-line answer on what to do instead."""
    try:
        return getpass.getpass(prompt)
    except StdinNotImplementedError:
        raise UsageError("this front end cannot ask for a password: put it in an environment "
                         "variable and add --password-env VAR, or use a front end with a "
                         "password prompt (JupyterLab, Notebook, terminal IPython)") from None


def _check_reachable(target: ConnectionTarget) -> None:
    """Open and close a TCP connection to ``target``, so a wrong host or port is said
    before the password is asked for, not after."""
    try:
        with socket.create_connection((target.host, target.port), timeout=target.timeout):
            pass
    except OSError as exc:
        raise SessionError(f"cannot connect to {target.address}: "
                           f"{exc.strerror or exc or type(exc).__name__}") from None


def _first_line(exc: BaseException) -> str:
    """An error's first line (a remote one appends its traceback)."""
    text = str(exc).strip().split("\n", 1)[0]
    return text or type(exc).__name__


def _unquote(path: str) -> str:
    """A path as typed, without the quotes that kept its spaces together."""
    if len(path) >= 2 and path[0] == path[-1] and path[0] in "'\"":
        return path[1:-1]
    return path


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@magics_class
class RPyCMagics(MagicsSettings):
    """Remote Python sessions from IPython; see the module docstring."""

    shell: Any  # an InteractiveShell once registered

    def __init__(self, shell: Any, policy: RPyCPolicy, registry: SessionRegistry,
                 **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.policy = policy
        self.registry = registry
        self.completion_listeners: list[Any] = []
        #: the events of the running (or last) cell: what is held, dropped, refused
        self.backlog = EventBacklog(policy.max_output_backlog)
        if self.default_session:
            registry.default = self.default_session

    @observe("default_session")
    def _default_changed(self, change: Any) -> None:
        self.registry.default = change["new"]

    def _on_completion_change(self) -> None:
        for listener in self.completion_listeners:
            listener()

    def _notify(self, text: str) -> None:
        say(f"{RED}[rpyc] {text}{RESET}", sys.stderr)

    # -- sessions ------------------------------------------------------------------------------

    @magic_arguments()
    @argument("target", help="[NAME=]HOST:PORT; NAME (a variable) defaults to 'remote'")
    @argument("--srp-user", metavar="USER",
              help="log in with TLS-SRP as USER; the password is asked for (getpass)")
    @argument("--password-env", metavar="VAR",
              help="read the SRP password from environment variable VAR instead of asking")
    @argument("--cert", metavar="FILE", help="TLS client certificate (PEM)")
    @argument("--key", metavar="FILE", help="TLS client private key (PEM)")
    @argument("--ca", metavar="FILE", help="CA bundle that signed the server certificate")
    @argument("--fingerprint", metavar="SHA256",
              help="pin the server certificate by its SHA-256 fingerprint")
    @argument("--tls", action="store_true", help="TLS verified against the system CA store")
    @argument("--classic", action="store_true",
              help="the server is a classic RPyC server: it runs anything sent to it")
    @argument("--insecure", action="store_true",
              help="allow plaintext TCP to a host that is not this machine (readable by "
                   "anyone on the path)")
    @argument("--timeout", type=float, metavar="S", help="seconds to connect and authenticate")
    @argument("--new", action="store_true",
              help="start the server-side session NAME afresh (a new worker, an empty "
                   "namespace) instead of re-attaching to it")
    @line_magic
    @_user_errors
    def rpyc_connect(self, line: str) -> None:
        """Open a session to a remote Python and bind it to NAME in your namespace.

        Examples::

            %rpyc_connect gpu=10.0.0.5:18861 --srp-user alice
            %rpyc_connect lab=lab.example.org:18862 --ca ca.pem --cert me.pem --key me.key
            %rpyc_connect local=127.0.0.1:18861

        Passwords are never part of the command (so never in your history): they
        are asked for (after checking the server is reachable), or read from the
        environment variable named by ``--password-env``. Plaintext is refused
        beyond loopback unless ``--insecure``. The card shows the peer, transport and cipher, user,
        round trip, the service and what it grants, and what we grant it.

        On an rpyc_ipy execution server the session NAME lives in a worker
        process there that outlives connections: connecting again re-attaches
        to it (its namespace and running jobs); ``--new`` starts it afresh.
        The card shows the worker's pid, whether this connect re-attached, and
        why the worker died if it did.
        """
        args = parse_argstring(self.rpyc_connect, line)
        target = self._target_of(args)
        self.policy.check_target(target)
        if target.plaintext_beyond_loopback:
            self._notify(f"plaintext connection to {target.host}: anyone on the path can read "
                         "and change it")
        if target.classic:
            self._notify("classic mode: the server runs any code sent to it; use only "
                         "servers you own")
        if target.password_source == "prompt":
            _check_reachable(target)
        password = read_password(target, _ask_password) if target.srp_user else None
        bar = self._progress(f"connect {target.session_name}", "items")
        try:
            with bar:
                session = open_session(target, password=password,
                                       config=self.policy.client_config(self.request_timeout),
                                       capture_fd=self.capture_fd, new=args.new,
                                       on_stage=bar.stage)
        except KeyboardInterrupt:
            step = f" ({bar.stage_text})" if bar.stage_text and \
                not bar.stage_text.startswith("connecting") else ""
            raise CellInterrupted(f"stopped connecting to {target.address}{step}; nothing is "
                                  "left open") from None
        except CoreUsageError as exc:
            raise UsageError(str(exc)) from None
        except (AuthenticationError, SessionError) as exc:
            raise SessionError(f"{target.address}: {exc}") from None
        except (OSError, RPyCError) as exc:
            raise SessionError(f"cannot connect to {target.address}: {exc}") from None
        finally:
            password = None
        session.request_timeout = self.request_timeout
        self.registry.add(session)
        if not self.default_session or self.default_session not in self.registry:
            self.default_session = session.name
        self.shell.user_ns[session.name] = session
        if self.show_card:
            from IPython.display import display

            display(session)

    def _free_name(self) -> str:
        if "remote" not in self.registry:
            return "remote"
        n = 2
        while f"remote{n}" in self.registry:
            n += 1
        return f"remote{n}"

    def _target_of(self, args: Any) -> ConnectionTarget:
        """The target of ``%rpyc_connect``'s parsed arguments (``TargetError`` if it
        cannot work)."""
        found = _TARGET.match(args.target.strip())
        if found is None:
            raise UsageError(f"expected [NAME=]HOST:PORT, got {args.target!r}")
        return ConnectionTarget(
            found.group("host").strip("[]"), int(found.group("port")),
            srp_user=args.srp_user, password_env=args.password_env, cert=args.cert,
            key=args.key, ca=args.ca, fingerprint=args.fingerprint, tls=args.tls,
            classic=args.classic, insecure=args.insecure,
            session_name=found.group("name") or self._free_name(),
            timeout=args.timeout if args.timeout else self.connect_timeout)

    @line_magic
    @_user_errors
    def rpyc_sessions(self, line: str = "") -> None:
        """List the sessions: name (* the default), peer, transport, user, kind, state,
        round trip and cells run."""
        from IPython.display import display

        display(SessionTable(list(self.registry), self.registry.default))

    @magic_arguments()
    @argument("name", help="a session name")
    @line_magic
    @_user_errors
    def rpyc_use(self, line: str) -> None:
        """Make NAME the default session of %remote, %%remote and the other magics."""
        args = parse_argstring(self.rpyc_use, line)
        self.registry.get(args.name)
        self.default_session = args.name

    @magic_arguments()
    @argument("name", nargs="?", help="a session name (default: the default session)")
    @argument("--all", action="store_true", help="close every session")
    @argument("--end", action="store_true",
              help="also end the session on the server (its worker, namespace and jobs)")
    @line_magic
    @_user_errors
    def rpyc_disconnect(self, line: str) -> None:
        """Close a session (or all of them); its netrefs stop working.

        On an execution server the session stays there (its namespace, its
        running jobs) until it has been idle for the server's timeout:
        ``%rpyc_connect`` with the same NAME re-attaches to it. ``--end`` ends
        it on the server now.
        """
        args = parse_argstring(self.rpyc_disconnect, line)
        sessions = list(self.registry) if args.all else [self.registry.get(args.name)]
        for session in sessions:
            if args.end:
                session.end()
            self.registry.remove(session.name)
            if args.end and session.has_worker:
                say(f"session {session.name!r} ended on the server (its worker and "
                      "namespace are gone)")
            elif session.has_worker:
                say(f"disconnected from session {session.name!r}; it stays on the server "
                      f"with its namespace and jobs: %rpyc_connect {session.name}=HOST:PORT "
                      "re-attaches, --end ends it")
        if self.default_session not in self.registry:
            self.default_session = self.registry.default

    @magic_arguments()
    @argument("name", nargs="?", help="a session name (default: the default session)")
    @line_magic
    @_user_errors
    def rpyc_restart(self, line: str) -> None:
        """Replace the session's worker on the server with a fresh one: its namespace
        and jobs are gone (the way out after the worker died, or a cell hangs)."""
        args = parse_argstring(self.rpyc_restart, line)
        session = self.registry.get(args.name)
        if session.closed:
            raise session.closed_error()
        if not session.has_worker:
            raise SessionError(f"session {session.name!r} has no worker to restart: only "
                               "rpyc_ipy execution servers run sessions in workers")
        try:
            facts = session.restart()
        except (OSError, RPyCError) as exc:
            raise SessionError(f"cannot restart session {session.name!r}: "
                               f"{_first_line(exc)}") from None
        say(f"session {session.name!r} restarted: a fresh worker (pid {facts.get('pid')}); "
              "the old namespace is gone")

    # -- running code -----------------------------------------------------------------------------

    @magic_arguments()
    @argument("-s", "--session", dest="sessions", metavar="NAME[,NAME...]",
              help="run on these sessions (default: the default session)")
    @argument("--all", action="store_true", help="run on every open session")
    @argument("-o", "--output", metavar="VAR",
              help="store the last expression's value in VAR (by value when it is plain "
                   "data, else a netref; a dict by session with several sessions)")
    @argument("--timeout", type=float, metavar="S",
              help="cancel the cell after S seconds (default: RPyCMagics.default_timeout)")
    @argument("--no-stream", action="store_true", help="show the output at the end")
    @argument("--bg", action="store_true",
              help="start the cell as a background job and return at once; "
                   "%%rpyc_jobs lists jobs, %%rpyc_result shows one")
    @line_cell_magic
    @no_var_expand
    @_user_errors
    def remote(self, line: str, cell: str | None = None) -> Any:
        """Run code on remote sessions; output streams live, the last expression is
        the cell's result (by value).

        Examples::

            %%remote
            import socket; print(socket.gethostname())
            6 * 7

            %%remote -s a,b -o sizes
            len(data)

            %remote -s gpu torch.cuda.is_available()

        The code is sent verbatim (no ``$var``/``{var}`` expansion). The stop
        button cancels the remote work (cooperatively, then with
        KeyboardInterrupt, then by abandoning the thread) and then stops the
        notebook. Remote errors show the remote traceback. On several sessions
        the cell runs concurrently and each line is labelled ``[name]``.

        ``--bg`` starts the cell as a job on one session and returns at once
        with its id: the job runs on the server even while the notebook is
        disconnected; ``%rpyc_jobs`` lists jobs and ``%rpyc_result`` shows a
        job's output and result.
        """
        if cell is None:
            options, code = split_options(line)
        else:
            options, code = line, cell
        args = parse_argstring(self.remote, options)
        if not code.strip():
            return None
        if args.output and not args.output.isidentifier():
            raise UsageError(f"-o needs a variable name, got {args.output!r}")
        sessions = self._targets(args.sessions, args.all)
        if args.bg:
            if len(sessions) > 1 or args.output or args.timeout is not None or args.no_stream:
                raise UsageError("--bg starts a job on one session; -o, --timeout and "
                                 "--no-stream do not apply (see %rpyc_result)")
            self._start_job(sessions[0], code)
            return None
        timeout = args.timeout if args.timeout is not None else (self.default_timeout or None)
        return self._run(sessions, code, timeout, args.output, not args.no_stream)

    def _start_job(self, session: RemoteSession, code: str) -> None:
        job = self._job_request(session, functools.partial(
            session.start_job, code, include=tuple(sorted(self.policy.mimetypes())),
            max_bundle_bytes=self.policy.max_bundle_bytes, grace=self.cancel_grace))
        say(f"started job {job} on session {session.name!r}: "
              f"%rpyc_result {session.name} {job} shows it")

    def _targets(self, names: str | None, all_sessions: bool) -> list[RemoteSession]:
        if all_sessions:
            sessions = [s for s in self.registry if not s.closed and s.can_execute]
            if not sessions:
                raise UsageError("no open session runs cells")
            return sessions
        if names:
            chosen = [self.registry.get(n.strip()) for n in names.split(",") if n.strip()]
            return list({s.name: s for s in chosen}.values())
        return [self.registry.get(None)]

    def _run(self, sessions: list[RemoteSession], code: str, timeout: float | None,
             output: str | None, stream: bool) -> Any:
        events = self.backlog = EventBacklog(self.policy.max_output_backlog)
        fan_out = len(sessions) > 1
        cell_output = CellOutput(self.policy, labels=fan_out, stream=self.stream and stream)
        runs: list[RemoteExecution] = []
        try:
            for session in sessions:
                runs.append(session.start(
                    code, events, want_value=bool(output),
                    include=tuple(sorted(self.policy.mimetypes())),
                    stream_interval=self.stream_interval, grace=self.cancel_grace,
                    max_bundle_bytes=self.policy.max_bundle_bytes,
                    max_value_bytes=self.policy.max_pull_bytes))
        except BaseException as exc:
            for run in runs:
                run.cancel(force=True)
            if isinstance(exc, SessionError):
                raise
            raise SessionError(f"cannot start the cell: {exc}") from None

        # several sessions: "sessions done: 2 of 3" once the cell outlasts progress_delay
        bar = self._progress("sessions done", "items", len(sessions)) if fan_out else None

        def handle(execution: RemoteExecution, event: tuple[Any, ...]) -> None:
            if bar is not None:  # a session's output starts a line, not after the bar
                bar.hide()
            cell_output(execution, event)
            if event[0] == "done":
                self._finished(event[1], fan_out)
            if bar is not None and event[0] == "done":
                bar.advance(1)
                bar.stage(f"{execution.session.name} finished")  # drawn at once: few sessions
            elif bar is not None:  # any event redraws: the bar shows while output flows
                bar.update(bar.done)

        def notify(text: str) -> None:
            if bar is not None:  # the note starts a line too
                bar.hide()
            self._notify(text)

        with bar or contextlib.nullcontext():
            outcomes = wait_all(runs, events, handle, timeout=timeout,
                                grace=self.interrupt_grace, notify=notify)
        if output:
            self._store(output, outcomes, fan_out)
        # the number on the cell's prompt: IPython 9 counts the running cell already in
        # execution_count, older versions do not; the display hook knows which
        return self._cell_value(outcomes, fan_out, prompt=self.shell.displayhook.prompt_count)

    def _cell_value(self, outcomes: list[ExecutionOutcome], fan_out: bool,
                    prompt: int | None) -> Any:
        """The cell's ``Out`` (one session's result), or the remote errors raised
        (labelled with the notebook's ``prompt`` number, when the cell is this one)."""
        failed = [o for o in outcomes if o.status != "ok"]
        if failed:
            raise RemoteExecutionError(failed, prompt)
        if not fan_out and outcomes and outcomes[0].data:
            data, metadata = policy_bundle(outcomes[0].data, outcomes[0].metadata, self.policy)
            return RemoteResult(outcomes[0].session, data, metadata)
        return None

    def _finished(self, outcome: ExecutionOutcome, fan_out: bool) -> None:
        if outcome.status == "cancelled" and outcome.note:
            self._notify(f"{outcome.session}: {outcome.note}")
        if fan_out and outcome.status == "ok" and outcome.data:
            from IPython.display import display

            data, metadata = policy_bundle(outcome.data, outcome.metadata, self.policy)
            say(f"[{outcome.session}] Out:")
            display(data, raw=True, metadata=metadata or None)

    def _store(self, name: str, outcomes: list[ExecutionOutcome], fan_out: bool) -> None:
        def value(outcome: ExecutionOutcome) -> Any:
            return outcome.load_value()

        if fan_out:
            self.shell.user_ns[name] = {o.session: value(o) for o in outcomes
                                        if o.status == "ok"}
        elif outcomes and outcomes[0].status == "ok":
            self.shell.user_ns[name] = value(outcomes[0])

    # -- background jobs ----------------------------------------------------------------------

    @magic_arguments()
    @argument("name", nargs="?", help="a session name (default: the default session)")
    @line_magic
    @_user_errors
    def rpyc_jobs(self, line: str) -> None:
        """List a session's running and finished jobs (and its recent cells) with their
        status and elapsed time; ``%rpyc_result [NAME] JOB`` shows one."""
        from IPython.display import display

        args = parse_argstring(self.rpyc_jobs, line)
        session = self.registry.get(args.name)
        display(JobTable(session.name, self._job_request(session, session.jobs)))

    @magic_arguments()
    @argument("name", nargs="?", help="a session name (default: the default session); "
              "one argument that is not a session name is the JOB")
    @argument("job", nargs="?", help="a job id from %%rpyc_jobs (default: the latest job)")
    @argument("--cancel", action="store_true", help="cancel the job instead")
    @line_magic
    @_user_errors
    def rpyc_result(self, line: str) -> Any:
        """Show a job's output so far and its result, streaming while it still runs.

        Examples::

            %rpyc_result                 # the latest job of the default session
            %rpyc_result x3              # job x3 of the default session
            %rpyc_result lab x3
            %rpyc_result --cancel x3     # stop the job

        The result is the cell's value, errors show the remote traceback. The
        stop button stops waiting, not the job: it keeps running on the server
        (also while the notebook is disconnected); ``%rpyc_result`` follows it
        again.
        """
        args = parse_argstring(self.rpyc_result, line)
        name, job = args.name, args.job
        if job is None and name is not None and name not in self.registry:
            name, job = None, name
        session = self.registry.get(name)
        jobs = [str(j["id"]) for j in self._job_request(session, session.jobs)
                if type(j.get("id")) is str and (job is not None or j.get("background"))]
        if job is None and not jobs:
            raise UsageError(f"no jobs on session {session.name!r}: start one with "
                             "%%remote --bg")
        job = job or jobs[-1]
        if job not in jobs:
            raise UsageError(f"no job {job!r} on session {session.name!r} (finished ones "
                             f"are kept for a while): %rpyc_jobs {session.name} lists them")
        if args.cancel:
            state = self._job_request(session, session.cancel_job, job)
            say(f"job {job} on session {session.name!r}: "
                  + ("cancelling" if state == "cancelling" else "not running"))
            return None
        return self._follow(session, job)

    def _job_request(self, session: RemoteSession, request: Callable[..., Any],
                     *args: Any) -> Any:
        """``request(*args)``; a failure is one line naming the session."""
        try:
            return request(*args)
        except SessionError:
            raise
        except (OSError, RPyCError) as exc:
            raise SessionError(f"session {session.name!r}: {_first_line(exc)}") from None

    def _follow(self, session: RemoteSession, job: str) -> Any:
        events = self.backlog = EventBacklog(self.policy.max_output_backlog)
        cell_output = CellOutput(self.policy, stream=self.stream)
        run = self._job_request(session, session.follow, job, events)
        try:
            outcomes = wait_all([run], events, cell_output, notify=self._notify,
                                stop_cancels=False)
        except KeyboardInterrupt:
            raise CellInterrupted(f"stopped waiting; job {job} keeps running on session "
                                  f"{session.name!r}: %rpyc_result {session.name} {job} "
                                  "follows it again") from None
        return self._cell_value(outcomes, False, prompt=None)

    # -- values ---------------------------------------------------------------------------------

    @magic_arguments()
    @argument("session", help="the session name")
    @argument("names", nargs="+", metavar="NAME[=LOCAL]",
              help="local variables to send; REMOTE=LOCAL binds another name there")
    @argument("--pickle", action="store_true",
              help="pickle what is not plain data (needs allow_pickle on both sides)")
    @line_magic
    @_user_errors
    def rpyc_push(self, line: str) -> None:
        """Copy local variables into a session's namespace, by value.

        Plain data (numbers, str, bytes, and lists/tuples/dicts/sets of them), numpy
        arrays and pandas DataFrames/Series travel by value (arrays and frames need
        ``rpyc_ipy[data]`` on the server); anything else needs ``--pickle`` and
        RPyCPolicy.allow_pickle on both sides. Sizes are bounded by
        RPyCPolicy.max_push_bytes. A long push
        shows a progress line (after RPyCMagics.progress_delay); more than 4 MiB
        goes in several requests and the names are bound together by the last one,
        so the stop button before it binds none.
        """
        args = parse_argstring(self.rpyc_push, line)
        session = self.registry.get(args.session)
        values: dict[str, Any] = {}
        for spec in args.names:
            remote, _, local = spec.partition("=")
            local = local or remote
            if not remote.isidentifier() or not local.isidentifier():
                raise UsageError(f"{spec!r} is not NAME or REMOTE=LOCAL")
            if local not in self.shell.user_ns:
                raise UsageError(f"no local variable {local!r}")
            values[remote] = self.shell.user_ns[local]
        try:
            with self._progress(f"push to {session.name}", "bytes") as bar:
                sizes = session.push(values, allow_pickle=args.pickle and self.policy.allow_pickle,
                                     max_bytes=self.policy.max_push_bytes, on_progress=bar)
        except CellInterrupted:  # during the request that binds: it may have
            raise
        except KeyboardInterrupt:
            raise CellInterrupted(f"push to {session.name} stopped before its last request: "
                                  "nothing was assigned there") from None
        say(f"pushed to {session.name}: " +
              ", ".join(f"{k} ({_size(v)})" for k, v in sizes.items()))

    @magic_arguments()
    @argument("session", help="the session name")
    @argument("names", nargs="+", metavar="NAME[=REMOTE]",
              help="remote names (or paths like df.shape) to copy here; LOCAL=REMOTE "
                   "binds another local name")
    @argument("--pickle", action="store_true",
              help="accept pickled values (needs allow_pickle on both sides)")
    @line_magic
    @_user_errors
    def rpyc_pull(self, line: str) -> None:
        """Copy values from a session into local variables, by value.

        The counterpart of %rpyc_push: numpy arrays and pandas frames arrive as local
        objects (with ``rpyc_ipy[data]`` here), checked against RPyCPolicy.max_pull_bytes
        before anything is allocated; large ones come in chunks.
        A long pull shows a progress line; the names are assigned here only once
        every value came, so the stop button leaves them as they were.
        """
        args = parse_argstring(self.rpyc_pull, line)
        session = self.registry.get(args.session)
        wanted: dict[str, str] = {}
        for spec in args.names:
            local, sep, remote = spec.partition("=")
            remote = remote if sep else local
            if not local.isidentifier():
                raise UsageError(f"{spec!r}: {local!r} is not a variable name")
            wanted[local] = remote
        try:
            with self._progress(f"pull from {session.name}", "items") as bar:
                got = session.pull(list(dict.fromkeys(wanted.values())),
                                   allow_pickle=args.pickle and self.policy.allow_pickle,
                                   max_bytes=self.policy.max_pull_bytes, on_progress=bar,
                                   on_bytes=lambda done, total: bar.detail(
                                       f"{format_amount(done, 'bytes')} of "
                                       f"{format_amount(total, 'bytes')}"))
        except KeyboardInterrupt:
            raise CellInterrupted(f"pull from {session.name} stopped: nothing was assigned "
                                  "here") from None
        for local, remote in wanted.items():
            self.shell.user_ns[local] = got[remote][0]
        say(f"pulled from {session.name}: " +
              ", ".join(f"{local} ({_size(got[remote][1])})" for local, remote in wanted.items()))

    def _progress(self, label: str, unit: Unit, total: int | None = None) -> Progress:
        """A progress line for work that ends in its own one-line message if it stops or
        fails (so an unseen bar stays hidden then)."""
        return Progress(label, total, unit=unit, delay=self.progress_delay, shell=self.shell,
                        quiet_unseen=True)

    # -- files ------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("local", help="a local file or folder")
    @argument("remote", help="its path on the server (into it if that is a folder or ends "
                             "with /)")
    @argument("-s", "--session", help="the session (default: the default session)")
    @argument("--resume", action="store_true",
              help="continue a stopped upload from its .part file")
    @line_magic
    @_user_errors
    def rpyc_upload(self, line: str) -> None:
        """Send a file or a folder (recursively) to the session's server.

        Chunked, with a progress bar; verified by SHA-256; modes and modification
        times kept. The stop button stops it and keeps the partial file: the same
        line with ``--resume`` continues. The server decides which folders
        sessions may use (``rpyc-ipy serve --file-root``)."""
        args = parse_argstring(self.rpyc_upload, line)
        self._transfer("upload", args.session, args.local, args.remote, args.resume)

    @magic_arguments()
    @argument("remote", help="a file or folder on the server")
    @argument("local", help="its local path (into it if that is a folder or ends with /)")
    @argument("-s", "--session", help="the session (default: the default session)")
    @argument("--resume", action="store_true",
              help="continue a stopped download from its .part file")
    @line_magic
    @_user_errors
    def rpyc_download(self, line: str) -> None:
        """Fetch a file or a folder (recursively) from the session's server; the
        counterpart of %rpyc_upload, with the same checks."""
        args = parse_argstring(self.rpyc_download, line)
        self._transfer("download", args.session, args.remote, args.local, args.resume)

    def _transfer(self, direction: str, name: str | None, source: str, destination: str,
                  resume: bool) -> None:
        session = self.registry.get(name)
        method = session.upload if direction == "upload" else session.download
        source, destination = _unquote(source), _unquote(destination)
        bar: Progress | None = None

        def report(done: int, total: int) -> None:
            nonlocal bar  # shown once the transfer is under way, not for a refusal
            # the first report is what a resume kept: it is not part of this run's rate
            bar = bar or Progress(f"{direction} {source}", total, delay=self.progress_delay,
                                  shell=self.shell, start=done)
            bar.update(done, total)

        try:
            result = method(source, destination, resume=resume, on_progress=report)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close("stopped")
            raise CellInterrupted(f"{direction} stopped; the partial file is kept: the same "
                                  "line with --resume continues") from None
        except BaseException as exc:
            if bar is not None:
                bar.close("failed")
            if isinstance(exc, (TransferError, SessionError)) or \
                    not isinstance(exc, (OSError, RPyCError)):
                raise
            raise SessionError(f"session {session.name!r}: {_first_line(exc)}") from None
        if bar is not None:
            bar.close("done")
        resumed = f", {_size(result.moved)} {'sent' if direction == 'upload' else 'received'}" \
            " this time" if result.moved < result.size else ""
        say(f"{direction}ed {result.files} file{'s' * (result.files != 1)} "
            f"({_size(result.size)}{resumed}) to {result.destination}"
            f"{' on ' + session.name if direction == 'upload' else ''}, SHA-256 verified")
        for note in result.skipped:
            say(f"  skipped {note}")

    # -- looking around ----------------------------------------------------------------------------

    @magic_arguments()
    @argument("name", nargs="?", help="a session name (default: the default session)")
    @line_magic
    @_user_errors
    def rpyc_policy(self, line: str) -> None:
        """Show what a session's server grants us, what we grant it, the transport and
        user, and the RPyCPolicy/RPyCMagics settings in force."""
        from IPython.display import display

        args = parse_argstring(self.rpyc_policy, line)
        display(PolicyReport(self.registry.get(args.name), self.policy, self))

    @magic_arguments()
    @argument("expr", nargs="*", help="what to browse: a remote name/path (df.columns), or a "
              "local netref variable; default: the remote namespace")
    @argument("-s", "--session", help="the session (default: the default session)")
    @argument("-l", "--local", action="store_true",
              help="EXPR is a local variable holding a netref, even if the session has "
                   "the same name")
    @argument("--depth", type=int, default=2, help="levels prefetched for the HTML view")
    @argument("--private", action="store_true", help="show _private names too")
    @argument("--html", action="store_true", help="static HTML even if ipywidgets is installed")
    @line_magic
    @_user_errors
    def rpyc_browse(self, line: str) -> None:
        """Browse a remote object: a tree that expands lazily, one request per expansion.

        Examples::

            %rpyc_browse                 # the default session's namespace
            %rpyc_browse df.columns      # a path there
            %rpyc_browse -s lab config   # in another session
            %rpyc_browse -l cols         # the local variable cols (a netref)

        A name is looked up in the session's namespace first, so ``b`` is the
        remote ``b`` even if this notebook has a ``b`` too; when the session has
        no such name (or no namespace, as a plain service), a local variable
        holding a netref is browsed instead; ``-l`` asks for the local one.
        Each node shows its type and short repr. With ipywidgets installed
        (``pip install rpyc_ipy[widgets]``) each click expands a node;
        otherwise a static HTML tree of ``--depth`` levels.
        """
        from IPython.display import display

        args = parse_argstring(self.rpyc_browse, line)
        expr = " ".join(args.expr).strip()
        browser, path = self._browse_target(expr, args)
        title = expr or None
        # widgets need a front end that renders them: a terminal would print the
        # widget's repr, so it gets the text tree
        if not args.html and in_kernel(self.shell):
            try:
                display(widget(browser, path, title))
                return
            except ImportError:
                pass
        display(TreeView(browser, path, depth=args.depth, title=title))  # text in a terminal

    def _browse_target(self, expr: str, args: Any) -> tuple[Browser, str | None]:
        """The browser and path ``%rpyc_browse`` shows: remote first, then a local netref
        (``None`` path: the netref itself)."""
        head = re.match(r"[A-Za-z_]\w*", expr)
        local = head is not None and head.group() in self.shell.user_ns
        if args.local:
            if not local:
                raise UsageError(f"-l: no local variable {expr!r}")
            return self._local_browser(expr, args), None
        if local and args.session is None:
            try:
                session: RemoteSession | None = self.registry.get(None)
            except CoreUsageError:  # no default session: the netref names its own
                session = None
            if session is None or session.closed or not session.has_engine:
                return self._local_browser(expr, args), None
            # the same name may be here and there: ask the session first (that node is
            # kept, so the view costs no extra request)
            remote = self._browser(session, None, args)
            if not remote.fetch([expr])[0].undefined:
                return remote, expr
            return self._local_browser(expr, args, remote_too=session.name), None
        session = self.registry.get(args.session)
        browser = self._browser(session, None, args)
        # a name defined nowhere is an error, not a tree of one failed node (the node is
        # kept, so the view costs no extra request)
        if head is not None and session.has_engine and browser.fetch([expr])[0].undefined:
            raise UsageError(f"session {session.name!r} has no name {head.group()!r}, and "
                             "this notebook has no such variable")
        return browser, expr

    def _local_browser(self, expr: str, args: Any, remote_too: str = "") -> Browser:
        from rpyc_ipy.core.netref import BaseNetref

        value = self.shell.ev(expr)
        if not isinstance(value, BaseNetref):
            where = f"; session {remote_too!r} has no such name" if remote_too else ""
            raise UsageError(f"{expr!r} is a local {type(value).__name__}, not a remote "
                             f"object{where}")
        session = self.registry.for_conn(object.__getattribute__(value, "____conn__"))
        if session is None:
            raise UsageError(f"{expr!r} belongs to a connection that is not a session")
        return self._browser(session, value, args)

    def _browser(self, session: RemoteSession, root: Any, args: Any) -> Browser:
        return Browser(session, root, max_items=self.policy.max_items, private=args.private,
                       timeout=self.request_timeout)

    def close(self) -> None:
        """Close every session (the extension is unloading)."""
        self.registry.close_all()

