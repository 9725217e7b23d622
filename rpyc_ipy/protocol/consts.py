"""Named constants of the RPyC 6.0.2 wire protocol (wire spec §5-§7).

Plain ints on purpose: brine dispatches on exact types, so an ``IntEnum`` member
would not travel by value. ``HANDLER_NAMES`` maps ids back for messages and logs.
"""

from __future__ import annotations

__all__ = [
    "HANDLER_NAMES",
    "LABEL_LOCAL_REF",
    "LABEL_REMOTE_REF",
    "LABEL_TUPLE",
    "LABEL_VALUE",
    "MSG_EXCEPTION",
    "MSG_REPLY",
    "MSG_REQUEST",
    "PING_DEFAULT_DATA",
    "STOP_ITERATION_PAYLOAD",
]

# message types: the raw first byte of a payload
MSG_REQUEST = 1
MSG_REPLY = 2
MSG_EXCEPTION = 3

# boxing labels, named from the receiver's point of view
LABEL_VALUE = 1
LABEL_TUPLE = 2
LABEL_LOCAL_REF = 3  # "one of YOUR objects": look it up in your export table
LABEL_REMOTE_REF = 4  # "an object on MY side": make or reuse a netref

# request handler ids
HANDLE_PING = 1
HANDLE_CLOSE = 2
HANDLE_GETROOT = 3
HANDLE_GETATTR = 4
HANDLE_DELATTR = 5
HANDLE_SETATTR = 6
HANDLE_CALL = 7
HANDLE_CALLATTR = 8
HANDLE_REPR = 9
HANDLE_STR = 10
HANDLE_CMP = 11
HANDLE_HASH = 12
HANDLE_DIR = 13
HANDLE_PICKLE = 14
HANDLE_DEL = 15
HANDLE_INSPECT = 16
HANDLE_BUFFITER = 17
HANDLE_OLDSLICING = 18
HANDLE_CTXEXIT = 19
HANDLE_INSTANCECHECK = 20

HANDLER_NAMES = {
    value: name[len("HANDLE_"):]
    for name, value in dict(globals()).items()
    if name.startswith("HANDLE_")
}
__all__ += [f"HANDLE_{name}" for name in HANDLER_NAMES.values()]

#: the vinegar payload of a bare StopIteration
STOP_ITERATION_PAYLOAD = 1
#: what rpyc's ``Connection.ping()`` sends by default
PING_DEFAULT_DATA = "abcdefghijklmnopqrstuvwxyz" * 20
