"""Services the CLI tests serve with ``rpyc-ipy serve --app-dir tests/cli cli_services:...``."""

from __future__ import annotations

import os
from typing import Any

import rpyc_ipy


class WhoAmIService(rpyc_ipy.Service):
    """Tells the client what the server's authenticator established about it."""

    def exposed_whoami(self) -> Any:
        return self.credentials

    def exposed_peer_common_name(self) -> Any:
        creds = self.credentials
        if not isinstance(creds, dict):
            return None
        fields = dict(pair[0] for pair in creds.get("subject", ()))
        return fields.get("commonName")

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_fail(self, message: str) -> None:
        raise ValueError(message)


not_a_service = 42


class PidService(rpyc_ipy.Service):
    """Tells which process serves the client (``--processes``)."""

    def exposed_pid(self) -> int:
        return os.getpid()
