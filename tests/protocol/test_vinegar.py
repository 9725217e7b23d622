"""vinegar against the vectors real rpyc 6.0.2 produced, plus its safety promises."""

from __future__ import annotations

import builtins
import importlib
import re
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from codec_vectors import spec_json

from rpyc_ipy.errors import CodecError, RemoteError, RemoteExceptionMixin, SecurityError
from rpyc_ipy.protocol import brine, vinegar

pytestmark = pytest.mark.timeout(60)

VECTORS = spec_json("vinegar-vectors.json")
CASES = {case["name"]: case for case in VECTORS["cases"]}
ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
needs_add_note = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the vectors carry the add_note attribute of Python >= 3.11"
)


# -- the exceptions of the vectors, raised here --------------------------------------------


def _mymod() -> types.ModuleType:
    module = types.ModuleType("mymod")

    class MyError(Exception):
        pass

    class AttrError(Exception):
        def __init__(self, msg: str, code: int) -> None:
            super().__init__(msg, code)
            self.code = code
            self.payload = [1, 2]
            self.label = "lbl"
            self._private = "hidden"

    for cls in (MyError, AttrError):
        cls.__module__ = "mymod"
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    return module


MYMOD = _mymod()


def _chained() -> None:
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError as e:
        raise ValueError("wrapped") from e


def _raise(exc: BaseException) -> None:
    raise exc


RAISERS: dict[str, Callable[[], object]] = {
    "ZeroDivisionError": lambda: 1 / 0,
    "KeyError": lambda: dict[str, int]()["k"],
    "OSError": lambda: _raise(OSError(2, "x")),
    "custom_mymod": lambda: _raise(MYMOD.MyError("boom", 42)),
    "extra_attrs": lambda: _raise(MYMOD.AttrError("bad thing", 7)),
    "SystemExit": lambda: _raise(SystemExit(3)),
    "StopIteration": lambda: _raise(StopIteration(5)),
    "chained": _chained,
    "nondumpable_args": lambda: _raise(ValueError([1, 2], {"a": 1})),
    "KeyboardInterrupt": lambda: _raise(KeyboardInterrupt()),
}


def _caught(name: str) -> BaseException:
    try:
        RAISERS[name]()
    except BaseException as exc:  # SystemExit and friends are the point
        return exc
    raise AssertionError(f"{name} did not raise")


def _sanitized(payload: Any, placeholder: str | None) -> Any:
    """What the vectors record: addresses as 0x<ADDR>, the traceback as a placeholder."""
    def walk(value: Any) -> Any:
        if type(value) is tuple:
            return tuple(walk(item) for item in value)
        if type(value) is str:
            return ADDRESS.sub("0x<ADDR>", value)
        return value

    if type(payload) is not tuple:
        return payload
    head, args, attrs, text = payload
    if placeholder is not None:
        text = placeholder
    return head, walk(args), walk(attrs), text


def test_every_case_has_a_raiser() -> None:
    assert set(RAISERS) == set(CASES)


@needs_add_note
@pytest.mark.parametrize("name", sorted(CASES))
def test_dump_matches_vector(name: str) -> None:
    case = CASES[name]
    exc = _caught(name)
    assert f"{type(exc).__module__}.{type(exc).__name__}" == case["exception_type"]
    payload = vinegar.dump(exc)
    if name == "StopIteration":
        assert payload == 1
        assert brine.dump(payload).hex() == case["sanitized_hex"]
        return
    assert isinstance(payload, tuple)
    text = payload[3]
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == case["tb_first_line"]
    assert lines[-1] == case["tb_last_line"]
    assert ("direct cause of the following exception" in text) == case["tb_mentions_cause"]
    placeholder = case["dump_json"]["tuple"][3]
    assert brine.dump(_sanitized(payload, placeholder)).hex() == case["sanitized_hex"]


@needs_add_note
@pytest.mark.parametrize("name", sorted(set(CASES) - {"StopIteration"}))
def test_dump_denied_matches_vector(name: str) -> None:
    payload = vinegar.dump(_caught(name), include_traceback=False, include_version=False)
    assert isinstance(payload, tuple)
    assert payload[3] == "<traceback denied>"
    assert payload[2][-1] == ("_remote_version", "<version denied>")
    assert brine.dump(_sanitized(payload, None)).hex() == CASES[name]["denied_sanitized_hex"]


def _vector_payloads() -> Iterator[tuple[str, str, str]]:
    for name, case in sorted(CASES.items()):
        for key in ("sanitized_hex", "denied_sanitized_hex"):
            if key in case:
                yield name, key, case[key]


def _default_result(case: dict[str, Any]) -> dict[str, Any]:
    (key,) = [k for k in case["load_results"] if k.startswith("default")][:1]
    return case["load_results"][key]


@pytest.mark.parametrize(("name", "key", "hexdata"), list(_vector_payloads()))
def test_load_vector(name: str, key: str, hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    payload = brine.load(data)
    assert brine.dump(payload) == data  # the structure re-encodes identically
    exc = vinegar.load(payload)
    expected = _default_result(CASES[name])
    if name == "StopIteration":
        assert type(exc) is StopIteration
        return
    assert repr(exc.args) == expected["args"]
    if expected["is_GenericException"]:
        assert isinstance(exc, RemoteError)
        assert exc.remote_type == expected["raised_class_qualname"]
    else:
        cls = type(exc)
        assert (cls.__module__, cls.__qualname__) == (expected["raised_class_module"],
                                                     expected["raised_class_qualname"])
        assert isinstance(exc, getattr(builtins, cls.__qualname__))
        assert isinstance(exc, RemoteExceptionMixin)
        assert exc.remote_type == f"builtins.{cls.__qualname__}"
    assert "\n\n========= Remote Traceback (1) =========\n" in str(exc)
    head = str(exc).split("\n\n========= Remote Traceback")[0]
    if name == "OSError":
        # rpyc set filename=None from the attrs, so its str() grew ": None -> None";
        # we never set peer attributes, so CPython's own rendering stays
        assert head == str(FileNotFoundError(2, "x"))
    else:
        assert head == expected["str_first_line"]
    peer_attrs = dict(payload[2])
    version = peer_attrs.pop("_remote_version")
    assert exc.remote_version == version
    assert dict(exc.remote_attrs) == peer_attrs
    assert not set(peer_attrs) & set(vars(exc))  # never set on the instance


@pytest.mark.parametrize("example", VECTORS["str_examples"], ids=lambda e: e["case"][:30])
def test_str_examples(example: dict[str, Any]) -> None:
    exc = vinegar.load(brine.load(bytes.fromhex(example["payload_hex"])))
    assert str(exc) == example["str"]
    assert repr(exc) == example["str"]
    assert isinstance(exc, RemoteError) == example["is_GenericException"]
    if example["is_GenericException"]:
        assert isinstance(exc, RemoteError)
        assert exc.remote_type == example["loaded_class_name"]
    else:
        assert type(exc).__name__ == example["loaded_class_name"]
        assert type(exc).__module__ == example["loaded_class_module"]


# -- class choice ---------------------------------------------------------------------------


@pytest.fixture
def mymod_loaded(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setitem(sys.modules, "mymod", MYMOD)
    return MYMOD


def _payload(module: str, name: str, args: tuple[Any, ...] = (),
             attrs: tuple[Any, ...] = (("_remote_version", "6.0.2"),), text: str = "TB\n") -> Any:
    return ((module, name), args, attrs, text)


def test_custom_class_needs_instantiate_custom(mymod_loaded: types.ModuleType) -> None:
    payload = brine.load(bytes.fromhex(CASES["extra_attrs"]["sanitized_hex"]))
    generic = vinegar.load(payload)
    assert isinstance(generic, RemoteError)
    assert generic.remote_type == "mymod.AttrError"
    rebuilt = vinegar.load(payload, instantiate_custom=True)
    assert isinstance(rebuilt, mymod_loaded.AttrError)
    assert type(rebuilt).__name__ == "AttrError" and type(rebuilt).__module__ == "mymod"
    assert rebuilt.args == ("bad thing", 7)
    # the custom __init__ did not run and the peer's attrs were not set
    assert not {"code", "payload", "label", "_private"} & set(vars(rebuilt))
    assert rebuilt.remote_attrs["label"] == "lbl"
    with pytest.raises(mymod_loaded.AttrError):
        raise rebuilt


def test_custom_class_not_loaded_is_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    exc = vinegar.load(_payload("mymod", "MyError", ("boom", 42)), instantiate_custom=True)
    assert isinstance(exc, RemoteError) and exc.remote_type == "mymod.MyError"


def test_import_module_callback_only_with_instantiate_custom(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    calls: list[str] = []

    def importer(name: str) -> object:
        calls.append(name)
        sys.modules[name] = MYMOD
        return MYMOD

    try:
        assert isinstance(vinegar.load(_payload("mymod", "MyError"), import_module=importer),
                          RemoteError)
        assert calls == []
        exc = vinegar.load(_payload("mymod", "MyError"), instantiate_custom=True,
                           import_module=importer)
        assert calls == ["mymod"]
        assert isinstance(exc, MYMOD.MyError)
    finally:
        sys.modules.pop("mymod", None)


def test_failing_import_callback_is_ignored() -> None:
    def importer(name: str) -> object:
        raise ImportError(name)

    exc = vinegar.load(_payload("no_such_module_xyz", "E"), instantiate_custom=True,
                       import_module=importer)
    assert isinstance(exc, RemoteError)


def _unloaded_stdlib_module() -> str:
    for name in ("colorsys", "wave", "tabnanny", "netrc", "sched", "graphlib", "zipapp"):
        if name not in sys.modules:
            return name
    pytest.skip("every candidate stdlib module is already loaded")


@pytest.mark.parametrize("instantiate_custom", [False, True])
def test_load_never_imports(monkeypatch: pytest.MonkeyPatch, instantiate_custom: bool) -> None:
    calls: list[str] = []
    real_import = builtins.__import__
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: calls.append(name))

    def recording_import(name: str, *args: Any, **kwargs: Any) -> types.ModuleType:
        calls.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    unloaded = _unloaded_stdlib_module()
    before = set(sys.modules)
    for module in ("no_such_module_xyz", unloaded, f"{unloaded}.sub", "os.path"):
        exc = vinegar.load(_payload(module, "Error", ("x",)), instantiate_custom=instantiate_custom)
        assert isinstance(exc, RemoteError)
    assert set(sys.modules) == before
    assert calls == []


def test_module_getattr_and_non_modules_are_not_consulted(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    asked: list[str] = []
    lazy = types.ModuleType("lazymod")

    def module_getattr(name: str) -> object:
        asked.append(name)
        return KeyError

    # a module's own __getattr__ (PEP 562) is a plain attribute; typeshed declares it a method
    lazy.__getattr__ = module_getattr  # type: ignore[method-assign]

    class Weird:
        def __getattr__(self, name: str) -> object:
            asked.append(name)
            return KeyError

    monkeypatch.setitem(sys.modules, "lazymod", lazy)
    monkeypatch.setitem(sys.modules, "weirdmod", Weird())
    for module in ("lazymod", "weirdmod"):
        exc = vinegar.load(_payload(module, "Missing"), instantiate_custom=True)
        assert isinstance(exc, RemoteError)
    assert asked == []


def test_custom_new_and_init_are_not_called(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    module = types.ModuleType("trapmod")

    class Trap(OSError):
        def __new__(cls, *args: object) -> Trap:
            called.append("new")
            return super().__new__(cls, *args)

        def __init__(self, *args: object) -> None:
            called.append("init")
            super().__init__(*args)

    Trap.__module__ = "trapmod"
    module.Trap = Trap  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trapmod", module)
    exc = vinegar.load(_payload("trapmod", "Trap", (13, "denied")), instantiate_custom=True)
    assert isinstance(exc, Trap)
    assert called == []
    assert exc.args == (13, "denied")
    assert (exc.errno, exc.strerror) == (13, "denied")  # from OSError's own C __new__


def test_names_that_are_not_exception_classes() -> None:
    for name in ("len", "object", "int", "__import__", "__builtins__", "", "Key.Error", "x" * 500):
        exc = vinegar.load(_payload("builtins", name))
        assert isinstance(exc, RemoteError)
        assert exc.remote_type == f"builtins.{name}"


def test_builtin_classes_behave_like_builtins() -> None:
    exc = vinegar.load(_payload("builtins", "KeyError", ("k",)))
    with pytest.raises(KeyError):
        raise exc
    assert isinstance(vinegar.load(_payload("builtins", "ZeroDivisionError")), ArithmeticError)
    exit_ = vinegar.load(_payload("builtins", "SystemExit", (3,), (("code", 99),)))
    assert isinstance(exit_, SystemExit) and exit_.code == 3  # from args, not the peer's attr
    os_error = vinegar.load(_payload("builtins", "OSError", (2, "x")))
    assert isinstance(os_error, OSError)
    assert (os_error.errno, os_error.strerror) == (2, "x")
    assert type(os_error).__name__ == "OSError"  # the class the peer named, not a subclass
    stop = vinegar.load(_payload("builtins", "StopIteration", (5,)))
    assert isinstance(stop, StopIteration) and stop.value == 5
    for name in ("KeyboardInterrupt", "SystemExit", "GeneratorExit"):
        exc = vinegar.load(_payload("builtins", name))
        assert type(exc).__mro__[2] is getattr(builtins, name)
    # a class the builtin __init__ refuses still comes back, with its args
    odd = vinegar.load(_payload("builtins", "UnicodeDecodeError", ("only one",)))
    assert isinstance(odd, UnicodeDecodeError) and odd.args == ("only one",)


def test_stop_iteration_and_legacy_string() -> None:
    stop = vinegar.load(1)
    assert type(stop) is StopIteration
    legacy = vinegar.load("old style")
    assert isinstance(legacy, RemoteError) and legacy.args == ("old style",)


def test_peer_attrs_are_never_set() -> None:
    attrs = (("add_note", "shadow"), ("errno", 99), ("code", 3), ("args", "bad"),
             ("__class__", "x"), ("_remote_tb", "evil"), ("remote_type", "fake"),
             ("_remote_version", "6.0.2"))
    exc = vinegar.load(_payload("builtins", "OSError", (2, "x"), attrs))
    assert isinstance(exc, OSError) and isinstance(exc, RemoteExceptionMixin)
    assert "add_note" not in vars(exc)  # BaseException.add_note exists on Python >= 3.11 only
    if sys.version_info >= (3, 11):
        assert callable(exc.add_note)
    assert exc.errno == 2 and exc.args == (2, "x")
    assert type(exc).__mro__[2] is OSError
    assert exc.remote_type == "builtins.OSError"
    assert exc._remote_tb == "TB\n"
    assert exc.remote_attrs["remote_type"] == "fake"
    assert exc.remote_attrs["errno"] == 99
    assert "_remote_version" not in exc.remote_attrs
    with pytest.raises(TypeError):
        exc.remote_attrs["errno"] = 1  # type: ignore[index]  # read-only: the point of the test


# -- bounds -----------------------------------------------------------------------------------


def test_caches_do_not_grow_with_peer_names() -> None:
    vinegar.load(_payload("builtins", "KeyError"))
    cache_size = len(vinegar._rebuilt)
    subclasses = len(RemoteError.__subclasses__())
    for i in range(10_000):
        module, name = f"mod{i}", f"Error{i}"
        assert isinstance(vinegar.load(_payload(module, name)), RemoteError)
        assert isinstance(vinegar.load(_payload(module, name), instantiate_custom=True),
                          RemoteError)
        vinegar.load(_payload("builtins", "KeyError"))
    assert len(vinegar._rebuilt) == cache_size
    assert len(RemoteError.__subclasses__()) == subclasses


def test_load_bounds_what_it_keeps() -> None:
    attrs = (*((f"a{i:03d}", "v" * 10_000) for i in range(100)),
             ("big", tuple(range(5000))), ("_remote_version", "6.0.2"))
    exc = vinegar.load(_payload("builtins", "ValueError", ("x",), attrs, "T" * (3 << 20)),
                       max_attrs=64)
    assert isinstance(exc, RemoteExceptionMixin)
    assert len(exc.remote_attrs) == 64
    assert all(isinstance(value, str) and len(value) == vinegar.MAX_ATTR_SIZE
               for value in exc.remote_attrs.values())
    assert len(exc.remote_traceback) == vinegar.MAX_TRACEBACK
    assert exc.remote_traceback.startswith("[... ")
    small = vinegar.load(_payload("builtins", "ValueError", (), (("big", tuple(range(5000))),)))
    assert isinstance(small, RemoteExceptionMixin)
    assert isinstance(small.remote_attrs["big"], str)


def test_dump_bounds_what_it_sends() -> None:
    class Busy(Exception):
        pass

    exc = Busy("x" * 10)
    for i in range(100):
        setattr(exc, f"attr{i:03d}", [i] * 5000)
    payload = vinegar.dump(exc)
    assert isinstance(payload, tuple)
    head, args, attrs, _ = payload
    assert args == ("x" * 10,)
    assert len(attrs) == vinegar.MAX_ATTRS + 1 and attrs[-1][0] == "_remote_version"
    assert all(len(value) <= vinegar.MAX_REPR for _, value in attrs)
    brine.dump((head, args, attrs))


def test_dump_survives_broken_repr_and_properties() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    class Odd(Exception):
        @property
        def boom(self) -> int:
            raise RuntimeError("property failed")

    payload = vinegar.dump(Odd(Unprintable()))
    assert isinstance(payload, tuple)
    _, args, attrs, _ = payload
    assert "repr() raised RuntimeError" in args[0]
    assert "boom" not in dict(attrs)


def test_version_warning() -> None:
    def text(version: str) -> str:
        attrs = (("_remote_version", version),)
        exc = vinegar.load(_payload("builtins", "KeyError", ("k",), attrs))
        assert isinstance(exc, RemoteExceptionMixin)
        return exc.remote_traceback

    assert text("6.1.0") == "TB\n"
    assert text("<version denied>") == "TB\n"
    assert text("5.3.1").endswith(
        "\nWARNING: Remote is on RPyC 5.3.1 and local is on RPyC 6.0.2.\n\n")
    unversioned = vinegar.load(_payload("builtins", "KeyError", (), ()))
    assert isinstance(unversioned, RemoteExceptionMixin)
    assert unversioned.remote_version is None


def test_our_errors_travel_as_builtins_and_remote_errors_keep_their_name() -> None:
    ours = vinegar.dump(SecurityError("refused"))
    assert isinstance(ours, tuple)
    assert ours[0] == ("builtins", "AttributeError")
    remote = vinegar.load(_payload("pkg.mod", "Boom", ("x",)))
    forwarded_payload = vinegar.dump(remote)
    assert isinstance(forwarded_payload, tuple)
    head, args, _, _ = forwarded_payload
    assert head == ("pkg.mod", "Boom") and args == ("x",)
    forwarded = vinegar.load(forwarded_payload)
    assert isinstance(forwarded, RemoteExceptionMixin)
    assert forwarded.remote_type == "pkg.mod.Boom"


@pytest.mark.parametrize("payload", [
    None, 0, 2, True, 1.0, b"x", (), ("a", "b", "c"), frozenset(), slice(1, 2, 3),
    (("builtins", "KeyError"), (), ()),
    (("builtins", "KeyError"), (), (), "", "extra"),
    ("builtins.KeyError", (), (), ""),
    (("builtins",), (), (), ""),
    (("builtins", b"KeyError"), (), (), ""),
    ((1, "KeyError"), (), (), ""),
    (("builtins", "KeyError"), "args", (), ""),
    (("builtins", "KeyError"), (), "attrs", ""),
    (("builtins", "KeyError"), (), (), b"tb"),
    (("builtins", "KeyError"), (), (), None),
    (("builtins", "KeyError"), (), (("name",),), ""),
    (("builtins", "KeyError"), (), ((1, 2),), ""),
    (("builtins", "KeyError"), (), ("name",), ""),
    (("builtins", "KeyError"), (), (("_remote_version", 6),), ""),
    (("m" * 600, "KeyError"), (), (), ""),
], ids=repr)
def test_malformed_payloads(payload: object) -> None:
    with pytest.raises(CodecError):
        vinegar.load(payload)
