"""Only builtin exceptions are rebuilt from a peer's data, unless the policy says otherwise.

An exception payload names its class as ``(module, name)``. Without
``instantiate_custom_exceptions`` only classes of ``builtins`` are rebuilt; a stdlib
class such as ``threading.BrokenBarrierError`` becomes the generic
:class:`~rpyc_ipy.errors.RemoteError` (with the name in ``remote_type``), whether
it answers a request of ours directly or a callback the peer made us run.
"""

from __future__ import annotations

from typing import Any

import pytest
from seckit import (
    WAIT,
    RawClient,
    RawServer,
    TargetService,
    assert_serves,
    exception_frame,
    ref,
    tup,
    val,
    wait_until,
)

import rpyc_ipy
from rpyc_ipy.errors import RemoteError
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Reply, Request

pytestmark = pytest.mark.timeout(60)

#: stdlib exception classes that are not builtins (socket.timeout is builtins.TimeoutError)
NOT_BUILTIN = [
    ("threading", "BrokenBarrierError"),
    ("subprocess", "CalledProcessError"),
    ("subprocess", "TimeoutExpired"),
    ("json.decoder", "JSONDecodeError"),
    ("json", "JSONDecodeError"),
    ("socket", "timeout"),
    ("socket", "gaierror"),
    ("concurrent.futures", "TimeoutError"),
    ("asyncio", "CancelledError"),
    ("queue", "Empty"),
    ("pickle", "UnpicklingError"),
    ("rpyc_ipy.errors", "SecurityError"),
]


def payload(module: str, name: str) -> Any:
    return ((module, name), ("from the peer",), (), "peer traceback")


def class_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


@pytest.mark.parametrize(("module", "name"), NOT_BUILTIN)
def test_a_direct_reply_naming_a_stdlib_exception_is_a_remote_error(module: str, name: str
                                                                     ) -> None:
    def respond(event: Any) -> bytes | None:
        if isinstance(event, Request):
            return exception_frame(event.seq, payload(module, name))
        return None

    hostile = RawServer(respond)
    try:
        with pytest.raises(RemoteError) as caught:
            # connect() fetches the root first: that request is answered with the exception
            rpyc_ipy.connect("127.0.0.1", hostile.port, config={"sync_request_timeout": WAIT})
        assert type(caught.value) is RemoteError
        assert caught.value.remote_type == f"{module}.{name}"
        assert caught.value.args == ("from the peer",)
    finally:
        hostile.close()


class Catcher(TargetService):
    def exposed_catch(self, fn: Any) -> str:
        """What calling the peer's callback raised here, by class."""
        try:
            fn()
        except BaseException as exc:
            return class_name(exc)
        return "nothing"


@pytest.mark.parametrize(("module", "name"), [*NOT_BUILTIN, ("builtins", "KeyError")])
def test_a_callback_reply_naming_a_stdlib_exception_is_a_remote_error(
        serve: Any, module: str, name: str) -> None:
    server = serve(Catcher)
    callback = ("builtins.function", 4242, 4343)  # an object of ours, as the server sees it
    with RawClient(server.port) as client:
        root = client.getroot()
        seq = client.send(consts.HANDLE_CALLATTR,
                          tup(ref(root), val("catch"), tup((consts.LABEL_REMOTE_REF, callback)),
                              val(())))

        def answer() -> Any:
            # every request the server makes of our callback fails with the named class
            event = client.event()
            if isinstance(event, Request):
                client.send_raw(exception_frame(event.seq, payload(module, name)))
                return None
            return event if isinstance(event, Reply) and event.seq == seq else None

        reply = wait_until(answer, WAIT, step=0.0)
        assert reply is not None, "no answer to catch()"
    caught = reply.value[1]
    if module == "builtins":
        assert caught == "builtins.KeyError"  # builtins are rebuilt, as rpyc does
    else:
        assert caught == "rpyc_ipy.errors.RemoteError"
    assert_serves(server.port)


def test_instantiate_custom_exceptions_rebuilds_a_loaded_stdlib_class(serve: Any) -> None:
    def respond(event: Any) -> bytes | None:
        if isinstance(event, Request):
            return exception_frame(event.seq, payload("threading", "BrokenBarrierError"))
        return None

    hostile = RawServer(respond)
    try:
        import threading

        with pytest.raises(threading.BrokenBarrierError):
            # connect() fetches the root first: that request is answered with the exception
            rpyc_ipy.connect("127.0.0.1", hostile.port,
                             config={"sync_request_timeout": WAIT,
                                     "instantiate_custom_exceptions": True})
    finally:
        hostile.close()
