"""Display data by value: an object's MIME bundle as brine-able tuples.

::

    data, metadata = mimebundle(obj, include=("text/plain", "image/png"))
    # data: (("text/plain", "..."), ("image/png", b"...")), metadata: packed dict

The object's own hooks are asked in IPython's order (``_repr_mimebundle_``,
then the per-type ``_repr_*_`` methods); matplotlib figures become PNG;
``text/plain`` comes from IPython's pretty printer when IPython is installed,
else ``repr``. Values are ``str`` or ``bytes`` (JSON is sent as text). A value
over ``max_bytes`` is dropped and noted in the metadata, never cut (cut HTML
is broken HTML). This runs on the side that owns the object; what to render
is the receiver's decision.

Pure standard library (IPython and matplotlib are used if importable): also
shipped by source to classic peers.
"""

from __future__ import annotations

import json
import reprlib
from typing import Any

from .values import NotByValue, TooLarge, pack

__all__ = ["MIME_METHODS", "mimebundle", "plain_text", "short_repr"]

#: IPython's per-MIME hooks, in its formatter order
MIME_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("application/pdf", "_repr_pdf_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)
DEFAULT_MAX_BYTES = 8 << 20
DEFAULT_MAX_TEXT = 100_000

_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxdict = 8
_short.maxlevel = 2


def short_repr(obj: Any, limit: int = 120) -> str:
    """A one-line, bounded repr for listings (never raises)."""
    try:
        text = _short.repr(obj)
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain_text(obj: Any, max_chars: int = DEFAULT_MAX_TEXT) -> str:
    """``text/plain`` as IPython would print it, cut at ``max_chars``."""
    try:
        from IPython.lib.pretty import pretty

        text = pretty(obj, max_seq_length=1000)
    except ImportError:
        text = repr(obj)
    except Exception:
        try:
            text = repr(obj)
        except Exception as exc:
            text = f"<repr failed: {type(exc).__name__}: {exc}>"
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… ({len(text) - max_chars:,} more characters)"
    return text


def _figure_png(obj: Any) -> bytes | None:
    cls = type(obj)
    if not cls.__module__.startswith("matplotlib.") or cls.__name__ != "Figure":
        return None
    import io

    buffer = io.BytesIO()
    obj.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _as_wire(mime: str, value: Any) -> str | bytes | None:
    if type(value) is str or type(value) is bytes:
        return value
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return json.dumps(value, default=str)
        except Exception:
            return None
    if isinstance(value, (str, bytes)):
        return value if type(value) is bytes else str(value)
    return None


def mimebundle(obj: Any, include: tuple[str, ...] | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, max_text: int = DEFAULT_MAX_TEXT
               ) -> tuple[tuple[tuple[str, Any], ...], Any]:
    """``(data_pairs, packed_metadata)`` for ``obj``; see the module docstring."""
    wanted = None if include is None else frozenset(include)
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    dropped: list[str] = []

    def keep(mime: str, value: Any, md: Any = None) -> None:
        if mime in data or (wanted is not None and mime not in wanted):
            return
        wire = _as_wire(mime, value)
        if wire is None:
            return
        if len(wire) > max_bytes:
            dropped.append(f"{mime} ({len(wire):,} bytes)")
            return
        data[mime] = wire
        if isinstance(md, dict) and md:
            metadata[mime] = md

    method = _hook(obj, "_repr_mimebundle_")
    if method is not None:
        try:
            result = method(include=include, exclude=None)
        except Exception:
            result = None
        bundle_md: Any = {}
        if isinstance(result, tuple) and len(result) == 2:
            result, bundle_md = result
        if isinstance(result, dict):
            for mime, value in result.items():
                if isinstance(mime, str):
                    keep(mime, value, bundle_md.get(mime) if isinstance(bundle_md, dict) else None)
    for mime, name in MIME_METHODS:
        if mime in data or (wanted is not None and mime not in wanted):
            continue
        method = _hook(obj, name)
        if method is None:
            continue
        try:
            value = method()
        except Exception:
            continue
        md = None
        if isinstance(value, tuple) and len(value) == 2:
            value, md = value
        if value is not None:
            keep(mime, value, md)
    if "image/png" not in data and (wanted is None or "image/png" in wanted):
        try:
            png = _figure_png(obj)
        except Exception:
            png = None
        if png is not None:
            keep("image/png", png)
    if "text/plain" not in data:
        data["text/plain"] = plain_text(obj, max_text)
    elif len(data["text/plain"]) > max_text:
        data["text/plain"] = data["text/plain"][:max_text] + "…"
    if dropped:
        metadata["rpyc_ipy"] = {"dropped": dropped, "max_bytes": max_bytes}
    try:
        packed_md = pack(metadata, max_bytes=1 << 20)
    except (NotByValue, TooLarge):
        packed_md = pack({})
    return tuple(data.items()), packed_md


def _hook(obj: Any, name: str) -> Any:
    """A display hook found on the type (as IPython does), bound to ``obj``; else None."""
    try:
        attr = getattr(type(obj), name, None)
    except Exception:
        return None
    if attr is None or isinstance(obj, type):
        return None
    try:
        method = getattr(obj, name)
    except Exception:
        return None
    return method if callable(method) else None
