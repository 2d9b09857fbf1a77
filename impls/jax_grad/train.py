"""The training loop: one jitted step (value_and_grad, norms, clip, Optax update) per batch."""
import math

import jax
import jax.numpy as jnp
import optax

from ..canonical import new_curves, penalised, record
from .losses import penalty
from .model import inputs
from .optimizers import build_optimizer

__all__ = ["train"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    cfg = model.spec["train"]
    optimizer = build_optimizer(model.spec["optimizer"], model.native)
    if model.native and cfg["clip_norm"] is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), optimizer)
    step = jax.jit(make_step(model, optimizer, cfg))  # compiled on the first call, then reused
    data = (*inputs(model, x, y, masks), jnp.asarray(batches))  # the whole data set, on device once
    opt_state = optimizer.init(model.params)
    curves = new_curves()
    for k in range(len(batches)):
        params, new_opt_state, model.state, loss, norm, layer_norms = step(
            model.params, opt_state, model.state, data, k)
        order = [layer["name"] for layer in model.spec["layers"]]  # jit returns sorted keys
        loss, norm = record(curves, float(loss), float(norm), {
            name: float(layer_norms[name]) for name in order if name in layer_norms})
        if not math.isfinite(loss) or not math.isfinite(norm):
            curves["diverged_at"] = k
            break
        model.params, opt_state = params, new_opt_state
    return curves


def make_step(model, optimizer, cfg):
    """One step as a pure function: (params, opt_state, state, data, k) -> new values, records."""

    def objective(params, state, x, y, masks):
        loss, state = model.objective(params, state, x, y, masks)
        return loss + penalty(weights(params), cfg["l1"], cfg["l2"]), state

    def step(params, opt_state, state, data, k):
        x, y, masks, batches = data
        idx = batches[k]
        step_masks = {name: m[k] for name, m in masks.items()}
        (loss, state), grads = jax.value_and_grad(objective, has_aux=True)(
            params, state, x[idx], y[idx], step_masks)
        squares = {layer: sum(jnp.sum(g * g) for g in jax.tree.leaves(tree))  # in the model's dtype
                   for layer, tree in grads.items() if jax.tree.leaves(tree)}
        norm = jnp.sqrt(sum(squares.values()))
        if cfg["clip_norm"] is not None and not model.native:
            scale = jnp.minimum(1.0, cfg["clip_norm"] / norm)  # exactly g *= min(1, c / |g|)
            grads = jax.tree.map(lambda g: g * scale, grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        layer_norms = {layer: jnp.sqrt(sq) for layer, sq in squares.items()}
        return optax.apply_updates(params, updates), opt_state, state, loss, norm, layer_norms
    return step


def weights(params):
    """The penalised tensors of a params pytree, by canonical name ("3.0.W")."""
    return penalised({jax.tree_util.keystr(path, simple=True, separator="."): w
                      for path, w in jax.tree_util.tree_leaves_with_path(params)})
