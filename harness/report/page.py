"""The HTML page around the report's body: style, the interactive panels, plotly.js.

plotly.js is embedded once, gzip-compressed and base64-encoded (4.8 MB of script become
2 MB of page), and unpacked by the browser's own DecompressionStream: the page works
offline and fetches nothing. The page script draws every panel and records, as data
attributes of <body>, how many panels it drew and where each table's right edge and
verdict column end, so a headless browser (and the tests) can tell what a reader sees.
"""
import base64
import functools
import gzip
import html
import json
import math


def render(title, body, figures):
    """The whole page; `figures` are the Plotly figure dicts of the panels in `body`."""
    if figures:
        version, packed = plotly_bundle()
        scripts = (f"<script type='application/json' id='panel-data'>{_json(figures)}</script>\n"
                   f"<script type='application/octet-stream' id='plotly-js-gz' "
                   f"data-version='{version}'>{packed}</script>")
    else:
        scripts = ""
    return HTML.format(title=html.escape(title), style=STYLE, body=body, scripts=scripts,
                       script=SCRIPT)


@functools.lru_cache(maxsize=1)
def plotly_bundle():
    """(plotly version, base64 of the gzipped plotly.min.js) from the pip package `plotly`."""
    import plotly
    from plotly.offline import get_plotlyjs
    packed = gzip.compress(get_plotlyjs().encode(), compresslevel=9, mtime=0)
    return plotly.__version__, base64.b64encode(packed).decode("ascii")


def _json(value):
    # inside <script>: "</" would end the element early
    return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _finite(value):
    """NaN and infinities become null (a gap in a Plotly line)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { margin: 0.2em 0 0.4em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.4em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 12.5px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.pass { color: #17803d; font-weight: 600; } td.fail { color: #c4161c; font-weight: 700; }
td.skip, td.shown { color: #777; } th.verdict, td.verdict { white-space: nowrap; }
img.plot { width: 100%; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 3px; }
nav.toc > ul { margin: 0.3em 0; padding-left: 1.2em; }
nav.toc ul.sub { padding-left: 0.4em; }
nav.toc ul.sub li { display: inline-block; margin-right: 0.7em; }
.panels { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.panels figure { margin: 0; border: 1px solid #eee; min-width: 0; }
.panel { min-height: 380px; }
figcaption, p.static { color: #555; font-size: 12.5px; padding: 2px 6px; }
p.nopanels { color: #c4161c; }
@media (max-width: 900px) { .panels { grid-template-columns: 1fr; } }
"""

SCRIPT = """
// Records where each table ends on screen: a verdict column is readable only if it ends
// inside the window.
function measureTables() {
  let tables = 0, verdict = 0;
  for (const table of document.querySelectorAll("table")) {
    const right = Math.round(table.getBoundingClientRect().right);
    table.dataset.right = right;
    tables = Math.max(tables, right);
    for (const cell of table.querySelectorAll(".verdict"))
      verdict = Math.max(verdict, Math.round(cell.getBoundingClientRect().right));
  }
  Object.assign(document.body.dataset, {viewport: window.innerWidth, tablesRight: tables,
    verdictRight: verdict, pageWidth: document.documentElement.scrollWidth});
}

// Whether a panel's legend stays off its plot areas, tick labels and axis titles (it must
// never cover a curve or a tolerance line).
const UNDER_LEGEND = "rect.nsewdrag, g.xtick > text, g.ytick > text, g.y2tick > text, " +
                     "text.xtitle, text.ytitle, text.y2title";
function legendClear(div) {
  const legend = div.querySelector("g.legend");
  if (!legend) return true;
  const box = legend.getBoundingClientRect();
  return [...div.querySelectorAll(UNDER_LEGEND)].every(rect => {
    const area = rect.getBoundingClientRect();
    return box.right <= area.left || box.left >= area.right ||
           box.bottom <= area.top || box.top >= area.bottom;
  });
}

async function loadPlotly() {
  if (window.Plotly) return;
  const packed = document.getElementById("plotly-js-gz").textContent.trim();
  const bytes = Uint8Array.from(atob(packed), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const script = document.createElement("script");
  script.textContent = await new Response(stream).text();
  document.head.appendChild(script);
}

const CONFIG = {responsive: true, displaylogo: false,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]};

async function drawPanels() {
  const panels = [...document.querySelectorAll("div.panel")];
  document.body.dataset.panels = panels.length;
  if (!panels.length) { document.body.dataset.panelsDrawn = 0; return; }
  const figures = JSON.parse(document.getElementById("panel-data").textContent);
  try {
    await loadPlotly();
  } catch (err) {
    document.body.dataset.panelsError = String(err);
    for (const group of document.querySelectorAll(".panels"))
      group.insertAdjacentHTML("beforebegin", "<p class='nopanels'>This browser cannot " +
        "unpack the embedded plotting library; the static figure is linked below.</p>");
    return;
  }
  let drawn = 0;
  for (const div of panels) {
    const fig = figures[Number(div.dataset.panel)];
    await Plotly.newPlot(div, fig.data, fig.layout, CONFIG);
    div.dataset.drawn = "1";
    div.dataset.legendClear = legendClear(div) ? "1" : "0";
    drawn += 1;
  }
  document.body.dataset.panelsDrawn = drawn;  // every panel has drawn
}

window.addEventListener("load", () => {
  measureTables();
  const images = [...document.images];
  document.body.dataset.plots = images.length;
  document.body.dataset.plotsDecoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  drawPanels().then(measureTables);
});
"""

HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head><body>
{body}
{scripts}
<script>{script}</script>
</body></html>
"""
