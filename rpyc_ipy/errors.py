"""The whole exception tree of rpyc_ipy.

Two families, so a caller can tell who is at fault::

    RPyCError
    ├── UsageError                 you misused the API (bad argument, wrong state)
    │   └── ConfigError            an invalid config key or value
    │       ├── TargetError        connection settings that cannot work (rpyc_ipy.target)
    │       └── CredentialsError   the password source gives no password (rpyc_ipy.credentials)
    ├── SecurityError              the local policy refused an operation
    │   └── PickleDisabledError    pickling needs allow_pickle on this side
    ├── ProtocolError              the peer sent something we cannot accept
    │   ├── CodecError             malformed brine / vinegar / frame bytes
    │   │   └── LimitExceeded      well formed, but over a configured limit
    │   ├── UnexpectedMessage      a valid message in a state that does not allow it
    │   └── TLSRecordError         a TLS record failed a check (TLS-SRP record layer)
    ├── ConnectionClosed           the connection is gone (EOF, close, reset)
    │   └── ConnectionLost         ...while requests were still pending
    ├── AuthenticationError        an authenticator refused the peer
    ├── SessionError               a notebook session on the server cannot do that now
    │   ├── WorkerError            its worker process could not start, or died
    │   └── SessionLimitError      a cap on sessions (per user or in total) is reached
    ├── PingError                  a ping came back wrong
    ├── DiscoveryError             no server of a service was found in the registry
    ├── ForbiddenError             the registry does not allow listing its services
    └── RemoteError                base of exceptions rebuilt from the peer's vinegar payload
                                   (builtin ones also keep their builtin class)

``AsyncResultTimeout`` is the builtin ``TimeoutError`` (as in RPyC), so
``except TimeoutError`` catches an expired sync request.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "AsyncResultTimeout",
    "AuthenticationError",
    "CodecError",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionLost",
    "CredentialsError",
    "DiscoveryError",
    "ForbiddenError",
    "LimitExceeded",
    "PickleDisabledError",
    "PingError",
    "ProtocolError",
    "RPyCError",
    "RemoteError",
    "RemoteExceptionMixin",
    "SecurityError",
    "SessionError",
    "SessionLimitError",
    "TLSRecordError",
    "TargetError",
    "UnexpectedMessage",
    "UsageError",
    "WorkerError",
]


class RPyCError(Exception):
    """Base of every error rpyc_ipy raises on its own account."""


class UsageError(RPyCError, ValueError):
    """The caller misused the API: a bad argument or a call in the wrong state."""


class ConfigError(UsageError):
    """An unknown configuration key or a value of the wrong type."""


class TargetError(ConfigError):
    """Connection settings that cannot work (together); the message says what to change."""


class CredentialsError(ConfigError):
    """The SRP password source (an environment variable, a credentials file, a prompt)
    gives no usable password; the message says why and what to do."""


class SecurityError(RPyCError, AttributeError):
    """The local security policy refused an operation.

    It subclasses ``AttributeError`` because RPyC reports a refused attribute that
    way, and code written for RPyC catches ``AttributeError``.
    """


class PickleDisabledError(SecurityError, ValueError):
    """Pickling a netref (or serving a PICKLE request) needs ``allow_pickle``."""


class ProtocolError(RPyCError):
    """The peer sent bytes or messages that this side cannot accept."""


class CodecError(ProtocolError, ValueError):
    """Malformed brine, vinegar or frame bytes."""


class LimitExceeded(CodecError):
    """Input that is well formed but larger or deeper than a configured limit."""


class UnexpectedMessage(ProtocolError):
    """A well-formed message that is not valid at this point of the session."""


class TLSRecordError(ProtocolError):
    """A received TLS record failed a check, or the record layer cannot go on;
    ``alert`` is the TLS alert description to send the peer before closing."""

    def __init__(self, message: str, alert: int) -> None:
        super().__init__(message)
        self.alert = alert


class ConnectionClosed(RPyCError, EOFError):
    """The connection is closed; subclasses ``EOFError`` as RPyC raises that."""


class ConnectionLost(ConnectionClosed):
    """The connection died while this request was waiting for its reply."""


class AuthenticationError(RPyCError):
    """An authenticator refused the peer (or the peer refused our credentials)."""


class SessionError(RPyCError, RuntimeError):
    """A notebook session on the server cannot do what was asked (see the message).

    It travels to the client as ``RuntimeError`` (its builtin base, as our errors do),
    with the one-line message that says what happened and what to do."""


class WorkerError(SessionError):
    """A session's worker process could not start, or it died; the message says why."""


class SessionLimitError(SessionError):
    """A cap on sessions is reached: per user or on the whole server."""


class PingError(RPyCError):
    """The echo of a ping did not match what was sent."""


class DiscoveryError(RPyCError):
    """No server of the service was found in the registry (or none of them answered)."""


class ForbiddenError(RPyCError):
    """The registry does not allow listing its services (start it with listing allowed)."""


class RemoteExceptionMixin:
    """What every exception rebuilt from a peer carries, whatever its class.

    ``remote_type`` is the dotted class name the peer sent, ``remote_traceback`` its
    traceback text, ``remote_attrs`` a read-only mapping of the extra attributes it
    sent (never set on the exception itself). ``str()`` appends the remote traceback
    under RPyC's banner, and IPython shows it through ``_render_traceback_``.
    """

    remote_type: str = ""
    remote_traceback: str = ""
    remote_attrs: Mapping[str, object] = MappingProxyType({})
    remote_version: str | None = None

    _BANNER = "\n\n========= Remote Traceback ({}) =========\n"

    @property
    def _remote_tb(self) -> str:  # the attribute name RPyC code reads
        return self.remote_traceback

    @property
    def _remote_version(self) -> str | None:  # RPyC's name: the peer's RPyC version
        return self.remote_version

    def _local_str(self) -> str:
        bases = type(self).__mro__
        for base in bases[bases.index(RemoteExceptionMixin) + 1 :]:
            if "__str__" in base.__dict__:
                try:
                    return str(base.__dict__["__str__"](self))
                except Exception:
                    return "<Unprintable exception>"
        return ""

    def __str__(self) -> str:
        depth = self.remote_traceback.count("\n\n========= Remote Traceback ") + 1
        return self._local_str() + self._BANNER.format(depth) + self.remote_traceback

    def __repr__(self) -> str:
        return self.__str__()

    def _render_traceback_(self) -> list[str]:
        head = f"{self.remote_type}: {self._local_str()}"
        return [f"Remote traceback ({self.remote_type}):", self.remote_traceback.rstrip(), head]


class RemoteError(RemoteExceptionMixin, RPyCError):
    """An exception raised on the peer that has no local class we may rebuild.

    ``remote_type`` keeps the peer's dotted class name (``"mymod.MyError"``), ``args``
    its sanitised arguments. Builtin exceptions come back as their own class mixed
    with :class:`RemoteExceptionMixin` instead, so ``except KeyError`` still works.
    """

    def _local_str(self) -> str:
        if len(self.args) == 1:
            return str(self.args[0])
        return str(self.args)


AsyncResultTimeout = TimeoutError
