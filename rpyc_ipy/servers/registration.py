"""A server's ``auto_register``: keep its registration alive in a registry.

While the server serves, a background thread registers the service's aliases
with the *registrar* (a :class:`~rpyc_ipy.servers.registry.RegistryClient`),
again every ``registrar.REREGISTER_INTERVAL`` seconds once acknowledged, or
after ``retry_interval`` when not; closing the server unregisters it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from rpyc_ipy.servers.registry import UDPRegistryClient

__all__ = ["AutoRegistration"]


class AutoRegistration:
    """The registering thread of one server; :meth:`start` once, :meth:`stop` once."""

    def __init__(self, registrar: Any, aliases: Callable[[], tuple[str, ...]], port: int,
                 interface: str, logger: logging.Logger, *, retry_interval: float = 1.0
                 ) -> None:
        self.registrar = registrar
        self._aliases = aliases
        self._port = port
        self._interface = interface
        self._logger = logger
        self._retry_interval = retry_interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        #: set after each registration attempt (tests and callers may wait on it)
        self.attempted = threading.Event()
        self.registered = False

    @classmethod
    def for_server(cls, registrar: Any, auto_register: bool | None, service: Any, port: int,
                   interface: str, logger: logging.Logger) -> AutoRegistration | None:
        """RPyC's rule: register when ``auto_register`` is true, or when it is ``None``
        and a registrar was given; without a registrar, broadcast over UDP."""
        if auto_register is None:
            auto_register = registrar is not None
        if not auto_register:
            return None
        if registrar is None:
            registrar = UDPRegistryClient(logger=logger)
        return cls(registrar, service.get_service_aliases, port, interface, logger)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"rpyc_ipy-register-{self._port}")
            self._thread.start()

    def _run(self) -> None:
        delay = 0.0
        while not self._stopped.wait(delay):
            try:
                self.registered = bool(self.registrar.register(
                    self._aliases(), self._port, interface=self._interface))
            except Exception:
                self._logger.exception("registering with the registry failed")
                self.registered = False
            self.attempted.set()
            delay = self.registrar.REREGISTER_INTERVAL if self.registered \
                else self._retry_interval

    def stop(self) -> None:
        """Stop renewing and unregister (only if registering was started)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._thread is None:
            return
        self._thread.join(timeout=self.registrar.timeout + 1)
        try:
            self.registrar.unregister(self._port)
        except Exception:
            self._logger.exception("unregistering from the registry failed")
