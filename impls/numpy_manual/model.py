"""The network as a list of layers, and the chain rule over it, written out.

forward: x -> layer 0 -> layer 1 -> ... -> y_hat -> loss
backward: dloss/dy_hat -> ... -> layer 1.backward -> layer 0.backward, each turning
the gradient of its output into the gradient of its input and of its parameters.

bfloat16 is no NumPy format: on ml_dtypes' arrays a sum runs in bfloat16 one element
after another (10000 ones sum to 256), and matmul, where and erf return float32 or
float64. So a bfloat16 model computes in float32 and rounds every value that leaves a
layer (each output, dL/dx, gradient, the loss and dL/dy_hat) to bfloat16: bfloat16
storage with float32 arithmetic. float16 is NumPy's own (its sums and matmuls accumulate
in float32 inside, its elementwise ops are float16).
"""
from dataclasses import dataclass, field

import numpy as np

from ..canonical import by_layer, layer_of, local_params
from .layers import build_layer, tangent
from .layout import from_native, to_native
from .losses import build_loss, curvature

__all__ = ["build_model", "set_params", "get_params", "loss_value", "probe_losses",
           "loss_and_gradients", "layer_values", "hessian_vector_product"]


@dataclass
class Context:
    masks: dict            # dropout layer name -> (B, ...) keep-mask
    state: dict            # "i.running_mean" etc., updated by BatchNorm's forward


@dataclass
class Model:
    spec: dict
    layers: list           # (spec entry, layer object), top level only
    loss: object
    params: dict = field(default_factory=dict)   # canonical name -> array
    state: dict = field(default_factory=dict)
    computed_in: str = ""  # the spec's dtype, or float32 for bfloat16 (see the top)
    rounds: bool = field(init=False)  # what leaves a layer is rounded: set from the above
    jitter: tuple = field(init=False)  # (unit, Generator) of the spec's "jitter", or None
    flips: dict = field(init=False)  # a top-level layer's name -> flat indices of its input

    def __post_init__(self):
        noise = self.spec.get("jitter")  # the harness's control (compare/control.py) only
        self.jitter = (noise["unit"], np.random.default_rng(noise["seed"])) if noise else None
        # read about 20 times a step (stored, returned): a flag, not a compare of strings
        self.rounds = self.computed_in != self.spec["dtype"] or self.jitter is not None
        # the harness's lockstep control only: a ReLU's inputs within rounding's reach of 0,
        # taken to its other side (run/lockstep_control.py)
        self.flips = {name: np.asarray(at, np.intp)
                      for name, at in self.spec.get("flip", {}).items()}


COMPUTED_IN = {"bfloat16": "float32"}  # storage format -> the format NumPy computes it in


def build_model(spec, native=False):
    computed_in = COMPUTED_IN.get(spec["dtype"], spec["dtype"])
    layers = [(layer, build_layer(layer, computed_in, native)) for layer in spec["layers"]]
    return Model(spec, layers, build_loss(spec["loss"], native), computed_in=computed_in)


def stored(model, a):
    """`a` rounded to the spec's dtype, kept in the format computed in (bfloat16: float32).
    With the spec's "jitter" {unit, seed}, each entry is moved by a random relative unit
    instead: a rounding of every value that leaves a layer, drawn (the harness's control
    measures how far such roundings move the results: compare/control.py)."""
    if not model.rounds or a is None or a.dtype.kind not in "fV":
        return a  # token ids, and the embedding's missing dx, pass
    if model.jitter:
        unit, rng = model.jitter
        a = np.asarray(a)
        return a + a * (rng.uniform(-1, 1, a.shape).astype(a.dtype) * a.dtype.type(unit))
    return np.asarray(a).astype(model.spec["dtype"]).astype(model.computed_in)


def computed(model, a, copy=True):
    """An array of the spec's dtype in the format computed in (exact: a widening): a copy the
    model owns, or with `copy` False the array itself where it is in that format (a batch the
    forward only reads: copying mnist_mlp's took 0.6 ms of a 13 ms step at batch 1000)."""
    a = np.array(a, copy=True if copy else None)
    return a if a.dtype.kind in "iub" else a.astype(model.computed_in, copy=False)


def returned(model, arrays):
    """{name: array} in the spec's dtype (bfloat16 values held in float32: exact)."""
    if not model.rounds:
        return dict(arrays)
    return {k: np.asarray(v).astype(model.spec["dtype"]) for k, v in arrays.items()}


def set_params(model, params, state):
    model.params, grouped = {}, by_layer(params)
    for layer, _ in model.layers:
        set_layer(model, layer, grouped.get(layer["name"], {}))
    model.state = {k: computed(model, v) for k, v in state.items()}


def set_layer(model, layer, local):
    """One layer's params ({local canonical name: array}) into the model, native layout."""
    native = to_native(layer, local)
    model.params.update({f"{layer['name']}.{k}": computed(model, v) for k, v in native.items()})


def get_params(model):
    params, grouped = {}, by_layer(model.params)
    for layer, _ in model.layers:
        canonical = from_native(layer, grouped.get(layer["name"], {}))
        params.update({f"{layer['name']}.{k}": v for k, v in canonical.items()})
    return returned(model, params), returned(model, model.state)


def forward(model, x, y, masks):
    """-> (loss, dloss/dy_hat, caches, new state, each layer's output)."""
    ctx = Context({k: computed(model, m, copy=False) for k, m in masks.items()},
                  dict(model.state))
    x, y = computed(model, x, copy=False), computed(model, y, copy=False)
    caches, outputs, grouped = [], [], by_layer(model.params)
    for layer, obj in model.layers:
        if layer["name"] in model.flips:
            x = flipped(x, model.flips[layer["name"]])
        x, cache = obj.forward(grouped.get(layer["name"], {}), x, ctx)  # shapes: layer["out_shape"]
        x = stored(model, x)
        caches.append(cache)
        outputs.append(x)
    loss, dy_hat = model.loss(x, y)
    ctx.state = {k: stored(model, v) for k, v in ctx.state.items()}
    return stored(model, np.asarray(loss)), stored(model, dy_hat), caches, ctx.state, outputs


def flipped(x, at):
    """x with its entries at flat indices `at` negated: a value near a kink at 0 (a ReLU's)
    on the kink's other side, as far from it."""
    x = np.array(x, copy=True)
    x.reshape(-1)[at] *= -1
    return x


def backward(model, caches, dy, first_dx=True):
    """The chain rule: walk the layers backwards, each passing dloss/d(its input) down.
    -> ({canonical name: gradient}, [dloss/d(each layer's input)], in layer order).
    `first_dx` False: the first layer's dloss/dx is not wanted (None) where it can be skipped."""
    grads, input_grads, grouped = {}, [], by_layer(model.params)
    for i, ((layer, obj), cache) in reversed(list(enumerate(zip(model.layers, caches)))):
        p = grouped.get(layer["name"], {})
        if i == 0 and not first_dx and obj.gradients is not None:
            dy, local = None, obj.gradients(p, cache, dy)
        else:
            dy, local = obj.backward(p, cache, dy)
        dy = stored(model, dy)
        for k, g in from_native(layer, local).items():
            grads[f"{layer['name']}.{k}"] = stored(model, g)
        input_grads.append(dy)  # None below an embedding: token ids have no gradient
    return grads, input_grads[::-1]


def loss_value(model, x, y, masks):
    return float(forward(model, x, y, masks)[0])


def probe_losses(model, params, x, y, masks, name, values):
    """The loss with the parameter `name` at each of `values` in turn, the others at `params`
    (as set): only its layer is set again each time. Then the layer is set back."""
    layer = next(layer for layer, _ in model.layers if layer["name"] == layer_of(name))
    local, key = local_params(params, layer), name[len(layer["name"]) + 1:]
    losses = []
    for value in values:
        set_layer(model, layer, dict(local, **{key: value}))
        losses.append(loss_value(model, x, y, masks))
    set_layer(model, layer, local)
    return losses


def loss_and_gradients(model, x, y, masks):
    loss, dy, caches, state, _ = forward(model, x, y, masks)
    grads, _ = backward(model, caches, dy, first_dx=False)
    model.state = state
    in_order = {k: grads[k] for k in model.params}  # parameter order, not the backward's
    return float(loss), returned(model, in_order), returned(model, state)


def layer_values(model, x, y, masks):
    """Each top-level layer's output and dloss/d(its input), from a forward and backward pass
    of their own (the model's state stays as it was): {layer name: array}, spec order.
    A layer fed token ids has no input gradient and no entry in the second dict."""
    _, dy, caches, _, outputs = forward(model, x, y, masks)
    _, input_grads = backward(model, caches, dy)
    names = [layer["name"] for layer, _ in model.layers]
    return (returned(model, dict(zip(names, outputs))),
            returned(model, {name: g for name, g in zip(names, input_grads) if g is not None}))


def hessian_vector_product(model, x, y, masks, vector):
    """H v, the Hessian of the loss times a direction v of the parameters ({canonical name:
    array}), by the R-operator (layers.Tangent): the forward pass carries each activation's
    tangent R{h} = dh/de (params + e v), the loss turns R{y_hat} into R{dL/dy_hat}, and the
    backward pass carries R{dy} down, each layer giving R{its gradients} = (H v) entries.
    -> ({canonical name: (H v) entry}, "R-operator"); NotImplementedError for a model with a
    layer that has no hand-written tangent (the harness then takes differences of the gradient).
    """
    tangents = [tangent(layer, model.spec["dtype"]) for layer, _ in model.layers]
    missing = [f"{layer['name']} ({layer['type']})"
               for (layer, _), t in zip(model.layers, tangents) if t is None]
    if missing:
        raise NotImplementedError(f"no hand-written R-operator for layer {', '.join(missing)}")
    rparams = {}
    for layer, _ in model.layers:
        rparams.update({f"{layer['name']}.{k}": v
                        for k, v in to_native(layer, local_params(vector, layer)).items()})
    _, dy, caches, _, outputs = forward(model, x, y, masks)
    rxs, rh = [], np.zeros_like(x)  # the data has no tangent
    for (layer, _), t, cache in zip(model.layers, tangents, caches):
        rxs.append(rh)
        rh = t.forward(local_params(model.params, layer), local_params(rparams, layer), cache, rh)
    rdy, hv = curvature(model.spec["loss"])(outputs[-1], y, rh), {}  # R{dL/dy_hat}
    for (layer, obj), t, cache, rx in reversed(list(zip(model.layers, tangents, caches, rxs))):
        p, rp = local_params(model.params, layer), local_params(rparams, layer)
        rdy, local = t.backward(p, rp, cache, rx, dy, rdy)
        dy = obj.backward(p, cache, dy)[0]
        hv.update({f"{layer['name']}.{k}": g for k, g in from_native(layer, local).items()})
    return {k: hv[k] for k in model.params}, "R-operator"
