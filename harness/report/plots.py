"""One figure per model: curves, their differences, gradient norms, gradient agreement."""
import io
import math

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..compare.curves import CURVES  # noqa: E402
from ..compare.pairwise import PAIRWISE  # noqa: E402
from ..registry import ORDER, color  # noqa: E402
STYLES = {"float64": "-", "float32": "--"}
EXACT = 1e-17  # where exact agreement is drawn on a log axis


def model_figure(name, reference, curves, native, norms, comparisons):
    """curves/native: DataFrames of one model (aligned / native-defaults training);
    norms: per-layer gradient norms; comparisons: the float64 check's pairwise rows."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.6), dpi=80)
    _loss_curves(axes[0, 0], curves, "Loss curves (float64 solid, float32 dashed)")
    _differences(axes[0, 1], curves, reference, f"Relative loss difference from {reference}", True)
    _layer_norms(axes[1, 0], norms)
    _heatmap(axes[1, 1], comparisons)
    if native is not None and len(native):
        _loss_curves(axes[0, 2], native, "Native defaults: loss curves (float64)")
        _differences(axes[1, 2], native, reference, f"Native defaults: difference from {reference}",
                     False)
    else:
        for ax in axes[:, 2]:
            ax.axis("off")
    fig.suptitle(name, fontsize=13, x=0.01, ha="left")
    fig.tight_layout()
    return _png(fig)


def _loss_curves(ax, curves, title):
    for (fw, dtype), c in curves.groupby(["framework", "dtype"]):
        ax.plot(c["step"], c["loss"], STYLES.get(dtype, "-"), color=color(fw), lw=1.3,
                label=fw if dtype == "float64" else None, alpha=0.85)
    ax.set(title=title, xlabel="step", ylabel="loss")
    ax.legend(fontsize=8)


def _differences(ax, curves, reference, title, tolerances):
    drawn = False
    for (fw, dtype), c in curves.groupby(["framework", "dtype"]):
        if fw == reference:
            continue
        y = np.clip(c["rel_diff"].to_numpy(float), EXACT, None)
        ax.semilogy(c["step"], y, STYLES.get(dtype, "-"), color=color(fw), lw=1.2,
                    label=f"{fw} {dtype}")
        drawn = True
    if tolerances:
        for dtype, tol in CURVES.items():
            ax.axhline(tol, color="#999999", ls=STYLES[dtype], lw=0.8)
            ax.text(0, tol, f" {dtype} tolerance", fontsize=7, va="bottom", color="#777777")
    ax.set(title=title, xlabel="step", ylabel="|loss - reference| / |reference|", yscale="log",
           ylim=(EXACT / 3, None))
    if drawn:
        ax.legend(fontsize=7, ncol=2)
    ax.text(1, EXACT, "exact  ", fontsize=7, ha="right", va="bottom",
            transform=ax.get_yaxis_transform(), color="#777777")


def _layer_norms(ax, norms):
    if norms is None or not len(norms):
        ax.axis("off")
        return
    layers = sorted(norms["layer"].unique(), key=lambda s: int(s))
    cmap = plt.get_cmap("viridis")
    for i, layer in enumerate(layers):
        c = norms[norms["layer"] == layer]
        ax.semilogy(c["step"], c["norm"].clip(lower=1e-300), color=cmap(i / max(1, len(layers) - 1)),
                    lw=1, label=f"layer {layer}" if len(layers) <= 8 or i in (0, len(layers) - 1)
                    else None)
    ax.set(title=f"Gradient norm per layer ({norms['framework'].iloc[0]}, float64)",
           xlabel="step", ylabel="||dL/d params of the layer||")
    ax.legend(fontsize=7, ncol=2)


def _heatmap(ax, comparisons):
    fws = [fw for fw in ORDER if fw in set(comparisons["a"]) | set(comparisons["b"])] \
        if comparisons is not None and len(comparisons) else []
    if not fws:
        ax.axis("off")
        return
    grid = np.full((len(fws), len(fws)), np.nan)
    grads = comparisons[comparisons["kind"] == "grad"]
    for (a, b), rows in grads.groupby(["a", "b"]):
        i, j = fws.index(a), fws.index(b)
        grid[i, j] = grid[j, i] = math.log10(max(rows["rel_err"].max(), EXACT))
    image = ax.imshow(grid, cmap="RdYlGn_r", vmin=-17, vmax=-5)
    for i in range(len(fws)):
        for j in range(len(fws)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"1e{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(fws)), fws, fontsize=8)
    ax.set_yticks(range(len(fws)), fws, fontsize=8)
    ax.set_title(f"Worst gradient rel. error, float64 (pass <= {PAIRWISE['float64']:g})")
    plt.colorbar(image, ax=ax, fraction=0.046, label="log10")


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
