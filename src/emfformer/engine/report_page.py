"""The HTML skeleton of ``emfformer report``: style sheet, load check, and small element builders.

One file, no external resource: images are ``data:`` URIs. The style follows the reader's light or
dark scheme (``prefers-color-scheme``), keeps every image and table inside the content width (wide
tables scroll in their own box), so the page never scrolls sideways.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..guard import HTML_MARKER

__all__ = ["page", "figure_png", "img", "file_img", "legend", "key_values"]

_STYLE = """
:root{color-scheme:light dark;--fg:#1d1d1f;--bg:#ffffff;--muted:#5f6368;--line:#d0d4d9;--head:#f1f3f5;
--card:#f8f9fa;--accent:#1f6feb}
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--bg:#151617;--muted:#a0a4a8;--line:#3a3d41;
--head:#222427;--card:#1c1e20;--accent:#6ea8fe}}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;padding:1.5em 2em 3em;max-width:1400px;overflow-wrap:anywhere}
h1{font-size:1.7em;margin:.2em 0}h2{margin-top:2em;border-bottom:1px solid var(--line);padding-bottom:.2em}
h3{margin-top:1.5em}h4{font-size:1.05em;margin:1.2em 0 .3em}h5{font-size:1em;margin:1em 0 .3em}
.note,.muted{color:var(--muted)}
code{font-size:.92em;background:var(--head);padding:0 .25em;border-radius:3px}
.table-wrap{max-width:100%;overflow-x:auto;margin:.8em 0}
table{border-collapse:collapse;font-size:.92em;overflow-wrap:normal}
td,th{border:1px solid var(--line);padding:4px 8px;text-align:right;vertical-align:top}
th{background:var(--head)}td:first-child,th:first-child{text-align:left}
img{display:block;width:100%;max-width:100%;height:auto;margin:.5em 0;border-radius:4px}
img.card{background:#fff;border:1px solid var(--line)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,520px),1fr));gap:1em}
.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:.2em 1.5em;
background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.7em 1em;margin:.8em 0}
.meta div{display:flex;gap:.6em}.meta dt{color:var(--muted);min-width:8.5em}.meta dd{margin:0}
.legend{display:flex;flex-wrap:wrap;gap:.4em 1.4em;align-items:center;margin:.5em 0}
.legend span{display:inline-flex;align-items:center;gap:.4em}
.swatch{display:inline-block;width:1.1em;height:1.1em;border-radius:3px;border:1px solid var(--line)}
.swatch.outline{background:transparent!important;border:2px solid var(--fg)}
"""
# after load, writes on <body>: images decoded / total, the page's scroll width and height, the window's width,
# so a headless browser's --dump-dom shows whether the page renders (tests/engine/test_html_report.py)
_LOADED_JS = """window.addEventListener('load',()=>{const i=[...document.images],b=document.body.dataset;
b.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;
const d=document.documentElement;b.scrollWidth=d.scrollWidth;b.scrollHeight=d.scrollHeight;
b.innerWidth=window.innerWidth;
b.legends=document.querySelectorAll('.legend').length;});"""


def page(title: str, body: str) -> str:
    """The whole HTML document around ``body``, with the never-destroy marker (guard.py)."""
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{HTML_MARKER}"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_LOADED_JS}</script>"
        f"</head><body>{body}</body></html>"
    )


def figure_png(fig: Figure, dpi: int = 110) -> str:
    """Base64 PNG of ``fig`` on its own face colour (transparent where the figure is)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img(b64: str, alt: str, css: str = "") -> str:
    """An ``<img>`` of a base64 PNG; ``css``: its class (``card``: a white card for white plots)."""
    cls = f' class="{css}"' if css else ""
    return f'<img{cls} alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def file_img(path: Path, alt: str) -> str:
    """``path`` as an inline image on a white card ('' when the file does not exist)."""
    if not path.is_file():
        return ""
    return img(base64.b64encode(path.read_bytes()).decode("ascii"), alt, "card")


def legend(entries: Sequence[tuple[str, str]], outline: str | None = None) -> str:
    """A ``div.legend`` of colour swatches; ``outline``: the label of a trailing outline swatch."""
    spans = [
        f'<span><i class="swatch" style="background:{c}"></i>{html.escape(name)}</span>'
        for name, c in entries
    ]
    if outline:
        spans.append(f'<span><i class="swatch outline"></i>{html.escape(outline)}</span>')
    return f'<div class="legend">{"".join(spans)}</div>'


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    """A ``dl.meta`` grid of (key, value) pairs; '' when there are none."""
    if not pairs:
        return ""
    items = "".join(f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd></div>" for k, v in pairs)
    return f'<dl class="meta">{items}</dl>'
