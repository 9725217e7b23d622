"""Every public module path of rpyc 6.0.2 that user code imports from has an rpyc_ipy
counterpart with the same public names, except those listed in MISSING with a reason.

The rpyc names are read from the installed rpyc 6.0.2 itself: a name rpyc adds or
a name we drop fails here until it is ported or listed.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from rpyc_ipy.compat import counterpart

rpyc = pytest.importorskip("rpyc")

MODULE_PATHS = [
    "rpyc", "rpyc.utils", "rpyc.utils.server", "rpyc.utils.classic",
    "rpyc.utils.helpers", "rpyc.utils.factory", "rpyc.utils.authenticators",
    "rpyc.utils.registry", "rpyc.utils.teleportation", "rpyc.core", "rpyc.core.netref",
    "rpyc.core.protocol", "rpyc.core.service", "rpyc.core.async_", "rpyc.core.brine",
    "rpyc.core.vinegar", "rpyc.core.consts", "rpyc.lib",
]

_STREAMS = ("rpyc's stream/channel layer has no counterpart: our transports "
            "(rpyc_ipy.transports, rpyc_ipy.core.transport.Transport) carry the frames; "
            "use connect_stream/connect_socket/connect_pipes")
_SSH = "needs plumbum's SSH machinery (not a dependency); tunnel with ssh -L and use connect"
_CHANNEL = "takes an rpyc Channel object; " + _STREAMS
_PY2 = "a Python 2 compatibility leftover of rpyc (no meaning on Python 3)"
_ASYNC = "a Python keyword: `rpyc.async` cannot be written in Python 3 code; use async_"
_INTERNAL = "an rpyc implementation detail imported into this module, not its API"
_GEVENT = "needs gevent (not a dependency); ThreadedServer serves clients concurrently"

#: rpyc module path -> {name: why rpyc_ipy leaves it out}
MISSING: dict[str, dict[str, str]] = {
    "rpyc": {
        "Channel": _STREAMS, "PipeStream": _STREAMS, "SocketStream": _STREAMS,
        "TunneledSocketStream": _STREAMS, "connect_channel": _CHANNEL, "ssh_connect": _SSH,
        "async": _ASYNC,
        "version": "rpyc's release numbers; ours is rpyc_ipy.__version__ (the wire version "
                   "we speak is 6.0.2, sent in _remote_version)",
    },
    "rpyc.utils.server": {
        "Channel": _STREAMS, "SocketStream": _STREAMS, "GeventServer": _GEVENT,
        "gevent": _GEVENT, "get_exc_errno": _INTERNAL, "poll": _INTERNAL,
        "safe_import": _INTERNAL + " (it is in rpyc_ipy.lib)",
    },
    "rpyc.utils.classic": {
        "connect_channel": _CHANNEL, "ssh_connect": _SSH, "with_statement": _PY2,
        "execute": "the builtin exec under another name, a leftover of rpyc's py2 support",
        "pm": "needs the server to keep each failed request's traceback object (rpyc's "
              "Connection._last_traceback), which ours does not: holding it keeps every "
              "frame's locals alive. The remote traceback text is in the exception's "
              "_remote_tb",
    },
    "rpyc.utils.helpers": {
        "WeakValueDict": _INTERNAL + " (use weakref.WeakValueDictionary)", "async": _ASYNC,
    },
    "rpyc.utils.factory": {
        "Channel": _STREAMS, "PipeStream": _STREAMS, "SocketStream": _STREAMS,
        "TunneledSocketStream": _STREAMS, "connect_channel": _CHANNEL, "ssh_connect": _SSH,
        "safe_import": _INTERNAL + " (it is in rpyc_ipy.lib)", "with_statement": _PY2,
    },
    "rpyc.utils.authenticators": {"safe_import": _INTERNAL + " (it is in rpyc_ipy.lib)"},
    "rpyc.utils.teleportation": {
        "decode_codeobj": "a bytecode disassembler for debugging old Pythons' code "
                          "objects; use dis.dis on the function",
        "CODE_HAVEARG_SIZE": "the pre-3.6 bytecode layout, used only by decode_codeobj",
        "CodeType": _INTERNAL, "FunctionType": _INTERNAL, "is_py_gte38": _PY2,
        "is_py_gte310": _PY2, "is_py_gte311": _PY2,
    },
    "rpyc.core": {
        "Channel": _STREAMS, "PipeStream": _STREAMS, "SocketStream": _STREAMS,
        "TunneledSocketStream": _STREAMS, "channel": _STREAMS, "stream": _STREAMS,
    },
    "rpyc.core.netref": {
        **dict.fromkeys(["syncreq", "asyncreq", "get_id_pack", "get_methods"],
                        "in rpyc_ipy.lib (syncreq/asyncreq also in rpyc_ipy.utils.helpers): "
                        "our core/netref.py keeps only the proxies"),
        **dict.fromkeys(["DELETED_ATTRS", "NetrefClass", "NetrefMetaclass", "class_factory",
                         "builtin_classes_cache", "builtin_id_pack_cache"],
                        "rpyc's proxy-class machinery; ours is make_proxy_class and "
                        "builtin_proxy_class in the same module, with other shapes"),
        "maxint": _PY2,
    },
    "rpyc.core.protocol": {
        **dict.fromkeys(["Lock", "RefCountingColl", "WeakValueDict", "UNBOUND_THREAD_ID",
                         "acquire_lock", "select_error"], _INTERNAL),
        "maxint": _PY2,
    },
    "rpyc.core.service": {
        "Connection": _INTERNAL + " (import it from rpyc_ipy.core.protocol, as rpyc code does)",
        "hybridmethod": _INTERNAL + " (it is in rpyc_ipy.lib)",
        "execute": "the builtin exec under another name, a leftover of rpyc's py2 support",
    },
    "rpyc.core.brine": {
        **{name: "brine's encoding tables: the bytes are the same, the tables are ours "
                 "(rpyc_ipy.protocol.brine)"
           for name in ["BYTES_LITERAL", "C16", "F8", "I1", "I4", "I8I8", "IMM_INTS",
                        "IMM_INTS_LOADER", "TAG_COMPLEX", "TAG_ELLIPSIS", "TAG_EMPTY_STR",
                        "TAG_EMPTY_TUPLE", "TAG_FALSE", "TAG_FLOAT", "TAG_FSET", "TAG_INT_L1",
                        "TAG_INT_L4", "TAG_NONE", "TAG_NOT_IMPLEMENTED", "TAG_SLICE",
                        "TAG_STR1", "TAG_STR2", "TAG_STR3", "TAG_STR4", "TAG_STR_L1",
                        "TAG_STR_L4", "TAG_TRUE", "TAG_TUP1", "TAG_TUP2", "TAG_TUP3",
                        "TAG_TUP4", "TAG_TUP_L1", "TAG_TUP_L4", "TAG_UNICODE"]},
        "register": "rpyc's decorator that fills its encoder tables: brine's closed set of "
                    "types is fixed on the wire",
        "simple_types": "rpyc's encoder table; ask brine.dumpable(value) instead",
    },
    "rpyc.core.vinegar": {"ClassType": _PY2},
    "rpyc.lib": {
        "colls": "rpyc's internal collections (WeakValueDict, RefCountingColl)",
        "compat": "rpyc's Python 2/3 shims",
        "exp_backoff": "the retry delay of rpyc's SocketStream.connect; our connect has a "
                       "plain timeout",
        "socket_backoff_connect": "the retry loop of rpyc's SocketStream.connect; our "
                                  "connect has a plain timeout",
    },
}


def rpyc_public_names(module: ModuleType) -> set[str]:
    """What user code can import from an rpyc module: its names without a leading
    underscore, leaving out modules that are not its own submodules and functions or
    classes merely imported from outside rpyc under their own name."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, ModuleType):
            if value.__name__ == f"{module.__name__}.{name}":
                names.add(name)
            continue
        origin = getattr(value, "__module__", None)
        if (inspect.isclass(value) or inspect.isroutine(value)) and isinstance(origin, str) \
                and origin.partition(".")[0] != "rpyc" and getattr(value, "__name__", "") == name:
            continue
        names.add(name)
    return names


@pytest.fixture(scope="module", autouse=True)
def _import_every_path() -> None:
    # submodules become attributes of their package once imported: import all first
    for path in [*MODULE_PATHS, "rpyc.cli"]:  # rpyc_ipy.cli: `rpyc-ipy serve`, `registry`
        importlib.import_module(path)
        importlib.import_module(_ours(path))


def _ours(path: str) -> str:
    target = counterpart(path)
    assert target is not None
    return target


@pytest.mark.parametrize("path", MODULE_PATHS)
def test_the_module_path_has_rpyc_s_public_names(path: str) -> None:
    ours = importlib.import_module(_ours(path))
    theirs = rpyc_public_names(importlib.import_module(path))
    missing = sorted(name for name in theirs if not hasattr(ours, name))
    unexplained = [name for name in missing if name not in MISSING.get(path, {})]
    assert not unexplained, f"{_ours(path)} lacks {unexplained} of {path}: port them or " \
                            "list them in MISSING with the reason"


@pytest.mark.parametrize("path", sorted(MISSING))
def test_every_listed_name_is_really_missing_and_says_why(path: str) -> None:
    ours = importlib.import_module(_ours(path))
    theirs = rpyc_public_names(importlib.import_module(path))
    for name, reason in MISSING[path].items():
        assert name in theirs, f"{path}.{name} is not an rpyc name: drop it from MISSING"
        assert not hasattr(ours, name), f"{_ours(path)}.{name} exists now: drop it from MISSING"
        assert len(reason) > 20


def test_the_names_are_the_same_objects_across_paths() -> None:
    import rpyc_ipy
    from rpyc_ipy.core import protocol
    from rpyc_ipy.utils import classic, factory, helpers, registry, server

    assert server.ThreadedServer is rpyc_ipy.ThreadedServer
    assert classic.connect is rpyc_ipy.classic.connect
    assert factory.discover is rpyc_ipy.discover
    assert helpers.async_ is rpyc_ipy.async_
    assert registry.UDPRegistryClient is factory.UDPRegistryClient
    assert protocol.Connection is rpyc_ipy.Connection
    assert rpyc_ipy.core.Service is rpyc_ipy.Service


PROGRAM = """
    import sys
    import rpyc
    from rpyc.utils.server import ThreadedServer
    from rpyc.utils.helpers import classpartial
    import rpyc.utils.registry
    from rpyc import classic

    class GreeterService(rpyc.Service):
        def __init__(self, greeting):
            self.greeting = greeting

        def exposed_greet(self, name):
            return f"{self.greeting}, {name}"

    server = ThreadedServer(classpartial(GreeterService, sys.argv[1]), port=0)
    server._start_in_thread()
    conn = rpyc.connect("localhost", server.port)
    print(conn.root.greet(sys.argv[2]))
    print(rpyc.__name__, rpyc.utils.registry.__name__, classic.__name__)
    print(sys.modules["rpyc.utils.registry"] is sys.modules["rpyc_ipy.utils.registry"],
          sys.modules["rpyc"] is sys.modules["rpyc_ipy"])
    conn.close()
    server.close()
"""


def test_compat_run_aliases_rpyc_for_an_unmodified_program(tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text(textwrap.dedent(PROGRAM))
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy.compat", "run", str(program),
                           "Hello", "world"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Hello, world", "rpyc_ipy rpyc_ipy.utils.registry rpyc_ipy.classic", "True True"]


def test_compat_run_names_a_path_without_counterpart(tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text("import rpyc.utils.zerodeploy\n")
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy.compat", "run", str(program)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "rpyc.utils.zerodeploy has no rpyc_ipy counterpart" in done.stderr


def test_the_alias_is_refused_once_rpyc_is_imported() -> None:
    from rpyc_ipy.compat import install_alias

    assert "rpyc" in sys.modules  # the real one, imported above
    with pytest.raises(RuntimeError, match="already imported"):
        install_alias()
