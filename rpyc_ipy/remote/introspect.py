"""Looking at a namespace without running user code: completion, ``?`` info, browsing.

Everything here evaluates names with :func:`resolve`, a small evaluator that
follows names, attributes and literal subscripts but never calls anything:
properties and other user descriptors are refused, not run (a TAB must never
start a job). Results are bounded, brine-able tuples::

    complete(ns, "os.pa", 5)            # -> (("os.path", ...), start, end, types)
    inspect_code(ns, "len(x", 3)        # -> info pairs for ``len``, or () if unknown
    describe(ns, ("", "df"))            # -> one node per path, children included

Pure standard library (IPython's Inspector is used when importable): also
shipped by source to classic peers.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import keyword
import re
import sys
import types
from collections.abc import Mapping
from typing import Any

from .bundle import short_repr

__all__ = [
    "Refused",
    "Undefined",
    "complete",
    "describe",
    "info_pairs",
    "inspect_code",
    "resolve",
]

MAX_MATCHES = 1000
MAX_FIELD = 20_000
_SUBSCRIPTABLE = (dict, list, tuple, str, bytes, range)
# descriptor types whose __get__ runs no user code
_SAFE_DESCRIPTORS = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType, staticmethod, classmethod,
)
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


class Refused(Exception):
    """The expression needs something :func:`resolve` will not do (a call, a property...)."""


class Undefined(Refused):
    """The expression's name is not in the namespace (nor a builtin)."""


# -- the evaluator --------------------------------------------------------------------


def resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    """The value of a name/attribute/literal-subscript expression, running no user code."""
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError as exc:
        raise Refused(f"not an expression: {exc.msg}") from None
    return _eval(node, namespace)


def _eval(node: ast.AST, namespace: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in namespace:
            return namespace[node.id]
        if hasattr(builtins, node.id):
            return getattr(builtins, node.id)
        raise Undefined(f"name {node.id!r} is not defined")
    if isinstance(node, ast.Attribute):
        return static_getattr(_eval(node.value, namespace), node.attr)
    if isinstance(node, ast.Subscript):
        obj = _eval(node.value, namespace)
        key = _literal(node.slice)
        if not isinstance(obj, _SUBSCRIPTABLE):
            raise Refused(f"will not index a {type(obj).__name__}")
        try:
            return obj[key]
        except Exception as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
    if isinstance(node, ast.Constant):
        return node.value
    raise Refused(f"{type(node).__name__} is not evaluated here")


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        raise Refused("only literal subscripts are evaluated") from None


def static_getattr(obj: Any, name: str) -> Any:
    """``getattr`` that refuses to run properties and other user descriptors."""
    try:
        static = inspect.getattr_static(obj, name)
    except AttributeError:
        if isinstance(obj, types.ModuleType):
            raise Refused(f"module has no attribute {name!r}") from None
        raise Refused(f"{name!r} is not a plain attribute") from None
    if hasattr(type(static), "__get__") and not isinstance(static, _SAFE_DESCRIPTORS) \
            and not isinstance(static, type):
        raise Refused(f"{name!r} is a {type(static).__name__}; it is not evaluated here")
    try:
        return getattr(obj, name)
    except Exception as exc:
        raise Refused(f"{type(exc).__name__}: {exc}") from None


# -- completion -----------------------------------------------------------------------

_KEY_RE = re.compile(r"([A-Za-z_][\w.]*(?:\[[^\[\]]+\])*)\[(['\"])([^'\"]*)$")
_ATTR_RE = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\[\]]+\])*)\.(\w*)$")
_NAME_RE = re.compile(r"([A-Za-z_]\w*)$")


def _kind(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type):
        return "class"
    if callable(value):
        return "function"
    return "instance"


def complete(namespace: Mapping[str, Any], code: str, cursor_pos: int | None = None,
             limit: int = MAX_MATCHES) -> tuple[tuple[str, ...], int, int, tuple[str, ...]]:
    """``(matches, cursor_start, cursor_end, types)`` for the code before ``cursor_pos``."""
    if cursor_pos is None or not 0 <= cursor_pos <= len(code):
        cursor_pos = len(code)
    before = code[:cursor_pos]
    line = before.rsplit("\n", 1)[-1]
    found = _KEY_RE.search(line)
    if found:
        matches, types_ = _key_matches(namespace, found.group(1), found.group(3), limit)
        return matches, cursor_pos - len(found.group(3)), cursor_pos, types_
    found = _ATTR_RE.search(line)
    if found:
        expr, prefix = found.group(1), found.group(2)
        try:
            obj = resolve(expr, namespace)
        except Refused:
            return (), cursor_pos, cursor_pos, ()
        try:
            names = dir(obj)
        except Exception:
            names = []
        names = [n for n in names if type(n) is str and n.startswith(prefix)
                 and (prefix.startswith("_") or not n.startswith("_"))]
        names.sort()
        names = names[:limit]
        kinds = _kinds(obj, names) if len(names) <= 200 else ()
        return tuple(names), cursor_pos - len(prefix), cursor_pos, kinds
    found = _NAME_RE.search(line)
    prefix = found.group(1) if found else ""
    if found is None and line and not line[-1].isspace() and line[-1] not in "([{,=:;+-*/%<>!~&|^":
        return (), cursor_pos, cursor_pos, ()
    pool = set(namespace) | set(dir(builtins)) | set(keyword.kwlist)
    names = sorted(n for n in pool if isinstance(n, str) and n.startswith(prefix)
                   and (prefix.startswith("_") or not n.startswith("_")))[:limit]
    kinds = tuple("keyword" if keyword.iskeyword(n) else
                  _kind(namespace[n] if n in namespace else getattr(builtins, n, None))
                  for n in names) if len(names) <= 200 else ()
    return tuple(names), cursor_pos - len(prefix), cursor_pos, kinds


def _kinds(obj: Any, names: list[str]) -> tuple[str, ...]:
    out = []
    for name in names:
        try:
            out.append(_kind(inspect.getattr_static(obj, name)))
        except Exception:
            out.append("instance")
    return tuple(out)


def _key_matches(namespace: Mapping[str, Any], expr: str, prefix: str, limit: int
                 ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        obj = resolve(expr, namespace)
    except Refused:
        return (), ()
    if not isinstance(obj, dict):
        return (), ()
    keys = sorted(k for k in obj if type(k) is str and k.startswith(prefix))[:limit]
    return tuple(keys), ("dict key",) * len(keys)


# -- inspection (``?``) ------------------------------------------------------------------

_inspector: Any = None
_TOKEN_RE = re.compile(r"[A-Za-z_][\w.]*")


def _cut(text: str, limit: int = MAX_FIELD) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more)"


def info_pairs(obj: Any, oname: str = "", detail_level: int = 0) -> tuple[tuple[str, Any], ...]:
    """IPython's ``?`` info fields for ``obj`` as bounded ``(key, str|bool|None)`` pairs."""
    global _inspector
    info: dict[str, Any]
    try:
        from IPython.core.oinspect import Inspector

        if _inspector is None:
            _inspector = Inspector(theme_name="nocolor")
        info = dict(_inspector.info(obj, oname, detail_level=detail_level))
    except ImportError:
        info = _plain_info(obj, oname, detail_level)
    except Exception as exc:
        info = {"name": oname, "found": True, "type_name": type(obj).__name__,
                "docstring": f"<inspection failed: {type(exc).__name__}: {exc}>"}
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and info.get("file") == main_file:
        info["file"] = None  # a class from a cell (its module is __main__): not that file
    out: list[tuple[str, Any]] = []
    for key, value in info.items():
        if not isinstance(key, str):
            continue
        if value is None or type(value) is bool:
            out.append((key, value))
        else:
            out.append((key, _cut(str(value))))
    return tuple(out)


def _plain_info(obj: Any, oname: str, detail_level: int) -> dict[str, Any]:
    info: dict[str, Any] = {"name": oname, "found": True, "isclass": isinstance(obj, type),
                            "ismagic": False, "isalias": False,
                            "type_name": type(obj).__name__,
                            "string_form": short_repr(obj, 200),
                            "docstring": inspect.getdoc(obj) or "<no docstring>"}
    try:
        info["length"] = str(len(obj))
    except Exception:
        pass
    if callable(obj):
        try:
            info["definition"] = oname + str(inspect.signature(obj))
        except (TypeError, ValueError):
            pass
    try:
        info["file"] = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except TypeError:
        pass
    if detail_level:
        try:
            info["source"] = inspect.getsource(obj)
        except (OSError, TypeError):
            pass
    return info


def token_at(code: str, cursor_pos: int | None) -> str:
    """The dotted name under (or just before) the cursor; inside ``f(`` it is ``f``."""
    if cursor_pos is None or not 0 <= cursor_pos <= len(code):
        cursor_pos = len(code)
    for match in _TOKEN_RE.finditer(code):
        if match.start() <= cursor_pos <= match.end():
            return match.group().rstrip(".")
    head = code[:cursor_pos]
    depth = 0
    for i in range(len(head) - 1, -1, -1):  # inside a call: the callee's name
        ch = head[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                found = re.search(r"[A-Za-z_][\w.]*$", head[:i])
                return found.group().rstrip(".") if found else ""
            depth -= 1
    return ""


def inspect_code(namespace: Mapping[str, Any], code: str, cursor_pos: int | None = None,
                 detail_level: int = 0) -> tuple[tuple[str, Any], ...]:
    """Info pairs for the name at the cursor, or ``()`` if it cannot be found safely."""
    name = token_at(code, cursor_pos)
    if not name:
        return ()
    try:
        obj = resolve(name, namespace)
    except Refused:
        return ()
    return info_pairs(obj, name, detail_level)


# -- browsing ---------------------------------------------------------------------------


def _type_name(obj: Any) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _node_kind(obj: Any) -> str:
    if isinstance(obj, _SCALARS):
        return "scalar"
    if isinstance(obj, types.ModuleType):
        return "module"
    if isinstance(obj, type):
        return "class"
    if isinstance(obj, dict):
        return "mapping"
    if isinstance(obj, (list, tuple, range)):
        return "sequence"
    if isinstance(obj, (set, frozenset)):
        return "set"
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return "callable"
    return "object"


def _expandable(obj: Any) -> bool:
    kind = _node_kind(obj)
    if kind in ("scalar", "callable"):
        return False
    if kind in ("mapping", "sequence", "set"):
        try:
            return len(obj) > 0
        except Exception:
            return False
    return True


def _child(label: str, path: str, value: Any) -> tuple[str, str, str, str, bool]:
    return (label, path, _type_name(value), short_repr(value), _expandable(value))


def _literal_key(key: Any) -> str | None:
    if type(key) in (str, int, float, bool, bytes) or key is None:
        return repr(key)
    return None


def _children(obj: Any, path: str, max_items: int, private: bool
              ) -> tuple[list[tuple[str, str, str, str, bool]], int]:
    kind = _node_kind(obj)
    out: list[tuple[str, str, str, str, bool]] = []
    if kind == "mapping":
        keys = list(obj)
        for key in keys[:max_items]:
            literal = _literal_key(key)
            child_path = f"{path}[{literal}]" if literal is not None and path else ""
            out.append(_child(short_repr(key, 60), child_path, obj[key]))
        return out, max(0, len(keys) - max_items)
    if kind == "sequence":
        for index in range(min(len(obj), max_items)):
            out.append(_child(f"[{index}]", f"{path}[{index}]" if path else "", obj[index]))
        return out, max(0, len(obj) - max_items)
    if kind == "set":
        items = list(obj)
        for item in items[:max_items]:
            out.append(_child(short_repr(item, 60), "", item))
        return out, max(0, len(items) - max_items)
    if kind in ("scalar", "callable"):
        return out, 0
    try:
        names = [n for n in dir(obj) if type(n) is str]
    except Exception:
        names = []
    names = [n for n in names if private or not n.startswith("_")]
    for name in names[:max_items]:
        child_path = f"{path}.{name}" if path else ""
        try:
            value = static_getattr(obj, name)
        except Refused as exc:
            out.append((name, "", "", f"<{exc}>", False))
            continue
        out.append(_child(name, child_path, value))
    return out, max(0, len(names) - max_items)


def describe(namespace: Mapping[str, Any], paths: tuple[str, ...], max_items: int = 50,
             private: bool = False) -> tuple[tuple[tuple[str, Any], ...], ...]:
    """One bounded summary per path (``""`` is the namespace itself), as pairs.

    Keys: ``path``, ``type``, ``repr``, ``kind``, ``len``, ``doc``, ``children``
    (``(label, path, type, repr, expandable)`` each; ``path`` is ``""`` when the
    child cannot be addressed), ``more`` (children left out), ``error`` (and with
    it ``undefined``: the path's name is not in the namespace).
    """
    nodes: list[tuple[tuple[str, Any], ...]] = []
    for path in paths[:100]:
        if type(path) is not str:
            nodes.append((("path", ""), ("error", "a path must be a str")))
            continue
        nodes.append(_describe_one(namespace, path, max_items, private))
    return tuple(nodes)


def _describe_one(namespace: Mapping[str, Any], path: str, max_items: int, private: bool
                  ) -> tuple[tuple[str, Any], ...]:
    if path == "":
        names = sorted(n for n in namespace if type(n) is str and n != "__builtins__"
                       and (private or not n.startswith("_")))
        children = [_child(n, n, namespace[n]) for n in names[:max_items]]
        return (("path", ""), ("type", "namespace"), ("repr", f"{len(names)} names"),
                ("kind", "namespace"), ("len", len(names)), ("doc", ""),
                ("children", tuple(children)), ("more", max(0, len(names) - max_items)),
                ("error", None))
    try:
        obj = resolve(path, namespace)
    except Refused as exc:  # "undefined": a browser may look for the name elsewhere
        return (("path", path), ("error", str(exc)), ("undefined", isinstance(exc, Undefined)))
    try:
        length: int | None = len(obj) if not isinstance(obj, (type, types.ModuleType)) else None
    except Exception:
        length = None
    doc = ""
    if _node_kind(obj) in ("module", "class", "callable"):
        doc = (inspect.getdoc(obj) or "").strip().split("\n", 1)[0][:200]
    children, more = _children(obj, path, max_items, private)
    return (("path", path), ("type", _type_name(obj)), ("repr", short_repr(obj, 200)),
            ("kind", _node_kind(obj)), ("len", length), ("doc", doc),
            ("children", tuple(children)), ("more", more), ("error", None))
