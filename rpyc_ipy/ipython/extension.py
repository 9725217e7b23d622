"""``%load_ext rpyc_ipy`` and ``%unload_ext rpyc_ipy``: install and remove everything.

Loading registers, on one shell:

* the magics (``RPyCMagics``, also a configurable: ``%config RPyCMagics``);
* the ``RPyCPolicy`` configurable;
* safe display of netrefs (a wrapper of ``display_formatter.format`` and guarded
  pretty printers);
* ``?`` on netrefs (a wrapper of the inspector's ``info``);
* completion (a context matcher, ``Completer.policy_overrides`` additions,
  ``complete_command`` hooks for session names);
* the display of exceptions rebuilt from a server (raised by a netref call in any
  cell) and of our own errors: their traceback is sanitized like every other remote
  text (a wrapper of the shell's ``_showtraceback``, the sink IPython and ipykernel
  show every traceback through).

Unloading removes each of those, closes the sessions and unbinds their names.
IPython's ``unload_extension`` removes nothing by itself, so we track what we
added. Loading twice is a no-op.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rpyc_ipy.errors import RemoteExceptionMixin, RPyCError
from rpyc_ipy.ipython.completion import RemoteCompleter
from rpyc_ipy.ipython.display import NetrefDisplay
from rpyc_ipy.ipython.inspection import NetrefInspector
from rpyc_ipy.ipython.magics import RPyCMagics
from rpyc_ipy.ipython.registry import SessionRegistry
from rpyc_ipy.ipython.session import RemoteSession
from rpyc_ipy.ipython.settings import RPyCPolicy
from rpyc_ipy.ipython.text import sanitize_text

__all__ = ["Extension", "load_ipython_extension", "unload_ipython_extension"]

_ATTR = "_rpyc_ipy_extension"


class Extension:
    """What the extension installed into one shell, so that it can all be removed."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.registry = SessionRegistry()
        self.policy = RPyCPolicy(parent=shell)
        self.magics = RPyCMagics(shell, self.policy, self.registry)
        self.display = NetrefDisplay(shell, self.policy, self.registry)
        self.completer = RemoteCompleter(shell, self.magics, self.policy, self.registry)
        self.inspector = NetrefInspector(shell, self.policy, self.registry,
                                         self.completer.resolve)
        self.magics.completion_listeners.append(self.completer.cache.clear)
        self.policy.observe(self._policy_changed, names=["allow_pickle", "connection_config"])
        self._original_showtraceback: Any = None

    def install(self) -> None:
        shell = self.shell
        shell.configurables.append(self.policy)
        if self.magics not in shell.configurables:  # Magics.__init__ usually did it
            shell.configurables.append(self.magics)
        shell.register_magics(self.magics)
        self.display.install()
        self.inspector.install()
        self.completer.install()
        self._original_showtraceback = shell._showtraceback
        shell._showtraceback = self._showtraceback  # instance attribute: shadows the method

    def uninstall(self) -> None:
        shell = self.shell
        if shell.__dict__.get("_showtraceback") == self._showtraceback:
            del shell._showtraceback
        self.completer.uninstall()
        self.inspector.uninstall()
        self.display.uninstall()
        self.magics.close()
        for name, value in list(shell.user_ns.items()):
            if isinstance(value, RemoteSession):
                del shell.user_ns[name]
        manager = shell.magics_manager
        for table in manager.magics.values():
            for name, func in list(table.items()):
                if getattr(func, "__self__", None) is self.magics:
                    del table[name]
        if manager.registry.get(type(self.magics).__name__) is self.magics:
            del manager.registry[type(self.magics).__name__]
        for configurable in (self.policy, self.magics):
            while configurable in shell.configurables:
                shell.configurables.remove(configurable)
        with contextlib.suppress(ValueError):
            self.policy.unobserve(self._policy_changed, names=["allow_pickle",
                                                                "connection_config"])

    def _showtraceback(self, etype: type, evalue: BaseException, stb: Any) -> Any:
        """The shell's ``_showtraceback``, with the traceback of a remote exception (or
        of one of ours, which may quote a server) sanitized line by line."""
        if isinstance(evalue, (RemoteExceptionMixin, RPyCError)) and isinstance(stb, list):
            stb = [sanitize_text(line) if type(line) is str else line for line in stb]
        return self._original_showtraceback(etype, evalue, stb)

    def _policy_changed(self, change: Any) -> None:
        """RPyCPolicy changed: apply it to the open sessions' connections."""
        overrides: dict[str, Any] = {"allow_pickle": self.policy.allow_pickle}
        overrides.update(self.policy.connection_config)
        for session in self.registry:
            if not session.closed:
                session.conn.update_policy(**overrides)


def load_ipython_extension(ipython: Any) -> None:
    """Install the extension into ``ipython`` (a no-op if it is already there)."""
    if getattr(ipython, _ATTR, None) is not None:
        return
    extension = Extension(ipython)
    extension.install()
    setattr(ipython, _ATTR, extension)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove everything :func:`load_ipython_extension` installed, and close the sessions."""
    extension = getattr(ipython, _ATTR, None)
    if extension is None:
        return
    try:
        extension.uninstall()
    finally:
        delattr(ipython, _ATTR)


def extension_of(ipython: Any) -> Extension | None:
    """The installed extension of a shell, if any (tests and the kernel use it)."""
    return getattr(ipython, _ATTR, None)
