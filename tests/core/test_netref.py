"""Netrefs over an in-memory connection pair: what each Python operation does."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.core.netref import BaseNetref, RemoteMethod
from rpyc_ipy.errors import PickleDisabledError
from rpyc_ipy.protocol import consts


class Box:
    """A user class with special methods, exported by reference."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __len__(self) -> int:
        return 3

    def __iter__(self) -> Any:
        return iter(range(3))

    def __getitem__(self, key: Any) -> Any:
        return ("item", key)

    def __contains__(self, item: Any) -> bool:
        return item == 1

    def __add__(self, other: int) -> int:
        return self.value + other

    def __call__(self, x: int) -> int:
        return self.value * x

    def __enter__(self) -> str:
        return "entered"

    def __exit__(self, *exc: Any) -> bool:
        Service.exits.append(exc[0])
        return True  # suppress

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other == self.value

    def __lt__(self, other: int) -> bool:
        return self.value < other

    def __hash__(self) -> int:
        return 1234

    def __repr__(self) -> str:
        return f"Box({self.value})"

    def _repr_html_(self) -> str:
        return "<script>alert(1)</script>"


class Service(rpyc_ipy.Service):
    exits: list[Any] = []

    def exposed_box(self, value: int = 7) -> Box:
        return Box(value)

    def exposed_items(self) -> list[int]:
        return [1, 2, 3]

    def exposed_identity(self, obj: Any) -> Any:
        return obj

    def exposed_is_same(self, a: Any, b: Any) -> bool:
        return a is b

    def exposed_box_class(self) -> type:
        return Box

    def exposed_exported(self) -> int:
        assert self._conn is not None
        return len(self._conn._exports)


@pytest.fixture
def conn(make_pair: Any) -> Any:
    return make_pair(Service, server_config={"allow_public_attrs": True}).client


def test_special_methods_forward(conn: Any) -> None:
    box: Any = conn.root.box()  # a netref class made for Box: its dunders forward
    assert issubclass(type(box), BaseNetref)
    assert len(box) == 3
    assert list(box) == [0, 1, 2]
    assert box[5] == ("item", 5)
    assert 1 in box and 2 not in box
    assert box + 1 == 8
    assert box(3) == 21
    assert box == 7 and box != 8 and box < 10
    assert hash(box) == 1234
    assert repr(box) == "Box(7)" and str(box) == "Box(7)"


def test_attributes_read_and_write_need_the_peer_policy(conn: Any) -> None:
    box = conn.root.box()
    assert box.value == 7
    with pytest.raises(AttributeError):
        box.value = 8  # allow_setattr is off on the server
    for hook in ("_repr_html_", "_ipython_canary_method_should_not_exist_"):
        with pytest.raises(AttributeError):  # refused locally: display hooks are never fetched
            getattr(box, hook)
    assert not hasattr(box, "missing")


def test_with_statement_calls_enter_and_exit(conn: Any, make_pair: Any) -> None:
    box = conn.root.box()
    Service.exits.clear()
    with box as entered:
        assert entered == "entered"
    assert Service.exits == [None]


def test_iteration_of_a_remote_list_and_isinstance(conn: Any) -> None:
    items = conn.root.items()
    assert isinstance(items, list)  # resolved locally from the name_pack, no request
    assert list(items) == [1, 2, 3]
    assert items.__class__ is list
    assert type(items).__name__ == "list"


def test_isinstance_and_issubclass_against_a_remote_class(conn: Any) -> None:
    box_class = conn.root.box_class()
    box = conn.root.box()
    assert isinstance(box, box_class)
    assert not isinstance(conn.root.items(), box_class)


def test_a_netref_sent_back_arrives_as_the_original(conn: Any) -> None:
    box = conn.root.box()
    assert conn.root.is_same(box, box) is True
    assert conn.root.identity(box) is box  # the same proxy comes back


def test_dir_lists_only_what_the_policy_allows(make_pair: Any) -> None:
    conn = make_pair(Service).client  # default policy: exposed names and safe dunders only
    names = dir(conn.root)
    assert "exposed_box" in names and "box" in names
    assert "on_connect" not in names and "_conn" not in names


def _count_requests(conn: Any) -> list[int]:
    """The handler ids of the requests ``conn`` sends from now on."""
    sent: list[int] = []
    original = conn.async_request

    def counting(handler: int, *args: Any) -> Any:
        sent.append(handler)
        return original(handler, *args)

    conn.async_request = counting
    return sent


def test_method_call_is_one_round_trip(conn: Any) -> None:
    root = conn.root
    sent = _count_requests(conn)
    method = root.identity
    assert isinstance(method, RemoteMethod)
    assert method(5) == 5
    assert sent == [consts.HANDLE_CALLATTR]


@pytest.mark.parametrize("operation", [pickle.dumps, copy.copy, copy.deepcopy])
def test_copying_a_netref_refuses_without_local_allow_pickle(conn: Any, operation: Any) -> None:
    box = conn.root.box()
    with pytest.raises(PickleDisabledError):
        operation(box)


def test_array_hooks_never_reach_the_peer(conn: Any) -> None:
    box = conn.root.box()
    for name in ("__array_interface__", "__array_struct__", "__array__", "__array_priority__"):
        with pytest.raises(AttributeError):
            getattr(box, name)


def test_releases_return_the_export_table_to_its_start(conn: Any) -> None:
    import gc

    start = conn.root.exported()
    boxes = [conn.root.box(i) for i in range(20)]
    assert conn.root.exported() == start + 20
    del boxes
    gc.collect()
    assert wait_until(lambda: conn.root.exported() == start, timeout=5), conn.root.exported()


@pytest.fixture
def classic_conn() -> Any:
    conn = rpyc_ipy.classic.connect_thread()
    yield conn
    conn.close()


def test_a_module_function_seen_once_is_called_with_one_round_trip(classic_conn: Any) -> None:
    import os

    conn = classic_conn
    remote_os = conn.modules.os
    sent = _count_requests(conn)
    assert remote_os.getpid() == os.getpid()  # first: GETATTR, then CALL
    assert sent == [consts.HANDLE_GETATTR, consts.HANDLE_CALL]
    del sent[:]
    assert remote_os.getpid() == os.getpid()
    assert remote_os.path.join("a", "b") == os.path.join("a", "b")
    assert sent[0] == consts.HANDLE_CALLATTR  # getpid: one request
    del sent[:]
    assert remote_os.sep == os.sep and remote_os.sep == os.sep  # not a function: asked each time
    assert sent == [consts.HANDLE_GETATTR, consts.HANDLE_GETATTR]


def test_a_learned_module_name_rebound_on_the_peer_is_asked_afresh(classic_conn: Any) -> None:
    conn = classic_conn
    scratch = conn.modules.types.ModuleType("scratch")
    scratch.f = conn.modules.builtins.abs
    assert scratch.f(-3) == 3 and scratch.f(-4) == 4  # learned on the first
    learned = scratch.f
    assert isinstance(learned, RemoteMethod)
    conn.modules.builtins.setattr(scratch, "f", 5)  # the peer rebinds it to a number
    with pytest.raises(TypeError):
        scratch.f(1)  # the call looks it up afresh: what calling 5 does
    assert repr(scratch.f) == "5"  # a use other than a call resolves it and forgets it
    assert scratch.f == 5 and scratch.f + 1 == 6


def test_functions_found_on_other_netrefs_are_not_learned(classic_conn: Any) -> None:
    conn = classic_conn
    holder = conn.modules.types.SimpleNamespace(hook=conn.modules.builtins.abs)
    sent = _count_requests(conn)
    assert holder.hook(-1) == 1 and holder.hook(-2) == 2
    assert sent.count(consts.HANDLE_GETATTR) == 2  # an instance's attribute may change type
    holder.hook = None
    assert holder.hook is None


def test_a_module_netref_learns_a_bounded_number_of_names(classic_conn: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from rpyc_ipy.core import netref

    monkeypatch.setattr(netref, "MAX_LEARNED_CALLABLES", 2)
    conn = classic_conn
    remote_math = conn.modules.math
    for name in ("floor", "ceil", "trunc"):
        getattr(remote_math, name)
    assert [type(getattr(remote_math, name)) is RemoteMethod
            for name in ("floor", "ceil", "trunc")] == [True, True, False]
