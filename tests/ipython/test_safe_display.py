"""Rich output from an untrusted server renders, made inert: HTML sanitized (nh3), SVG as
an image; JavaScript and Markdown still only with trust_remote_display."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from ipy_rig import connect, html_of, run
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.display import filter_bundle
from rpyc_ipy.ipython.safehtml import sanitize_html, svg_image
from rpyc_ipy.ipython.session import RemoteSession
from rpyc_ipy.ipython.settings import RPyCPolicy

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src="x" onerror="alert(1)">',
    '<img src="https://evil.example/track.png">',
    '<img src="//evil.example/track.png">',
    '<img src="/files/secret.png">',
    '<img src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="data:text/html,<script>alert(1)</script>">click</a>',
    '<a href="https://evil.example/">click</a>',
    '<iframe src="https://evil.example/"></iframe>',
    '<form action="https://evil.example/"><input name="q"><button>go</button></form>',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<style>@import url(https://evil.example/x.css); body{background:url(x)}</style>',
    '<div style="background:url(https://evil.example/x);width:expression(alert(1))">d</div>',
    '<svg onload="alert(1)"><script>alert(1)</script></svg>',
    '<object data="https://evil.example/x.swf"></object><embed src="x.swf">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<base href="https://evil.example/">',
    '<table><tr><td onmouseover="alert(1)">cell</td></tr></table>',
    '<div><p>unclosed <b>bold <scr<script>ipt>alert(1)</script>',
    '<img src=x onerror=alert(1)//',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<video poster="https://evil.example/p.png"><source src="https://evil.example/v.mp4">',
    '<p class="x" id="jp-main" name="x">ok</p><!-- <script>alert(1)</script> -->',
]

# anything that can run or load, after sanitizing (case-insensitive)
DANGER = re.compile(r"<script|<iframe|<form|<input|<button|<link|<style|<svg|<object|<embed"
                    r"|<meta|<base|<video|<source|<math|\bon[a-z]+\s*=|javascript:|style\s*="
                    r"|href\s*=|https?:|//evil|src=\"(?!data:image/)|url\(|expression\(",
                    re.IGNORECASE)

DATAFRAME = (
    '<div>\n<style scoped>\n    .dataframe tbody tr th:only-of-type {\n'
    '        vertical-align: middle;\n    }\n</style>\n'
    '<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n'
    '      <th></th>\n      <th>a</th>\n    </tr>\n  </thead>\n  <tbody>\n'
    '    <tr>\n      <th>0</th>\n      <td>1</td>\n    </tr>\n  </tbody>\n</table>\n</div>')


@pytest.mark.parametrize("markup", HOSTILE)
def test_hostile_html_comes_out_inert(markup: str) -> None:
    clean = sanitize_html(markup)
    assert not DANGER.search(clean), clean
    assert not DANGER.search(sanitize_html(clean))  # and stays so when cleaned again


def test_a_pandas_table_keeps_its_structure_and_class() -> None:
    clean = sanitize_html(DATAFRAME)
    assert '<table border="1" class="dataframe">' in clean
    for tag in ("<thead>", "<tbody>", "<tr>", "<th>a</th>", "<td>1</td>"):
        assert tag in clean
    assert "vertical-align" not in clean and "style" not in clean


def test_images_as_data_uris_are_kept() -> None:
    png = '<img src="data:image/png;base64,iVBORw0KGgo=" alt="plot" width="10">'
    assert sanitize_html(png) == png
    svg = '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>x</script></svg>'
    shown = svg_image(svg)
    found = re.fullmatch(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" alt="[^"]*">',
                         shown)
    assert found and base64.b64decode(found.group(1)).decode() == svg  # inert as an image
    assert sanitize_html(shown) == shown


def test_policy_decides_what_is_sanitized_and_what_needs_trust() -> None:
    policy = RPyCPolicy()
    data = {"text/plain": "p", "text/html": "<b onclick=x>b</b><script>y</script>",
            "image/svg+xml": "<svg/>", "application/javascript": "alert(1)",
            "text/markdown": "<img src=x onerror=alert(1)>",
            "application/vnd.jupyter.widget-view+json": '{"model_id": "x"}'}

    def shown(policy: RPyCPolicy) -> dict[str, Any]:
        return filter_bundle(data, {}, policy.mimetypes(), policy.max_bundle_bytes,
                             policy.sanitized_mimetypes())[0]

    assert shown(policy) == {"text/plain": "p", "text/html": "<b>b</b>"}  # the default
    del data["text/html"]
    assert shown(policy)["text/html"].startswith('<img src="data:image/svg+xml;base64,')
    policy.sanitize_remote_html = False
    assert shown(policy) == {"text/plain": "p"}
    policy.trust_remote_display = True  # as sent; javascript and widgets are never allowed
    assert shown(policy) == {"text/plain": "p", "image/svg+xml": "<svg/>",
                             "text/markdown": "<img src=x onerror=alert(1)>"}


REMOTE_CODE = '''
class Chart:
    def _repr_svg_(self):
        return '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>'
    def __repr__(self):
        return "Chart()"

class Frame:
    def _repr_html_(self):
        return {frame!r} + '<img src="x" onerror="alert(1)"><script>alert(2)</script>'
    def _repr_javascript_(self):
        return "alert(3)"
    def __repr__(self):
        return "Frame()"
'''


@pytest.fixture
def rich(ip: InteractiveShell, exec_server: ServerProcess) -> RemoteSession:
    session = connect(ip, "rich", exec_server)
    session.execute(REMOTE_CODE.format(frame=DATAFRAME))
    return session


def test_a_remote_table_renders_sanitized_without_trust(ip: InteractiveShell,
                                                        rich: RemoteSession) -> None:
    result, captured = run(ip, "%%remote\nFrame()")
    assert result.error_in_exec is None
    data = result.result.data
    assert set(data) == {"text/plain", "text/html"}  # no javascript
    assert '<table border="1" class="dataframe">' in data["text/html"]
    assert not DANGER.search(data["text/html"])
    _, captured = run(ip, "%%remote\ndisplay(Frame())")
    html = html_of(captured)
    assert "<td>1</td>" in html and not DANGER.search(html)


def test_a_remote_svg_displays_as_an_image(ip: InteractiveShell, rich: RemoteSession) -> None:
    for cell in ("%%remote\nChart()", "%%remote\ndisplay(Chart())"):
        result, captured = run(ip, cell)
        assert result.error_in_exec is None
        html = result.result.data["text/html"] if result.result else html_of(captured)
        found = re.fullmatch(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" '
                             r'alt="[^"]*">', html)
        assert found and "<rect/>" in base64.b64decode(found.group(1)).decode()


def test_plain_text_only_when_sanitizing_is_off(ip: InteractiveShell,
                                                rich: RemoteSession) -> None:
    ip.run_line_magic("config", "RPyCPolicy.sanitize_remote_html = False")  # reset by ip
    result, captured = run(ip, "%%remote\ndisplay(Chart(), Frame())")
    assert result.error_in_exec is None and html_of(captured) == ""
    assert [o.data for o in captured.outputs] == [{"text/plain": "Chart()"},
                                                  {"text/plain": "Frame()"}]
