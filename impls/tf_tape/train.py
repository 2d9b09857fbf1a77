"""The training loop: tape the objective, record, clip, optimizer.apply_gradients.

One tf.function per model, `step` (compile_step): the forward and backward pass, the
norms, and the clip and update under a tf.cond, so that a diverged step stops before its
update. `train` runs free: one call per step, the loss and global norm read each step, the
per-layer norms at the end. `lockstep` starts every step from a given state (the
reference's) and yields what the step did: the same `step` between `load` (the whole
state) and `read` (the gradients before clipping and the state after), `exchange`. So the
step's graph, whose tracing and optimising is most of a short run's time, is made once for
both; one eager assign per variable would cost more than the step.
"""
import numpy as np
import tensorflow as tf

from ..canonical import lockstep_record, native_on, new_curves, penalised, per_layer, record
from .layout import from_native
from .losses import penalty
from .model import canonical_variables, direct, forward, set_params, trainable
from .optimizers import (build_optimizer, get_optimizer_state, set_optimizer_state,
                         state_tensors)

__all__ = ["train", "lockstep"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    optimizer, step_fn, layers, fresh = trainer(model)
    set_optimizer_state(optimizer, model, fresh)  # the same start, should it train again
    step_fn = direct(step_fn)
    records, squares = [], []
    for step, idx in enumerate(batches):
        loss_norm, per_layer_squares, _ = step_fn(*batch(x, y, masks, idx, step))
        records.append(loss_norm.numpy())  # (2,): the loss and the global norm
        squares.append(per_layer_squares)
        if not np.isfinite(records[-1]).all():  # the step did not update
            break
    curves = new_curves()
    layer_norms = np.sqrt(tf.stack(squares).numpy()) if squares else None  # (steps, layers)
    for k, (loss, norm) in enumerate(records):
        record(curves, float(loss), float(norm),
               {layer: float(layer_norms[k, j]) for j, layer in enumerate(layers)})
        if not np.isfinite(loss) or not np.isfinite(norm):
            curves["diverged_at"] = k
    return curves


def lockstep(model, x, y, batches, masks, starts):
    """Step k from the k-th of `starts`, (params, state, optimizer state or None: a fresh
    optimizer's), canonical; yields lockstep_record(...) of each step. A step is the free
    run's own `step` between `load` and `read` (exchange): one function around all three
    would be traced and optimised again for every model."""
    optimizer, step_fn, _, fresh = trainer(model)
    load, read = exchange(model, optimizer)
    step_fn, load, read = direct(step_fn), direct(load), direct(read)
    for step, (idx, (params, state, opt_state)) in enumerate(zip(batches, starts)):
        opt_state = fresh if opt_state is None else opt_state
        load(tensors(params), tensors(state),
             tensors(dict(opt_state, step=np.asarray(opt_state["step"], np.int64))))
        loss_norm, _, grads = step_fn(*batch(x, y, masks, idx, step))
        canonical, params, state, opt_state = (numpy(part) for part in read(grads))
        yield lockstep_record(float(loss_norm.numpy()[0]), canonical, params, state,
                              dict(opt_state, step=int(opt_state["step"])))


def trainer(model):
    """(optimizer, step, the names of the layers step's squares are of, the optimizer's fresh
    state), made once per model and kept on it: train and lockstep take the same traced step
    and start from the fresh state."""
    if getattr(model, "trainer", None) is None:
        optimizer = build_optimizer(model.spec["optimizer"], model.native)
        step, layers = compile_step(model, optimizer, model.spec["train"])
        model.trainer = (optimizer, step, layers, get_optimizer_state(optimizer, model))
    return model.trainer


def layer_names(model):
    """The layers with trainable variables, in the model's order: the order of the sum."""
    return list(dict.fromkeys(layer for layer, _, _ in trainable(model)))


def update_unless_diverged(loss, grads, squares, layers, update):
    """Inside a tf.function: the global norm and the update, skipped when the loss or the norm
    is not finite; -> (the squares stacked in layer order (layers,), the norm). The norm is
    the running sum of the layers' squares in their order, then sqrt, in the model's dtype:
    cumsum adds one after another, where a chain of adds is one the graph optimizer may
    regroup into one AddN."""
    squares = tf.stack([squares[layer] for layer in layers])  # (layers,)
    norm = tf.sqrt(tf.cumsum(squares)[-1])
    finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))
    tf.cond(finite, lambda: update(grads, norm), lambda: None)  # stateful: it runs unread
    return squares, norm


def batch(x, y, masks, idx, step):
    """(x, y, masks) of one step, as tensors."""
    return tf.constant(x[idx]), tf.constant(y[idx]), tensors(
        {name: m[step] for name, m in masks.items()})


def tensors(arrays):
    """{name: tensor} of NumPy arrays. Converted here because a tf.function's own conversion
    of NumPy arguments is slower: deep_relu_mlp's `load` takes 3.4 ms a call given 43
    arrays, 1.7 ms given them converted here (0.6 ms of it the conversion). tf.constant,
    not tf.convert_to_tensor: the same tensor (dtype and bytes as given) without the
    conversion registry's dispatch, 9 us an array against 15."""
    return {name: tf.constant(a) for name, a in arrays.items()}


def exchange(model, optimizer):
    """Two tf.functions, traced once per model: load(params, state, optimizer state) sets
    them (model.set_params, set_optimizer_state); read(the `gradients` list) -> (canonical
    gradients, params, state, optimizer state), all {canonical name: tensor}."""
    if getattr(model, "exchange", None) is None:
        params, state = list(model.param_names), list(model.state_names)

        @tf.function(autograph=False)  # Python loops over a fixed structure
        def load(params, state, opt_state):
            set_params(model, params, state)
            set_optimizer_state(optimizer, model, opt_state)

        @tf.function(autograph=False)  # Python loops over a fixed structure
        def read(grads):
            native = {name: {} for name in model.variables}
            for (name, path, _), g in zip(trainable(model), grads):
                native[name][path] = g
            canonical = {}
            for layer in model.spec["layers"]:
                local = from_native(layer, native[layer["name"]])
                canonical.update({f"{layer['name']}.{k}": g for k, g in local.items()})
            values = {k: tf.convert_to_tensor(v) for k, v in canonical_variables(model).items()}
            return ({k: canonical[k] for k in params}, {k: values[k] for k in params},
                    {k: values[k] for k in state}, state_tensors(optimizer, model))
        model.exchange = (load, read)
    return model.exchange


def numpy(tensors):
    return {k: v.numpy() for k, v in tensors.items()}


def compile_step(model, optimizer, cfg):
    """(step(x, y, masks) -> ([loss, global norm], squared norm per layer, the gradients
    before clipping), the layer names): one tf.function. The global norm is taken as train
    took it on the host (the sum of the layers' squares in their order, then sqrt, in the
    model's dtype); the update runs under a tf.cond, skipped when the loss or the norm is
    not finite. Its parts are plain functions, traced into the one graph: as tf.functions
    of their own, each was traced into a graph apart and then inlined, and the first steps
    of the zoo's models in both dtypes took 15.3 s instead of 11.9 s."""
    entries = trainable(model)
    variables = [v for _, _, v in entries]
    layers = layer_names(model)
    optimizer.build(variables)  # slot variables now, not inside a tf.function
    keras_clips = native_on(model.native, "keras.global_clipnorm")
    if keras_clips and cfg["clip_norm"] is not None:
        optimizer.global_clipnorm = cfg["clip_norm"]  # Keras clips inside apply_gradients

    def gradients(x, y, masks):
        with tf.GradientTape() as tape:
            weights = penalised(canonical_variables(model))
            loss = forward(model, x, y, masks) + penalty(weights, cfg["l1"], cfg["l2"])
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # dense
        squares = per_layer({f"{layer}.{path}": g for (layer, path, _), g in zip(entries, grads)},
                            lambda g: tf.reduce_sum(g * g))  # in the model's dtype
        return loss, grads, squares

    def update(grads, norm):
        if cfg["clip_norm"] is not None and not keras_clips:
            scale = tf.minimum(cfg["clip_norm"] / norm, 1.0)  # min(1, clip / norm)
            grads = [g * scale for g in grads]
        optimizer.apply_gradients(zip(grads, variables))

    @tf.function(autograph=False)  # as model.py's: no Python branch on a tensor (tf.cond)
    def step(x, y, masks):
        loss, grads, squares = gradients(x, y, masks)
        squares, norm = update_unless_diverged(loss, grads, squares, layers, update)
        return tf.stack([loss, norm]), squares, grads
    return step, layers
