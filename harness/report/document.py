"""The report as a list of blocks, rendered twice: markdown and HTML.

Both documents come from the same blocks, so they say the same thing. Text is plain text
(never pre-escaped HTML): the markdown gets it as it is, the HTML escaped. Inline marks
(bold, code, links) are spans, so neither side parses the other's syntax. Headings get
ids that are valid, unique slugs (GitHub's rule, so the markdown's links work there too);
a link names the heading's key, resolved when the document is rendered, so a table can
link to a section written after it.
"""
import base64
import html
import re
from dataclasses import dataclass

from . import page


@dataclass(frozen=True)
class Span:
    kind: str           # text | b | i | code | link (to a file or URL) | ref (to a heading key)
    text: str
    target: str = None


def b(text):
    return Span("b", str(text))


def i(text):
    return Span("i", str(text))


def code(text):
    return Span("code", str(text))


def link(text, href):
    return Span("link", str(text), href)


def ref(text, key):
    return Span("ref", str(text), key)


# Result words that colour a table cell: every verdict the report writes.
VERDICTS = {"PASS": "pass", "PASS*": "pass", "FAIL": "fail", "failed": "fail",
            "skipped": "skip", "shown": "shown", "DIVERGED": "fail"}


class Doc:
    """Blocks: ("h", level, text, key) ("p", parts) ("list", items) ("table", header, rows,
    verdict column) ("toc", levels) ("img", name, png, how) ("panels", name, figures)."""

    def __init__(self):
        self.blocks = []

    def h(self, level, text, key=None):
        """A heading; `key` (default: the text) is what `ref` links name."""
        key = key or text
        self.blocks.append(("h", level, str(text), key))
        return key

    def p(self, *parts):
        self.blocks.append(("p", _parts(parts)))

    def bullets(self, items):
        """items: each a str, a Span or a list of them (none: nothing is added)."""
        if not items:
            return
        self.blocks.append(("list", [_parts(it if isinstance(it, (list, tuple)) else [it])
                                     for it in items]))

    def table(self, header, rows, verdict=None):
        """Cells are str, Span or lists of them; `verdict` is the index of the column that
        judges the row (the browser test measures that it is on screen)."""
        self.blocks.append(("table", list(header), [list(r) for r in rows], verdict))

    def toc(self, levels=(2, 3)):
        """The table of contents, built from every heading of these levels at render time."""
        self.blocks.append(("toc", tuple(levels)))

    def img(self, name, png, how="embed"):
        """A PNG written to plots/<name>.png. The HTML embeds it (how="embed") or, where an
        interactive panel says the same, links to the file (how="link")."""
        self.blocks.append(("img", name, png, how))

    def panels(self, name, figures, captions=()):
        """Interactive plots for the HTML (Plotly figure dicts); the markdown has the PNG."""
        self.blocks.append(("panels", name, list(figures), list(captions)))

    # ---- ids ---------------------------------------------------------------------------------

    def ids(self):
        """heading key -> its id (the first heading with that key)."""
        out = {}
        for (kind, *b), hid in zip(self.blocks, self.heading_ids()):
            if kind == "h":
                out.setdefault(b[2], hid)
        return out

    def heading_ids(self):
        """Per block, its heading's id (None for other blocks): GitHub's slug of the text,
        made unique with -1, -2, ... as GitHub does."""
        seen, used, out = {}, set(), []
        for kind, *b in self.blocks:
            if kind != "h":
                out.append(None)
                continue
            base = hid = slug(b[1])
            while hid in used:   # a heading may itself read like "models-1"
                seen[base] = seen.get(base, 0) + 1
                hid = f"{base}-{seen[base]}"
            used.add(hid)
            out.append(hid)
        return out

    def _toc_entries(self, levels):
        return [(b[0], b[1], hid) for (kind, *b), hid in zip(self.blocks, self.heading_ids())
                if kind == "h" and b[0] in levels]

    # ---- markdown ----------------------------------------------------------------------------

    def markdown(self):
        ids, out = self.ids(), []
        for kind, *b in self.blocks:
            if kind == "h":
                out.append("#" * b[0] + " " + _md_escape(b[1]))
            elif kind == "p":
                out.append(_md(b[0], ids))
            elif kind == "list":
                out.append("\n".join("- " + _md(item, ids) for item in b[0]))
            elif kind == "table":
                out.append(_md_table(b[0], b[1], ids))
            elif kind == "toc":
                top = min(b[0])
                out.append("\n".join("  " * (level - top) + f"- [{_md_escape(text)}](#{hid})"
                                     for level, text, hid in self._toc_entries(b[0])))
            elif kind == "img":
                out.append(f"![{b[0]}](plots/{b[0]}.png)")
        return "\n\n".join(out) + "\n"

    # ---- HTML --------------------------------------------------------------------------------

    def html(self, title):
        ids, body, figures = self.ids(), [], []
        for (kind, *b), hid in zip(self.blocks, self.heading_ids()):
            if kind == "h":
                body.append(f"<h{b[0]} id='{hid}'>{html.escape(b[1])}</h{b[0]}>")
            elif kind == "p":
                body.append(f"<p>{_html(b[0], ids)}</p>")
            elif kind == "list":
                body.append("<ul>" + "".join(f"<li>{_html(it, ids)}</li>" for it in b[0])
                            + "</ul>")
            elif kind == "table":
                body.append(_html_table(b[0], b[1], b[2], ids))
            elif kind == "toc":
                body.append(self._html_toc(b[0]))
            elif kind == "img":
                body.append(_html_img(*b))
            elif kind == "panels":
                body.append(_html_panels(b[0], b[1], b[2], figures))
        return page.render(title, "\n".join(body), figures)

    def _html_toc(self, levels):
        groups, top = [], min(levels)   # [(entry, [sub-entries])]
        for level, text, hid in self._toc_entries(levels):
            item = f"<a href='#{hid}'>{html.escape(text)}</a>"
            if level == top or not groups:
                groups.append((item, []))
            else:
                groups[-1][1].append(item)
        return "<nav class='toc'><ul>" + "".join(
            f"<li>{item}" + ("<ul class='sub'>" + "".join(f"<li>{s}</li>" for s in subs)
                             + "</ul>" if subs else "") + "</li>"
            for item, subs in groups) + "</ul></nav>"


def slug(text):
    """GitHub's heading anchor: lower case, punctuation but - and _ dropped, spaces -> -."""
    s = re.sub(r"[^\w\- ]", "", str(text).strip().lower()).replace(" ", "-")
    return s or "section"


def _parts(parts):
    out = []
    for p in parts:
        if isinstance(p, (list, tuple)):
            out += _parts(p)
        elif p is not None:
            out.append(p if isinstance(p, Span) else Span("text", str(p)))
    return out


def _cell(c):
    return _parts(c if isinstance(c, (list, tuple)) else [c])


def _text(parts):
    return "".join(p.text for p in parts)


# ---- markdown pieces -------------------------------------------------------------------------

def _md_escape(text, table=False):
    # plain text stays plain: only what markdown would read as markup is escaped
    return re.sub(r"([\\`*<>\[\]|])" if table else r"([\\`*<>\[\]])", r"\\\1", text)


def _md(parts, ids, table=False):
    out = []
    for p in parts:
        t = _md_escape(p.text, table)
        if p.kind == "code":
            out.append("`" + (p.text.replace("|", "\\|") if table else p.text) + "`")
        elif p.kind in ("b", "i"):
            mark = "**" if p.kind == "b" else "*"
            out.append(f"{mark}{t}{mark}")
        elif p.kind == "link":
            out.append(f"[{t}]({p.target})")
        elif p.kind == "ref":
            out.append(f"[{t}](#{ids.get(p.target, slug(p.target))})")
        else:
            out.append(t)
    return "".join(out)


def _md_table(header, rows, ids):
    def line(cells):
        return "| " + " | ".join(_md(_cell(c), ids, True).replace("\n", " ")
                                 for c in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


# ---- HTML pieces -----------------------------------------------------------------------------

def _html(parts, ids):
    out = []
    for p in parts:
        t = html.escape(p.text)
        if p.kind == "text":
            out.append(t)
        elif p.kind in ("b", "i", "code"):
            out.append(f"<{p.kind}>{t}</{p.kind}>")
        elif p.kind == "link":
            out.append(f"<a href='{html.escape(p.target)}'>{t}</a>")
        else:
            out.append(f"<a href='#{ids.get(p.target, slug(p.target))}'>{t}</a>")
    return "".join(out)


def _html_table(header, rows, verdict, ids):
    def attrs(j, cell):
        names = [VERDICTS.get(_text(_cell(cell)), "") if cell is not None else "",
                 "verdict" if j == verdict else ""]
        names = " ".join(n for n in names if n)
        return f" class='{names}'" if names else ""
    head = "".join(f"<th{attrs(j, None)}>{_html(_cell(c), ids)}</th>"
                   for j, c in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{attrs(j, c)}>{_html(_cell(c), ids)}</td>"
                                    for j, c in enumerate(r)) + "</tr>" for r in rows)
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _html_img(name, png, how):
    if how == "link":
        return (f"<p class='static'>Static figure: <a href='plots/{html.escape(name)}.png'>"
                f"plots/{html.escape(name)}.png</a></p>")
    png = png if isinstance(png, bytes) else png.result()  # a figure still being drawn
    data = base64.b64encode(png).decode()
    return (f"<img class='plot' alt='plots of {html.escape(name)}' "
            f"src='data:image/png;base64,{data}'>")


def _html_panels(name, figs, captions, figures):
    divs = []
    for k, fig in enumerate(figs):
        caption = captions[k] if k < len(captions) else ""
        divs.append(f"<figure><div class='panel' data-panel='{len(figures)}' "
                    f"aria-label='{html.escape(name)}'></div>"
                    + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "")
                    + "</figure>")
        figures.append(fig)
    return f"<div class='panels'>{''.join(divs)}</div>"
