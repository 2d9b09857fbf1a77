"""The network as a list of layers, and the chain rule over it, written out.

forward: x -> layer 0 -> layer 1 -> ... -> y_hat -> loss
backward: dloss/dy_hat -> ... -> layer 1.backward -> layer 0.backward, each turning
the gradient of its output into the gradient of its input and of its parameters.
"""
from dataclasses import dataclass, field

import numpy as np

from ..canonical import local_params
from .layers import build_layer
from .layout import from_native, to_native
from .losses import build_loss

__all__ = ["build_model", "set_params", "get_params", "loss_value", "loss_and_gradients"]


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


def build_model(spec, native=False):
    layers = [(layer, build_layer(layer, spec["dtype"], native)) for layer in spec["layers"]]
    return Model(spec, layers, build_loss(spec["loss"], native))


def set_params(model, params, state):
    model.params = {}
    for layer, _ in model.layers:
        native = to_native(layer, local_params(params, layer))
        model.params.update({f"{layer['name']}.{k}": np.array(v) for k, v in native.items()})
    model.state = {k: np.array(v) for k, v in state.items()}


def get_params(model):
    params = {}
    for layer, _ in model.layers:
        canonical = from_native(layer, local_params(model.params, layer))
        params.update({f"{layer['name']}.{k}": v for k, v in canonical.items()})
    return params, dict(model.state)


def forward(model, x, y, masks):
    """-> (loss, dloss/dy_hat, caches, new state)."""
    ctx = Context(masks, dict(model.state))
    caches = []
    for layer, obj in model.layers:
        x, cache = obj.forward(local_params(model.params, layer), x, ctx)  # shapes: layer["out_shape"]
        caches.append(cache)
    loss, dy_hat = model.loss(x, y)
    return loss, dy_hat, caches, ctx.state


def loss_value(model, x, y, masks):
    return float(forward(model, x, y, masks)[0])


def loss_and_gradients(model, x, y, masks):
    """The chain rule: walk the layers backwards, each passing dloss/d(its input) down."""
    loss, dy, caches, state = forward(model, x, y, masks)
    grads = {}
    for (layer, obj), cache in reversed(list(zip(model.layers, caches))):
        dy, local = obj.backward(local_params(model.params, layer), cache, dy)
        grads.update({f"{layer['name']}.{k}": g for k, g in from_native(layer, local).items()})
    model.state = state
    order = list(model.params)  # report in parameter order, not in backward order
    return float(loss), {k: grads[k] for k in order}, dict(state)
