"""The client is exposed too: a hostile server (ours, in a subprocess, granting everything:
allow_all_attrs and allow_pickle) must not get code of its choosing to run in the client.

With our default client config the server cannot reach the client's objects (the
client's root is VoidService; ``classic.connect`` exposes nothing unless
``expose_local=True``), display probes (``_repr_html_`` ...) are answered locally
without a request, copying or pickling a netref refuses unless the *local* policy
allows pickle (CVE-2024-27758 went through ``__array__``), exceptions are bounded,
and a flood of exceptions with unique names leaves no trace in memory.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from seckit import (
    CANARY,
    SCRIPT,
    WAIT,
    RawServer,
    ServerProcess,
    collect,
    exception_frame,
)

import rpyc_ipy
from rpyc_ipy.errors import PickleDisabledError, RemoteError, RemoteExceptionMixin
from rpyc_ipy.protocol import consts, vinegar

pytestmark = pytest.mark.timeout(60)
MiB = 1 << 20
CONFIG = {"sync_request_timeout": WAIT}
HOSTILE = {"service": "HostileService",
           "protocol_config": {"allow_all_attrs": True, "allow_pickle": True,
                               "allow_setattr": True, "allow_delattr": True}}


@pytest.fixture(scope="module")
def hostile() -> Iterator[ServerProcess]:
    server = ServerProcess(**HOSTILE)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def conn(hostile: ServerProcess) -> Iterator[Any]:
    CANARY.clear()
    with rpyc_ipy.connect("127.0.0.1", hostile.port, config=CONFIG) as connection:
        yield connection
    assert not CANARY, f"code chosen by the server ran in the client: {CANARY}"


class RequestCounter:
    """Counts the requests a connection sends (wraps its async_request)."""

    def __init__(self, connection: Any) -> None:
        self.handlers: list[int] = []
        self._original = connection.async_request
        self._conn = connection

        def counting(handler: int, *args: Any) -> Any:
            self.handlers.append(handler)
            return self._original(handler, *args)

        connection.async_request = counting

    def remove(self) -> None:
        del self._conn.async_request


DISPLAY_PROBES = ("_repr_html_", "_repr_mimebundle_", "_ipython_display_", "_repr_pretty_",
                  "_repr_markdown_", "_repr_javascript_", "_repr_latex_", "_repr_svg_",
                  "_ipython_canary_method_should_not_exist_", "_ipython_key_completions_",
                  "__array_interface__", "__array_struct__", "__array_priority__",
                  "__array_ufunc__", "__array_function__", "__dlpack__", "__fspath__",
                  "__getstate__", "__dict__")


def test_display_probes_are_answered_locally_without_a_request(conn: Any) -> None:
    evil = conn.root.evil()
    counter = RequestCounter(conn)
    try:
        for name in DISPLAY_PROBES:
            with pytest.raises(AttributeError):
                getattr(evil, name)
            assert not hasattr(evil, name)
        assert counter.handlers == []
    finally:
        counter.remove()


def test_array_copy_and_pickle_never_unpickle_what_the_server_sends(conn: Any) -> None:
    """CVE-2024-27758: numpy's ``__array__`` on a netref unpickled the peer's bytes."""
    evil = conn.root.evil()
    counter = RequestCounter(conn)
    try:
        with pytest.raises(PickleDisabledError):
            evil.__array__()
        with pytest.raises(PickleDisabledError):
            copy.copy(evil)
        with pytest.raises(PickleDisabledError):
            copy.deepcopy(evil)
        with pytest.raises(PickleDisabledError):
            copy.deepcopy([evil, {"k": evil}])
        for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
            with pytest.raises(PickleDisabledError):
                pickle.dumps(evil, protocol)
        with pytest.raises(PickleDisabledError):
            rpyc_ipy.classic.obtain(evil)
        assert consts.HANDLE_PICKLE not in counter.handlers
    finally:
        counter.remove()
    assert not CANARY


def test_the_local_allow_pickle_is_what_gates_it(hostile: ServerProcess) -> None:
    """The control: with allow_pickle in the client's own config the bytes are unpickled
    (and the server's choice runs here), which is why it is off by default."""
    CANARY.clear()
    with rpyc_ipy.connect("127.0.0.1", hostile.port,
                          config={**CONFIG, "allow_pickle": True}) as connection:
        copy.copy(connection.root.evil())
    assert CANARY == ["unpickled"]
    CANARY.clear()


def test_the_server_cannot_reach_into_the_client(conn: Any) -> None:
    secret = {"password": "hunter2"}

    def callback(x: Any = None) -> str:
        return "called"  # the client lent this: calling it is what lending means

    assert conn.root.call(callback) == "called"
    assert conn.root.probe(callback) == ()  # every escape attempt failed
    assert conn.root.get_service_name() == "HOSTILE"
    assert secret == {"password": "hunter2"}


def test_our_classic_client_exposes_nothing_unless_asked(hostile: ServerProcess) -> None:
    def callback() -> str:
        return "called"

    with rpyc_ipy.classic.connect("127.0.0.1", hostile.port, config=CONFIG) as classic:
        assert classic.root.probe(callback) == ()
    # the control: expose_local=True grants the server the client's interpreter
    with rpyc_ipy.classic.connect("127.0.0.1", hostile.port, expose_local=True,
                                  config=CONFIG) as exposed:
        granted = set(exposed.root.probe(callback))
        assert {"root.eval", "root.execute", "root.getmodule"} <= granted


def test_huge_len_endless_iteration_and_a_50000_name_dir_stay_bounded(conn: Any) -> None:
    evil = conn.root.evil()
    assert len(evil) == 2**62  # just a number: nothing is allocated for it
    assert list(itertools.islice(iter(evil), 100)) == list(range(100))
    counter = RequestCounter(conn)
    names = dir(evil)
    counter.remove()
    assert len(names) == 50_000 and all(type(name) is str for name in names)
    # liveness: one request, which sync_request_timeout bounds, not one per name
    assert len(counter.handlers) == 1, counter.handlers
    assert repr(evil) == SCRIPT  # plain text for the display layer to escape
    assert isinstance(repr(evil), str)


def test_poisoned_exceptions_are_bounded(conn: Any) -> None:
    with pytest.raises(RemoteError) as info:
        conn.root.poisoned()
    exc = info.value
    assert exc.remote_type == "seckit.PoisonError"
    text = str(exc)  # the server's __str__ raised; ours does not
    assert "poisoned" in text and "exposed_poisoned" in text
    assert len(text) < 64 * 1024
    assert all(len(str(value)) <= vinegar.MAX_ATTR_SIZE for value in exc.remote_attrs.values())
    assert not hasattr(exc, "huge") and not hasattr(exc, "payload")  # never set on it
    assert exc._render_traceback_()


def _flood_server(payloads: Iterator[Any]) -> RawServer:
    def respond(event: Any) -> bytes | None:
        if event.handler != consts.HANDLE_PING:
            return None
        return exception_frame(event.seq, next(payloads))

    return RawServer(respond)


def test_hostile_exception_payloads_are_cut(conn: Any) -> None:
    tb = "t" * (10 * MiB)
    big = "b" * (10 * MiB)
    payload = (("builtins", "ValueError"), ("short",), tuple((f"a{i}", big) for i in range(3))
               + tuple((f"n{i}", i) for i in range(500)), tb)
    server = _flood_server(itertools.repeat(payload))
    try:
        with rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG) as client:
            with pytest.raises(ValueError) as info:
                client.sync_request(consts.HANDLE_PING, "x")
    finally:
        server.close()
    exc = info.value
    assert isinstance(exc, RemoteExceptionMixin)
    assert len(exc.remote_traceback) <= vinegar.MAX_TRACEBACK + 200
    assert len(exc.remote_attrs) <= vinegar.MAX_ATTRS
    assert all(len(str(value)) <= vinegar.MAX_ATTR_SIZE for value in exc.remote_attrs.values())
    assert len(str(exc)) < vinegar.MAX_TRACEBACK + 64 * 1024


def test_hostile_exception_args_are_cut(conn: Any) -> None:
    payload = (("builtins", "ValueError"), ("a" * (10 * MiB),), (), "tb")
    server = _flood_server(itertools.repeat(payload))
    try:
        with rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG) as client:
            with pytest.raises(ValueError) as info:
                client.sync_request(consts.HANDLE_PING, "x")
    finally:
        server.close()
    assert len(str(info.value)) < vinegar.MAX_TRACEBACK + 64 * 1024


@pytest.mark.parametrize("instantiate", [False, True], ids=["default", "instantiate_custom"])
def test_a_flood_of_uniquely_named_exceptions_leaves_no_trace(instantiate: bool) -> None:
    counter = itertools.count()

    def payloads() -> Iterator[Any]:
        for i in counter:
            module = "builtins" if i % 3 == 0 else f"hostile_mod_{i}"
            yield ((module, f"Error{i}"), (f"message {i}",), (("code", i),), f"tb {i}\n")

    server = _flood_server(payloads())
    config = {**CONFIG, "instantiate_custom_exceptions": instantiate}
    try:
        with rpyc_ipy.connect("127.0.0.1", server.port, config=config) as client:
            def flood(n: int) -> None:
                for _ in range(n):
                    with pytest.raises(Exception) as info:
                        client.sync_request(consts.HANDLE_PING, "x")
                    assert isinstance(info.value, RemoteExceptionMixin)
                    assert info.value.remote_type.rpartition(".")[2].startswith("Error")

            flood(300)  # warm up: caches of our own classes, the frame buffers
            cached = len(vinegar._rebuilt)
            tracemalloc.start()
            try:
                collect()
                before = tracemalloc.get_traced_memory()[0]
                flood(3000)
                collect()
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
    finally:
        server.close()
    assert len(vinegar._rebuilt) == cached
    assert grown < 512 * 1024, f"3000 exceptions left {grown / 1024:.0f} KiB behind"
    assert not [name for name in __import__("sys").modules if name.startswith("hostile_mod_")]


def test_copying_a_netref_on_the_server_side_refuses_too(hostile: ServerProcess) -> None:
    """The other direction: the server holds a netref to a client object and copies it."""
    server = ServerProcess()  # our default server (no allow_pickle)
    try:
        with rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG) as client:
            outcomes = client.root.try_copies([1, 2, 3])
    finally:
        server.close()
    assert set(outcomes) == {"PickleDisabledError"}
    # and the hostile server, which allows pickle locally, asks our client: refused here
    with rpyc_ipy.connect("127.0.0.1", hostile.port, config=CONFIG) as client:
        def fn() -> None:
            pass

        assert "pickle fn" not in client.root.probe(fn)
