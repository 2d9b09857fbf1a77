"""HTML pieces of the explain pages: the page around a body, highlighted code, tables, curves.

Every page stands alone and fetches nothing: the style (and Pygments' colours for the
code) is inside it, the curves are inline SVG. Text is escaped once, here.
"""
import html
import math

from .. import registry
from ..report.document import VERDICTS

try:  # Pygments is a dependency (pyproject.toml); without it the code is shown plain
    from pygments import highlight as _highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer, TOMLLexer
except ImportError:  # pragma: no cover - an install without it still writes readable pages
    _highlight = None

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 0.6em 0.8em 2em;
       color: #222; max-width: 2000px; }
nav.top { font-size: 13px; color: #666; margin-bottom: 0.4em; }
nav.top a { margin-right: 0.9em; }
h1 { margin: 0.2em 0 0.3em; } h2 { margin-top: 1.5em; border-bottom: 1px solid #ddd; }
h3 { margin: 0.9em 0 0.3em; font-size: 15px; }
p.eq, pre.math { font: 13px/1.5 ui-monospace, monospace; background: #f6f8fa;
                 padding: 6px 10px; border-left: 3px solid #7a9cc6; white-space: pre-wrap; }
.cols { display: grid; gap: 6px; grid-template-columns: repeat(var(--n), minmax(0, 1fr)); }
.col { border: 1px solid #e3e3e3; border-radius: 4px; padding: 2px 5px 6px; min-width: 0; }
.col > h3 { margin-top: 0.3em; }
.col p.what { font-size: 12.5px; color: #555; margin: 0.2em 0 0.5em; white-space: pre-wrap; }
figure.code { margin: 0.4em 0 0.8em; }
figure.code figcaption { font: 11.5px ui-monospace, monospace; color: #777; }
.hl pre, pre.plain { font: 11.5px/1.4 ui-monospace, monospace; margin: 0; padding: 6px;
                     overflow-x: auto; background: #fafafa; border: 1px solid #eee; }
.col .hl pre, .col pre.plain { white-space: pre-wrap; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 12.5px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.pass { color: #17803d; font-weight: 600; } td.fail { color: #c4161c; font-weight: 700; }
td.skip, td.shown { color: #777; }
td.num { font-family: ui-monospace, monospace; white-space: nowrap; }
code { background: #f3f3f3; padding: 0 3px; }
p.why { font-size: 15px; }
.note { color: #666; font-size: 12.5px; }
svg.curves text { font: 11px system-ui, sans-serif; fill: #444; }
"""


def page(title, body):
    """A whole page: the style, a link back to the index, the body."""
    style = STYLE + (HtmlFormatter(cssclass="hl").get_style_defs(".hl") if _highlight else "")
    nav = "<nav class='top'><a href='index.html'>crossgrad explain: index</a></nav>"
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{style}</style></head>\n"
            f"<body>{nav}\n{body}\n</body></html>\n")


def esc(text):
    return html.escape(str(text), quote=True)


def inline(text):
    """Escaped text with `backquoted` words set as code, as the mistakes' titles write them."""
    parts = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))


def code(text, language="python"):
    """Highlighted code (Pygments' classes, styled by the page), or plain if it is missing."""
    if _highlight is None:
        return f"<pre class='plain'>{esc(text)}</pre>"
    lexer = PythonLexer() if language == "python" else TOMLLexer()
    return _highlight(text, lexer, HtmlFormatter(cssclass="hl"))


def snippet(s):
    """One extracted piece of source with where it comes from."""
    return (f"<figure class='code'><figcaption>{esc(s.path)}:{s.line}</figcaption>"
            f"{code(s.text)}</figure>")


def columns(cols):
    """Side by side: [(heading, inner HTML)] in as many columns as there are items."""
    inner = "".join(f"<div class='col'><h3>{esc(h)}</h3>{body}</div>" for h, body in cols)
    return f"<div class='cols' style='--n: {len(cols)}'>{inner}</div>"


def table(header, rows, numeric=()):
    """Cells are plain text (escaped) or ("html", markup); verdict words get their colour."""
    def cell(j, c, tag):
        text = c[1] if isinstance(c, tuple) else esc(c)
        names = [VERDICTS.get(c if isinstance(c, str) else "", ""),
                 "num" if j in numeric and tag == "td" else ""]
        cls = " ".join(n for n in names if n)
        attr = f" class='{cls}'" if cls else ""
        return f"<{tag}{attr}>{text}</{tag}>"
    head = "".join(cell(j, c, "th") for j, c in enumerate(header))
    body = "".join("<tr>" + "".join(cell(j, c, "td") for j, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def link(text, href):
    return ("html", f"<a href='{esc(href)}'>{esc(text)}</a>")


# ---- curves -----------------------------------------------------------------------------------

def curves_svg(series, log=True, title="", floor=1e-17, width=560, height=210):
    """Lines of {framework: [value per step]} on a log (or linear) value axis, inline SVG."""
    pts = {fw: [(k, v) for k, v in enumerate(vals) if v is not None and math.isfinite(v)
                and (not log or v > 0)] for fw, vals in series.items()}
    values = [max(v, floor) if log else v for p in pts.values() for _, v in p]
    if not values:
        return ""
    steps = max(len(v) for v in series.values()) - 1 or 1
    lo, hi = min(values), max(values)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    hi = hi if hi > lo else lo + 1
    left, right, top, bottom = 54, width - 110, 18, height - 28

    def xy(k, v):
        y = math.log10(max(v, floor)) if log else v
        return (left + (right - left) * k / steps, bottom - (bottom - top) * (y - lo) / (hi - lo))
    lines = []
    for n, (fw, p) in enumerate(pts.items()):
        color = registry.FRAMEWORKS[fw].color if fw in registry.FRAMEWORKS else "#888"
        dash = "" if n == 0 else f" stroke-dasharray='{3 + 2 * n},{2 + n}'"
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(k, v) for k, v in p))
        lines.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.6'{dash} "
                     f"points='{path}'/>")
        lines.append(f"<text x='{right + 8}' y='{top + 14 * n + 8}' fill='{color}'>"
                     f"{esc(fw)}</text>")
    tick = (lambda t: f"{10 ** t:.3g}") if log else (lambda t: f"{t:.3g}")
    axes = (f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#999'/>"
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{bottom}' stroke='#999'/>"
            f"<text x='{left - 4}' y='{top + 4}' text-anchor='end'>{tick(hi)}</text>"
            f"<text x='{left - 4}' y='{bottom}' text-anchor='end'>{tick(lo)}</text>"
            f"<text x='{left}' y='{height - 10}'>step 0</text>"
            f"<text x='{right}' y='{height - 10}' text-anchor='end'>{steps}</text>"
            f"<text x='{left + 4}' y='{top - 5}'>{esc(title)}</text>")
    return (f"<svg class='curves' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"
            f"{axes}{''.join(lines)}</svg>")
