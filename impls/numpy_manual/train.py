"""The training loop, by hand: forward, backward, penalty, record, clip, update."""
import numpy as np

from .losses import penalty
from .model import loss_and_gradients
from .optimizers import build_optimizer

__all__ = ["train"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    cfg = model.spec["train"]
    optimizer = build_optimizer(model.spec["optimizer"], False)
    curves = {"loss": [], "grad_norm": [], "layer_norms": {}, "diverged_at": None}
    for step, idx in enumerate(batches):
        step_masks = {name: m[step] for name, m in masks.items()}
        loss, grads, _ = loss_and_gradients(model, x[idx], y[idx], step_masks)
        weights = {k: v for k, v in model.params.items() if k.rsplit(".", 1)[1] == "W"}
        extra, extra_grads = penalty(weights, cfg["l1"], cfg["l2"])
        loss += extra
        for name, g in extra_grads.items():
            grads[name] = grads[name] + g
        norm = record(curves, loss, grads)
        if not np.isfinite(loss) or not np.isfinite(norm):
            curves["diverged_at"] = step
            break
        if cfg["clip_norm"] is not None:
            scale = min(1.0, cfg["clip_norm"] / norm)
            grads = {k: g * scale for k, g in grads.items()}
        model.params = optimizer.step(model.params, grads)
    return curves


def record(curves, loss, grads):
    """Append the loss, the global gradient norm and one norm per top-level layer."""
    squares = {}
    for name, g in grads.items():
        layer = name.split(".", 1)[0]
        squares[layer] = squares.get(layer, 0.0) + (g * g).sum()  # in the model's dtype
    for layer, sq in squares.items():
        curves["layer_norms"].setdefault(layer, []).append(float(np.sqrt(sq)))
    norm = np.sqrt(sum(squares.values()))
    curves["loss"].append(float(loss))
    curves["grad_norm"].append(float(norm))
    return norm
