"""The memory budget for frames, the pending-frame limit and inflation in place.

A server holds large frames being received or inflated only within its frame
budget, shared by all its clients: 40 attackers at once (20 maximum-size frames,
20 zlib bombs) keep its peak RSS under the budget plus a small constant while a
fresh client is served. Each new limit is tested one step over it.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from seckit import (
    WAIT,
    RawClient,
    assert_serves,
    readline_within,
    ref,
    request_payload,
    tup,
    val,
    wait_until,
)

import rpyc_ipy
from rpyc_ipy.core.budget import FrameBudget
from rpyc_ipy.errors import ConnectionLost, LimitExceeded, UsageError
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.framing import FrameDecoder, frame_bytes
from rpyc_ipy.protocol.inflate import CHUNK
from rpyc_ipy.protocol.limits import Limits

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
KiB = 1 << 10
MiB = 1 << 20


def header(length: int, compressed: int = 0) -> bytes:
    return struct.pack(">IB", length, compressed)


def echo_payload(root: Any, value: Any, seq: int) -> bytes:
    return request_payload(seq, consts.HANDLE_CALLATTR,
                           tup(ref(root), val("echo"), val((value,)), val(())))


def ping_payload(seq: int, size: int) -> bytes:
    """A PING request whose payload is exactly ``size`` bytes."""
    overhead = len(request_payload(seq, consts.HANDLE_PING, val((b"",))))
    data = b"p" * (size - overhead - 4)  # a long byte string adds 4 bytes of length
    payload = request_payload(seq, consts.HANDLE_PING, val((data,)))
    assert len(payload) == size
    return payload


def answered(client: RawClient, seq: int) -> bool:
    event = client.event()
    return getattr(event, "seq", None) == seq and hasattr(event, "value")


# -- 40 attackers against a server process -------------------------------------------------

SERVER = """
import sys, json
sys.path[:0] = [{root!r}, {here!r}, {tests!r}]
import logging
logging.basicConfig(level=logging.CRITICAL)
import rpyc_ipy, seckit
from rpyc_ipy.protocol.limits import Limits
options = json.loads(sys.argv[1])

class Budgeted(seckit.TargetService):
    def exposed_budget(self):
        return server.frame_budget.used, server.frame_budget.peak

server = rpyc_ipy.ThreadedServer(
    Budgeted, hostname="127.0.0.1", port=0, listener_timeout=0.2,
    frame_budget=options["budget"], max_pending_per_address=64,
    protocol_config={{"limits": Limits(max_frame_size=options["max_frame"])}})
print(server.port, flush=True)
server.start()
"""


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _send_frame(client: RawClient, data: bytes, sent: list[bool]) -> None:
    try:
        client.send_raw(data)
        sent.append(True)
    except OSError:  # refused from the header: the server closed the connection
        sent.append(False)


def test_forty_attackers_stay_within_the_frame_budget_and_a_fresh_client_is_served() -> None:
    max_frame, budget = 16 * MiB, 64 * MiB
    script = SERVER.format(root=str(ROOT), here=str(HERE), tests=str(HERE.parent))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps({"max_frame": max_frame, "budget": budget})],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    clients: list[RawClient] = []
    try:
        port = int(readline_within(proc, WAIT))
        assert_serves(port)
        before = status_kib(proc.pid, "VmRSS")
        # a maximum-size frame whose flusher never comes (held as long as the peer likes),
        # and a bomb: 250 KiB that would inflate to 256 MiB
        big = header(max_frame) + b"x" * max_frame
        bomb_body = zlib.compress(b"\0" * (256 * MiB), 9)
        bomb = header(len(bomb_body), 1) + bomb_body + b"\n"
        for _ in range(40):  # logged in first: a pending peer gets 1 MiB frames at most
            client = RawClient(port)
            client.getroot()
            clients.append(client)
        senders, bombers = clients[:20], clients[20:]
        sent: list[bool] = []
        threads = [threading.Thread(target=_send_frame, args=(client, big, sent), daemon=True)
                   for client in senders]
        threads += [threading.Thread(target=_send_frame, args=(client, bomb, []), daemon=True)
                    for client in bombers]
        for thread in threads:
            thread.start()
        assert_serves(port)  # while the attack is under way
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        assert all(client.closed_within(WAIT) for client in bombers)
        refused = [client.closed_within(0.5) for client in senders]
        held = refused.count(False)
        assert held <= budget // (max_frame + 1), refused
        with rpyc_ipy.connect("127.0.0.1", port, config={"sync_request_timeout": WAIT}) as conn:
            used, peak = conn.root.budget()  # a fresh client, served with the budget full
        assert used == held * (max_frame + 1) and max_frame < peak <= budget
        grown = (status_kib(proc.pid, "VmHWM") - before) * KiB
        print(f"\nserver peak RSS over its idle RSS: {grown / MiB:.1f} MiB "
              f"(budget {budget / MiB:.0f} MiB, {held} frames held, budget peak "
              f"{peak / MiB:.1f} MiB)")
        assert grown < budget + 24 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"
    finally:
        for client in clients:
            client.close()
        proc.kill()
        proc.wait(WAIT)
        if proc.stdout is not None:
            proc.stdout.close()


# -- the budget, one step over -------------------------------------------------------------


def test_a_frame_that_fits_the_budget_exactly_is_served_one_byte_more_is_refused(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve(frame_budget=3 * MiB, protocol_config={"limits": Limits(max_frame_size=2 * MiB)})
    budget = server.frame_budget
    with RawClient(server.port) as holder, RawClient(server.port) as fits, \
            RawClient(server.port) as over:
        for client in (holder, fits, over):
            client.getroot()
        holder.send_raw(header(2 * MiB - 1) + b"h" * 1000)  # its body buffer is 2 MiB
        assert wait_until(lambda: budget.used == 2 * MiB)
        root = fits.getroot()
        overhead = len(echo_payload(root, b"", 2))
        data = b"f" * (MiB - 1 - overhead - 4)
        payload = echo_payload(root, data, 2)
        assert len(payload) + 1 == MiB  # body and flusher: exactly what is left
        fits.send_raw(frame_bytes(payload))
        assert wait_until(lambda: answered(fits, 2), WAIT)
        assert budget.peak == 3 * MiB
        over.send_raw(header(MiB))  # one byte more than is left
        assert over.closed_within(WAIT)
        assert any("memory budget for frames" in record.getMessage()
                   for record in caplog.records)
        assert_serves(server.port)
    assert wait_until(lambda: budget.used == 0)  # the holder's frame went with it


def test_a_budget_with_no_room_for_a_maximum_frame_is_refused(serve: Any) -> None:
    with pytest.raises(UsageError, match="frame_budget"):
        serve(frame_budget=2 * MiB, protocol_config={"limits": Limits(max_frame_size=2 * MiB)})
    server = serve(frame_budget=2 * MiB + 1,
                   protocol_config={"limits": Limits(max_frame_size=2 * MiB)})
    assert server.frame_budget.limit == 2 * MiB + 1


def test_the_budget_comes_back_after_large_plain_and_compressed_frames(serve: Any) -> None:
    server = serve(protocol_config={"compress_threshold": 3000})
    client_budget = FrameBudget(64 * MiB)
    values = [b"a" * (3 * MiB), bytes(range(256)) * (20 * KiB), b"s" * 100]
    for threshold in (None, 3000):
        config = {"frame_budget": client_budget, "compress_threshold": threshold,
                  "sync_request_timeout": WAIT}
        with rpyc_ipy.connect("127.0.0.1", server.port, config=config) as conn:
            for value in values:
                assert conn.root.echo(value) == value
            assert client_budget.used == 0
            assert server.frame_budget.used == 0
    assert client_budget.peak > 3 * MiB and server.frame_budget.peak > 3 * MiB


def test_a_client_refuses_a_reply_that_does_not_fit_its_budget(serve: Any) -> None:
    server = serve()
    budget = FrameBudget(MiB)
    config = {"frame_budget": budget, "sync_request_timeout": WAIT}
    with rpyc_ipy.connect("127.0.0.1", server.port, config=config) as conn:
        assert conn.root.echo(b"k" * (MiB - 1024)) == b"k" * (MiB - 1024)  # fits
        with pytest.raises(ConnectionLost, match="memory budget for frames"):
            conn.root.echo(b"k" * MiB)  # its reply's body alone is over a byte
    assert budget.used == 0 and budget.peak <= MiB
    assert_serves(server.port)


# -- inflation ------------------------------------------------------------------------------


def test_inflation_writes_into_the_final_buffer_a_chunk_at_a_time() -> None:
    size = 64 * MiB
    payload = bytes(range(256)) * (size // 256)
    frame = frame_bytes(payload, compress_threshold=0)
    budget = FrameBudget(size + 2 * CHUNK)
    decoder = FrameDecoder(Limits(max_frame_size=size), budget.share())
    tracemalloc.start()
    try:
        decoder.feed(frame)
        tracemalloc.reset_peak()
        result = decoder.next_payload()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # no second copy of the payload: only a chunk at a time is ever a Python object
    assert peak < 4 * CHUNK, f"inflating took {peak / MiB:.1f} MiB of Python objects"
    assert isinstance(result, memoryview) and result == payload
    assert budget.used == size
    del result
    decoder.release_payload()
    assert budget.used == 0 and size <= budget.peak <= size + len(frame) + 2 * CHUNK


def test_inflation_is_refused_when_the_budget_runs_out_and_gives_everything_back() -> None:
    budget = FrameBudget(8 * MiB)
    decoder = FrameDecoder(Limits(max_frame_size=64 * MiB), budget.share())
    decoder.feed(frame_bytes(b"\0" * (32 * MiB), compress_threshold=0))
    with pytest.raises(LimitExceeded, match="memory budget for frames"):
        decoder.next_payload()
    assert budget.peak <= 8 * MiB
    decoder.close()
    assert budget.used == 0


# -- the limit for frames of a peer that has not logged in ----------------------------------


def test_pending_frame_limit_one_step_over(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    limit = 128 * KiB
    server = serve(pending_frame_limit=limit)
    with RawClient(server.port) as client:  # a first frame at the limit is served
        client.send_raw(frame_bytes(ping_payload(0, limit)))
        assert wait_until(lambda: answered(client, 0), WAIT)
    with RawClient(server.port) as client:  # one byte over is refused from the header
        client.send_raw(header(limit + 1))
        assert client.closed_within(WAIT)
    assert any("not logged in or sent a valid request" in record.getMessage()
               for record in caplog.records)
    with RawClient(server.port) as client:  # after a valid request, max_frame_size holds
        client.getroot()
        client.send_raw(frame_bytes(ping_payload(1, 4 * limit)))
        assert wait_until(lambda: answered(client, 1), WAIT)
    assert_serves(server.port)


def test_pending_frame_limit_caps_inflation_too(serve: Any) -> None:
    limit = 128 * KiB
    server = serve(pending_frame_limit=limit)
    with RawClient(server.port) as client:
        body = zlib.compress(ping_payload(0, limit + 1), 9)
        assert len(body) < limit
        client.send_raw(header(len(body), 1) + body + b"\n")
        assert client.closed_within(WAIT)
    assert_serves(server.port)


def _token_login(sock: Any) -> tuple[Any, Any]:
    """A minimal authenticator: the line ``token`` logs in as alice."""
    line = b""
    while not line.endswith(b"\n") and len(line) < 64:
        chunk = sock.recv(1)
        if not chunk:
            break
        line += chunk
    if line != b"token\n":
        raise rpyc_ipy.AuthenticationError("bad token")
    return sock, "alice"


def test_a_logged_in_peer_gets_the_full_frame_limit_from_its_first_frame(serve: Any) -> None:
    limit = 128 * KiB
    server = serve(authenticator=_token_login, pending_frame_limit=limit)
    with RawClient(server.port) as client:
        client.send_raw(b"token\n" + frame_bytes(ping_payload(0, 4 * limit)))
        assert wait_until(lambda: answered(client, 0), WAIT)
