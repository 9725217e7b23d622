"""Server lifecycle as rpyc has it: ``start()`` serves in the calling thread until
``close()`` (another thread, a signal handler) or Ctrl-C; background serving is
``start_in_background()`` or rpyc's ``_start_in_thread()``."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import rpyc_ipy
from rpyc_ipy.errors import UsageError

WAIT = 10.0


class Echo(rpyc_ipy.Service):
    def exposed_echo(self, value: Any) -> Any:
        return value


def _in_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_start_serves_in_the_calling_thread_until_close_from_another() -> None:
    server = rpyc_ipy.ThreadedServer(Echo, port=0)
    thread, errors = _in_thread(server.start)
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        assert conn.root.echo("hi") == "hi"
    assert thread.is_alive()  # still serving: start() has not returned
    server.close()
    thread.join(WAIT)
    assert not thread.is_alive() and errors == [] and server.closed
    server.close()  # again: nothing happens
    with pytest.raises(UsageError, match="closed"):
        server.start()


def test_close_from_a_signal_handler_ends_start_in_the_main_thread() -> None:
    server = rpyc_ipy.ThreadedServer(Echo, port=0)
    main = threading.get_ident()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.close()

    def client() -> None:
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            assert conn.root.echo(1) == 1
        signal.pthread_kill(main, signal.SIGUSR1)

    before = signal.signal(signal.SIGUSR1, on_signal)
    try:
        thread, errors = _in_thread(client)
        server.start()  # returns once the handler closed the server
    finally:
        signal.signal(signal.SIGUSR1, before)
    thread.join(WAIT)
    assert errors == [] and server.closed


def test_ctrl_c_closes_the_server_and_start_returns() -> None:
    server = rpyc_ipy.ThreadedServer(Echo, port=0)
    main = threading.get_ident()

    def client() -> None:
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            assert conn.root.echo(2) == 2
        signal.pthread_kill(main, signal.SIGINT)

    thread, errors = _in_thread(client)
    server.start()  # KeyboardInterrupt is the server's: it closes and returns
    thread.join(WAIT)
    assert errors == [] and server.closed


def test_start_in_thread_returns_the_serving_thread() -> None:
    server = rpyc_ipy.ThreadedServer(Echo, port=0)
    thread = server._start_in_thread()  # rpyc's name, which rpyc-style tests call
    assert isinstance(thread, threading.Thread) and thread.is_alive()
    with pytest.raises(UsageError, match="already started"):
        server.start_in_background()
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        assert conn.root.echo(3) == 3
    server.close()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_one_shot_start_returns_after_its_client() -> None:
    server = rpyc_ipy.OneShotServer(Echo, port=0)
    thread, errors = _in_thread(server.start)
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        assert conn.root.echo("once") == "once"
        assert thread.is_alive()  # serving this client in start()
    thread.join(WAIT)
    assert not thread.is_alive() and errors == [] and server.closed


SCRIPT = textwrap.dedent("""
    import rpyc_ipy
    from rpyc_ipy import ThreadedServer

    class MyService(rpyc_ipy.Service):
        def exposed_add(self, a, b):
            return a + b

    server = ThreadedServer(MyService, port=0)
    print(server.port, flush=True)
    server.start()
    print("closed", flush=True)
""")


def test_a_server_script_written_the_rpyc_way_serves_rpyc_and_our_clients() -> None:
    rpyc = pytest.importorskip("rpyc")  # the real rpyc 6.0.2, a test dependency
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        # the script did not exit after start(): it serves each client in turn
        with rpyc_ipy.connect("127.0.0.1", port) as conn:
            assert conn.root.add(1, 2) == 3
        theirs = rpyc.connect("127.0.0.1", port)
        try:
            assert theirs.root.add(2, 3) == 5
        finally:
            theirs.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0 and out.strip() == "closed", err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


def test_close_is_safe_while_start_has_not_begun() -> None:
    server = rpyc_ipy.ThreadedServer(Echo, port=0)
    server.close()
    with pytest.raises(UsageError, match="closed"):
        server.start_in_background()
