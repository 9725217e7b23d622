"""Helpers for the interop tests against the real rpyc 6.0.2 package.

The same service body is defined twice, once on :class:`rpyc_ipy.Service` and once
on :class:`rpyc.Service`, so every scenario runs in both directions: rpyc's client
against our server, and our client against rpyc's server. Servers listen on
127.0.0.1, port 0, in threads of this process. (A uniquely named module, not
conftest, so tests can import it.)
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy

rpyc = pytest.importorskip("rpyc")
from rpyc import Service as RpycBaseService  # noqa: E402
from rpyc.utils.server import ThreadedServer as RpycThreadedServer  # noqa: E402

WAIT = 10.0  #: upper bound of any single wait
MiB = 1 << 20


class CustomError(Exception):
    """An exception class only this process knows."""


class Box:
    """An object handed out by reference."""

    exposed_label = "box"

    def __init__(self, n: int = 0) -> None:
        self.exposed_n = n

    def exposed_double(self) -> int:
        return 2 * self.exposed_n


class _Body:
    """The exposed surface both services share; ``_exports()`` differs per library."""

    exposed_answer = 42

    def _setup(self) -> None:
        self.kept: Any = None
        self.box = Box(7)

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_echo(self, value: Any) -> Any:
        return value

    def exposed_fail_builtin(self, message: str) -> None:
        raise KeyError(message)

    def exposed_fail_custom(self, message: str) -> None:
        raise CustomError(message)

    def exposed_numbers(self, n: int) -> list[int]:
        return list(range(n))

    def exposed_squares(self, n: int) -> Iterator[int]:
        return (i * i for i in range(n))

    def exposed_call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def exposed_call_plus_one(self, fn: Any, x: Any) -> Any:
        return fn(x) + 1

    def exposed_get_box(self) -> Box:
        return self.box

    def exposed_is_my_box(self, obj: Any) -> bool:
        return obj is self.box

    def exposed_make_box(self, n: int) -> Box:
        return Box(n)

    def exposed_keep(self, obj: Any) -> None:
        self.kept = obj

    def exposed_kept_is(self, obj: Any) -> bool:
        return self.kept is obj

    def exposed_slow_add(self, a: Any, b: Any, delay: float) -> Any:
        time.sleep(min(delay, WAIT))
        return a + b

    def exposed_exports(self) -> int:
        return self._exports()

    def _exports(self) -> int:
        raise NotImplementedError


class OurService(_Body, rpyc_ipy.Service):
    def on_connect(self, conn: Any) -> None:
        super().on_connect(conn)
        self._setup()

    def _exports(self) -> int:
        assert self._conn is not None
        return len(self._conn._exports)


class RpycService(_Body, RpycBaseService):
    def on_connect(self, conn: Any) -> None:
        self._conn = conn
        self._setup()

    def _exports(self) -> int:
        return len(self._conn._local_objects._dict)


# -- servers -------------------------------------------------------------------------------


@pytest.fixture
def our_server(start_server: Any) -> Callable[..., rpyc_ipy.ThreadedServer]:
    """``our_server(service, **kwargs)``: a started rpyc_ipy ThreadedServer."""

    def start(service: Any = OurService, **kwargs: Any) -> rpyc_ipy.ThreadedServer:
        return start_server(service, **kwargs)

    return start


@pytest.fixture
def rpyc_server() -> Iterator[Callable[..., Any]]:
    """``rpyc_server(service, **kwargs)``: a real rpyc 6.0.2 ThreadedServer, listening
    when this returns, serving from a thread, closed at the end of the test."""
    assert rpyc.__version__ == "6.0.2"
    started: list[tuple[Any, threading.Thread]] = []

    def start(service: Any = RpycService, **kwargs: Any) -> Any:
        kwargs.setdefault("protocol_config", {"sync_request_timeout": WAIT})
        server = RpycThreadedServer(service, hostname="127.0.0.1", port=0,
                                    auto_register=False, listener_timeout=0.2, **kwargs)
        server._listen()  # rpyc binds lazily: listen before the first client dials
        thread = threading.Thread(target=server.start, name="rpyc-server", daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    try:
        yield start
    finally:
        for server, thread in started:
            _stop_rpyc_server(server, thread)


def _stop_rpyc_server(server: Any, thread: threading.Thread) -> None:
    # let rpyc finish with the clients the test closed: closing their sockets
    # under its serving threads makes them die with an exception
    wait_until(lambda: not server.clients, timeout=5)
    server.close()
    thread.join(WAIT)


@dataclass
class Side:
    """One interop direction: a connected client and the library helpers it uses."""

    name: str
    conn: Any
    async_: Callable[[Any], Any]
    server: Any

    @property
    def root(self) -> Any:
        return self.conn.root


# -- probes -------------------------------------------------------------------------------


def collect() -> None:
    gc.collect()
    gc.collect()


def payload(size: int) -> bytes:
    """``size`` bytes that are not all the same (so a mix-up would show)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def run_threads(target: Callable[[int], None], count: int, timeout: float = 60.0) -> None:
    """Run ``target(i)`` in ``count`` threads; re-raise the first failure; bounded wait."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    wait_until(lambda: not any(thread.is_alive() for thread in threads), timeout,
               what=f"{count} threads to finish")
    if errors:
        raise errors[0]
