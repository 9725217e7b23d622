"""The execution runtime with real processes over real sockets: a worker process per
session, isolation between users, real interrupts, death reports and restarts,
sessions that outlive their connection, background jobs, reaping and caps."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.auth import SRPAuthenticator, UserDB
from rpyc_ipy.core.helpers import async_
from rpyc_ipy.remote import ExecutionService, RuntimeSettings, SessionRegistry

pytestmark = pytest.mark.timeout(120)

PASSWORDS = {"alice": "correct horse", "bob": "battery staple"}
WAIT = 30.0  #: generous: worker start-up and signals on a loaded 2-core machine


class Rig:
    """A notebook server on 127.0.0.1 with SRP users alice and bob."""

    def __init__(self, start_server: Callable[..., Any], userdb: UserDB,
                 settings: RuntimeSettings) -> None:
        self.registry = SessionRegistry(settings)
        service = ExecutionService.configured(registry=self.registry)
        self.server = start_server(service, authenticator=SRPAuthenticator(userdb),
                                   channel_handler=service.channel_handler())
        self.conns: list[Any] = []

    def connect(self, user: str = "alice", channel_ticket: str | None = None) -> Any:
        """A client that serves the server's callbacks (output) while the test waits."""
        conn = rpyc_ipy.srp_connect("127.0.0.1", self.server.port, user, PASSWORDS[user],
                                    channel_ticket=channel_ticket)
        conn.start_serving()
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.registry.close()


@pytest.fixture
def make_rig(start_server: Callable[..., Any], userdb: UserDB
             ) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**settings: Any) -> Rig:
        settings.setdefault("capture_fd", False)
        rig = Rig(start_server, userdb, RuntimeSettings(**settings))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def _value(outcome: tuple[Any, ...]) -> str:
    assert outcome[0] == "ok", outcome
    return str(dict(outcome[2][0])["text/plain"])


def _stdout(events: Any) -> str:
    return "".join(e[2] for e in events if e[0] == "stream" and e[1] == "stdout")


def _last_mark(events: Any) -> int:
    return max((e[1] for e in events if e[0] == "mark"), default=0)


class Collector:
    """An ``emit`` callback that keeps every event, with a hook on each batch."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.changed = threading.Event()

    def __call__(self, batch: tuple[Any, ...]) -> None:
        self.events.extend(batch)
        self.changed.set()

    @property
    def stdout(self) -> str:
        return _stdout(self.events)


# -- one process per session, and isolation between users ---------------------------------

def test_each_session_runs_in_a_worker_process_of_its_own(rig: Rig) -> None:
    alice, bob = rig.connect("alice"), rig.connect("bob")
    a, b = dict(alice.root.attach("lab")), dict(bob.root.attach("lab"))
    assert a["user"] == "alice" and b["user"] == "bob" and not a["reattached"]
    assert len({a["pid"], b["pid"], os.getpid()}) == 3
    assert _value(alice.root.execute("import os\nos.getpid()", None, ())) == str(a["pid"])


def test_users_cannot_see_each_others_objects_or_cell_sources(rig: Rig) -> None:
    alice, bob = rig.connect("alice"), rig.connect("bob")
    alice.root.attach("lab")
    bob.root.attach("lab")
    alice.root.execute("secret = ['owner', 'alice', 12345]", None, ())
    scan = ("import gc, linecache\n"
            "held = sum(1 for o in gc.get_objects() if isinstance(o, list) "
            "and len(o) == 3 and o[2] == 12345)\n"
            "marker = 'own' + 'er'\n"  # built at run time: this cell's source lacks it
            "sources = sum(1 for v in list(linecache.cache.values()) if v[2] and "
            "marker + \"', 'alice'\" in ''.join(v[2]))\n"
            "(held, sources)")
    assert _value(alice.root.execute(scan, None, ())) == "(1, 1)"  # the scan finds it there
    assert _value(bob.root.execute(scan, None, ())) == "(0, 0)"


def test_fd_and_subprocess_output_stays_in_its_users_cell(make_rig: Callable[..., Rig],
                                                          tmp_path: Path) -> None:
    rig = make_rig(capture_fd=True)
    alice, bob = rig.connect("alice"), rig.connect("bob")
    alice.root.attach("lab")
    bob.root.attach("lab")
    # a thread bob started in an earlier cell keeps printing, at Python and fd level
    bob.root.execute("import os, threading, time\n"
                     "def chatter():\n"
                     "    while True:\n"
                     "        print('bob-thread', flush=True)\n"
                     "        os.write(2, b'bob-thread-fd\\n')\n"
                     "        time.sleep(0.01)\n"
                     "threading.Thread(target=chatter, daemon=True).start()", None, ())
    flag = tmp_path / "go"
    waiting = Collector()
    cell = ("import os, subprocess, time, pathlib\n"
            "os.write(1, b'alice-fd\\n')\n"
            "subprocess.run(['echo', 'alice-sub'])\n"
            "print('alice-waits', flush=True)\n"
            f"flag = pathlib.Path({str(flag)!r})\n"
            "for _ in range(3000):\n"
            "    if flag.exists(): break\n"
            "    time.sleep(0.01)\n"
            "os.write(1, b'alice-done\\n')")
    running = async_(alice.root.execute)(cell, waiting, (("stream_interval", 0.02),))
    wait_until(lambda: "alice-waits" in waiting.stdout, WAIT, what="alice's cell to start")
    theirs = bob.root.execute("import os, subprocess\nos.write(1, b'bob-fd\\n')\n"
                              "subprocess.run(['echo', 'bob-sub'])", None, ())
    flag.touch()
    running.wait(WAIT)
    mine = waiting.stdout + _stdout(running.value[3])
    assert {"alice-fd", "alice-sub", "alice-done"} <= set(mine.split())
    assert "bob" not in mine
    # bob's own thread may print into bob's cell (as in Jupyter); never into alice's
    assert set(_stdout(theirs[3]).split()) >= {"bob-fd", "bob-sub"}


# -- interrupts, death and restart -------------------------------------------------------------

def test_the_stop_button_interrupts_a_sleep_in_the_worker(rig: Rig) -> None:
    conn = rig.connect()
    conn.root.attach("lab")
    running = async_(conn.root.execute)("import time\ntime.sleep(600)", None, ())
    wait_until(lambda: conn.root.running(), WAIT, what="the cell to start")
    assert conn.root.interrupt() == "interrupted"
    running.wait(WAIT)  # far below the 600 s sleep
    outcome = running.value
    assert outcome[4][0] == "KeyboardInterrupt"
    assert _value(conn.root.execute("'still here'", None, ())) == "'still here'"


def test_cancel_of_one_cell_interrupts_a_blocking_call(rig: Rig) -> None:
    conn = rig.connect()
    conn.root.attach("lab")
    options = (("exec_id", "sleepy"),)
    running = async_(conn.root.execute)("import time\ntime.sleep(600)", None, options)
    wait_until(lambda: "sleepy" in conn.root.running(), WAIT, what="the cell to start")
    conn.root.cancel("sleepy")
    running.wait(WAIT)
    assert running.value[0] == "cancelled"


def test_a_dead_worker_is_reported_in_one_line_and_restart_starts_a_fresh_one(rig: Rig) -> None:
    alice, bob = rig.connect("alice"), rig.connect("bob")
    first = dict(alice.root.attach("lab"))
    bob.root.attach("lab")
    alice.root.execute("kept = 1", None, ())
    with pytest.raises(RuntimeError) as caught:
        alice.root.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", None, ())
    message = caught.value.args[0]
    assert "\n" not in message and "SIGKILL" in message and "%rpyc_restart" in message
    with pytest.raises(RuntimeError, match="SIGKILL"):  # still dead, not silently replaced
        alice.root.execute("1", None, ())
    assert _value(bob.root.execute("'bob is fine'", None, ())) == "'bob is fine'"
    fresh = dict(alice.root.restart())
    assert fresh["pid"] != first["pid"] and fresh["restarts"] == 1
    assert _value(alice.root.execute("'kept' in dir()", None, ())) == "False"


def test_a_cell_that_ignores_interrupts_is_ended_by_a_restart(rig: Rig) -> None:
    conn = rig.connect()
    first = dict(conn.root.attach("lab"))
    seen = Collector()
    stubborn = ("import time\nwhile True:\n    try:\n        time.sleep(600)\n"
                "    except KeyboardInterrupt:\n        print('ignored', flush=True)")
    running = async_(conn.root.execute)(stubborn, seen, (("stream_interval", 0.02),))
    wait_until(lambda: conn.root.running(), WAIT, what="the cell to start")
    conn.root.interrupt()
    wait_until(lambda: "ignored" in seen.stdout, WAIT, what="the cell to shrug off SIGINT")
    assert conn.root.running()
    fresh = dict(conn.root.restart())
    running.wait(WAIT)
    assert running.error and "restarted" in str(running.exception)
    assert fresh["pid"] != first["pid"]
    assert _value(conn.root.execute("1 + 1", None, ())) == "2"


def test_worker_resource_limits_apply(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(limits={"RLIMIT_NOFILE": 256})
    conn = rig.connect()
    conn.root.attach("lab")
    cell = "import resource\nresource.getrlimit(resource.RLIMIT_NOFILE)"
    assert _value(conn.root.execute(cell, None, ())) == "(256, 256)"


# -- sessions outlive connections ------------------------------------------------------------

def test_a_running_cell_and_its_output_survive_a_dropped_connection(rig: Rig,
                                                                    tmp_path: Path) -> None:
    flag = tmp_path / "go"
    first = rig.connect()
    first.root.attach("lab")
    first.root.execute("kept = 'namespace survives'", None, ())
    seen = Collector()
    cell = ("import pathlib, time\nprint('before', flush=True)\n"
            f"flag = pathlib.Path({str(flag)!r})\n"
            "for _ in range(3000):\n"
            "    if flag.exists(): break\n"
            "    time.sleep(0.01)\n"
            "for i in range(3):\n    print('after', i, flush=True)\n"
            "42")
    async_(first.root.execute)(cell, seen, (("exec_id", "long"), ("stream_interval", 0.02)))
    wait_until(lambda: "before" in seen.stdout, WAIT, what="the first output")
    mark = _last_mark(seen.events)
    first.close()  # the network drops
    flag.touch()  # the cell goes on without anybody attached

    second = rig.connect()
    info = dict(second.root.attach("lab"))
    assert info["reattached"]
    later = Collector()
    outcome = second.root.resume("long", later, mark)
    assert _value(outcome) == "42"
    replayed = later.stdout + _stdout(outcome[3])
    assert replayed.split("\n")[:3] == ["after 0", "after 1", "after 2"]
    assert "before" not in replayed
    assert _value(second.root.execute("kept", None, ())) == "'namespace survives'"


def test_background_jobs_run_on_while_nobody_is_attached(rig: Rig, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    first = rig.connect()
    first.root.attach("lab")
    job = first.root.start(
        f"import pathlib, time\nfor _ in range(3000):\n    if pathlib.Path({str(flag)!r})"
        ".exists(): break\n    time.sleep(0.01)\nprint('job done')\n'result'",
        None, (("background", True),))
    first.close()
    flag.touch()
    second = rig.connect()
    second.root.attach("lab")
    jobs = [dict(fields) for fields in second.root.jobs()]
    assert [(j["id"], j["background"]) for j in jobs] == [(job, True)]
    outcome = second.root.resume(job, None, 0)
    assert _value(outcome) == "'result'" and "job done" in _stdout(outcome[3])
    assert dict(second.root.jobs()[0])["status"] == "ok"


def test_attach_new_starts_a_fresh_namespace(rig: Rig) -> None:
    conn = rig.connect()
    conn.root.attach("lab")
    conn.root.execute("old = 1", None, ())
    assert not dict(conn.root.attach("lab", True))["reattached"]
    assert _value(conn.root.execute("'old' in dir()", None, ())) == "False"


def test_users_see_only_their_own_sessions(rig: Rig) -> None:
    alice, bob = rig.connect("alice"), rig.connect("bob")
    alice.root.attach("lab")
    alice.root.attach("gpu")
    bob.root.attach("lab")
    assert sorted(dict(s)["session"] for s in alice.root.sessions()) == ["gpu", "lab"]
    assert [dict(s)["user"] for s in bob.root.sessions()] == ["bob"]
    assert not bob.root.close_session("gpu")  # alice's: bob cannot even see it
    assert alice.root.close_session("gpu")
    assert [dict(s)["session"] for s in alice.root.sessions()] == ["lab"]


# -- reaping and caps ------------------------------------------------------------------------

def test_a_detached_idle_session_is_reaped_and_a_busy_one_is_kept(make_rig: Callable[..., Rig],
                                                                  tmp_path: Path) -> None:
    rig = make_rig(idle_timeout=0.3)
    idle = rig.connect()
    idle.root.attach("idle")
    busy = rig.connect()
    busy.root.attach("busy")
    flag = tmp_path / "go"
    busy.root.start(f"import pathlib, time\nwhile not pathlib.Path({str(flag)!r}).exists():\n"
                    "    time.sleep(0.01)", None, (("background", True),))
    sessions = {s.name: s for s in rig.registry.sessions_of("alice")}
    idle.close()
    busy.close()
    idle_worker = sessions["idle"].worker
    assert idle_worker is not None
    assert idle_worker.exited.wait(WAIT)
    first_detach = sessions["busy"].detached_since
    assert first_detach is not None
    # the reaper looked at the busy session and put it off instead of ending it
    wait_until(lambda: (sessions["busy"].detached_since or 0) > first_detach, WAIT,
               what="the reaper to postpone the busy session")
    busy_worker = sessions["busy"].worker
    assert busy_worker is not None and busy_worker.alive
    flag.touch()
    assert busy_worker.exited.wait(WAIT)
    assert len(rig.registry) == 0


def test_caps_on_sessions_give_a_clear_error(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(max_sessions_per_user=1)
    conn = rig.connect()
    conn.root.attach("one")
    with pytest.raises(RuntimeError, match="maximum per user"):
        rig.connect().root.attach("two")
    assert dict(rig.connect("bob").root.attach("two"))["user"] == "bob"


def test_sessions_that_come_and_go_leave_no_process_or_thread_behind(rig: Rig) -> None:
    baseline = threading.active_count()
    workers = []
    for index in range(8):
        conn = rig.connect()
        conn.root.attach(f"s{index}")
        session = rig.registry.sessions_of("alice")[-1]
        workers.append(session.worker)
        assert conn.root.close_session(f"s{index}")
        conn.close()
    assert all(w is not None and w.exited.wait(WAIT) for w in workers)
    assert len(rig.registry) == 0
    assert wait_until(lambda: threading.active_count() <= baseline + 1, WAIT)


# -- data channels: the client's bytes relayed to the worker ------------------------------------

def test_a_data_channel_speaks_to_the_sessions_worker_directly(rig: Rig) -> None:
    control = rig.connect()
    info = dict(control.root.attach("lab"))
    data = rig.connect(channel_ticket=control.root.channel_ticket())
    assert dict(data.root.hello())["pid"] == info["pid"]
    data.root.execute("through_the_relay = 7", None, ())
    assert _value(control.root.execute("through_the_relay", None, ())) == "7"
    seen = Collector()
    outcome = data.root.execute("print('streamed')\n6 * 7", seen, ())
    assert _value(outcome) == "42" and "streamed" in seen.stdout + _stdout(outcome[3])
    # the stop button still goes through the control connection
    running = async_(data.root.execute)("import time\ntime.sleep(600)", None, ())
    wait_until(lambda: control.root.running(), WAIT, what="the cell to start")
    control.root.interrupt()
    running.wait(WAIT)
    assert running.value[4][0] == "KeyboardInterrupt"


def test_channel_tickets_are_one_time_and_per_user(rig: Rig) -> None:
    alice = rig.connect("alice")
    alice.root.attach("lab")
    ticket = alice.root.channel_ticket()
    with pytest.raises(EOFError):  # bob cannot use alice's ticket
        rig.connect("bob", channel_ticket=ticket).root.hello()
    with pytest.raises(EOFError):  # nor alice twice: bob's attempt used it up
        rig.connect("alice", channel_ticket=ticket).root.hello()
    fresh = alice.root.channel_ticket()
    assert dict(rig.connect("alice", channel_ticket=fresh).root.hello())["user"] == "alice"


def test_a_session_made_for_a_client_that_never_attached_ends_with_it(rig: Rig) -> None:
    conn = rig.connect()
    assert _value(conn.root.execute("1 + 1", None, ())) == "2"  # no attach: a private session
    session = rig.registry.sessions_of("alice")[0]
    assert session.worker is not None
    worker = session.worker
    conn.close()
    assert worker.exited.wait(WAIT)
    assert wait_until(lambda: len(rig.registry) == 0, WAIT)


@pytest.mark.skipif(os.geteuid() != 0, reason="starting workers as another account needs root")
def test_run_as_starts_a_users_workers_under_their_own_account(
        make_rig: Callable[..., Rig]) -> None:
    import pwd

    try:
        account = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this system has no 'nobody' account")
    try:
        subprocess.run([sys.executable, "-c", "import rpyc_ipy"], user=account.pw_uid,
                       group=account.pw_gid, cwd="/", check=True, capture_output=True,
                       timeout=60)
    except (PermissionError, subprocess.CalledProcessError):
        # e.g. a Python under /root: the refusal is then the clear error checked here
        rig = make_rig(run_as={"alice": "nobody"})
        with pytest.raises(RuntimeError, match="cannot run"):
            rig.connect("alice").root.attach("lab")
        pytest.skip("the account 'nobody' cannot run this Python")
    rig = make_rig(run_as={"alice": "nobody"})
    alice, bob = rig.connect("alice"), rig.connect("bob")
    alice.root.attach("lab")
    bob.root.attach("lab")
    ids = "import os\n(os.getuid(), os.getgid(), os.environ.get('USER'))"
    assert _value(alice.root.execute(ids, None, ())) == \
        repr((account.pw_uid, account.pw_gid, "nobody"))
    assert _value(bob.root.execute("import os\nos.getuid()", None, ())) == str(os.getuid())


def test_a_client_whose_data_channel_is_refused_works_through_the_server(
        start_server: Callable[..., Any], userdb: UserDB) -> None:
    from rpyc_ipy.ipython.session import open_session
    from rpyc_ipy.target import ConnectionTarget

    registry = SessionRegistry(RuntimeSettings(capture_fd=False))
    service = ExecutionService.configured(registry=registry)
    service.channel_handler()  # the service says it has channels; this server does not
    server = start_server(service, authenticator=SRPAuthenticator(userdb))
    target = ConnectionTarget("127.0.0.1", server.port, srp_user="alice", session_name="lab")
    session = open_session(target, password=PASSWORDS["alice"])
    try:
        assert session.conn is session.control  # no data channel: requests are forwarded
        assert "no data channel" in session.channel_note and "no data channel" in repr(session)
        assert session.execute("6 * 7").data["text/plain"] == "42"
    finally:
        session.end()
        registry.close()
