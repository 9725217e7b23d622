"""Servers for the IPython tests, run as subprocesses on 127.0.0.1, port 0.

``python ipy_servers.py KIND DIR`` starts one and prints its port on the first
line of stdout. Kinds:

* ``exec``: ExecutionService, unauthenticated loopback demo mode;
* ``srp``: ExecutionService behind TLS-SRP (users in ``DIR/users.json``:
  alice/wonderland);
* ``tls``: ExecutionService behind TLS certificates (``DIR/ca.pem``, ``server.pem``,
  ``server.key``; client certificate ``client.pem``/``client.key``);
* ``files``: as ``exec``, file transfers limited to ``DIR/root``;
* ``strict``: ExecutionService without authentication and without the demo
  option (it must refuse);
* ``hostile``: a malicious server (see :class:`HostileService`);
* ``classic``: our SlaveService; ``rpyc-classic``: the real rpyc 6.0.2 SlaveService.

:func:`spawn` starts one from a test and returns a handle with ``.port``.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRP_USER, SRP_PASSWORD = "alice", "wonderland"
SCRIPT = "<script>alert('pwned')</script>"
# an OSC 52 clipboard write, a window title change, and a colour (the colour may stay)
ESCAPES = "\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\x1b[31mred\x1b[0m"


@dataclass
class ServerProcess:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    dir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def spawn(kind: str, directory: Path, timeout: float = 20.0) -> ServerProcess:
    """Start a server subprocess and wait (bounded) for its port."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, str(HERE / "ipy_servers.py"), kind, str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    from waitkit import wait_until  # here: the server subprocess has no tests/ on its path

    stdout = proc.stdout
    assert stdout is not None
    os.set_blocking(stdout.fileno(), False)
    buffer = b""

    def port_line_or_exit() -> bool:
        nonlocal buffer
        buffer += stdout.read() or b""
        return b"\n" in buffer or proc.poll() is not None

    wait_until(port_line_or_exit, timeout)
    if b"\n" not in buffer:
        proc.kill()
        raise RuntimeError(f"the {kind} server did not start")
    return ServerProcess(kind, int(buffer.split(b"\n", 1)[0]), proc, directory)


# -- certificates -------------------------------------------------------------------------


def make_pki(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (EC keys)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(cn: str, key: Any, issuer: str, issuer_key: Any, ca: bool = False,
              server: bool = False) -> Any:
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def save(stem: str, cert: Any, key: Any) -> None:
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (directory / f"{stem}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    save("ca", issue("test CA", ca_key, "test CA", ca_key, ca=True), None)
    key = ec.generate_private_key(ec.SECP256R1())
    save("server", issue("127.0.0.1", key, "test CA", ca_key, server=True), key)
    key = ec.generate_private_key(ec.SECP256R1())
    save("client", issue("bob-client", key, "test CA", ca_key), key)


# -- the hostile server ----------------------------------------------------------------------

CALLS: list[str] = []


class Evil:
    """Every hook a renderer might call records itself and returns something nasty."""

    def _repr_html_(self) -> str:
        CALLS.append("_repr_html_")
        return SCRIPT

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        CALLS.append("_repr_mimebundle_")
        return {"text/html": SCRIPT}

    def _ipython_display_(self) -> None:
        CALLS.append("_ipython_display_")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        CALLS.append("_repr_pretty_")

    def _ipython_key_completions_(self) -> list[str]:
        CALLS.append("_ipython_key_completions_")
        return ["x" * 100] * 100_000

    def __repr__(self) -> str:
        return f"<b>evil</b>{SCRIPT}{ESCAPES}" + "x" * 50_000

    def __len__(self) -> int:
        CALLS.append("__len__")
        return sys.maxsize

    def __iter__(self) -> Any:
        CALLS.append("__iter__")
        return itertools.count()

    def __dir__(self) -> list[str]:
        return [f"name{i}" for i in range(50_000)]

    def __getattr__(self, name: str) -> Any:
        CALLS.append(f"getattr:{name}")
        if name.startswith("name"):
            return 1
        raise AttributeError(name)


class PoisonedError(Exception):
    """An exception whose every accessor misbehaves."""

    def __init__(self) -> None:
        super().__init__(SCRIPT + ESCAPES)
        self.huge = "y" * 1_000_000
        self.evil = Evil()

    def __str__(self) -> str:
        raise RuntimeError("poisoned __str__")


def hostile_service() -> type:
    import rpyc_ipy

    class HostileService(rpyc_ipy.Service):
        """Claims to be an execution service, and lies in every answer."""

        ALIASES = ("EXECUTION",)

        def on_connect(self, conn: Any) -> None:
            super().on_connect(conn)
            conn.update_policy(allow_public_attrs=True)

        def exposed_hello(self, client: Any = None) -> Any:
            return (("engine", "1"), ("features", ("execute",)), ("user", SCRIPT),
                    ("service", SCRIPT + ESCAPES), ("host", 42), ("grants", "nonsense"),
                    "garbage", ("allow_pickle", Evil()))

        def exposed_execute(self, code: str, emit: Any, options: Any = ()) -> Any:
            emit((("stream", "stdout", "before " + ESCAPES + "\n"),
                  ("stream", "stdout", Evil()),          # not a str: must be dropped
                  ("display", (("text/html", SCRIPT), ("text/plain", "plain " + ESCAPES)), ()),
                  ("display", (("text/html", SCRIPT),), ("dict", ()), None, False),
                  ("clear", "yes"), "junk", ("unknown", 1)))
            if code.strip() == "malformed":
                return ("ok", "nine")
            bundle = ((("text/html", SCRIPT), ("text/plain", "result " + ESCAPES),
                       ("application/javascript", "alert(1)")), ("dict", ()))
            return ("ok", 1, bundle, (), None, "", None)

        def exposed_cancel(self, exec_id: Any = None, force: Any = False) -> str:
            return "cancelling"

        def exposed_complete(self, code: str, cursor_pos: Any = None, limit: Any = 0) -> Any:
            return (tuple(f"name{i}" for i in range(100_000)), -5, 10**9, ("x",))

        def exposed_inspect_object(self, obj: Any, oname: str = "", detail: Any = 0) -> Any:
            return (("type_name", SCRIPT), ("docstring", "doc " + ESCAPES), ("found", Evil()))

        def exposed_describe(self, paths: Any, *args: Any) -> Any:
            return ((("path", ""), ("children", (("a", "", SCRIPT, SCRIPT, True), "junk")),
                     ("more", "many")),)

        def exposed_mimebundle(self, obj: Any, include: Any = None, max_bytes: Any = 0) -> Any:
            return ((("text/html", SCRIPT), ("text/plain", "trusted " + ESCAPES)), ("dict", ()))

        def exposed_namespace(self) -> Any:
            return self

        def exposed_evil(self) -> Evil:
            return Evil()

        def exposed_evils(self) -> list[Evil]:
            return [Evil(), Evil()]

        def exposed_calls(self) -> tuple[str, ...]:
            return tuple(CALLS)

        def exposed_boom(self) -> None:
            raise PoisonedError()


    return HostileService


# -- main --------------------------------------------------------------------------------------


def main(kind: str, directory: str) -> None:
    folder = Path(directory)
    if kind == "rpyc-classic":
        import rpyc
        from rpyc.utils.server import ThreadedServer as RpycServer

        server = RpycServer(rpyc.core.SlaveService, hostname="127.0.0.1", port=0,
                            protocol_config={"sync_request_timeout": 30})
        print(server.port, flush=True)
        server.start()
        return
    import rpyc_ipy
    from rpyc_ipy.remote import ExecutionService

    authenticator: Any = None
    service: Any = ExecutionService.configured(allow_loopback_plaintext=True)
    if kind == "srp":
        from rpyc_ipy.auth import SRPAuthenticator, UserDB

        db = UserDB.create(folder / "users.json", exist_ok=True)
        if SRP_USER not in db.list():
            db.add(SRP_USER, SRP_PASSWORD)
        authenticator = SRPAuthenticator(str(folder / "users.json"))
        service = ExecutionService
    elif kind == "tls":
        authenticator = rpyc_ipy.SSLAuthenticator(str(folder / "server.key"),
                                                  str(folder / "server.pem"),
                                                  ca_certs=str(folder / "ca.pem"))
        service = ExecutionService
    elif kind == "strict":
        service = ExecutionService
    elif kind == "hostile":
        service = hostile_service()
    elif kind == "classic":
        service = rpyc_ipy.SlaveService
    elif kind == "files":  # file transfers limited to DIR/root
        from rpyc_ipy.remote import RuntimeSettings, SessionRegistry

        registry = SessionRegistry(RuntimeSettings(file_roots=(str(folder / "root"),)))
        service = ExecutionService.configured(allow_loopback_plaintext=True, registry=registry)
    elif kind != "exec":
        raise SystemExit(f"unknown server kind {kind!r}")
    # execution servers relay data channels to their sessions' workers, as `serve --notebook`
    channels = service.channel_handler() if isinstance(service, type) and \
        issubclass(service, ExecutionService) else None
    server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", port=0,
                                     authenticator=authenticator, channel_handler=channels)
    print(server.port, flush=True)
    server.start()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
