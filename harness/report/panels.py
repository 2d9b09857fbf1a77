"""The interactive panels of report.html: Plotly figure dicts (plotly.js draws them in the page).

Each model gets: its aligned training (loss curves over their difference from the
reference, tolerances drawn), its native-defaults training (where each curve parts, and
why, marked on the step), the gradient agreement per tensor, the per-layer gradient
norms, and, when the check ran them, the per-layer comparison and (only where a pair
disagrees) the framework x framework heatmap. Every panel: hover for values, drag to
zoom (double-click resets), click a legend entry to hide a framework, and the buttons
switch the value axis between log and linear. Legends sit right of the plot area, so they
never cover a curve or a tolerance line.
"""
import html
import math

import matplotlib

from ..compare.curves import CURVES, PARTED
from ..compare.pairwise import PAIRWISE
from ..registry import PARTICIPANTS, color, short

DASH = {"float64": "solid", "float32": "dash"}
SYMBOL = {"float64": "circle", "float32": "triangle-up-open"}
GREY = "#888888"
EXACT = 1e-17  # exact agreement, drawn on a log axis
# green within the tolerance, yellow at it, red beyond (plotly.js knows few scale names)
AGAINST_TOLERANCE = [[0, "#1a9850"], [0.5, "#ffffbf"], [1, "#d73027"]]
PAIR_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
               "#666666", "#1f78b4", "#b2df8a"]


def model_panels(name, reference, curves, native, norms, comparisons, partings, layers):
    """[(figure, caption)] for one model; each input may be empty."""
    out = []
    if curves is not None and len(curves):
        out.append((training(curves, reference, "Training, aligned", CURVES, ()), ""))
    if native is not None and len(native):
        out.append((training(native, reference, "Training, native defaults",
                             {"parts": PARTED}, partings), _parting_caption(partings)))
    if comparisons is not None and len(comparisons):
        out.append((gradients(comparisons), ""))
    if norms is not None and len(norms):
        out.append((grad_norms(norms), ""))
    if layers:
        out.append((per_layer(layers), ""))
    if comparisons is not None and len(comparisons):
        grads = comparisons[comparisons["kind"] == "grad"]
        for dtype in [d for d in ("float64", "float32")
                      if (~grads[grads["dtype"] == d]["passed"].astype(bool)).any()]:
            out.append((heatmap(grads[grads["dtype"] == dtype], dtype), ""))
    return out


# ---- training ------------------------------------------------------------------------------

def training(curves, reference, title, thresholds, partings):
    """Loss (top, log/linear) over the relative difference from the reference (bottom, log)."""
    traces, shown = [], set()
    for (fw, dtype), c in _groups(curves):
        c = c.sort_values("step")
        legend = fw not in shown
        shown.add(fw)
        base = dict(type="scatter", mode="lines", legendgroup=fw, name=fw,
                    line=dict(color=color(fw), dash=DASH.get(dtype, "solid"), width=1.6))
        traces.append(dict(base, y=_round(c["loss"], 8), **_xs(c), showlegend=legend,
                           hovertemplate=f"{fw} {dtype}: %{{y:.8g}}<extra></extra>"))
        if fw != reference:
            traces.append(dict(base, y=_round(c["rel_diff"].clip(lower=EXACT), 3), **_xs(c),
                               yaxis="y2", showlegend=False,
                               hovertemplate=f"{fw} {dtype} vs {reference}: "
                                             "%{y:.3g}<extra></extra>"))
    last = int(curves["step"].max()) if len(curves) else 0
    for label, value in thresholds.items():
        traces.append(dict(type="scatter", mode="lines", x=[0, last], y=[value, value],
                           yaxis="y2", name=f"{label} tolerance" if label in DASH else
                           f"parts: > {value:g}", legendgroup="tolerance",
                           line=dict(color=GREY, width=1, dash=DASH.get(label, "dot")),
                           hovertemplate=f"{label}: {value:g}<extra></extra>"))
    layout = _layout(title, height=460)
    layout.update(
        xaxis=dict(title=dict(text="step"), anchor="y2"),
        yaxis=dict(title=dict(text="loss"), domain=[0.5, 1], type="linear"),
        yaxis2=dict(title=dict(text="rel. diff"), domain=[0, 0.4], type="log",
                    exponentformat="power"),
        updatemenus=[_log_linear("yaxis", "linear")])
    _mark_partings(layout, partings, last)
    return dict(data=traces, layout=layout)


def _mark_partings(layout, partings, last):
    """A dotted line at the step where each curve parts, labelled with its first cause (all
    causes on hover, and in the caption); the label opens toward the wider side."""
    for k, p in enumerate(partings):
        c = color(p["framework"])
        layout.setdefault("shapes", []).append(
            dict(type="line", xref="x", yref="paper", x0=p["step"], x1=p["step"], y0=0, y1=1,
                 line=dict(color=c, width=1, dash="dot")))
        first = p["causes"][0]
        more = f" (+{len(p['causes']) - 1})" if len(p["causes"]) > 1 else ""
        left = p["step"] <= last / 2
        layout.setdefault("annotations", []).append(
            dict(x=p["step"], y=0.98 - 0.09 * k, xref="x", yref="paper", showarrow=False,
                 xanchor="left" if left else "right", align="left" if left else "right",
                 xshift=3 if left else -3, font=dict(size=10, color=c),
                 bgcolor="rgba(255,255,255,0.85)",
                 text=f"{short(p['framework'])} parts at step {p['step']}:<br>"
                      f"{html.escape(_clip(first, 34))}{more}",
                 hovertext="<br>".join(map(html.escape, p["causes"]))))


def _parting_caption(partings):
    return " ".join(f"{p['framework']} parts from {p['reference']} at step {p['step']}: "
                    + "; ".join(p["causes"]) + "." for p in partings)


# ---- gradients -----------------------------------------------------------------------------

def gradients(comparisons):
    """Every gradient tensor's error per pair (float64 dots, float32 triangles) against the
    tolerances: how much room each tensor leaves."""
    grads = comparisons[comparisons["kind"] == "grad"]
    names = list(dict.fromkeys(grads["param"]))
    pairs = list(dict.fromkeys(zip(grads["a"], grads["b"])))
    traces = []
    for k, (a, b) in enumerate(pairs):
        pair = f"{short(a)}~{short(b)}"
        for dtype, rows in grads[(grads["a"] == a) & (grads["b"] == b)].groupby("dtype"):
            traces.append(dict(
                type="scatter", mode="markers", x=list(rows["param"]),
                y=_round(rows["rel_err"].clip(lower=EXACT), 3), name=pair, legendgroup=pair,
                showlegend=dtype == min(set(grads["dtype"]), key=_dtype_order),
                marker=dict(color=PAIR_COLORS[k % len(PAIR_COLORS)],
                            symbol=SYMBOL.get(dtype, "circle"), size=7),
                hovertemplate=f"{a} vs {b}, {dtype}, %{{x}}: %{{y:.3g}}<extra></extra>"))
    for dtype in sorted(set(grads["dtype"])):
        traces.append(dict(type="scatter", mode="lines", x=[names[0], names[-1]],
                           y=[PAIRWISE[dtype]] * 2, name=f"{dtype} tolerance",
                           legendgroup="tolerance",
                           line=dict(color=GREY, width=1, dash=DASH.get(dtype, "dot")),
                           hovertemplate=f"{dtype} tolerance {PAIRWISE[dtype]:g}<extra></extra>"))
    layout = _layout("Gradient agreement per tensor (float64 dots, float32 triangles)")
    layout.update(xaxis=dict(type="category", categoryorder="array", categoryarray=names,
                             tickangle=-45),
                  yaxis=dict(title=dict(text="max|a-b| / max|a|"), type="log",
                             exponentformat="power"),
                  hovermode="closest")
    return dict(data=traces, layout=layout)


def heatmap(grads, dtype):
    """Worst gradient error of every framework pair, coloured against the tolerance."""
    fws = [fw for fw in PARTICIPANTS if fw in set(grads["a"]) | set(grads["b"])]
    z = [[None] * len(fws) for _ in fws]
    for (a, b), rows in grads.groupby(["a", "b"]):
        i, j = fws.index(a), fws.index(b)
        z[i][j] = z[j][i] = float(max(rows["rel_err"].max(), EXACT))
    tol = PAIRWISE[dtype]
    ratio = [[None if v is None else math.log10(v / tol) for v in row] for row in z]
    text = [["" if v is None else f"{v:.1e}" for v in row] for row in z]
    trace = dict(type="heatmap", x=fws, y=fws, z=ratio, text=text, texttemplate="%{text}",
                 zmin=-6, zmax=6, colorscale=AGAINST_TOLERANCE,
                 colorbar=dict(title=dict(text="log10(err/tol)")),
                 hovertemplate="%{y} vs %{x}: %{text}<extra></extra>")
    layout = _layout(f"Where the pairs disagree: worst gradient error, {dtype} "
                     f"(pass <= {tol:g})")
    layout.update(yaxis=dict(autorange="reversed"), hovermode="closest")
    return dict(data=[trace], layout=layout)


def grad_norms(norms):
    """The reference's gradient norm per layer and step: vanishing and exploding gradients."""
    layers = sorted(norms["layer"].unique(), key=_layer_order)
    cmap = matplotlib.colormaps["viridis"]
    traces = []
    for k, layer in enumerate(layers):
        c = norms[norms["layer"] == layer].sort_values("step")
        traces.append(dict(type="scatter", mode="lines", **_xs(c), y=_round(c["norm"], 4),
                           name=f"layer {layer}", showlegend=len(layers) <= 10,
                           line=dict(width=1.3, color=matplotlib.colors.to_hex(
                               cmap(k / max(1, len(layers) - 1)))),
                           hovertemplate=f"layer {layer}: %{{y:.4g}}<extra></extra>"))
    layout = _layout(f"Gradient norm per layer ({norms['framework'].iloc[0]}, float64)")
    layout.update(xaxis=dict(title=dict(text="step")),
                  yaxis=dict(title=dict(text="||dL/d params||"), type="log",
                             exponentformat="power"),
                  updatemenus=[_log_linear("yaxis", "log")])
    return dict(data=traces, layout=layout)


def per_layer(rows):
    """Each top-level layer's forward output and dL/dx against the tolerance: per dtype and
    direction the worst pair (named on hover)."""
    labels = list(dict.fromkeys(f"{r['layer']} {r['type']}" for r in rows))
    dtypes = sorted({r.get("dtype", "float64") for r in rows}, key=_dtype_order)
    traces = []
    for dtype in dtypes:
        for direction, dash in (("forward", "solid"), ("backward", "dot")):
            worst = {}
            for r in rows:
                err = r.get(f"{direction}_rel_err")
                label = f"{r['layer']} {r['type']}"
                if r.get("dtype", "float64") == dtype and err is not None and (
                        label not in worst or not err <= worst[label][0]):
                    worst[label] = (err, f"{short(r['a'])}~{short(r['b'])}")
            xs = [x for x in labels if x in worst]
            traces.append(dict(
                type="scatter", mode="lines+markers", x=xs,
                y=[max(worst[x][0], EXACT) for x in xs], text=[worst[x][1] for x in xs],
                name=f"{dtype} {'output' if direction == 'forward' else 'dL/dx'}",
                line=dict(dash=dash, width=1.4, color="#333333" if direction == "forward"
                          else "#2f6fdf"),
                marker=dict(symbol=SYMBOL.get(dtype, "circle"), size=7),
                hovertemplate=f"{dtype} {direction}, %{{x}}: %{{y:.3g}} (%{{text}})"
                              "<extra></extra>"))
    for dtype in dtypes:
        traces.append(dict(type="scatter", mode="lines", x=[labels[0], labels[-1]],
                           y=[PAIRWISE[dtype]] * 2, name=f"{dtype} tolerance",
                           line=dict(color=GREY, width=1, dash=DASH.get(dtype, "dot")),
                           hovertemplate=f"{dtype} tolerance {PAIRWISE[dtype]:g}<extra></extra>"))
    layout = _layout("Per layer: forward output and dL/dx, worst pair")
    layout.update(xaxis=dict(type="category", categoryorder="array", categoryarray=labels),
                  yaxis=dict(title=dict(text="rel. error"), type="log", exponentformat="power"),
                  hovermode="closest")
    return dict(data=traces, layout=layout)


# ---- shared --------------------------------------------------------------------------------

def _layout(title, height=380):
    return dict(title=dict(text=title, x=0.01, xanchor="left", font=dict(size=13)),
                height=height, margin=dict(l=60, r=10, t=60, b=50), hovermode="x unified",
                # right of the plot area (the margin grows to fit it): never over a curve,
                # a tolerance line or a tick label
                legend=dict(x=1.02, xanchor="left", y=1, yanchor="top", font=dict(size=10)),
                template="plotly_white", font=dict(size=11))


def _log_linear(axis, current):
    """Two buttons above the plot area: the value axis on a log or a linear scale."""
    return dict(type="buttons", direction="right", x=1, xanchor="right", y=1.02,
                yanchor="bottom", pad=dict(r=0, t=0), showactive=True,
                active=0 if current == "log" else 1, font=dict(size=10),
                buttons=[dict(label="log", method="relayout", args=[{f"{axis}.type": "log"}]),
                         dict(label="linear", method="relayout",
                              args=[{f"{axis}.type": "linear"}])])


def _groups(curves):
    order = {fw: k for k, fw in enumerate(PARTICIPANTS)}
    return sorted(curves.groupby(["framework", "dtype"]),
                  key=lambda g: (order.get(g[0][0], len(order)), g[0][1] != "float64"))


def _xs(c):
    """x = the steps; left out (Plotly counts 0, 1, ...) when they are exactly that."""
    steps = [int(s) for s in c["step"]]
    return {} if steps == list(range(len(steps))) else {"x": steps}


def _round(series, digits):
    """Values to `digits` significant digits: enough to read, and the page stays small."""
    return [None if not math.isfinite(v) else float(f"{v:.{digits}g}")
            for v in series.astype(float)]


def _dtype_order(dtype):
    return list(DASH).index(dtype) if dtype in DASH else len(DASH)


def _layer_order(name):
    return [int(p) if p.isdigit() else p for p in str(name).split(".")]


def _clip(text, n):
    return text if len(text) <= n else text[:n - 1] + "…"
