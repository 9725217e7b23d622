"""Every request handler goes through policy.authorize: walk the handler table and prove it."""

from __future__ import annotations

from typing import Any, Literal

import pytest

import rpyc_ipy
from rpyc_ipy.core import policy as policy_module
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.policy import Op
from rpyc_ipy.errors import SecurityError
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.objects import id_pack_of
from rpyc_ipy.transports.memory import memory_pair


class Thing:
    value = 1

    def __enter__(self) -> Thing:
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        return False

    def __getitem__(self, key: Any) -> Any:
        return key

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = object.__hash__

    def __iter__(self) -> Any:
        return iter((1, 2))


class Root(rpyc_ipy.Service):
    def exposed_thing(self) -> Thing:
        return Thing()


# the arguments each handler is called with, given an exported object
def _arguments(handler: int, obj: Any, conn: Connection) -> tuple[Any, ...]:
    id_pack = id_pack_of(obj)
    return {
        consts.HANDLE_PING: ("x",),
        consts.HANDLE_CLOSE: (),
        consts.HANDLE_GETROOT: (),
        consts.HANDLE_GETATTR: (obj, "value"),
        consts.HANDLE_DELATTR: (obj, "value"),
        consts.HANDLE_SETATTR: (obj, "value", 2),
        consts.HANDLE_CALL: (obj.__enter__, (), ()),
        consts.HANDLE_CALLATTR: (obj, "__getitem__", (1,), ()),
        consts.HANDLE_REPR: (obj,),
        consts.HANDLE_STR: (obj,),
        consts.HANDLE_CMP: (obj, obj, "__eq__"),
        consts.HANDLE_HASH: (obj,),
        consts.HANDLE_DIR: (obj,),
        consts.HANDLE_PICKLE: (obj, 4),
        consts.HANDLE_DEL: (obj, 1),
        consts.HANDLE_INSPECT: (id_pack,),
        consts.HANDLE_BUFFITER: (iter(obj), 2),
        consts.HANDLE_OLDSLICING: (obj, "__getitem__", "__getitem__", 0, 1, ()),
        consts.HANDLE_CTXEXIT: (obj, None),
        consts.HANDLE_INSTANCECHECK: (Thing, id_pack),
    }[handler]


EXPECTED_OPS = {
    consts.HANDLE_PING: Op.PING, consts.HANDLE_CLOSE: Op.CLOSE,
    consts.HANDLE_GETROOT: Op.GETROOT, consts.HANDLE_GETATTR: Op.GETATTR,
    consts.HANDLE_DELATTR: Op.DELATTR, consts.HANDLE_SETATTR: Op.SETATTR,
    consts.HANDLE_CALL: Op.CALL, consts.HANDLE_CALLATTR: Op.CALLATTR,
    consts.HANDLE_REPR: Op.REPR, consts.HANDLE_STR: Op.STR, consts.HANDLE_CMP: Op.CMP,
    consts.HANDLE_HASH: Op.HASH, consts.HANDLE_DIR: Op.DIR, consts.HANDLE_PICKLE: Op.PICKLE,
    consts.HANDLE_DEL: Op.DEL, consts.HANDLE_INSPECT: Op.INSPECT,
    consts.HANDLE_BUFFITER: Op.BUFFITER, consts.HANDLE_OLDSLICING: Op.OLDSLICING,
    consts.HANDLE_CTXEXIT: Op.CTXEXIT, consts.HANDLE_INSTANCECHECK: Op.INSTANCECHECK,
}


def _connection() -> Connection:
    near, _far = memory_pair()
    return Connection(Root, near)


def test_the_table_covers_every_handler_id() -> None:
    conn = _connection()
    assert set(conn._handlers) == set(consts.HANDLER_NAMES) == set(EXPECTED_OPS)


@pytest.mark.parametrize("handler", sorted(EXPECTED_OPS), ids=consts.HANDLER_NAMES.get)
def test_every_handler_calls_the_gate(handler: int, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _connection()
    thing = Thing()
    conn._exports.export(thing, id_pack_of(thing))
    calls: list[str] = []
    real = policy_module.authorize

    def spy(policy: Any, op: str, obj: Any = None, name: Any = None) -> Any:
        calls.append(op)
        return real(policy, op, obj, name)

    monkeypatch.setattr(policy_module, "authorize", spy)
    monkeypatch.setattr("rpyc_ipy.core.handlers.authorize", spy)
    try:
        conn._handlers[handler](conn, *_arguments(handler, thing, conn))
    except Exception:
        pass  # refusals and CLOSE's teardown signal are fine: the gate was asked first
    assert EXPECTED_OPS[handler] in calls


@pytest.mark.parametrize("handler", sorted(EXPECTED_OPS), ids=consts.HANDLER_NAMES.get)
def test_a_closed_gate_stops_every_handler(handler: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With authorize refusing everything, no handler performs its operation."""
    conn = _connection()
    thing = Thing()
    conn._exports.export(thing, id_pack_of(thing))

    def deny(*args: Any, **kwargs: Any) -> Any:
        raise SecurityError("closed for the test")

    monkeypatch.setattr(policy_module, "authorize", deny)
    monkeypatch.setattr("rpyc_ipy.core.handlers.authorize", deny)
    with pytest.raises(SecurityError):
        conn._handlers[handler](conn, *_arguments(handler, thing, conn))
    assert thing.value == 1 and "value" not in vars(thing)
