"""Fault tolerance: a dead peer fails every pending call at once, a dying client never
takes the server down, a restarted server is reported and reachable again, and errors
of the reading side reach the callers that wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
from seckit import (
    HERE,
    ROOT,
    WAIT,
    RawServer,
    ServerProcess,
    TargetService,
    assert_serves,
    exception_frame,
    readline_within,
    reply_frame,
    wait_until,
)

import rpyc_ipy
from rpyc_ipy.errors import ConnectionClosed, ConnectionLost
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Request
from rpyc_ipy.protocol.framing import frame_bytes

pytestmark = pytest.mark.timeout(60)
CONFIG = {"sync_request_timeout": 60}  # longer than any test: failures must come from the loss


def _call_in_threads(fn: Any, count: int) -> tuple[list[BaseException | None], list[Any]]:
    outcomes: list[BaseException | None] = [None] * count
    threads = []

    def run(i: int) -> None:
        try:
            fn()
        except BaseException as exc:
            outcomes[i] = exc

    for i in range(count):
        thread = threading.Thread(target=run, args=(i,), daemon=True)
        thread.start()
        threads.append(thread)
    return outcomes, threads


def test_every_pending_call_fails_at_once_when_the_server_dies() -> None:
    server = ServerProcess()
    try:
        conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG)
        root = conn.root
        assert root.ping() == "pong"
        outcomes, threads = _call_in_threads(lambda: root.sleep(30), 4)
        pending_async = [rpyc_ipy.async_(root.sleep)(30) for _ in range(2)]
        assert wait_until(lambda: len(conn._pending) == 6)
        os.kill(server.pid, signal.SIGKILL)
        # liveness: all end within WAIT, far below the 30 s of the calls
        wait_until(lambda: not any(thread.is_alive() for thread in threads), WAIT,
                   what="every pending call to fail")
        for outcome in outcomes:
            assert isinstance(outcome, ConnectionLost) and isinstance(outcome, EOFError), outcome
        for result in pending_async:
            result.wait()
            assert result.error
            with pytest.raises(ConnectionLost):
                result.value  # noqa: B018
        with pytest.raises(ConnectionClosed):
            root.ping()
        assert conn.closed
        conn.close()  # closing a lost connection is fine
    finally:
        server.close()


CLIENT_SCRIPT = """
import sys, time
sys.path[:0] = [{root!r}, {here!r}]
import rpyc_ipy
conn = rpyc_ipy.connect("127.0.0.1", int(sys.argv[1]), config={{"sync_request_timeout": 60}})
def slow_callback():
    print("in callback", flush=True)
    time.sleep(60)
conn.root.call_and_record(slow_callback)
"""


class Recording(TargetService):
    outcomes: list[BaseException | str] = []

    def exposed_call_and_record(self, fn: Any) -> None:
        try:
            fn()
            Recording.outcomes.append("returned")
        except BaseException as exc:
            Recording.outcomes.append(exc)
            raise


def test_the_server_survives_a_client_dying_inside_a_callback(serve: Any) -> None:
    Recording.outcomes = []
    server = serve(Recording)
    script = CLIENT_SCRIPT.format(root=str(ROOT), here=str(HERE))
    client = subprocess.Popen([sys.executable, "-c", script, str(server.port)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = readline_within(client, WAIT)  # the server now waits for the callback
        assert line.strip() == "in callback"
        client.kill()
        client.wait(WAIT)
        assert wait_until(lambda: bool(Recording.outcomes))
        outcome = Recording.outcomes[0]
        assert isinstance(outcome, ConnectionLost) and isinstance(outcome, EOFError), outcome
        assert wait_until(lambda: not server.clients)
        assert_serves(server.port)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(WAIT)
        if client.stdout is not None:
            client.stdout.close()


def test_a_client_reports_a_server_restart_and_reconnects() -> None:
    server = ServerProcess()
    port = server.port
    conn = rpyc_ipy.connect("127.0.0.1", port, config={"sync_request_timeout": WAIT})
    restarted = None
    try:
        assert conn.root.add(1, 2) == 3
        server.close()
        with pytest.raises(ConnectionClosed) as info:  # EOF or reset: reported, no hang
            for _ in range(3):  # the first send may still succeed into a dead socket
                conn.root.add(1, 2)
        assert isinstance(info.value, EOFError)
        assert conn.closed
        restarted = ServerProcess(port=port)
        with rpyc_ipy.connect("127.0.0.1", port, config={"sync_request_timeout": WAIT}) as again:
            assert again.root.add(2, 3) == 5
    finally:
        conn.close()
        server.close()
        if restarted is not None:
            restarted.close()


def test_a_malformed_reply_fails_every_waiting_caller_with_the_reason() -> None:
    # the server answers nothing until the second request, then sends garbage
    seen: list[Any] = []

    def respond(event: Any) -> bytes | None:
        if event.handler != consts.HANDLE_PING:
            return None
        seen.append(event)
        if len(seen) == 2:
            return frame_bytes(b"\x02\xf0\x00")  # a reply whose brine has an unused tag
        return None

    server = RawServer(respond)
    try:
        conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG)
        outcomes, threads = _call_in_threads(
            lambda: conn.sync_request(consts.HANDLE_PING, "x"), 2)
        for thread in threads:
            thread.join(WAIT)
        assert not any(thread.is_alive() for thread in threads)
        for outcome in outcomes:
            assert isinstance(outcome, ConnectionLost), outcome
            assert "brine" in str(outcome) or "tag" in str(outcome), str(outcome)
        assert conn.closed
    finally:
        server.close()


def test_a_reply_over_the_client_limit_fails_the_caller_with_the_reason() -> None:
    from rpyc_ipy.protocol.limits import Limits

    def respond(event: Any) -> bytes | None:
        if event.handler != consts.HANDLE_PING:
            return None
        return reply_frame(event.seq, (consts.LABEL_VALUE, b"x" * 100_000))

    server = RawServer(respond)
    try:
        conn = rpyc_ipy.connect("127.0.0.1", server.port,
                                config={**CONFIG, "limits": Limits(max_frame_size=50_000)})
        with pytest.raises(ConnectionLost, match="max_frame_size"):
            conn.sync_request(consts.HANDLE_PING, "x")
    finally:
        server.close()


def test_a_reply_that_cannot_be_unboxed_fails_only_its_call() -> None:
    def respond(event: Any) -> bytes | None:
        if not isinstance(event, Request) or event.handler != consts.HANDLE_PING:
            return None  # CLOSE at the end
        if event.args == (consts.LABEL_VALUE, ("forged",)):
            # "one of YOUR objects", but the client never exported it
            return reply_frame(event.seq, (consts.LABEL_LOCAL_REF, ("builtins.dict", 1, 2)))
        if event.args == (consts.LABEL_VALUE, ("bad-exception",)):
            return exception_frame(event.seq, ("not", "a", "vinegar", "payload", "shape"))
        return reply_frame(event.seq, (consts.LABEL_VALUE, event.args[1][0]))

    server = RawServer(respond)
    try:
        with rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG) as conn:
            with pytest.raises(KeyError):
                conn.sync_request(consts.HANDLE_PING, "forged")
            with pytest.raises(ValueError):  # a malformed vinegar payload: our CodecError
                conn.sync_request(consts.HANDLE_PING, "bad-exception")
            assert conn.sync_request(consts.HANDLE_PING, "still fine") == "still fine"
    finally:
        server.close()


def test_a_peer_that_closes_mid_frame_fails_the_call() -> None:
    def respond(event: Any) -> bytes | None:
        if event.handler != consts.HANDLE_PING:
            return None
        frame = reply_frame(event.seq, (consts.LABEL_VALUE, b"y" * 200_000))
        return frame[: len(frame) // 2]

    closing: list[RawServer] = []

    def respond_then_hang_up(event: Any) -> bytes | None:
        out = respond(event)
        threading.Timer(0.2, lambda: closing[0].close()).start()
        return out

    server = RawServer(respond_then_hang_up)
    closing.append(server)
    try:
        conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG)
        with pytest.raises(ConnectionLost):
            conn.sync_request(consts.HANDLE_PING, "x")
    finally:
        server.close()
