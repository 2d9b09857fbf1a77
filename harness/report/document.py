"""The report as a list of blocks, rendered twice: markdown and self-contained HTML.

Both documents come from the same blocks, so they say the same thing; the HTML embeds
its plots and needs nothing beside it.
"""
import base64
import html


class Doc:
    """Blocks: ("h", level, text) ("p", html) ("table", header, rows) ("img", name, png)."""

    def __init__(self):
        self.blocks = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text):
        self.blocks.append(("p", text))

    def table(self, header, rows):
        self.blocks.append(("table", header, rows))

    def img(self, name, png):
        self.blocks.append(("img", name, png))

    def markdown(self):
        out = []
        for kind, *b in self.blocks:
            if kind == "h":
                out.append("#" * b[0] + " " + b[1])
            elif kind == "p":
                out.append(b[0].replace("<b>", "**").replace("</b>", "**")
                           .replace("<code>", "`").replace("</code>", "`"))
            elif kind == "table":
                out.append("| " + " | ".join(b[0]) + " |\n|" + "---|" * len(b[0]) + "\n" +
                           "\n".join("| " + " | ".join(map(str, r)) + " |" for r in b[1]))
            else:
                out.append(f"![{b[0]}](plots/{b[0]}.png)")
        return "\n\n".join(out) + "\n"

    def html(self, title):
        body = []
        for kind, *b in self.blocks:
            if kind == "h":
                body.append(f"<h{b[0]} id='{html.escape(b[1])}'>{html.escape(b[1])}</h{b[0]}>")
            elif kind == "p":
                body.append(f"<p>{b[0]}</p>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b[0])
                rows = "".join("<tr>" + "".join(f"<td class='{_cls(c)}'>{html.escape(str(c))}"
                                                "</td>" for c in r) + "</tr>" for r in b[1])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            else:
                data = base64.b64encode(b[1]).decode()
                body.append(f"<img class='plot' alt='plots of {html.escape(b[0])}' "
                            f"src='data:image/png;base64,{data}'>")
        return HTML.format(title=html.escape(title), body="\n".join(body))


def _cls(cell):
    return {"PASS": "pass", "FAIL": "fail", "failed": "fail", "skipped": "skip"}.get(str(cell), "")


HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 12.5px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
th {{ background: #f3f3f3; }}
td.pass {{ color: #17803d; font-weight: 600; }} td.fail {{ color: #c4161c; font-weight: 700; }}
td.skip {{ color: #888; }} img.plot {{ width: 100%; border: 1px solid #eee; }}
code {{ background: #f6f6f6; padding: 0 3px; }}
</style></head><body>
{body}
<script>
// Lets a headless browser (and the tests) tell that every plot decoded.
window.addEventListener("load", () => {{
  const images = [...document.images];
  document.body.dataset.plots = images.length;
  document.body.dataset.plotsDecoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
