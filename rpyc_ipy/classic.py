"""Classic mode: the whole remote interpreter, for trusted peers only.

A classic server (``rpyc-ipy serve --classic``, or RPyC's ``rpyc_classic``) lets
its clients import, eval and exec anything: it is remote code execution by
design. Use it on your own machine or a network you trust; everywhere else use
a service and an authenticator.

::

    conn = rpyc_ipy.classic.connect("127.0.0.1")
    conn.modules.os.getpid()
    conn.execute("x = 6 * 7"); conn.eval("x")

Our classic client exposes **nothing** to the server unless you pass
``expose_local=True`` (RPyC's client exposes everything).
"""

from __future__ import annotations

import builtins
import inspect
import os
import pickle
import posixpath
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import IO, Any

from rpyc_ipy import factory
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.netref import BaseNetref
from rpyc_ipy.core.service import (
    ClassicClient,
    ClassicService,
    ModuleNamespace,
    Slave,
    SlaveService,
)
from rpyc_ipy.core.teleport import teleport_function
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import PickleDisabledError, UsageError
from rpyc_ipy.protocol import consts

__all__ = [
    "DEFAULT_SERVER_PORT",
    "DEFAULT_SERVER_SSL_PORT",
    "STREAM_CHUNK",
    "ClassicService",
    "MockClassicConnection",
    "ModuleNamespace",
    "Slave",
    "SlaveService",
    "connect",
    "connect_multiprocess",
    "connect_pipes",
    "connect_stdpipes",
    "connect_stream",
    "connect_subproc",
    "connect_thread",
    "deliver",
    "download",
    "download_dir",
    "download_file",
    "interact",
    "obtain",
    "redirected_stdio",
    "ssl_connect",
    "teleport_function",
    "unix_connect",
    "upload",
    "upload_dir",
    "upload_file",
    "upload_module",
    "upload_package",
]

DEFAULT_SERVER_PORT = 18812
DEFAULT_SERVER_SSL_PORT = 18821
CHUNK_SIZE = STREAM_CHUNK = 64000

Config = Mapping[str, Any] | None


def _client_service(expose_local: bool) -> type:
    return ClassicService if expose_local else ClassicClient


def connect(host: str = "127.0.0.1", port: int = DEFAULT_SERVER_PORT, ipv6: bool = False,
            keepalive: bool = False, *, insecure: bool = False, expose_local: bool = False,
            config: Config = None) -> Connection:
    """Connect to a classic server over plain TCP (loopback unless ``insecure=True``).

    ``expose_local=True`` grants the *server* full control of this process too.
    """
    return factory.connect(host, port, _client_service(expose_local), config, ipv6, keepalive,
                           insecure=insecure)


def ssl_connect(host: str, port: int = DEFAULT_SERVER_SSL_PORT, keyfile: str | None = None,
                certfile: str | None = None, ca_certs: str | None = None, cert_reqs: Any = None,
                ssl_version: Any = None, ciphers: str | None = None, ipv6: bool = False,
                keepalive: bool = False, *, fingerprint: str | None = None, verify: bool = True,
                expose_local: bool = False, config: Config = None) -> Connection:
    """Connect to a classic server over TLS; the server is verified by default."""
    return factory.ssl_connect(host, port, keyfile, certfile, ca_certs, cert_reqs, ssl_version,
                               ciphers, _client_service(expose_local), config, ipv6, keepalive,
                               fingerprint=fingerprint, verify=verify)


def unix_connect(path: str, *, expose_local: bool = False, config: Config = None) -> Connection:
    """Connect to a classic server on a unix-domain socket."""
    return factory.unix_connect(path, _client_service(expose_local), config)


def connect_stream(transport: Transport, *, expose_local: bool = False, config: Config = None
                   ) -> Connection:
    """Classic connection over an open transport."""
    return factory.connect_stream(transport, _client_service(expose_local), config)


def connect_pipes(input: IO[Any], output: IO[Any], *, expose_local: bool = False
                  ) -> Connection:
    """Classic connection over two pipes (file objects): read ``input``, write ``output``.

    A process that serves its parent this way passes ``expose_local=True``."""
    return factory.connect_pipes(input, output, _client_service(expose_local))


def connect_stdpipes(*, expose_local: bool = False) -> Connection:
    """Classic connection over this process's stdin/stdout (to its parent)."""
    return factory.connect_stdpipes(_client_service(expose_local))


def connect_multiprocess(args: Mapping[str, Any] | None = None, *,
                         expose_local: bool = False) -> Connection:
    """A classic server in a forked child process, and a connection to it; ``args``
    (e.g. ``multiprocessing.Value`` objects) are put in the child's namespace."""
    return factory.connect_multiprocess(_client_service(expose_local), None, SlaveService,
                                        None, args)


def connect_thread(*, expose_local: bool = False) -> Connection:
    """A classic server in a thread of this process, and a connection to it."""
    return factory.connect_thread(_client_service(expose_local), None, SlaveService, None)


def connect_subproc(server_args: list[str] | None = None, *, expose_local: bool = False
                    ) -> Connection:
    """Start a classic server as a subprocess on stdin/stdout and connect to it."""
    args = server_args or factory.python_subproc_args("rpyc_ipy.cli", "serve", "--classic",
                                                      "--stdio")
    return factory.connect_subproc(args, _client_service(expose_local))


# -- moving data ------------------------------------------------------------------


def obtain(proxy: Any) -> Any:
    """A local copy of a remote object, by value.

    Brine values come back as they are. Anything else needs pickle, which runs
    code chosen by the peer when unpickled: the local config must have
    ``allow_pickle=True`` (and the peer must allow it as well).
    """
    if not isinstance(proxy, BaseNetref):
        return proxy
    conn: Connection = object.__getattribute__(proxy, "____conn__")
    if not conn.policy.allow_pickle:
        raise PickleDisabledError(
            "obtain() unpickles data from the peer: connect with config={'allow_pickle': True} "
            "only if you trust it"
        )
    data = conn.sync_request(consts.HANDLE_PICKLE, proxy, pickle.HIGHEST_PROTOCOL)
    return pickle.loads(data)


def deliver(conn: Connection, obj: Any) -> Any:
    """Recreate a local object on the (classic) peer by pickling it; returns the netref."""
    return conn.modules.pickle.loads(pickle.dumps(obj))


def upload(conn: Connection, localpath: str, remotepath: str,
           filter: Callable[[str], bool] | None = None, ignore_invalid: bool = False,
           chunk_size: int = CHUNK_SIZE) -> None:
    """Copy a local file or directory tree to the peer."""
    if os.path.isdir(localpath):
        _upload_dir(conn, localpath, remotepath, filter, chunk_size)
    elif os.path.isfile(localpath):
        upload_file(conn, localpath, remotepath, chunk_size)
    elif not ignore_invalid:
        raise ValueError(f"cannot upload {localpath!r}: not a file or a directory")


def upload_file(conn: Connection, localpath: str, remotepath: str,
                chunk_size: int = CHUNK_SIZE) -> None:
    with open(localpath, "rb") as local:
        remote = conn.builtins.open(remotepath, "wb")
        try:
            while chunk := local.read(chunk_size):
                remote.write(chunk)
        finally:
            remote.close()


def upload_dir(conn: Connection, localpath: str, remotepath: str,
               filter: Callable[[str], bool] | None = None, chunk_size: int = CHUNK_SIZE
               ) -> None:
    """Copy a local directory tree to the peer (names ``filter`` rejects are skipped)."""
    _upload_dir(conn, localpath, remotepath, filter, chunk_size)


def _upload_dir(conn: Connection, localpath: str, remotepath: str,
                filter: Callable[[str], bool] | None, chunk_size: int) -> None:
    remote_os = conn.modules.os
    if not remote_os.path.isdir(remotepath):
        remote_os.makedirs(remotepath)
    for name in os.listdir(localpath):
        if filter is not None and not filter(name):
            continue
        upload(conn, os.path.join(localpath, name), posixpath.join(remotepath, name), filter,
               True, chunk_size)


def download_dir(conn: Connection, remotepath: str, localpath: str,
                 filter: Callable[[str], bool] | None = None, chunk_size: int = CHUNK_SIZE
                 ) -> None:
    """Copy a directory tree from the peer to here."""
    if not conn.modules.os.path.isdir(remotepath):
        raise ValueError(f"cannot download {remotepath!r}: not a directory on the peer")
    download(conn, remotepath, localpath, filter, False, chunk_size)


def download(conn: Connection, remotepath: str, localpath: str,
             filter: Callable[[str], bool] | None = None, ignore_invalid: bool = False,
             chunk_size: int = CHUNK_SIZE) -> None:
    """Copy a file or directory tree from the peer to here."""
    remote_os = conn.modules.os
    if remote_os.path.isdir(remotepath):
        os.makedirs(localpath, exist_ok=True)
        for name in remote_os.listdir(remotepath):
            if filter is not None and not filter(name):
                continue
            download(conn, posixpath.join(remotepath, name), os.path.join(localpath, name),
                     filter, True, chunk_size)
    elif remote_os.path.isfile(remotepath):
        download_file(conn, remotepath, localpath, chunk_size)
    elif not ignore_invalid:
        raise ValueError(f"cannot download {remotepath!r}: not a file or a directory")


def download_file(conn: Connection, remotepath: str, localpath: str,
                  chunk_size: int = CHUNK_SIZE) -> None:
    remote = conn.builtins.open(remotepath, "rb")
    try:
        with open(localpath, "wb") as local:
            while chunk := remote.read(chunk_size):
                local.write(chunk)
    finally:
        remote.close()


def upload_package(conn: Connection, module: ModuleType, remotepath: str | None = None,
                   chunk_size: int = CHUNK_SIZE) -> None:
    """Copy a local package (its directory) or module (its file) to the peer, by
    default into the peer's site-packages, so the peer can import it."""
    source = inspect.getsourcefile(module)
    if source is None:
        raise ValueError(f"cannot upload {module.__name__!r}: it has no source file")
    is_package = hasattr(module, "__path__")
    localpath = os.path.dirname(os.path.abspath(source)) if is_package else source
    if remotepath is None:
        site = conn.modules.sysconfig.get_paths()["purelib"]
        remotepath = conn.modules.os.path.join(site, *module.__name__.split("."))
        if not is_package:
            remotepath += ".py"
    upload(conn, localpath, remotepath, filter=lambda name: name != "__pycache__",
           chunk_size=chunk_size)


upload_module = upload_package


@contextmanager
def redirected_stdio(conn: Connection) -> Iterator[None]:
    """Within the block, the peer's ``sys.stdin``/``stdout``/``stderr`` are this
    process's: what the peer prints appears here (needs ``expose_local=True`` on
    our classic client, since the peer then calls into our streams)."""
    if not (conn.policy.allow_public_attrs or conn.policy.allow_all_attrs):
        raise UsageError("redirected_stdio lets the peer call into this process's stdin, "
                         "stdout and stderr: connect with expose_local=True to allow it")
    remote_sys = conn.modules.sys
    saved = remote_sys.stdin, remote_sys.stdout, remote_sys.stderr
    remote_sys.stdin, remote_sys.stdout, remote_sys.stderr = sys.stdin, sys.stdout, sys.stderr
    try:
        yield
    finally:
        remote_sys.stdin, remote_sys.stdout, remote_sys.stderr = saved


def interact(conn: Connection, namespace: dict[str, Any] | None = None) -> None:
    """An interactive interpreter running on the peer, using this terminal (see
    :func:`redirected_stdio`); ``namespace`` seeds its variables (``conn`` included)."""
    namespace = dict(namespace or {})
    namespace["conn"] = conn
    with redirected_stdio(conn):
        conn.modules.code.interact(local=conn.builtins.dict(namespace.items()), banner="",
                                   exitmsg="")


class MockClassicConnection:
    """A classic connection's surface over *this* process (``modules``, ``builtins``,
    ``eval``, ``execute``, ``namespace``), so code written for a classic
    connection also runs locally."""

    def __init__(self) -> None:
        self.root = Slave()
        self.modules = ModuleNamespace(self.root.getmodule)
        self.builtins = builtins
        self.builtin = builtins
        self.namespace = self.root.namespace
        self.eval = self.root.eval
        self.execute = self.root.execute

    def __enter__(self) -> MockClassicConnection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to close: there is no peer."""
