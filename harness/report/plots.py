"""The static figures of report.md (plots/*.png); report.html draws the same as interactive
panels (panels.py).

One figure per model: the aligned loss curves and their difference from the reference with
the tolerances, the native-defaults curves marked where they part and why, per-layer
gradient norms, and the gradient agreement per tensor (a framework x framework heatmap
instead, where a pair disagrees). The legend sits below the axes, so it never covers a
curve or a tolerance line. A second, small figure per model shows the per-layer
comparison of the check when it ran.

A process draws its figures of one size on one Figure, cleared each time: its renderer keeps
the text it has measured, above all the log axes' tick labels (math text, slow to lay out),
so each figure after the first finds most of its text measured.
"""
import io
import math

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import TightLayoutEngine  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ..compare.curves import CURVES  # noqa: E402
from ..compare.pairwise import PAIRWISE  # noqa: E402
from ..registry import ORDER, PARTICIPANTS, color, short  # noqa: E402

STYLES = {"float64": "-", "float32": "--"}
MARKERS = {"float64": "o", "float32": "^"}
EXACT = 1e-17  # where exact agreement is drawn on a log axis
GREY = "#888888"
DPI = 80
LEGEND_BAND = 0.06  # of the model figure's height, under its axes

# The model figure's room around its axes, in inches: the y label and tick labels left of an
# axes (a log axis's minor labels such as 2x10^-1 the widest), the norms' colorbar labels or
# the heatmap's colorbar label right of one, the suptitle and two title lines above the
# first row, tick labels and "step" under an axes; each with tight_layout's padding (PAD).
# Only the tensor names under the agreement axes are as long as the model makes them.
PAD = 0.15
ROOM = {"left": 1.02, "right": 0.17, "top": 0.83, "under": 0.58, "between columns": 1.40,
        "between rows": 0.80}
_FIGURES = {}  # size: the Figure this process draws its figures of that size on


def model_figure(name, reference, curves, native, norms, comparisons, partings=()):
    """curves/native: DataFrames of one model (aligned / native-defaults training); norms:
    the reference's per-layer gradient norms; comparisons: the check's pairwise rows (both
    dtypes); partings: findings.partings() of this model."""
    fig = _figure((13, 7.2))
    axes = fig.subplots(2, 3)
    _loss_curves(axes[0, 0], curves, "Loss curves (float64 solid, float32 dashed)")
    _differences(axes[0, 1], curves, reference, f"Relative loss difference from {reference}",
                 CURVES)
    _lockstep(axes[0, 1], curves)
    _layer_norms(fig, axes[1, 0], norms)
    _agreement(fig, axes[1, 1], comparisons)
    if native is not None and len(native):
        _loss_curves(axes[0, 2], native, "Native defaults: loss curves (float64)")
        _differences(axes[1, 2], native, reference,
                     f"Native defaults: difference from {reference}", {})
        for ax in axes[:, 2]:
            _mark_partings(ax, partings)
    else:
        for ax in axes[:, 2]:
            ax.axis("off")
    fig.suptitle(name, fontsize=13, x=0.01, ha="left")
    frameworks = [fw for fw in PARTICIPANTS if fw in set(curves.get("framework", []))] or ORDER
    _legend(fig, frameworks)
    _place(fig, axes, under=max(ROOM["under"], _reach_under(fig, axes[1, 1]) + PAD))
    return _png(fig)


def layer_figure(name, layers):
    """The per-layer comparison: each top-level layer's forward output and dL/dx error, the
    worst over the framework pairs, with the tolerance."""
    fig = _figure((6.5, 3.0))
    ax = fig.subplots()
    labels = _layer_labels(layers)
    x = np.arange(len(labels))
    for dtype in sorted({r.get("dtype", "float64") for r in layers}):
        for direction, style in (("forward", "-"), ("backward", ":")):
            y = [_worst(r.get(f"{direction}_rel_err") for r in layers
                        if (r["layer"], r["type"]) == lab and r.get("dtype", "float64") == dtype)
                 for lab in labels]
            ax.semilogy(x, np.clip(np.array(y, float), EXACT, None), style,
                        marker=MARKERS.get(dtype, "o"), color="#333333" if direction == "forward"
                        else "#2f6fdf", ms=4, lw=1)
        ax.axhline(PAIRWISE.get(dtype, PAIRWISE["float64"]), color=GREY, ls=STYLES.get(dtype, "-"),
                   lw=0.8)
    ax.set_xticks(x, [f"{lay} {typ}" for lay, typ in labels], rotation=45, ha="right", fontsize=7)
    _title(ax, f"{name}: per-layer agreement (worst pair)")
    ax.set(ylabel="rel. error", ylim=(EXACT / 3, None))
    fig.legend(handles=[Line2D([], [], color="#333333", label="forward output"),
                        Line2D([], [], color="#2f6fdf", ls=":", label="dL/dx"),
                        Line2D([], [], color=GREY, label="tolerance (pairwise)")],
               loc="lower center", ncol=3, fontsize=7, frameon=False)
    _tight(fig, rect=(0, 0.1, 1, 1))
    return _png(fig)


def _layer_labels(layers):
    seen = []
    for r in layers:
        if (r["layer"], r["type"]) not in seen:
            seen.append((r["layer"], r["type"]))
    return seen


def _worst(values):
    values = [v for v in values if v is not None]
    return max(values) if values else math.nan


def _loss_curves(ax, curves, title):
    for (fw, dtype), c in curves.groupby(["framework", "dtype"]):
        ax.plot(c["step"], c["loss"], STYLES.get(dtype, "-"), color=color(fw), lw=1.3, alpha=0.85)
    ax.set(title=title, xlabel="step", ylabel="loss")


def _differences(ax, curves, reference, title, tolerances):
    for (fw, dtype), c in curves.groupby(["framework", "dtype"]):
        if fw == reference:
            continue
        y = np.clip(c["rel_diff"].to_numpy(float), EXACT, None)
        ax.semilogy(c["step"], y, STYLES.get(dtype, "-"), color=color(fw), lw=1.2)
    for dtype, tol in tolerances.items():
        ax.axhline(tol, color=GREY, ls=STYLES[dtype], lw=0.8)
        ax.text(0, tol, f" {dtype} tolerance", fontsize=7, va="bottom", color="#666666")
    _title(ax, title)
    ax.set(xlabel="step", ylabel="|loss - reference| / |reference|", yscale="log",
           ylim=(EXACT / 3, None))
    ax.text(1, EXACT, "exact  ", fontsize=7, ha="right", va="bottom",
            transform=ax.get_yaxis_transform(), color="#777777")


def _lockstep(ax, curves):
    """Each step's worst lockstep error (that step taken again from the reference's state), as
    thin dotted lines over the curve differences, with the lockstep tolerances: a chaotic
    network's curve climbs while its lockstep line stays flat at rounding level."""
    if "lockstep_rel_err" not in curves or not curves["lockstep_rel_err"].notna().any():
        return
    for (fw, dtype), c in curves.groupby(["framework", "dtype"]):
        y = c["lockstep_rel_err"].to_numpy(float)
        if np.isfinite(y).any():
            ax.semilogy(c["step"], np.clip(y, EXACT, None), ":", color=color(fw), lw=0.9)
    for dtype in sorted(set(curves["dtype"])):
        tol = PAIRWISE[dtype]
        ax.axhline(tol, color=GREY, ls=":", lw=0.6)
        ax.text(1, tol, f"{dtype} lockstep tolerance ", fontsize=6.5, ha="right", va="bottom",
                color="#666666", transform=ax.get_yaxis_transform())
    ax.set_title(ax.get_title() + "\n(dotted: lockstep, each step from the reference's state)",
                 fontsize=9)


def _mark_partings(ax, partings):
    """A vertical line where each native curve parts, labelled with the first cause, on the
    side of the line with more room."""
    last = ax.get_xlim()[1]
    for p in partings:
        ax.axvline(p["step"], color=color(p["framework"]), lw=0.9, ls=":")
        cause = p["causes"][0]
        more = f" (+{len(p['causes']) - 1})" if len(p["causes"]) > 1 else ""
        text = f"{short(p['framework'])} @{p['step']}: {_clip(cause, 44)}{more}"
        ax.text(p["step"], 0.98, text, rotation=90, va="top", fontsize=6.5,
                ha="left" if p["step"] <= last / 2 else "right",
                color=color(p["framework"]), transform=ax.get_xaxis_transform())


def _title(ax, title):
    """The title at the top of an axes whose y axis has no offset text (a log or a named
    axis): where matplotlib puts it too, but only after measuring the y axis once more at
    every draw to look for one. A loss axis can have one; its title is left to matplotlib."""
    ax.set_title(title, y=1)


def _clip(text, n):
    return text if len(text) <= n else text[:n - 1] + "…"


def _layer_norms(fig, ax, norms):
    if norms is None or not len(norms):
        ax.axis("off")
        return
    layers = sorted(norms["layer"].unique(), key=_layer_order)
    cmap = plt.get_cmap("viridis")
    for k, layer in enumerate(layers):
        c = norms[norms["layer"] == layer]
        ax.semilogy(c["step"], c["norm"].clip(lower=1e-300),
                    color=cmap(k / max(1, len(layers) - 1)), lw=1)
    _title(ax, f"Gradient norm per layer ({norms['framework'].iloc[0]}, float64)")
    ax.set(xlabel="step", ylabel="||dL/d params of the layer||")
    scale = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(1, len(layers) - 1)))
    bar = fig.colorbar(scale, ax=ax, fraction=0.046)
    bar.set_ticks([0, max(1, len(layers) - 1)], labels=[f"layer {layers[0]}",
                                                        f"layer {layers[-1]}"])
    bar.ax.tick_params(labelsize=7)


def _layer_order(name):
    return [int(p) if p.isdigit() else p for p in str(name).split(".")]


def _agreement(fig, ax, comparisons):
    """Per tensor, the worst error over the pairs against each dtype's tolerance; where
    some pair fails, the framework x framework heatmap of that dtype says which."""
    if comparisons is None or not len(comparisons):
        ax.axis("off")
        return
    grads = comparisons[comparisons["kind"] == "grad"]
    failing = grads[~grads["passed"].astype(bool)]
    if len(failing):
        _heatmap(fig, ax, grads[grads["dtype"] == failing["dtype"].iloc[0]])
        return
    names = list(dict.fromkeys(grads["param"]))
    for dtype, rows in grads.groupby("dtype"):
        worst = rows.groupby("param")["rel_err"].max()
        y = [max(worst.get(n, math.nan), EXACT) for n in names]
        ax.semilogy(range(len(names)), y, MARKERS.get(dtype, "o"), color="#333333", ms=4,
                    ls="none", mfc="none" if dtype == "float32" else "#333333")
        ax.axhline(PAIRWISE[dtype], color=GREY, ls=STYLES.get(dtype, "-"), lw=0.8)
        ax.text(0, PAIRWISE[dtype], f" {dtype} tolerance", fontsize=7, va="bottom",
                color="#666666")
    step = max(1, len(names) // 12)
    ax.set_xticks(range(0, len(names), step), names[::step], rotation=45, ha="right", fontsize=7)
    _title(ax, "Gradient agreement per tensor (worst pair)")
    ax.set(ylabel="rel. error", ylim=(EXACT / 3, 1e-3))


def _heatmap(fig, ax, grads):
    dtype = grads["dtype"].iloc[0]
    fws = [fw for fw in PARTICIPANTS if fw in set(grads["a"]) | set(grads["b"])]
    grid = np.full((len(fws), len(fws)), np.nan)
    for (a, b), rows in grads.groupby(["a", "b"]):
        i, j = fws.index(a), fws.index(b)
        grid[i, j] = grid[j, i] = max(rows["rel_err"].max(), EXACT)
    tol = PAIRWISE[dtype]
    # centred on the tolerance: green within it, red beyond
    image = ax.imshow(np.log10(grid / tol), cmap="RdYlGn_r", vmin=-6, vmax=6)
    for i in range(len(fws)):
        for j in range(len(fws)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0e}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(fws)), fws, fontsize=8)
    ax.set_yticks(range(len(fws)), fws, fontsize=8)
    _title(ax, f"Worst gradient rel. error, {dtype} (pass <= {tol:g})")
    fig.colorbar(image, ax=ax, fraction=0.046, label="log10(error / tolerance)")


def _legend(fig, frameworks):
    handles = [Line2D([], [], color=color(fw), lw=2, label=fw) for fw in frameworks]
    handles += [Line2D([], [], color="#333333", ls=STYLES[d], label=d) for d in STYLES]
    handles += [Line2D([], [], color=GREY, lw=0.8, label="tolerance")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)


def _figure(size):
    """The process's Figure of this size, cleared: the same one each time, so that its
    renderer's measures of text carry over from figure to figure."""
    fig = _FIGURES.get(size)
    if fig is None or fig.get_layout_engine() is not None:  # left by a tight_layout: savefig
        fig = _FIGURES[size] = Figure(figsize=size, dpi=DPI)  # would draw each figure twice
        FigureCanvasAgg(fig)  # PNG only, and no pyplot: nothing holds on to the figure
    for ax in fig.axes:
        ax.remove()  # first: clear() would clear each axes before it drops it
    fig.clear()
    return fig


def _reach_under(fig, ax):
    """How far the axes' tick labels (the agreement's tensor names, rotated) reach under it,
    in inches."""
    if not ax.axison:
        return 0
    labels = ax.xaxis.get_tightbbox(fig.canvas.get_renderer())
    if labels is None:  # nothing drawn on the axis (no gradient pair to show): nothing under it
        return 0
    return (ax.bbox.y0 - labels.y0) / fig.dpi


def _place(fig, axes, under):
    """Places the axes in ROOM, with `under` inches under the last row and the legend's band
    below that: where tight_layout would put them, but computed, not found by measuring every
    axes (twice, with the legend's band as its rect)."""
    width, height = fig.get_size_inches()
    rows, cols = axes.shape
    bottom = LEGEND_BAND * height + under
    axes_width = (width - ROOM["left"] - ROOM["right"] - (cols - 1) * ROOM["between columns"]
                  ) / cols
    axes_height = (height - ROOM["top"] - bottom - (rows - 1) * ROOM["between rows"]) / rows
    fig.subplots_adjust(left=ROOM["left"] / width, right=1 - ROOM["right"] / width,
                        bottom=bottom / height, top=1 - ROOM["top"] / height,
                        wspace=ROOM["between columns"] / axes_width,
                        hspace=ROOM["between rows"] / axes_height)


def _tight(fig, rect):
    """fig.tight_layout(rect=rect), the same positions, but no layout engine left on the
    figure: tight_layout leaves a placeholder engine, and savefig draws a figure with any
    engine once more before it renders it (a sixth of the report's figure time)."""
    TightLayoutEngine(rect=rect).execute(fig)


def _png(fig):
    buf = io.BytesIO()
    # zlib's level 3 packs these flat-coloured pictures about as small as the default 6, in
    # two thirds of the time
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 3})
    return buf.getvalue()
