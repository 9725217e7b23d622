"""``obj?`` and ``obj??`` on netrefs, in a bounded number of requests.

IPython's inspector probes an object's class, docstring, file, source,
signature, length and more: dozens of requests on a netref. :class:`NetrefInspector`
wraps the shell inspector's ``info`` so that a netref is described by

* one request when the session runs our engine (the server's own IPython
  inspector fills the fields, by value, bounded), or
* two requests otherwise (a bounded ``repr`` and ``__doc__``).

Everything else goes to IPython unchanged. It also wraps the shell's name lookup
(``_ofind``) for dotted names that start at a remote object (``slow.attr?``), so the
walk to the object is bounded too. Each of the two waits on the server at most
``RPyCPolicy.display_timeout``, whatever the object does in ``__getattr__``.
``uninstall()`` removes both wrappers.

:func:`info_bundle` formats the info a session returns for code (``sess.inspect``)
the way IPython formats ``?``: what a kernel's ``do_inspect`` sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.netref import BaseNetref, RemoteMethod, resolve_method
from rpyc_ipy.ipython.completion import MISSING
from rpyc_ipy.ipython.session import RemoteSession
from rpyc_ipy.ipython.text import netref_connection, netref_text, remote_type_name, sanitize_text
from rpyc_ipy.protocol import consts

if TYPE_CHECKING:
    from rpyc_ipy.ipython.registry import SessionRegistry
    from rpyc_ipy.ipython.settings import RPyCPolicy

__all__ = ["NetrefInspector", "info_bundle"]

MAX_DOC = 20_000
#: walks a dotted name to an object by a deadline (``RemoteCompleter.resolve``)
Resolve = Callable[[str, float], Any]


class NetrefInspector:
    """Install into a shell with :meth:`install`; see the module docstring."""

    def __init__(self, shell: Any, policy: RPyCPolicy, registry: SessionRegistry,
                 resolve: Resolve) -> None:
        self.shell = shell
        self.policy = policy
        self.registry = registry
        self.resolve = resolve
        self._inspector: Any = None
        self._original: Callable[..., Any] | None = None
        self._original_ofind: Callable[..., Any] | None = None

    def install(self) -> None:
        inspector = self.shell.inspector
        self._inspector = inspector
        self._original = inspector.info
        inspector.info = self.info  # instance attribute: shadows the method
        self._original_ofind = self.shell._ofind
        self.shell._ofind = self.find

    def uninstall(self) -> None:
        if self._inspector is not None and self._inspector.__dict__.get("info") == self.info:
            del self._inspector.info
        self._inspector = None
        if self.shell.__dict__.get("_ofind") == self.find:
            del self.shell._ofind
        self._original_ofind = None

    def find(self, oname: str, namespaces: Any = None) -> Any:
        """The shell's ``_ofind``, with dotted names from a remote object walked by
        bounded lookups (a lookup that does not end in time: not found)."""
        assert self._original_ofind is not None
        parts = oname.strip().split(".")
        head = self.shell.user_ns.get(parts[0]) if namespaces is None else None
        if len(parts) < 2 or not all(p.isidentifier() for p in parts) or not (
                isinstance(head, (BaseNetref, RemoteSession)) or type(head) is RemoteMethod):
            return self._original_ofind(oname, namespaces)
        from IPython.core.oinspect import OInfo

        deadline = time.monotonic() + self.policy.display_timeout
        parent = self.resolve(".".join(parts[:-1]), deadline)
        obj = MISSING if parent is MISSING else self.resolve(".".join(parts), deadline)
        if obj is MISSING:
            return OInfo(ismagic=False, isalias=False, found=False, obj=None, namespace=None,
                         parent=None)
        return OInfo(ismagic=False, isalias=False, found=True, obj=obj,
                     namespace="Interactive", parent=parent)

    def info(self, obj: Any, oname: str = "", info: Any = None, detail_level: int = 0
             ) -> Any:
        """``Inspector.info`` with netrefs answered in one or two requests."""
        assert self._original is not None
        if not (isinstance(obj, BaseNetref) or type(obj) is RemoteMethod):
            return self._original(obj, oname=oname, info=info, detail_level=detail_level)
        from IPython.core.oinspect import object_info

        fields = self._remote_fields(obj, oname, detail_level)
        fields.update(ismagic=False, isalias=False)
        fields.setdefault("isclass", False)
        fields["namespace"] = getattr(info, "namespace", None)
        return object_info(**{"name": oname, "found": True, **{
            k: v for k, v in fields.items() if k not in ("name", "found")}})

    def _remote_fields(self, obj: Any, oname: str, detail_level: int) -> dict[str, Any]:
        session = self.registry.for_conn(netref_connection(obj))
        deadline = time.monotonic() + self.policy.display_timeout
        if session is not None and session.has_engine and type(obj) is not RemoteMethod:
            try:
                remote = session.inspect(oname, obj=obj, detail_level=detail_level,
                                         timeout=_left(deadline))
            except Exception:
                remote = None
            if remote:
                return {k: sanitize_text(v) if type(v) is str else v for k, v in remote.items()}
        type_name = remote_type_name(obj)
        fields: dict[str, Any] = {
            "type_name": type_name,
            "base_class": f"remote {type_name}",
            "string_form": netref_text(obj, 200 if not detail_level else
                                       self.policy.max_repr_chars, _left(deadline)),
            "docstring": self._doc(obj, _left(deadline)),
        }
        return fields

    def _doc(self, obj: Any, timeout: float) -> str:
        target = resolve_method(obj) if type(obj) is RemoteMethod else obj
        try:
            result = netref_connection(target).async_request(consts.HANDLE_GETATTR, target,
                                                             "__doc__")
            result.wait(timeout)
            doc = result.value
        except Exception:
            return "<no docstring>"
        if type(doc) is not str or not doc:
            return "<no docstring>"
        doc = sanitize_text(doc)
        return doc if len(doc) <= MAX_DOC else doc[:MAX_DOC] + "…"


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def info_bundle(inspector: Any, info: dict[str, Any], oname: str = "",
                detail_level: int = 0) -> dict[str, Any]:
    """A ``?`` MIME bundle (``text/plain``, ``text/html``) from remote info fields,
    formatted by ``inspector`` (the shell's ``Inspector``) as IPython would."""
    from IPython.core.oinspect import object_info

    fields: dict[str, Any] = {k: sanitize_text(v) if type(v) is str else v
                              for k, v in info.items() if k not in ("name", "found")}
    full = object_info(name=oname or str(info.get("name") or ""), found=True, **fields)
    try:
        unformatted = inspector._make_info_unformatted(None, full, None, detail_level, ())
        return dict(inspector.format_mime(unformatted))
    except Exception:  # an IPython without these helpers: plain text is enough
        text = "\n".join(f"{k}: {v}" for k, v in full.items()
                         if isinstance(v, str) and k != "name")
        return {"text/plain": text}
