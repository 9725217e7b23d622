"""TAB completion: inside ``%%remote`` cells, and on netrefs (``sess.ns.os.path.jo<TAB>``).

:class:`RemoteCompleter` adds one context matcher to the shell's completer:

* in a ``%%remote`` cell (or after ``%remote``), it asks the session's engine
  in one request and suppresses the local matchers (local names are wrong there);
* on a dotted name that reaches a netref, it walks the chain itself, local
  parts under IPython's evaluation policy and remote parts through a per-object
  cache (GETATTR and DIR results live ``RPyCMagics.completion_ttl`` seconds,
  ``dir`` is cut to ``RPyCPolicy.max_dir_names``), so a repeated TAB costs no
  request; it then suppresses Jedi, which would probe the netref dozens of times.

It also merges our types into ``Completer.policy_overrides`` (never replacing
what is there), so IPython's own guarded evaluation may follow
``sess.ns.<name>`` chains too, and completes session names after
``%rpyc_use``/``%rpyc_disconnect``/``%rpyc_policy``. ``uninstall()`` undoes all of it.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.netref import BaseNetref, RemoteMethod
from rpyc_ipy.ipython.session import RemoteSession
from rpyc_ipy.ipython.syntax import remote_cell, remote_line
from rpyc_ipy.protocol import consts

if TYPE_CHECKING:
    from rpyc_ipy.ipython.registry import SessionRegistry
    from rpyc_ipy.ipython.settings import MagicsSettings, RPyCPolicy

__all__ = ["MISSING", "RemoteCompleter"]

MATCHER_ID = "rpyc_ipy.remote"
#: names our matcher lets IPython keep when it suppresses the others
_CHAIN = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(\w*)$")
_MISSING = object()
_NETREF_MODULE = ("rpyc_ipy", "netref")
#: a name that starts an expression (not an attribute after a dot)
_HEAD_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")
_SESSION_COMMANDS = ("%rpyc_use", "%rpyc_disconnect", "%rpyc_policy", "%rpyc_push",
                     "%rpyc_pull", "%rpyc_browse")


class _TTLCache:
    """A small LRU cache whose entries expire; thread-safe."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return _MISSING
            if item[0] < time.monotonic():
                del self._items[key]
                return _MISSING
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class RemoteCompleter:
    """Completion for remote things in one shell; see the module docstring."""

    def __init__(self, shell: Any, settings: MagicsSettings, policy: RPyCPolicy,
                 registry: SessionRegistry) -> None:
        self.shell = shell
        self.settings = settings
        self.policy = policy
        self.registry = registry
        self.cache = _TTLCache()
        self._matcher: Any = None
        self._original_complete: Any = None
        self._overrides_before: dict[str, Any] = {}
        self._overrides_set: dict[str, Any] = {}
        self._hooks: list[tuple[str, Any]] = []
        self.requests = 0  # remote requests made by completion (for tests and benchmarks)

    # -- install / uninstall -------------------------------------------------------------

    def install(self) -> None:
        from IPython.core.completer import context_matcher

        completer = self.shell.Completer
        me = weakref.ref(self)

        @context_matcher(identifier=MATCHER_ID, priority=10)
        def rpyc_ipy_matcher(context: Any) -> dict[str, Any]:
            owner = me()
            return owner.match(context) if owner is not None else _empty()

        self._matcher = rpyc_ipy_matcher
        completer.custom_matchers.append(rpyc_ipy_matcher)
        self._original_complete = completer._complete
        completer._complete = self._complete  # instance attribute: shadows the method
        self._merge_overrides()
        completer.observe(self._evaluation_changed, names=["evaluation"])
        for command in _SESSION_COMMANDS:
            self.shell.set_hook("complete_command", self._complete_session_names,
                                str_key=command)
            self._hooks.append((command, self._complete_session_names))

    def uninstall(self) -> None:
        completer = self.shell.Completer
        if self._matcher in completer.custom_matchers:
            completer.custom_matchers.remove(self._matcher)
        self._matcher = None
        if completer.__dict__.get("_complete") == self._complete:
            del completer._complete
        self._original_complete = None
        try:
            completer.unobserve(self._evaluation_changed, names=["evaluation"])
        except ValueError:
            pass
        self._restore_overrides()
        dispatcher = self.shell.strdispatchers.get("complete_command")
        for command, hook in self._hooks:
            chain = getattr(dispatcher, "strs", {}).get(command)
            if chain is None:
                continue
            # set_hook stored MethodType(hook, shell)
            chain.chain = [(p, f) for p, f in chain.chain if getattr(f, "__func__", f) != hook]
            if not chain.chain:
                del dispatcher.strs[command]
        self._hooks.clear()
        self.cache.clear()

    # -- IPython's evaluation policy ---------------------------------------------------------

    def _merge_overrides(self) -> None:
        """Add RemoteSession and the netref classes to the getattr allow-lists of the
        current evaluation policy, keeping whatever is there already."""
        from IPython.core.guarded_eval import EVALUATION_POLICIES

        completer = self.shell.Completer
        self._restore_overrides()
        base = EVALUATION_POLICIES.get(completer.evaluation)
        overrides = dict(completer.policy_overrides)
        additions: dict[str, set[Any]] = {"allowed_getattr": {RemoteSession},
                     "allowed_getattr_external": {_NETREF_MODULE}}
        changed = False
        for key, extra in additions.items():
            if base is None or not hasattr(base, key):
                continue
            self._overrides_before[key] = overrides.get(key, _MISSING)
            current: Any = overrides.get(key, getattr(base, key))
            overrides[key] = set(current) | extra
            self._overrides_set[key] = overrides[key]
            changed = True
        if changed:
            completer.policy_overrides = overrides

    def _restore_overrides(self) -> None:
        completer = self.shell.Completer
        if not self._overrides_set:
            return
        overrides = dict(completer.policy_overrides)
        for key, ours in self._overrides_set.items():
            if overrides.get(key) is not ours:
                continue  # changed by someone since: theirs now
            before = self._overrides_before.get(key, _MISSING)
            if before is _MISSING:
                del overrides[key]
            else:
                overrides[key] = before
        self._overrides_set.clear()
        self._overrides_before.clear()
        completer.policy_overrides = overrides

    def _evaluation_changed(self, change: Any) -> None:
        self._merge_overrides()

    def _ipython_policy(self) -> Any:
        try:
            from IPython.core.guarded_eval import EvaluationContext, get_policy

            completer = self.shell.Completer
            return get_policy(EvaluationContext(
                globals=self.shell.user_ns, locals=self.shell.user_ns,
                evaluation=completer.evaluation, policy_overrides=completer.policy_overrides))
        except Exception:
            return None

    # -- claiming a completion -------------------------------------------------------------

    def _complete(self, **kwargs: Any) -> Any:
        """``IPCompleter._complete`` with only our matcher running when we claim the
        context (see the module docstring)."""
        completer = self.shell.Completer
        if self.settings.completion == "off" or not self.claims(**kwargs):
            return self._original_complete(**kwargs)
        before = completer.disable_matchers
        others = [matcher_id for matcher_id in map(_matcher_id, completer.matchers)
                  if matcher_id != MATCHER_ID and matcher_id not in before]
        completer.disable_matchers = [*before, *others]
        try:
            return self._original_complete(**kwargs)
        finally:
            completer.disable_matchers = before

    def claims(self, *, cursor_line: int = 0, cursor_pos: int | None = None,
               line_buffer: str | None = None, text: str | None = None,
               full_text: str | None = None) -> bool:
        """The completion at the cursor is ours: in a ``%%remote`` cell or ``%remote``
        line, or its line names a remote object before the cursor."""
        try:
            full = full_text or line_buffer or text or ""
            line = line_buffer or full.split("\n")[cursor_line]
            pos = len(line) if cursor_pos is None else cursor_pos
            if remote_cell(full, cursor_line, pos) is not None or \
                    (cursor_line == 0 and remote_line(line, pos) is not None):
                return True
            namespace = self.shell.user_ns
            return any(_is_remote(namespace.get(name, None))
                       for name in _HEAD_NAME.findall(line[:pos]))
        except Exception:  # completion must never break the prompt
            return False

    # -- the matcher ----------------------------------------------------------------------------

    def match(self, context: Any) -> dict[str, Any]:
        if self.settings.completion == "off":
            return _empty()
        deadline = time.monotonic() + self.settings.completion_timeout
        try:
            line = context.text_until_cursor
            target = remote_cell(context.full_text, context.cursor_line, context.cursor_position)
            if target is None and context.cursor_line == 0:
                target = remote_line(context.line_with_cursor, context.cursor_position)
            if target is not None:
                return self._remote_code(*target, deadline)
            return self._netref_chain(line, deadline)
        except Exception:  # completion must never break the prompt
            return _empty()

    def _remote_code(self, name: str | None, code: str, offset: int,
                     deadline: float) -> dict[str, Any]:
        try:
            session = self.registry.get(name)
        except Exception:
            return _empty()
        if not session.has_engine or session.closed:
            return _empty()
        self.requests += 1
        matches, start, _, kinds = session.complete(code, offset, timeout=_left(deadline))
        if not matches:
            return _empty(suppress=False)
        fragment = code[start:offset]
        return _result(matches, kinds, fragment)

    def _netref_chain(self, line: str, deadline: float) -> dict[str, Any]:
        found = _CHAIN.search(line)
        if found is None:
            return _empty()
        expr, prefix = found.group(1), found.group(2)
        obj = self.resolve(expr, deadline)
        if isinstance(obj, RemoteSession):  # a local object: its own names
            names = [n for n in dir(obj) if n.startswith(prefix) and not n.startswith("_")]
        elif isinstance(obj, BaseNetref):
            names = [n for n in self._dir(obj, deadline) if n.startswith(prefix)
                     and (prefix.startswith("_") or not n.startswith("_"))]
        else:
            return _empty()
        if not names:
            return _empty()
        return _result(names, [], prefix)

    def resolve(self, expr: str, deadline: float) -> Any:
        """The object ``expr`` (a dotted name in the user namespace) names, walked
        with remote lookups that end by ``deadline``; ``MISSING`` if it cannot be."""
        parts = expr.split(".")
        namespace = self.shell.user_ns
        if parts[0] not in namespace:
            return _MISSING
        obj = namespace[parts[0]]
        policy = None
        for part in parts[1:]:
            if isinstance(obj, BaseNetref):
                obj = self._remote_attr(obj, part, deadline)
            else:
                # our own session object is safe to walk (``ns`` is a property, which
                # IPython's policy refuses unless the type is in its allow-list)
                allowed = isinstance(obj, RemoteSession)
                if not allowed:
                    if policy is None:
                        policy = self._ipython_policy()
                    allowed = policy is not None and policy.can_get_attr(obj, part)
                if not allowed:
                    return _MISSING
                try:
                    obj = getattr(obj, part)
                except Exception:
                    return _MISSING
            if obj is _MISSING:
                return _MISSING
        return obj

    def _ttl(self) -> float:
        return self.settings.completion_ttl if self.settings.completion == "cached" else 0.0

    def _remote_attr(self, obj: BaseNetref, name: str, deadline: float) -> Any:
        conn, id_pack = _identity(obj)
        key = ("attr", id(conn), id_pack, name)
        value = self.cache.get(key)
        if value is not _MISSING:
            return value
        self.requests += 1
        try:
            result = conn.async_request(consts.HANDLE_GETATTR, obj, name)
            result.wait(_left(deadline))
            value = result.value
        except Exception:
            value = _MISSING
        self.cache.put(key, value, self._ttl())
        return value

    def _dir(self, obj: BaseNetref, deadline: float) -> list[str]:
        conn, id_pack = _identity(obj)
        key = ("dir", id(conn), id_pack)
        names = self.cache.get(key)
        if names is not _MISSING:
            return names
        self.requests += 1
        try:
            result = conn.async_request(consts.HANDLE_DIR, obj)
            result.wait(_left(deadline))
            raw = result.value
        except Exception:
            raw = ()
        limit = self.policy.max_dir_names
        names = []
        for name in raw if type(raw) is tuple else ():
            if type(name) is str and name.isidentifier():
                names.append(name)
                if len(names) >= limit:
                    break
        names.sort()
        self.cache.put(key, names, self._ttl())
        return names

    # -- magic arguments -------------------------------------------------------------------------

    def _complete_session_names(self, shell: Any, event: Any) -> list[str]:
        return self.registry.names()


MISSING = _MISSING  #: what :meth:`RemoteCompleter.resolve` returns for a name it cannot walk


def _is_remote(value: Any) -> bool:
    return isinstance(value, (BaseNetref, RemoteSession)) or type(value) is RemoteMethod


def _left(deadline: float) -> float:
    """Seconds until ``deadline`` (a wait of 0 still collects a reply already there)."""
    return max(0.0, deadline - time.monotonic())


def _matcher_id(matcher: Any) -> str:
    """A matcher's identifier, as IPython names it (``disable_matchers`` holds these)."""
    return str(getattr(matcher, "matcher_identifier", matcher.__qualname__))


def _identity(obj: BaseNetref) -> tuple[Any, Any]:
    get = object.__getattribute__
    return get(obj, "____conn__"), get(obj, "____id_pack__")


def _empty(suppress: bool = False) -> dict[str, Any]:
    return {"completions": [], "suppress": suppress}


def _result(names: list[str], kinds: list[str], fragment: str) -> dict[str, Any]:
    from IPython.core.completer import SimpleCompletion

    typed = kinds if len(kinds) == len(names) else [None] * len(names)
    return {"completions": [SimpleCompletion(n, type=t) for n, t in zip(names, typed,
                                                                         strict=True)],
            "suppress": True, "matched_fragment": fragment}
