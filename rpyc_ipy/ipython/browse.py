"""``%rpyc_browse``: a lazily expanding view of a remote object.

A :class:`Browser` fetches nodes; one expansion is one request (the engine's
``describe`` returns a node with its children summarised, by value, bounded).
It is shown as an ipywidgets tree when ipywidgets is installed (``pip install
rpyc_ipy[widgets]``): the root is fetched at once (its type, short repr and
children), then each click expands one node with one request. Otherwise a
:class:`TreeView` prefetches a few levels, one batched request per level, and
shows static ``<details>`` elements in a notebook, indented text in a terminal.
Every node shows its type and short repr; the namespace reads "namespace of gpu
(12 names)". A browser keeps the nodes it fetched: nothing is asked twice::

    browser = Browser(session)                      # the remote namespace
    browser = Browser(session, root=sess.ns.df)     # a netref: its paths start at "this"
    display(TreeView(browser, "", depth=2))

Sessions without our engine (plain services) are browsed through netrefs, at
most three requests per expansion (repr, dir, and the attribute).
"""

from __future__ import annotations

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
    #: with ``error``: the path's name is not in the remote namespace
    undefined: bool = False


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
    node.undefined = node.error is not None and raw.get("undefined") is True
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
    the requests made; fetched nodes are kept, so each path costs one at most.
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
        self._nodes: dict[str, Node] = {}

    @property
    def root_path(self) -> str:
        return "this" if self.root is not None else ""

    def fetch(self, paths: list[str]) -> list[Node]:
        """The nodes at ``paths``, with their children: one request for those not yet
        fetched (none if all were)."""
        wanted = [path for path in dict.fromkeys(paths) if path not in self._nodes]
        if wanted and self.session.has_engine:
            self.requests += 1
            raw = self.session.describe(tuple(wanted), root=self.root, max_items=self.max_items,
                                        private=self.private, timeout=self.timeout)
            for path, item in zip(wanted, raw, strict=False):
                self._nodes[path] = _node(item)
        elif wanted:
            self._nodes.update((path, self._generic_node(path)) for path in wanted)
        # a server that answered fewer nodes than asked: the rest say so
        return [self._nodes.get(path) or Node(path=path, error="the server sent no answer")
                for path in paths]

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


@dataclass
class Row:
    """One line of a shown tree: a fetched node (``children`` a list) or a leaf (``None``)."""

    label: str
    type: str = ""
    repr: str = ""
    error: str | None = None
    more: int = 0
    children: list[Row] | None = None


def root_row(browser: Browser, node: Node, title: str | None) -> Row:
    """The root's line: "namespace of gpu (12 names)", or ``title`` (type) = repr."""
    if node.path == "" and not node.error:
        count = f" ({node.length:,} names)" if node.length is not None else ""
        return Row(f"namespace of {browser.session.name}{count}", error=node.error,
                   more=node.more, children=[])
    label = title or node.path or f"namespace of {browser.session.name}"
    return Row(label, node.type, node.repr, node.error, node.more, [])


class TreeView:
    """A tree fetched once (``depth`` levels, one request per level) and walked once
    into :class:`Row` s, shown as HTML in a notebook and as indented text in a
    terminal: what ``%rpyc_browse`` displays. ``title`` names the root (default: its path)."""

    def __init__(self, browser: Browser, path: str | None = None, depth: int = 2,
                 title: str | None = None) -> None:
        self.start = browser.root_path if path is None else path
        levels: dict[str, Node] = {}
        frontier = [self.start]
        for _ in range(max(1, depth)):
            for p in frontier:
                browser.attribute(p)
            nodes = browser.fetch(frontier)
            levels.update({p: n for p, n in zip(frontier, nodes, strict=False)})
            frontier = [c.path for n in nodes for c in n.children
                        if c.expandable and c.path and c.path not in levels]
            frontier = frontier[:200]  # bounded: one request, a few hundred nodes at most
            if not frontier:
                break
        self.root = self._rows(levels, root_row(browser, levels[self.start], title))

    def _rows(self, levels: dict[str, Node], root: Row) -> Row:
        """The fetched levels as rows, in display order. A server may answer with cycles:
        each path is shown once (bounded by the nodes fetched)."""
        shown = {self.start}
        pending = [(root, levels[self.start])]
        while pending:
            row, node = pending.pop()
            if node.error:
                continue
            assert row.children is not None
            for child in node.children:
                if child.path in levels and child.path not in shown:
                    shown.add(child.path)
                    sub = levels[child.path]
                    inner = Row(child.label, sub.type, sub.repr, sub.error, sub.more, [])
                    pending.append((inner, sub))
                    row.children.append(inner)
                else:
                    row.children.append(Row(child.label, child.type, child.repr))
        return root

    def _repr_html_(self) -> str:
        def render(row: Row, top: bool = False) -> str:
            if row.error:
                return f"<div>{escape(row.label)}: <i>{escape(row.error)}</i></div>"
            head = _summary(row.label, row.type, row.repr)
            if row.children is None:
                return f'<div style="margin-left:1.2em">{head}</div>'
            items = [render(child) for child in row.children]
            if row.more:
                items.append(f"<div style=\"margin-left:1.2em;opacity:.6\">… {row.more} "
                             "more</div>")
            opened = " open" if top else ""
            return (f"<details{opened}><summary>{head}"
                    f"</summary><div style=\"margin-left:1.2em\">{''.join(items)}</div>"
                    "</details>")

        return f'<div class="rpyc-ipy-browse">{render(self.root, top=True)}</div>'

    def __repr__(self) -> str:
        lines: list[str] = []

        def render(row: Row, depth: int) -> None:
            indent = "  " * depth
            if row.error:
                lines.append(f"{indent}{row.label}: {row.error}")
                return
            more = f"  (… {row.more} more)" if row.more else ""
            lines.append(_text_line(indent, row.label, row.type, row.repr) + more)
            for child in row.children or ():
                render(child, depth + 1)

        render(self.root, 0)
        return "\n".join(lines)


def _text_line(indent: str, label: str, type_: str, text: str) -> str:
    kind = f" ({type_})" if type_ else ""
    value = f" = {text}" if text else ""
    line = f"{indent}{label}{kind}{value}"
    return line if len(line) <= 120 else line[:119] + "…"


# -- ipywidgets -------------------------------------------------------------------------------


def widget(browser: Browser, path: str | None = None, title: str | None = None) -> Any:
    """A lazily expanding ipywidgets tree (needs ipywidgets): the root is fetched now (one
    request: its type, repr and children), each further node on its first click."""
    import ipywidgets as widgets

    def make(node_path: str, row: Row) -> Any:
        button = widgets.Button(description=f"▸ {row.label}"[:60],
                                tooltip=f"{row.type} = {row.repr}"[:500],
                                layout=widgets.Layout(width="auto"))
        info = widgets.HTML(_summary("", row.type, row.repr))
        children = widgets.VBox(layout=widgets.Layout(margin="0 0 0 1.5em"))
        state = {"open": False, "loaded": False}

        def toggle(_: Any) -> None:
            state["open"] = not state["open"]
            button.description = ("▾ " if state["open"] else "▸ ") + row.label[:58]
            if state["open"] and not state["loaded"]:
                browser.attribute(node_path)
                node = browser.fetch([node_path])[0]
                state["loaded"] = True
                rows: list[Any] = []
                if node.error:
                    rows.append(widgets.HTML(f"<i>{escape(node.error)}</i>"))
                for child in node.children:
                    leaf = Row(child.label, child.type, child.repr)
                    if child.expandable and child.path:
                        rows.append(make(child.path, leaf))
                    else:
                        rows.append(widgets.HTML(_summary(child.label, child.type, child.repr)))
                if node.more:
                    rows.append(widgets.HTML(f"<i>… {node.more} more</i>"))
                children.children = tuple(rows)
            children.layout.display = "" if state["open"] else "none"

        button.on_click(toggle)
        return widgets.VBox([widgets.HBox([button, info]), children])

    start = browser.root_path if path is None else path
    browser.attribute(start)
    return make(start, root_row(browser, browser.fetch([start])[0], title))
