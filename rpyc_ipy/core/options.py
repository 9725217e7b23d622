"""A connection's configuration: RPyC's keys (:data:`~rpyc_ipy.core.policy.DEFAULT_CONFIG`)
and ours (:data:`CONNECTION_OPTIONS`), merged and checked by :func:`validated_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rpyc_ipy.core.budget import CLIENT_FRAME_BUDGET, FrameBudget
from rpyc_ipy.core.policy import DEFAULT_CONFIG
from rpyc_ipy.core.transport import DEFAULT_BUSY_POLL_WINDOW
from rpyc_ipy.errors import ConfigError
from rpyc_ipy.protocol.framing import KEEP_BUFFER
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits

__all__ = ["CONNECTION_OPTIONS", "validated_config"]

#: options of ours, accepted in a config dict beside RPyC's keys
CONNECTION_OPTIONS: dict[str, Any] = {
    "limits": DEFAULT_LIMITS,  # decoder and frame limits
    # bytes of large frames in flight, shared with other connections (core/budget.py);
    # servers give their clients one of their own
    "frame_budget": CLIENT_FRAME_BUDGET,
    # servers set this: frame limit until the peer logs in or sends a valid message
    "pending_frame_limit": None,
    # bytes of a large frame's buffer kept, once the peer is established, for its next
    # large frame (a fresh page costs a fault: protocol/framing.py); 0 = keep none
    "keep_frame_buffer": KEEP_BUFFER,
    "compress_threshold": None,  # compress payloads above this many bytes; None = never
    "max_dispatch_threads": 64,  # threads that may run the peer's requests at once
    "max_exported_objects": 1_000_000,  # objects the peer may hold references to
    "max_proxy_classes": 4096,  # INSPECT results cached per connection
    "frame_deadline": 60.0,  # seconds a started frame may take to arrive
    "first_frame_timeout": None,  # servers set this: drop a client silent this long
    "idle_timeout": None,  # close after this many seconds without a frame
    "max_buffiter_chunk": 10_000,  # items one BUFFITER request may return
    # include_local_traceback also for a peer that is neither local (loopback, unix
    # socket, pipe) nor authenticated (TLS client certificate, SRP, an authenticator's
    # credentials); by default such a peer gets the exception's type and message only
    "traceback_to_unauthenticated": False,
    # seconds a socket reader may poll for data before sleeping; adaptive, 0 = never
    # (saves two thread wake-ups per round trip on a quiet machine: transports/spin.py)
    "busy_poll_window": DEFAULT_BUSY_POLL_WINDOW,
    # netrefs kept alive after their last use, and for how many seconds: the same
    # remote object sent again (a callback) reuses its netref (core/keepalive.py)
    "netref_keep": 8,
    "netref_keep_time": 0.1,
}


def validated_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """RPyC's defaults, then ours, then ``config``; ``ConfigError`` for an unknown
    key or a bad value."""
    merged = dict(DEFAULT_CONFIG)
    merged.update(CONNECTION_OPTIONS)
    if config:
        unknown = set(config) - set(merged)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        merged.update(config)
    if not isinstance(merged["limits"], Limits):
        raise ConfigError("config['limits'] must be a rpyc_ipy.protocol.limits.Limits")
    if not isinstance(merged["frame_budget"], FrameBudget):
        raise ConfigError("config['frame_budget'] must be a rpyc_ipy.FrameBudget")
    pending = merged["pending_frame_limit"]
    if pending is not None and (type(pending) is not int or pending <= 0):
        raise ConfigError("pending_frame_limit must be a positive int of bytes or None")
    keep = merged["keep_frame_buffer"]
    if type(keep) is not int or keep < 0:
        raise ConfigError("keep_frame_buffer must be an int of bytes, 0 or more")
    if merged["instantiate_oldstyle_exceptions"]:
        raise ConfigError("instantiate_oldstyle_exceptions is for Python 2's old-style "
                          "exception classes, which Python 3 does not have: leave it False")
    if merged["bind_threads"]:
        raise ConfigError("bind_threads (RPYC_BIND_THREADS) framing is not supported")
    if type(merged["traceback_to_unauthenticated"]) is not bool:
        raise ConfigError("traceback_to_unauthenticated must be True or False")
    timeout = merged["sync_request_timeout"]
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError("sync_request_timeout must be a positive number or None")
    window = merged["busy_poll_window"]
    if not isinstance(window, (int, float)) or isinstance(window, bool) or not 0 <= window <= 0.1:
        raise ConfigError("busy_poll_window must be a number of seconds from 0 to 0.1")
    keep = merged["netref_keep"]
    if type(keep) is not int or not 0 <= keep <= 1024:
        raise ConfigError("netref_keep must be an int from 0 (keep none) to 1024")
    hold = merged["netref_keep_time"]
    if not isinstance(hold, (int, float)) or isinstance(hold, bool) or not 0 < hold <= 60:
        raise ConfigError("netref_keep_time must be a number of seconds above 0, at most 60")
    return merged
