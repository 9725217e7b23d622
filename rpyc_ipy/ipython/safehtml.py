"""Remote HTML and SVG made inert, so an untrusted server's tables and charts can render.

HTML goes through nh3 (the Rust ``ammonia`` sanitizer) with an allow-list made for
tables and simple formatting: no scripts, styles, event handlers, links, forms,
frames or anything that loads from elsewhere. The only URLs kept are ``data:``
images in ``<img src>`` (a browser runs no script from an image). SVG is never
inlined: it becomes an ``<img>`` of a ``data:image/svg+xml`` URI for that reason.
"""

from __future__ import annotations

import base64

import nh3

__all__ = ["SANITIZED_MIMETYPES", "sanitize_html", "svg_image"]

#: the MIME types shown after sanitizing when the server is not trusted
SANITIZED_MIMETYPES = ("text/html", "image/svg+xml")

_TAGS = {
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col",
    "div", "span", "p", "br", "hr", "b", "i", "u", "s", "strong", "em", "small", "sub",
    "sup", "code", "pre", "kbd", "samp", "var", "blockquote", "ul", "ol", "li", "dl", "dt",
    "dd", "h1", "h2", "h3", "h4", "h5", "h6", "img",
}
# removed with their content (the rest of a disallowed tag's text is kept, escaped)
_DROP_WITH_CONTENT = {"script", "style", "template", "iframe", "object", "embed", "noscript",
                      "svg", "math", "textarea", "select", "title"}
# ``class`` stays for pandas' ``dataframe``; ``style`` never (url(), expression())
_ATTRIBUTES = {
    "*": {"class", "title", "lang", "dir"},
    "table": {"border"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "td": {"colspan", "rowspan", "align"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start"},
    "img": {"src", "alt", "width", "height"},
}
_IMAGE_URIS = tuple(f"data:image/{kind};base64," for kind in ("png", "jpeg", "gif", "svg+xml"))


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Only ``data:`` raster or SVG images as ``img src``: nothing loads from elsewhere."""
    if attribute == "src" and not value.strip().lower().startswith(_IMAGE_URIS):
        return None
    return value


def sanitize_html(markup: str) -> str:
    """``markup`` with everything that could run or load removed (see the module)."""
    return nh3.clean(markup, tags=_TAGS, clean_content_tags=_DROP_WITH_CONTENT,
                     attributes=_ATTRIBUTES, attribute_filter=_keep_attribute,
                     url_schemes={"data"}, url_relative="deny", strip_comments=True,
                     link_rel=None)


def svg_image(svg: str) -> str:
    """HTML showing ``svg`` as an image: browsers never run scripts in an ``<img>``."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" alt="SVG image from the server">'
