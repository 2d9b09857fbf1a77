"""The training loop: one jitted step (value_and_grad, norms, clip, Optax update) per batch.

`train` runs free; `lockstep` starts every step from a given state (the reference's)
and yields what the step did. Both call the same compiled step, which also returns the
gradients before clipping (the free run leaves them on the device): lockstep checks the
very program the free run took, and a model compiles once, not twice (compiling is most
of a short run's time).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..canonical import lockstep_record, native_on, new_curves, penalised, record
from .losses import native_penalty, penalty
from .model import canonical, get_params, inputs, set_params
from .optimizers import build_optimizer, get_optimizer_state, set_optimizer_state

__all__ = ["train", "lockstep"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update).

    The records stay on the device and are read every CHECK_EVERY steps: the steps run
    ahead without waiting for them. A diverged step found then is undone: the parameters
    before it are kept, the state after it, as if the loop had stopped there, and the steps
    computed after it are dropped. The step itself is the same function.

    The parameters before each step are not kept until the records are read: with 16 sets
    of them alive, each step wrote its new parameters to memory last used 16 steps before
    (and faulted 3.8 pages in, none now), and mnist_mlp's step at batch 1 took half as long
    again. The parameters before a diverged step are computed again from those before its
    window."""
    optimizer, step = trainer(model)
    x, y, _ = inputs(model, x, y, {})  # the whole data set, on the device once
    opt_state = optimizer.init(model.params)
    curves, pending = new_curves(), []
    for k in range(len(batches)):
        if not pending:  # a window starts: a diverged step in it is replayed from here
            start = (model.params, opt_state, model.state)
        model.params, opt_state, model.state, records, _ = step(
            model.params, opt_state, model.state, x, y, *step_inputs(model, batches, masks, k))
        pending.append((model.state, records))
        if len(pending) == CHECK_EVERY or k == len(batches) - 1:
            first = k + 1 - len(pending)
            at = first_diverged(model, curves, [records for _, records in pending], first)
            if at is not None:
                model.params = replayed(model, step, start, x, y, batches, masks, first, at)
                model.state = pending[at - first][0]
                break
            pending = []
    return curves


CHECK_EVERY = 16


def first_diverged(model, curves, rows, first):
    """Record the steps first, first + 1, ... from their records up to the first non-finite
    one; -> that step's index, or None."""
    layers = trained_layers(model, model.params)
    for j, (loss, norm, *layer_norms) in enumerate(as_floats(jax.device_get(rows))):
        loss, norm = record(curves, loss, norm, dict(zip(layers, layer_norms)))
        if not math.isfinite(loss) or not math.isfinite(norm):
            curves["diverged_at"] = first + j
            return first + j
    return None


def replayed(model, step, start, x, y, batches, masks, first, at):
    """The parameters before step `at`: steps first .. at - 1 again from `start`, the
    parameters, optimizer state and state before step `first`. The same compiled step on the
    same inputs gives the same bits."""
    params, opt_state, state = start
    for k in range(first, at):
        params, opt_state, state, _, _ = step(
            params, opt_state, state, x, y, *step_inputs(model, batches, masks, k))
    return params


def trained_layers(model, tree):
    """The layers with entries in `tree` (the params, or their gradients), in the spec's order:
    the order of a step's records."""
    return [layer["name"] for layer in model.spec["layers"]
            if jax.tree.leaves(tree.get(layer["name"], {}))]


def as_floats(records):
    """A step's records (or a list of them) as Python floats: widened exactly, as float() of
    each entry would."""
    return np.asarray(records).astype(np.float64).tolist()


def lockstep(model, x, y, batches, masks, starts):
    """Step k from the k-th of `starts`, (params, state, optimizer state or None: a fresh
    optimizer's), canonical; yields lockstep_record(...) of each step."""
    optimizer, step = trainer(model)
    x, y, _ = inputs(model, x, y, {})
    fresh = optimizer.init(model.params)  # also the template the canonical state fills
    for k, (params, state, opt_state) in zip(range(len(batches)), starts):
        set_params(model, params, state)
        opt_state = fresh if opt_state is None else set_optimizer_state(fresh, model, opt_state)
        new_params, new_opt_state, model.state, records, grads = step(
            model.params, opt_state, model.state, x, y, *step_inputs(model, batches, masks, k))
        grads = canonical(model, grads)  # before clipping
        loss, norm = as_floats(records)[:2]
        if math.isfinite(loss) and math.isfinite(norm):  # else: no update
            model.params, opt_state = new_params, new_opt_state
        yield lockstep_record(loss, grads, *get_params(model),
                              get_optimizer_state(opt_state, model))


def trainer(model):
    """(the Optax transformation, the jitted step), made once per model and kept on it; the
    step compiles on its first call."""
    if getattr(model, "trainer", None) is None:
        cfg = model.spec["train"]
        optimizer = build_optimizer(model.spec["optimizer"], model.native)
        if native_on(model.native, "optax.clip_by_global_norm") and cfg["clip_norm"] is not None:
            optimizer = optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), optimizer)
        model.trainer = (optimizer, jax.jit(make_step(model, optimizer, cfg)))
    return model.trainer


def step_inputs(model, batches, masks, k):
    """Step k's indices and masks, drawn now and fed as arguments (same shapes every step, so
    nothing recompiles); masks are 0/1, exact in any dtype. NumPy arrays: the jitted step
    moves them to the device with its other arguments, where a jnp.asarray each would cost
    0.1 ms, as long as a small model's whole step."""
    return (np.asarray(batches[k]),
            {name: np.asarray(m[k], model.spec["dtype"]) for name, m in masks.items()})


def make_step(model, optimizer, cfg):
    """One step as a pure function: (params, opt_state, state, x, y, idx, masks) -> new values,
    records and the gradients before clipping; idx (B,) picks the step's examples from the
    whole data set x, y. The records are one array, [loss, global norm, each trained layer's
    norm] (trained_layers' order): one array to hand back and fetch per step, not 2 + layers."""
    l1_l2 = native_penalty if native_on(model.native, "jax.abs_slope_at_zero") else penalty

    def objective(params, state, x, y, masks):
        loss, state = model.objective(params, state, x, y, masks)
        return loss + l1_l2(weights(params), cfg["l1"], cfg["l2"]), state

    optax_clips = native_on(model.native, "optax.clip_by_global_norm")  # in `optimizer`

    def step(params, opt_state, state, x, y, idx, masks):
        (loss, state), raw = jax.value_and_grad(objective, has_aux=True)(
            params, state, x[idx], y[idx], masks)
        squares = {layer: sum(jnp.sum(g * g) for g in jax.tree.leaves(tree))  # in the model's dtype
                   for layer, tree in raw.items() if jax.tree.leaves(tree)}
        norm = jnp.sqrt(sum(squares.values()))
        grads = raw
        if cfg["clip_norm"] is not None and not optax_clips:
            scale = jnp.minimum(1.0, cfg["clip_norm"] / norm)  # exactly g *= min(1, c / |g|)
            grads = jax.tree.map(lambda g: g * scale, raw)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        records = jnp.stack([loss, norm, *(jnp.sqrt(squares[layer])
                                           for layer in trained_layers(model, raw))])
        return optax.apply_updates(params, updates), opt_state, state, records, raw
    return step


def weights(params):
    """The penalised tensors of a params pytree, by canonical name ("3.0.W")."""
    return penalised({jax.tree_util.keystr(path, simple=True, separator="."): w
                      for path, w in jax.tree_util.tree_leaves_with_path(params)})
