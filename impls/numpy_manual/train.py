"""The training loop, by hand: forward, backward, penalty, record, clip, update.

`train` runs free; `lockstep` starts every step from a given state (the reference's)
and yields what the step did. Both take the same step: `gradients`, then `update`.
"""
import math

import numpy as np

from ..canonical import lockstep_record, new_curves, penalised, per_layer, record
from .losses import add_vanishing_penalty, buffer, buffered_penalty, penalty_vanishes
from .model import get_params, loss_and_gradients, set_params
from .optimizers import build_optimizer, get_optimizer_state, set_optimizer_state

__all__ = ["train", "lockstep"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    optimizer = build_optimizer(model.spec["optimizer"], False)
    curves, scratch = new_curves(), {}
    for step, idx in enumerate(batches):
        loss, grads, squares, norm = gradients(model, x[idx], y[idx], step_masks(masks, step),
                                               scratch)
        record(curves, float(loss), float(norm),
               {layer: float(np.sqrt(sq)) for layer, sq in squares.items()})
        if not (math.isfinite(loss) and math.isfinite(norm)):
            curves["diverged_at"] = step
            break
        # the first update makes new params, which the loop owns and then updates in place
        update(model, optimizer, grads, norm, in_place=True, own_params=step > 0)
    return curves


def lockstep(model, x, y, batches, masks, starts):
    """Step k from the k-th of `starts`, (params, state, optimizer state or None: a fresh
    optimizer's), canonical; yields lockstep_record(...) of each step."""
    optimizer = build_optimizer(model.spec["optimizer"], False)
    for step, (idx, (params, state, opt_state)) in enumerate(zip(batches, starts)):
        set_params(model, params, state)
        if opt_state is not None:
            set_optimizer_state(optimizer, model, opt_state)
        loss, grads, _, norm = gradients(model, x[idx], y[idx], step_masks(masks, step))
        raw = dict(grads)  # before clipping
        if np.isfinite(loss) and np.isfinite(norm):  # a diverged step stops before its update
            update(model, optimizer, grads, norm)
        yield lockstep_record(float(loss), raw, *get_params(model),
                              get_optimizer_state(optimizer, model))


def step_masks(masks, step):
    return {name: m[step] for name, m in masks.items()}


def gradients(model, x, y, masks, scratch=None):
    """The objective (data loss + L1/L2) and its gradients, with the squared norm per layer.
    `scratch` (losses.buffer's, kept between steps) holds the arrays the penalty and the
    squares are written into."""
    cfg = model.spec["train"]
    loss, grads, _ = loss_and_gradients(model, x, y, masks)
    weights = penalised(model.params)
    if penalty_vanishes(weights, cfg["l1"], cfg["l2"]):  # the same bits, a few passes less
        loss += 0.0  # the penalty's value: a loss of -0 becomes +0 with it too
        add_vanishing_penalty(grads, weights, cfg["l1"], cfg["l2"], scratch)
    else:  # at zero too where a weight is not finite: 0 * inf is NaN, as in every framework
        extra, extra_grads = buffered_penalty(weights, cfg["l1"], cfg["l2"], scratch)
        loss += extra
        for name, g in extra_grads.items():
            grads[name] += g  # each gradient is the backward's own new array
    squares = per_layer(grads, lambda g: squared(g, scratch))  # in the model's dtype
    return loss, grads, squares, np.sqrt(sum(squares.values()))


def squared(g, scratch):
    """sum g^2, the elementwise squares written into a buffer (losses.buffer) and summed by
    np.add.reduce, which ndarray.sum calls through a Python wrapper: the same pairwise sum."""
    return np.add.reduce(np.multiply(g, g, out=buffer(scratch, g, "squares")), axis=None)


def update(model, optimizer, grads, norm, in_place=False, own_params=False):
    """Clip (g *= min(1, clip_norm / norm)), then the optimizer's step. `in_place`: the
    gradients are not needed afterwards and are scaled where they are; `own_params` too: the
    parameters are the loop's own (no caller holds them), and the step may overwrite both."""
    clip_norm = model.spec["train"]["clip_norm"]
    if clip_norm is not None:
        scale = min(1.0, clip_norm / norm)
        if in_place:
            for g in grads.values():
                g *= scale
        else:
            grads = {k: g * scale for k, g in grads.items()}
    model.params = optimizer.step(model.params, grads, in_place=in_place and own_params)
