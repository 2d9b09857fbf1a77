"""The training loop, by hand: forward, backward, penalty, record, clip, update."""
import numpy as np

from ..canonical import new_curves, penalised, per_layer, record
from .losses import penalty
from .model import loss_and_gradients
from .optimizers import build_optimizer

__all__ = ["train"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    cfg = model.spec["train"]
    optimizer = build_optimizer(model.spec["optimizer"], False)
    curves = new_curves()
    for step, idx in enumerate(batches):
        step_masks = {name: m[step] for name, m in masks.items()}
        loss, grads, _ = loss_and_gradients(model, x[idx], y[idx], step_masks)
        extra, extra_grads = penalty(penalised(model.params), cfg["l1"], cfg["l2"])
        loss += extra
        for name, g in extra_grads.items():
            grads[name] = grads[name] + g
        squares = per_layer(grads, lambda g: (g * g).sum())  # in the model's dtype
        norm = np.sqrt(sum(squares.values()))
        record(curves, float(loss), float(norm),
               {layer: float(np.sqrt(sq)) for layer, sq in squares.items()})
        if not np.isfinite(loss) or not np.isfinite(norm):
            curves["diverged_at"] = step
            break
        if cfg["clip_norm"] is not None:
            scale = min(1.0, cfg["clip_norm"] / norm)
            grads = {k: g * scale for k, g in grads.items()}
        model.params = optimizer.step(model.params, grads)
    return curves

