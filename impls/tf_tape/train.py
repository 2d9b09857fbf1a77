"""The training loop: tape the objective, record, clip, optimizer.apply_gradients.

Two tf.functions per step: `gradients` (forward and backward, traced once) and
`update` (clip and apply); between them the loss and norms come back to Python so
that a diverged step stops before its update.
"""
import numpy as np
import tensorflow as tf

from ..canonical import new_curves, penalised, per_layer, record
from .losses import penalty
from .model import canonical_variables, forward, trainable
from .optimizers import build_optimizer

__all__ = ["train"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    optimizer = build_optimizer(model.spec["optimizer"], model.native)
    gradients, update = compile_step(model, optimizer, model.spec["train"])
    curves = new_curves()
    for step, idx in enumerate(batches):
        step_masks = {name: m[step] for name, m in masks.items()}
        loss, grads, squares = gradients(x[idx], y[idx], step_masks)
        loss, squares = loss.numpy(), {k: sq.numpy() for k, sq in squares.items()}
        norm = np.sqrt(sum(squares.values()))
        record(curves, float(loss), float(norm),
               {layer: float(np.sqrt(sq)) for layer, sq in squares.items()})
        if not np.isfinite(loss) or not np.isfinite(norm):
            curves["diverged_at"] = step
            break
        update(grads, tf.constant(norm))  # a tensor: a NumPy scalar would retrace every step
    return curves


def compile_step(model, optimizer, cfg):
    """The step's two tf.functions: gradients of the objective, and clip + update."""
    entries = trainable(model)
    variables = [v for _, _, v in entries]
    optimizer.build(variables)  # slot variables now, not inside a tf.function
    if model.native and cfg["clip_norm"] is not None:
        optimizer.global_clipnorm = cfg["clip_norm"]  # Keras clips inside apply_gradients

    @tf.function
    def gradients(x, y, masks):
        with tf.GradientTape() as tape:
            weights = penalised(canonical_variables(model))
            loss = forward(model, x, y, masks) + penalty(weights, cfg["l1"], cfg["l2"])
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # dense
        squares = per_layer({f"{layer}.{path}": g for (layer, path, _), g in zip(entries, grads)},
                            lambda g: tf.reduce_sum(g * g))  # in the model's dtype
        return loss, grads, squares

    @tf.function
    def update(grads, norm):
        if cfg["clip_norm"] is not None and not model.native:
            scale = tf.minimum(cfg["clip_norm"] / norm, 1.0)  # min(1, clip / norm)
            grads = [g * scale for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
    return gradients, update

