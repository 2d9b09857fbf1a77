"""The participant "original" for a Keras import: the user's model, loaded from its .keras file.

Loaded in a tensorflow worker (refused if the file changed since the import); in the
spec's dtype, its layers are those of the file (rebuilt from their own configs with the
dtype changed if the file's is another), walked into the same chain of pieces as at the
import. Its layers are called in their order, in training mode, on inputs in the model's
own layout: a functional model's graph does exactly that, and calling them one by one
lets Dropout layers apply the harness's masks instead of drawing their own, and gives
each layer's output. A Dense or Conv2D with an activation runs as its two halves (the
layer with a linear activation, then its activation function: the same operations).
Training uses the spec's loss and the aligned Keras optimizers of the tensorflow
implementation, so that the original's curve is comparable with the four.
"""
import functools
from contextlib import contextmanager
from types import SimpleNamespace

import keras
import numpy as np
import tensorflow as tf

from .keras_graph import chain, load, native_variables
from .pieces import to_canonical, to_native, walk


def implementation(impl, original):
    """The implementation API (impls/README.md) over the original Keras model."""
    def build_model(spec, native=False):
        return Original(spec, original, impl, native)
    model = SimpleNamespace(**{fn.__name__: one_line(fn) for fn in (
        build_model, set_params, get_params, loss_value, loss_and_gradients, layer_values,
        hessian_vector_product)})
    return SimpleNamespace(name="original", model=model,
                           train=SimpleNamespace(train=one_line(train)))


def one_line(fn):
    """TensorFlow's errors carry the Python stack of the traced graph: the line that says
    what went wrong is the one before the node's name."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except tf.errors.OpError as err:
            lines = [line.strip() for line in err.message.splitlines()
                     if line.strip() and not line.startswith((" ", "\t"))
                     and not line.startswith(("Detected at node", "Graph execution error"))]
            raise RuntimeError(f"TensorFlow: {lines[-1] if lines else err.message[:200]}") \
                from None
    return call


def in_dtype(model, dtype):
    """The model itself, or, if its layers compute in another dtype, the same layers
    rebuilt from their configs in `dtype` (the weights are set from the spec's anyway)."""
    if all(layer.dtype_policy.name == dtype for layer in model.layers
           if type(layer).__name__ != "InputLayer"):
        return model

    def rebuilt(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Layer):  # an operation (x + y) has no dtype
            config["dtype"] = dtype
        return type(layer).from_config(config)
    return keras.models.clone_model(model, clone_function=rebuilt)


def unfreeze(model):
    """trainable = True on every layer, nested models' too (setting it on the model leaves a
    layer frozen by its own flag frozen)."""
    model.trainable = True
    for layer in model.layers:
        layer.trainable = True
        if hasattr(layer, "layers"):
            unfreeze(layer)


class Original:
    def __init__(self, spec, original, impl, native):
        self.spec, self.native, self.impl = spec, native, impl
        self.dtype = spec["dtype"]
        self.model = in_dtype(load(original["path"], original["sha256"]), self.dtype)
        # a spec has no frozen parameters: the four differentiate and train every one, and so
        # does the original (a frozen BatchNormalization would also normalise with its
        # moving statistics, where the spec's uses the batch's)
        unfreeze(self.model)
        self.pieces, self.layout, _, _ = chain(self.model)
        self.named = list(walk(self.pieces))
        self.variables = {name: native_variables(p.node) for name, p in self.named
                          if p.links}
        self.loss = impl.losses.build_loss(spec["loss"], native)
        self.gradients = tf.function(self._gradients)
        self.value = tf.function(self._value)
        self.values = tf.function(self._values)
        self.hvp = tf.function(self._hvp)

    def inputs(self, x, masks):
        """The batch and the masks in the model's layouts."""
        layouts = {name: p.in_layout for name, p in self.named}
        return (np.ascontiguousarray(to_native(x, self.layout)),
                {k: np.ascontiguousarray(to_native(m, layouts[k])) for k, m in masks.items()})

    def run(self, pieces, x, masks, prefix=""):
        """x through the pieces in turn (a block's pieces are named "<block>.<j>")."""
        for i, piece in enumerate(pieces):
            x = self.call(piece, f"{prefix}{i}", x, masks)
        return x

    def call(self, piece, name, x, masks):
        kind, layer = piece.table["type"], piece.node
        if piece.layers is not None:
            return x + self.run(piece.layers, x, masks, name + ".")    # Add: x + f(x)
        if kind == "dropout":
            return x * (masks[name] / (1 - piece.table["rate"]))       # the harness's mask
        if piece.part == "activation":
            return layer.activation(x)
        if kind == "attention":
            return layer(x, x, use_causal_mask=piece.table["causal"], training=True)
        with linear(layer, piece.part == "linear"):
            return layer(x, training=True)

    def trainable(self):
        """[(canonical name, local, native name, variable)] of every trainable tensor."""
        return [(name, local, n, self.variables[name][n]) for name, p in self.named
                for local, link in p.links.items() if local not in p.state
                for n in link.natives]

    def _value(self, x, y, masks):
        with keras.StatelessScope():  # the running statistics' updates are dropped
            return self.loss(self.run(self.pieces, x, masks), y)

    def _gradients(self, x, y, masks):
        entries = self.trainable()
        with tf.GradientTape() as tape:
            loss = self.loss(self.run(self.pieces, x, masks), y)
        grads = tape.gradient(loss, [v for *_, v in entries])
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _hvp(self, x, y, masks, directions):
        """H v by nested tapes, v given per trainable tensor in order (running statistics
        untouched), as the tensorflow implementation does it."""
        variables = [v for *_, v in self.trainable()]
        zero = tf.UnconnectedGradients.ZERO
        with keras.StatelessScope(), tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self.loss(self.run(self.pieces, x, masks), y)
            grads = inner.gradient(loss, variables, unconnected_gradients=zero)
            dot = tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g) * d)
                            for g, d in zip(grads, directions)])
        return [tf.convert_to_tensor(h) for h in
                outer.gradient(dot, variables, unconnected_gradients=zero)]

    def _values(self, x, y, masks):
        inputs, outputs = {}, {}
        with keras.StatelessScope(), tf.GradientTape() as tape:
            h = x
            for i, piece in enumerate(self.pieces):
                name = str(i)
                if h.dtype.is_floating:   # token ids have no gradient
                    tape.watch(h)
                    inputs[name] = h
                h = outputs[name] = self.call(piece, name, h, masks)
            loss = self.loss(h, y)
        return outputs, tape.gradient(loss, inputs)


@contextmanager
def linear(layer, swap):
    """The layer without its activation (the next piece applies it), if `swap`."""
    if not swap:
        yield
        return
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = saved


# ---- weights -------------------------------------------------------------------------------------

def set_params(model, params, state):
    values = {**params, **state}
    for name, piece in model.named:
        for local, link in piece.links.items():
            for native, value in link.native(np.asarray(values[f"{name}.{local}"])).items():
                variable = model.variables[name][native]
                variable.assign(np.asarray(value, variable.dtype))


def _canonical(model, read, state):
    out = {}
    for name, piece in model.named:
        for local, link in piece.links.items():
            if (local in piece.state) == state:
                out[f"{name}.{local}"] = np.array(link.canonical(
                    {n: read(name, n) for n in link.natives}))
    return out


def get_params(model):
    def read(name, n):
        return model.variables[name][n].numpy()
    return _canonical(model, read, False), _canonical(model, read, True)


# ---- loss, gradients, layer values ---------------------------------------------------------------

def loss_value(model, x, y, masks):
    x, masks = model.inputs(x, masks)
    return float(model.value(x, y, masks))


def loss_and_gradients(model, x, y, masks):
    x, masks = model.inputs(x, masks)
    loss, grads = model.gradients(x, y, masks)
    native = {(name, n): g.numpy() for (name, _, n, _), g in zip(model.trainable(), grads)}
    grads = _canonical(model, lambda name, n: native[(name, n)], False)
    return float(loss), grads, get_params(model)[1]


def hessian_vector_product(model, x, y, masks, vector):
    """-> ({canonical name: H v}, "nested GradientTape")."""
    x, masks = model.inputs(x, masks)
    entries = model.trainable()
    native = {}
    for name, piece in model.named:
        for local, link in piece.links.items():
            if local not in piece.state:
                for n, value in link.native(np.asarray(vector[f"{name}.{local}"])).items():
                    native[(name, n)] = value
    directions = [tf.constant(np.asarray(native[(name, n)], v.dtype)) for name, _, n, v in entries]
    hv = {(name, n): h.numpy() for (name, _, n, _), h in
          zip(entries, model.hvp(x, y, masks, directions))}
    return _canonical(model, lambda name, n: hv[(name, n)], False), "nested GradientTape"


def layer_values(model, x, y, masks):
    x, masks = model.inputs(x, masks)
    outputs, input_grads = model.values(x, y, masks)
    top = [(name, p) for name, p in model.named if "." not in name]
    out = {name: to_canonical(np.asarray(outputs[name]), p.out_layout) for name, p in top}
    grads = {name: to_canonical(np.asarray(input_grads[name]), p.in_layout)
             for name, p in top if name in input_grads}
    return out, grads


# ---- training ------------------------------------------------------------------------------------

def train(model, x, y, batches, masks):
    """The spec's training loop (impls/README.md) on the original model: the tensorflow
    implementation's aligned Keras optimizer, the spec's loss, L1/L2 on the canonical W,
    clipping, and the curves as the implementations record them."""
    cfg, impl = model.spec["train"], model.impl
    entries = model.trainable()
    variables = list({id(v): v for *_, v in entries}.values())
    optimizer = impl.optimizers.build_optimizer(model.spec["optimizer"], model.native)
    optimizer.build(variables)
    if model.native and cfg["clip_norm"] is not None:
        optimizer.global_clipnorm = cfg["clip_norm"]
    weights = {f"{name}.W": v for name, local, _, v in entries if local == "W"}
    layer_of = {id(v): name.split(".")[0] for name, *_, v in entries}

    @tf.function
    def gradients(xb, yb, masks_b):
        with tf.GradientTape() as tape:
            loss = model.loss(model.run(model.pieces, xb, masks_b), yb) + impl.losses.penalty(
                weights, cfg["l1"], cfg["l2"])
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
        squares = {}
        for v, g in zip(variables, grads):
            layer = layer_of[id(v)]
            squares[layer] = squares.get(layer, 0.0) + tf.reduce_sum(g * g)
        return loss, grads, squares

    @tf.function
    def update(grads, norm):
        if cfg["clip_norm"] is not None and not model.native:
            scale = tf.minimum(cfg["clip_norm"] / norm, 1.0)   # min(1, clip / norm)
            grads = [g * scale for g in grads]
        optimizer.apply_gradients(zip(grads, variables))

    curves = {"loss": [], "grad_norm": [], "layer_norms": {}, "diverged_at": None}
    for step, idx in enumerate(batches):
        xb, masks_b = model.inputs(x[idx], {k: m[step] for k, m in masks.items()})
        loss, grads, squares = gradients(xb, y[idx], masks_b)
        loss, squares = float(loss.numpy()), {k: sq.numpy() for k, sq in squares.items()}
        norm = np.sqrt(sum(squares.values()))
        for layer, sq in squares.items():
            curves["layer_norms"].setdefault(layer, []).append(float(np.sqrt(sq)))
        curves["loss"].append(loss)
        curves["grad_norm"].append(float(norm))
        if not np.isfinite(loss) or not np.isfinite(norm):
            curves["diverged_at"] = step
            break
        update(grads, tf.constant(norm))
    return curves
