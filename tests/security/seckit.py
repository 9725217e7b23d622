"""Helpers for the security tests: a raw wire client, servers to attack, and probes.

``RawClient`` speaks bytes to a server over a real socket (127.0.0.1): frames are
built with :func:`rpyc_ipy.protocol.framing.frame_bytes` and
:func:`rpyc_ipy.protocol.brine.dump`, a message being one type byte plus
``brine((seq, body))`` (spec §5). Boxing helpers: ``val(x)`` is LABEL_VALUE,
``ref(id_pack)`` LABEL_LOCAL_REF (one of the server's objects), ``tup(*boxed)``
LABEL_TUPLE. (A uniquely named module, not conftest, so tests can import it.)

Every wait here is bounded by an explicit timeout.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import ConnectionClosed
from rpyc_ipy.protocol import brine, consts
from rpyc_ipy.protocol.engine import Engine, Failure, Reply, Request
from rpyc_ipy.protocol.framing import frame_bytes

WAIT = 10.0  #: upper bound of any single wait in these tests
MiB = 1 << 20
CLIENT_CONFIG = {"sync_request_timeout": WAIT}
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# -- boxing -----------------------------------------------------------------------------


def val(value: Any) -> tuple[int, Any]:
    return (consts.LABEL_VALUE, value)


def ref(id_pack: Any) -> tuple[int, Any]:
    return (consts.LABEL_LOCAL_REF, id_pack)


def tup(*items: Any) -> tuple[int, Any]:
    return (consts.LABEL_TUPLE, tuple(items))


def request_payload(seq: int, handler: int, boxed_args: Any) -> bytes:
    return bytes((consts.MSG_REQUEST,)) + brine.dump((seq, (handler, boxed_args)))


def request_frame(seq: int, handler: int, boxed_args: Any) -> bytes:
    return frame_bytes(request_payload(seq, handler, boxed_args))


# -- the raw client -----------------------------------------------------------------------


class Closed(Exception):
    """The server closed the raw connection."""


class RawClient:
    """A byte-level client: send what you like, read what comes back."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = WAIT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._engine = Engine()
        self._seq = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # sending
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, handler: int, boxed_args: Any) -> int:
        seq = self._seq
        self._seq += 1
        self.send_raw(request_frame(seq, handler, boxed_args))
        return seq

    # receiving
    def _poll_event(self) -> Reply | Failure | Request | None:
        """A message already received, or the one that arrives within 0.2 s, or None;
        :class:`Closed` at EOF or reset."""
        event = self._engine.next_event()
        if event is not None:
            return event
        self.sock.settimeout(0.2)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise Closed(str(exc)) from None
        if not data:
            raise Closed("EOF")
        self._engine.receive_data(data)
        return self._engine.next_event()

    def event(self, timeout: float = WAIT) -> Reply | Failure | Request:
        """The next message from the server; :class:`Closed` at EOF or reset."""
        event = wait_until(self._poll_event, timeout, step=0.0)
        if event is None:
            raise TimeoutError("no message from the server in time")
        return event

    def call(self, handler: int, boxed_args: Any, timeout: float = WAIT) -> tuple[str, Any]:
        """Send one request; ``("reply", boxed value)`` or ``("exception", vinegar payload)``.

        Requests the server sends meanwhile (there should be none) are ignored.
        """
        seq = self.send(handler, boxed_args)

        def answer() -> Reply | Failure | None:
            event = self._poll_event()
            if isinstance(event, Request) or event is None or event.seq != seq:
                return None
            return event

        event = wait_until(answer, timeout, step=0.0)
        if event is None:
            raise TimeoutError("no message from the server in time")
        if isinstance(event, Reply):
            return "reply", event.value
        return "exception", event.payload

    def getroot(self) -> tuple[str, int, int]:
        kind, boxed = self.call(consts.HANDLE_GETROOT, val(()))
        assert kind == "reply" and boxed[0] == consts.LABEL_REMOTE_REF, (kind, boxed)
        return boxed[1]

    def closed_within(self, timeout: float) -> bool:
        """True if the server closes the connection within ``timeout`` seconds
        (whatever it sends before that is read and dropped)."""

        def closed() -> bool:
            self.sock.settimeout(min(0.2, timeout))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                return False
            except OSError:
                return True
            return not data

        return wait_until(closed, timeout, step=0.0)


def exception_name(payload: Any) -> str:
    """``"module.Class"`` of a vinegar payload (``"StopIteration"`` for the bare 1)."""
    if payload == consts.STOP_ITERATION_PAYLOAD:
        return "builtins.StopIteration"
    (module, name), *_ = payload
    return f"{module}.{name}"


# -- what the servers expose -----------------------------------------------------------------


class Thing:
    """An exported object with plenty to reach for."""

    exposed_value = 1
    public = "public"
    _private = "private"

    def __init__(self) -> None:
        self.secret = "s3cret"

    def exposed_method(self) -> str:
        return "ok"

    def __enter__(self) -> Thing:
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        return False

    def __getitem__(self, key: Any) -> Any:
        return key

    def __iter__(self) -> Iterator[int]:
        return iter((1, 2, 3))

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = object.__hash__

    def __reduce__(self) -> Any:  # if PICKLE ever ran, unpickling would call this
        return (os.getpid, ())


class TargetService(rpyc_ipy.Service):
    """The service the hostile clients attack (in-process or in a subprocess)."""

    def on_connect(self, conn: Any) -> None:
        super().on_connect(conn)
        self.thing = Thing()

    def exposed_ping(self) -> str:
        return "pong"

    def exposed_echo(self, value: Any) -> Any:
        return value

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_get_thing(self) -> Thing:
        return self.thing

    def exposed_make(self) -> Thing:
        return Thing()

    def exposed_exports(self) -> int:
        assert self._conn is not None
        return len(self._conn._exports)

    def exposed_sleep(self, seconds: float) -> float:
        time.sleep(min(float(seconds), 30.0))
        return seconds

    def exposed_rss_kib(self) -> int:
        return rss_kib(os.getpid())

    def exposed_collect(self) -> int:
        return gc.collect()

    def exposed_pid(self) -> int:
        return os.getpid()

    def exposed_call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def exposed_try_copies(self, obj: Any) -> tuple[str, ...]:
        """What copying a netref of the client's object does here (class names)."""
        return tuple(_outcome(copier, obj) for copier in _COPIES)


def _outcome(copier: Callable[[Any], Any], obj: Any) -> str:
    try:
        copier(obj)
    except Exception as exc:
        return type(exc).__name__
    return "copied"


_COPIES: tuple[Callable[[Any], Any], ...] = (
    copy.copy, copy.deepcopy, pickle.dumps, lambda obj: pickle.dumps(obj, 0))

# -- a hostile server: grants everything, and its objects try everything -------------------------

#: what ran in *this* process because a peer chose it (a canary for the unpickler)
CANARY: list[str] = []


def canary(tag: str) -> str:
    CANARY.append(tag)
    return tag


SCRIPT = "<script>alert('owned')</script>"


class Evil:
    """Everything a display layer or numpy might call on it is a trap."""

    def _repr_html_(self) -> str:
        return SCRIPT

    def _repr_mimebundle_(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        return {"text/html": SCRIPT}

    def _ipython_display_(self) -> None:
        canary("_ipython_display_")

    def __repr__(self) -> str:
        return SCRIPT

    def __len__(self) -> int:
        return 2**62

    def __iter__(self) -> Iterator[int]:
        return itertools.count()

    def __dir__(self) -> list[str]:
        return [f"name_{i}" for i in range(50_000)]

    def __array__(self, *args: Any) -> Any:
        return [1, 2, 3]

    def __reduce__(self) -> Any:  # whoever unpickles this runs canary() there
        return (canary, ("unpickled",))


class PoisonError(Exception):
    """An exception whose text and attributes fight back."""

    def __init__(self) -> None:
        super().__init__("poisoned")
        self.huge = HugeRepr()
        self.payload = "p" * (10 * MiB)

    def __str__(self) -> str:
        raise RuntimeError("__str__ of a hostile exception")


class HugeRepr:
    def __repr__(self) -> str:
        return "r" * (10 * MiB)


def _attempts(targets: dict[str, Callable[[], Any]]) -> tuple[str, ...]:
    """The names of the attempts that did not raise."""
    succeeded = []
    for name, attempt in targets.items():
        try:
            attempt()
        except Exception:
            continue
        succeeded.append(name)
    return tuple(succeeded)


class HostileService(rpyc_ipy.Service):
    """Serve it with allow_all_attrs and allow_pickle: the client's own guards are on test."""

    def exposed_evil(self) -> Evil:
        return Evil()

    def exposed_poisoned(self) -> None:
        raise PoisonError()

    def exposed_probe(self, fn: Any) -> tuple[str, ...]:
        """Try to get out of a callback the client passed, and into the client's root."""
        assert self._conn is not None
        root = self._conn.root
        return _attempts({
            "fn.__globals__": lambda: fn.__globals__,
            "fn.__code__": lambda: fn.__code__,
            "fn.__closure__": lambda: fn.__closure__,
            "fn.__builtins__": lambda: fn.__builtins__,
            "fn.__reduce_ex__": lambda: fn.__reduce_ex__(2),
            "setattr fn": lambda: setattr(fn, "injected", 1),
            "delattr fn": lambda: delattr(fn, "__doc__"),
            "copy fn": lambda: copy.copy(fn),
            "deepcopy fn": lambda: copy.deepcopy(fn),
            "pickle fn": lambda: pickle.dumps(fn),
            "root._conn": lambda: root._conn,
            "root.eval": lambda: root.eval("1 + 1"),
            "root.execute": lambda: root.execute("import os"),
            "root.getmodule": lambda: root.getmodule("os"),
            "root.namespace": lambda: root.namespace["x"],
            "root.getconn": lambda: root.getconn(),
            "root.on_connect": lambda: root.on_connect(None),
            "setattr root": lambda: setattr(root, "x", 1),
            "pickle root": lambda: pickle.dumps(root),
        })

    def exposed_call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


# -- servers -------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.fixture
def serve(start_server: Any) -> Callable[..., rpyc_ipy.ThreadedServer]:
    """``serve(service=TargetService, **server_kwargs)``: a started in-process
    ThreadedServer on 127.0.0.1 port 0, closed at the end of the test."""

    def start(service: Any = TargetService, **kwargs: Any) -> rpyc_ipy.ThreadedServer:
        return start_server(service, **kwargs)

    return start


SERVER_SCRIPT = """
import sys, json
sys.path[:0] = [{root!r}, {here!r}, {tests!r}]
import logging
logging.basicConfig(level=logging.CRITICAL)
import rpyc_ipy
import seckit
kwargs = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {{}}
kwargs.setdefault("port", 0)
service = getattr(seckit, kwargs.pop("service", "TargetService"))
server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", listener_timeout=0.2,
                                 **kwargs)
print(server.port, flush=True)
server.start()
"""


class ServerProcess:
    """Our ThreadedServer serving a service of this module (``service="Name"``, default
    :class:`TargetService`) in a subprocess; other keywords go to the server."""

    def __init__(self, **server_kwargs: Any) -> None:
        import json

        script = SERVER_SCRIPT.format(root=str(ROOT), here=str(HERE), tests=str(HERE.parent))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(server_kwargs)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = readline_within(self.proc, WAIT)
        self.port = int(line)
        self.pid = self.proc.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def readline_within(proc: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0].strip():
        proc.kill()
        raise RuntimeError("the server subprocess did not report its port")
    return result[0]


class RawServer:
    """A hostile server that speaks raw frames: ``respond(event)`` returns the bytes to
    send for each message a client sends (or ``None`` to stay silent). One client at
    a time, served in a daemon thread; 127.0.0.1, port 0.

    A root fetch that ``respond`` leaves unanswered is answered with ``None``:
    ``rpyc_ipy.connect()`` makes it first, and waits for it."""

    def __init__(self, respond: Callable[[Any], bytes | None]) -> None:
        self.respond = respond
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._active = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._active:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            with sock:
                self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        engine = Engine()
        sock.settimeout(0.2)
        while self._active:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            engine.receive_data(data)
            while (event := engine.next_event()) is not None:
                out = self.respond(event)
                if out is None and isinstance(event, Request) and \
                        event.handler == consts.HANDLE_GETROOT:
                    out = reply_frame(event.seq, (consts.LABEL_VALUE, None))
                if out:
                    try:
                        sock.sendall(out)
                    except OSError:
                        return

    def close(self) -> None:
        self._active = False
        self.listener.close()
        self._thread.join(WAIT)


def reply_frame(seq: int, boxed: Any) -> bytes:
    return frame_bytes(bytes((consts.MSG_REPLY,)) + brine.dump((seq, boxed)))


def exception_frame(seq: int, payload: Any) -> bytes:
    return frame_bytes(bytes((consts.MSG_EXCEPTION,)) + brine.dump((seq, payload)))


# -- probes ----------------------------------------------------------------------------------


def assert_serves(port: int, within: float = WAIT) -> None:
    """A fresh, well-behaved client is served (answers within ``within`` s: liveness)."""
    outcome: list[Any] = []

    def probe() -> None:
        try:
            with rpyc_ipy.connect("127.0.0.1", port, config={"sync_request_timeout": within},
                                  timeout=within) as conn:
                outcome.append((conn.root.ping(), conn.root.add(20, 22)))
        except BaseException as exc:  # raised again on the test's thread
            outcome.append(exc)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    prober.join(within)
    assert not prober.is_alive(), f"not served within {within} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    assert outcome == [("pong", 42)]


def server_side(server: rpyc_ipy.ThreadedServer, timeout: float = WAIT) -> Any:
    """The one server-side connection of an in-process server (waits for it)."""
    assert wait_until(lambda: len(server.clients) == 1, timeout)
    return next(iter(server.clients))


def collect() -> None:
    gc.collect()
    gc.collect()


def refuses(kind: str, payload: Any, *names: str) -> bool:
    """True if the answer is an exception whose class is one of ``names``
    (default: AttributeError, the way a refused attribute is reported)."""
    names = names or ("builtins.AttributeError",)
    return kind == "exception" and exception_name(payload) in names


__all__ = [
    "CLIENT_CONFIG",
    "WAIT",
    "Closed",
    "ConnectionClosed",
    "RawClient",
    "RawServer",
    "ServerProcess",
    "TargetService",
    "Thing",
    "assert_serves",
    "collect",
    "exception_frame",
    "exception_name",
    "readline_within",
    "ref",
    "refuses",
    "reply_frame",
    "request_frame",
    "request_payload",
    "rss_kib",
    "serve",
    "server_side",
    "tup",
    "val",
    "wait_until",
]
