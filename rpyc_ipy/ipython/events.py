"""What a server sends while a cell runs, validated: its events and display bundles.

It imports no other module of :mod:`rpyc_ipy.ipython`. A
:class:`~rpyc_ipy.ipython.execution.RemoteExecution` queues the events;
whoever shows them calls :func:`dispatch_event` with its callbacks::

    dispatch_event(event, on_stream, on_display, on_clear)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rpyc_ipy.remote.values import NotByValue, unpack

__all__ = ["EVENT_KINDS", "DisplayCallback", "StreamCallback", "dispatch_event", "parse_bundle"]

#: events a server may send; anything else is dropped
EVENT_KINDS = frozenset({"stream", "display", "clear", "done"})

StreamCallback = Callable[[str, str], None]
DisplayCallback = Callable[[dict[str, Any], dict[str, Any], "str | None", bool], None]


def parse_bundle(bundle: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data_pairs, packed_metadata)`` from a server, validated, as two dicts."""
    if type(bundle) is not tuple or len(bundle) != 2 or type(bundle[0]) is not tuple:
        raise ValueError("malformed display bundle")
    data: dict[str, Any] = {}
    for pair in bundle[0]:
        if type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str \
                and type(pair[1]) in (str, bytes):
            data[pair[0]] = pair[1]
    try:
        metadata = unpack(bundle[1], allow_pickle=False) if bundle[1] != () else {}
    except (ValueError, TypeError, NotByValue):
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    return data, metadata


def dispatch_event(event: tuple[Any, ...], on_stream: StreamCallback | None,
                   on_display: DisplayCallback | None,
                   on_clear: Callable[[bool], None] | None) -> None:
    """Call the right callback for one validated-by-shape server event."""
    kind = event[0]
    if kind == "stream" and len(event) == 3 and type(event[2]) is str and event[1] in (
            "stdout", "stderr"):
        if on_stream is not None:
            on_stream(event[1], event[2])
    elif kind == "display" and len(event) == 5:
        try:
            data, metadata = parse_bundle((event[1], event[2]))
        except ValueError:
            return
        display_id = event[3] if type(event[3]) is str else None
        if on_display is not None:
            on_display(data, metadata, display_id, event[4] is True)
    elif kind == "clear" and len(event) == 2 and on_clear is not None:
        on_clear(event[1] is True)
