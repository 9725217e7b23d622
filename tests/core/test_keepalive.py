"""Netrefs kept alive past their last use (core/keepalive.py): a callback sent on every
call keeps one netref whose single DEL carries the count it accumulated; at most
``netref_keep`` are kept, each at most ``netref_keep_time`` seconds."""

from __future__ import annotations

import functools
import operator
import threading
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import ConfigError
from rpyc_ipy.protocol import consts

_get = object.__getattribute__


class Recorder(rpyc_ipy.Service):
    """Calls the callbacks it is given and notes which netref each one was."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (id of the netref, its count then)

    def exposed_call(self, callback: Any, x: int) -> Any:
        self.seen.append((id(callback), _get(callback, "____refcount__")))
        return callback(x)

    def exposed_take(self, obj: Any) -> None:
        """Receives a netref and drops it at once."""


def _record_releases(conn: Any) -> list[int]:
    """The counts of the DEL requests ``conn`` serves from now on."""
    counts: list[int] = []
    handle = conn._handlers[consts.HANDLE_DEL]

    def counting(self: Any, obj: Any, count: Any = 1) -> None:
        counts.append(count)
        handle(self, obj, count)

    # the table is shared by the class: this connection gets its own copy
    conn._handlers = {**conn._handlers, consts.HANDLE_DEL: counting}
    return counts


def _settled(client: Any) -> int:
    """The client's export table once the server's releases came (the client reads
    only while it calls)."""
    client.ping()
    return len(client._exports)


def test_a_callback_sent_on_every_call_keeps_one_netref_and_one_release(
        make_pair: Any) -> None:
    service = Recorder()
    pair = make_pair(service)
    client = pair.client
    releases = _record_releases(client)

    def cb(x: int) -> int:
        return x + 1

    for i in range(50):
        assert client.root.call(cb, i) == i + 1
    assert len({netref for netref, _ in service.seen}) == 1  # one netref for all 50
    assert [count for _, count in service.seen] == list(range(1, 51))
    assert pair.server.kept_netrefs == 1
    # unused for netref_keep_time, it goes: one DEL carries all 50 references
    assert wait_until(lambda: _settled(client) == 0)
    assert releases == [50]
    assert pair.server.kept_netrefs == 0


def test_a_callback_costs_two_frames_each_way_and_no_release(make_pair: Any) -> None:
    # the call and the callback's reply one way, the callback and the call's reply the
    # other: nothing else (no DEL, no reply to one) while the callback's netref is kept
    pair = make_pair(Recorder(), server_config={"netref_keep_time": 60})
    client, server = pair.client, pair.server

    def cb(x: int) -> int:
        return x + 1

    client.root.call(cb, 0)
    client.ping()  # whatever the first call left behind has arrived by now
    to_client, to_server = client._reader.frames_read, server._reader.frames_read
    for i in range(20):
        assert client.root.call(cb, i) == i + 1
    assert client._reader.frames_read - to_client == 40
    assert server._reader.frames_read - to_server == 40


def test_one_netref_over_the_bound_is_released_the_others_kept(make_pair: Any) -> None:
    keep = 4
    pair = make_pair(Recorder(), server_config={"netref_keep": keep, "netref_keep_time": 60})
    client = pair.client
    releases = _record_releases(client)
    start = _settled(client)
    objects = [threading.Event() for _ in range(keep + 1)]  # exported by reference
    for obj in objects:
        client.root.take(obj)
    # the first went when the fifth came; the four others stay for a minute
    assert wait_until(lambda: _settled(client) == start + keep)
    assert releases == [1]
    assert pair.server.kept_netrefs == keep
    pair.server.release_kept()
    assert wait_until(lambda: _settled(client) == start)
    assert sorted(releases) == [1] * (keep + 1)


def test_netref_keep_zero_keeps_none(make_pair: Any) -> None:
    pair = make_pair(Recorder(), server_config={"netref_keep": 0})
    client = pair.client
    start = _settled(client)
    client.root.take(threading.Event())
    assert pair.server.kept_netrefs == 0
    assert wait_until(lambda: _settled(client) == start)


def test_closing_drops_the_kept_netrefs(make_pair: Any) -> None:
    pair = make_pair(Recorder(), server_config={"netref_keep_time": 60})
    pair.client.root.take(threading.Event())
    assert pair.server.kept_netrefs == 1
    pair.client.close()
    assert wait_until(lambda: pair.server.closed)
    assert pair.server.kept_netrefs == 0


@pytest.mark.parametrize("key, bad", [
    ("netref_keep", -1), ("netref_keep", 1025), ("netref_keep", "8"), ("netref_keep", 2.0),
    ("netref_keep_time", 0), ("netref_keep_time", 60.5), ("netref_keep_time", True),
    ("netref_keep_time", None),
])
def test_keep_options_are_checked(key: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        rpyc_ipy.connect_stream(None, config={key: bad})  # type: ignore[arg-type]


def test_the_largest_keep_options_are_accepted(make_pair: Any) -> None:
    pair = make_pair(Recorder(), server_config={"netref_keep": 1024, "netref_keep_time": 60})
    assert pair.client.root.call(abs, -3) == 3


def test_threads_passing_callbacks_past_a_small_bound(make_pair: Any) -> None:
    # six callbacks through a bound of two, from three threads at once, while the
    # watchdog expires what goes unused: netrefs are evicted, rebuilt, their releases
    # queued and taken back concurrently; every call is right and the client's table
    # ends where it started
    pair = make_pair(Recorder(), server_config={"netref_keep": 2, "netref_keep_time": 0.001})
    client = pair.client
    start = _settled(client)
    callbacks = [functools.partial(operator.add, k) for k in range(6)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(60):
                k = (t + i) % 6
                assert client.root.call(callbacks[k], i) == i + k
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: not any(thread.is_alive() for thread in threads), 60,
               what="the three threads to finish")
    assert not errors, errors
    pair.server.release_kept()
    assert wait_until(lambda: _settled(client) == start)
