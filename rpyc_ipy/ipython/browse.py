"""``%rpyc_browse``: a lazily expanding view of a remote object.

A :class:`Browser` fetches nodes; one expansion is one request (the engine's
``describe`` returns a node with its children summarised, by value, bounded).
It is shown as an ipywidgets tree when ipywidgets is installed (``pip install
rpyc_ipy[widgets]``): each click expands one node with one request. Otherwise
a :class:`TreeView` prefetches a few levels, one batched request per level, and
shows static ``<details>`` elements in a notebook, indented text in a terminal::

    browser = Browser(session)                      # the remote namespace
    browser = Browser(session, root=sess.ns.df)     # a netref: its paths start at "this"
    display(TreeView(browser, "", depth=2))

Sessions without our engine (plain services) are browsed through netrefs, at
most three requests per expansion (repr, dir, and the attribute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.netref import BaseNetref
from rpyc_ipy.ipython.text import escape, netref_text, remote_type_name, sanitize_text
from rpyc_ipy.protocol import consts

if TYPE_CHECKING:
    from rpyc_ipy.ipython.session import RemoteSession

__all__ = ["Browser", "Node", "TreeView", "render_html", "widget"]


@dataclass
class Child:
    label: str
    path: str  # "" when it cannot be expanded by path
    type: str
    repr: str
    expandable: bool


@dataclass
class Node:
    path: str
    type: str = ""
    repr: str = ""
    kind: str = ""
    length: int | None = None
    doc: str = ""
    children: list[Child] = field(default_factory=list)
    more: int = 0
    error: str | None = None


def _node(raw: dict[str, Any]) -> Node:
    def text(key: str) -> str:
        value = raw.get(key)
        return sanitize_text(value) if type(value) is str else ""

    node = Node(path=text("path"), type=text("type"), repr=text("repr"), kind=text("kind"),
                doc=text("doc"))
    length, more = raw.get("len"), raw.get("more")
    node.length = length if type(length) is int else None
    node.more = more if type(more) is int else 0
    error = raw.get("error")
    node.error = sanitize_text(error) if type(error) is str else None
    children = raw.get("children")
    for item in children if type(children) is tuple else ():
        if type(item) is tuple and len(item) == 5 and all(type(x) is str for x in item[:4]):
            node.children.append(Child(sanitize_text(item[0]), item[1], sanitize_text(item[2]),
                                       sanitize_text(item[3]), item[4] is True))
    return node


class Browser:
    """Fetches :class:`Node` s of one remote tree; see the module docstring.

    ``root`` is a netref to browse (paths then start at ``"this"``); without it
    the session's namespace is the root (path ``""``). :attr:`requests` counts
    the requests made.
    """

    def __init__(self, session: RemoteSession, root: Any = None, *, max_items: int = 100,
                 private: bool = False, timeout: float = 30.0) -> None:
        self.session = session
        self.root = root
        self.max_items = max_items
        self.private = private
        self.timeout = timeout
        self.requests = 0
        self._generic: dict[str, Any] = {}

    @property
    def root_path(self) -> str:
        return "this" if self.root is not None else ""

    def fetch(self, paths: list[str]) -> list[Node]:
        """The nodes at ``paths``, with their children: one request for all of them."""
        if not paths:
            return []
        if self.session.has_engine:
            self.requests += 1
            raw = self.session.describe(tuple(paths), root=self.root, max_items=self.max_items,
                                        private=self.private, timeout=self.timeout)
            return [_node(item) for item in raw]
        return [self._generic_node(path) for path in paths]

    # -- sessions without the engine: through netrefs, bounded --------------------------------

    def _request(self, handler: int, *args: Any) -> Any:
        self.requests += 1
        conn = self.session.conn
        result = conn.async_request(handler, *args)
        result.wait(self.timeout)
        return result.value

    def _generic_node(self, path: str) -> Node:
        if path == "":
            return Node(path="", error="this session has no namespace to browse (no engine): "
                        "browse a netref instead")
        obj = self._generic.get(path, self.root if path == "this" else None)
        if not isinstance(obj, BaseNetref):
            return Node(path=path, error="not a remote object")
        self.requests += 1  # the repr
        node = Node(path=path, type=remote_type_name(obj),
                    repr=netref_text(obj, 200, self.timeout))
        try:
            names = self._request(consts.HANDLE_DIR, obj)
        except Exception as exc:
            node.error = sanitize_text(f"dir failed: {type(exc).__name__}")
            return node
        names = sorted(n for n in names if type(n) is str and (self.private or
                                                               not n.startswith("_")))
        node.more = max(0, len(names) - self.max_items)
        for name in names[: self.max_items]:
            node.children.append(Child(name, f"{path}.{name}", "", "", True))
        return node

    def attribute(self, path: str) -> None:
        """Fetch a child netref before :meth:`fetch` can describe it (plain services)."""
        if self.session.has_engine or path in self._generic:
            return
        parent, _, name = path.rpartition(".")
        owner = self._generic.get(parent, self.root if parent == "this" else None)
        if isinstance(owner, BaseNetref):
            try:
                self._generic[path] = self._request(consts.HANDLE_GETATTR, owner, name)
            except Exception:
                self._generic[path] = None


# -- static HTML ------------------------------------------------------------------------------


def _summary(label: str, type_: str, text: str) -> str:
    type_part = f' <span style="opacity:.6">{escape(type_)}</span>' if type_ else ""
    value = f" = <code>{escape(text)}</code>" if text else ""
    return f"<b>{escape(label)}</b>{type_part}{value}"


def render_html(browser: Browser, path: str | None = None, depth: int = 2) -> str:
    """A static tree of ``path`` (the root by default), ``depth`` levels prefetched,
    one request per level."""
    return TreeView(browser, path, depth)._repr_html_()


class TreeView:
    """A tree fetched once (``depth`` levels, one request per level), shown as HTML in a
    notebook and as indented text in a terminal: what ``%rpyc_browse`` displays."""

    def __init__(self, browser: Browser, path: str | None = None, depth: int = 2) -> None:
        self.title = (browser.root_path if path is None else path) or \
            f"namespace of {browser.session.name}"
        self.start = browser.root_path if path is None else path
        self.levels: dict[str, Node] = {}
        frontier = [self.start]
        for _ in range(max(1, depth)):
            for p in frontier:
                browser.attribute(p)
            nodes = browser.fetch(frontier)
            self.levels.update({p: n for p, n in zip(frontier, nodes, strict=False)})
            frontier = [c.path for n in nodes for c in n.children if c.expandable and c.path]
            frontier = frontier[:200]  # bounded: one request, a few hundred nodes at most
            if not frontier:
                break

    def _walk(self, visit: Callable[[int, str, Node | None, Child | None], None]) -> None:
        """Calls ``visit(depth, label, node, child)`` in display order: ``node`` for a
        fetched level, else ``child`` for a leaf. A server may answer with cycles: each
        path is shown once."""
        rendered: set[str] = set()

        def walk(node_path: str, label: str, depth: int) -> None:
            rendered.add(node_path)
            node = self.levels[node_path]
            visit(depth, label, node, None)
            if node.error:
                return
            for child in node.children:
                if child.path in self.levels and child.path not in rendered:
                    walk(child.path, child.label, depth + 1)
                else:
                    visit(depth + 1, child.label, None, child)

        walk(self.start, self.title, 0)

    def _repr_html_(self) -> str:
        rendered: set[str] = set()  # a server may answer with cycles: each path once

        def render(node_path: str, label: str) -> str:
            rendered.add(node_path)
            node = self.levels[node_path]
            if node.error:
                return f"<div>{escape(label)}: <i>{escape(node.error)}</i></div>"
            items = []
            for child in node.children:
                if child.path in self.levels and child.path not in rendered:
                    items.append(render(child.path, child.label))
                else:
                    items.append(f"<div style=\"margin-left:1.2em\">"
                                 f"{_summary(child.label, child.type, child.repr)}</div>")
            if node.more:
                items.append(f"<div style=\"margin-left:1.2em;opacity:.6\">… {node.more} "
                             "more</div>")
            head = _summary(label, node.type, node.repr)
            opened = " open" if node_path == self.start else ""
            return (f"<details{opened}><summary>{head}</summary>"
                    f"<div style=\"margin-left:1.2em\">{''.join(items)}</div></details>")

        return f'<div class="rpyc-ipy-browse">{render(self.start, self.title)}</div>'

    def __repr__(self) -> str:
        lines: list[str] = []

        def visit(depth: int, label: str, node: Node | None, child: Child | None) -> None:
            indent = "  " * depth
            if child is not None:
                lines.append(_text_line(indent, child.label, child.type, child.repr))
            elif node is not None and node.error:
                lines.append(f"{indent}{label}: {node.error}")
            elif node is not None:
                more = f"  (… {node.more} more)" if node.more else ""
                lines.append(_text_line(indent, label, node.type, node.repr) + more)
        self._walk(visit)
        return "\n".join(lines)


def _text_line(indent: str, label: str, type_: str, text: str) -> str:
    kind = f" ({type_})" if type_ else ""
    value = f" = {text}" if text else ""
    line = f"{indent}{label}{kind}{value}"
    return line if len(line) <= 120 else line[:119] + "…"


# -- ipywidgets -------------------------------------------------------------------------------


def widget(browser: Browser, path: str | None = None) -> Any:
    """A lazily expanding ipywidgets tree (needs ipywidgets): one request per click."""
    import ipywidgets as widgets

    def make(node_path: str, label: str, type_: str, text: str) -> Any:
        button = widgets.Button(description=f"▸ {label}"[:60], tooltip=f"{type_} = {text}"[:500],
                                layout=widgets.Layout(width="auto"))
        info = widgets.HTML(_summary("", type_, text))
        children = widgets.VBox(layout=widgets.Layout(margin="0 0 0 1.5em"))
        state = {"open": False, "loaded": False}

        def toggle(_: Any) -> None:
            state["open"] = not state["open"]
            button.description = ("▾ " if state["open"] else "▸ ") + label[:58]
            if state["open"] and not state["loaded"]:
                browser.attribute(node_path)
                node = browser.fetch([node_path])[0]
                state["loaded"] = True
                rows: list[Any] = []
                if node.error:
                    rows.append(widgets.HTML(f"<i>{escape(node.error)}</i>"))
                for child in node.children:
                    if child.expandable and child.path:
                        rows.append(make(child.path, child.label, child.type, child.repr))
                    else:
                        rows.append(widgets.HTML(_summary(child.label, child.type, child.repr)))
                if node.more:
                    rows.append(widgets.HTML(f"<i>… {node.more} more</i>"))
                children.children = tuple(rows)
            children.layout.display = "" if state["open"] else "none"

        button.on_click(toggle)
        return widgets.VBox([widgets.HBox([button, info]), children])

    start = browser.root_path if path is None else path
    return make(start, start or f"namespace of {browser.session.name}", "", "")
