"""The network as one pure function of (params, state, x, y, masks), and its gradient.

forward: x -> layer 0 -> layer 1 -> ... -> y_hat -> loss, each layer a pure function.
backward: jax.value_and_grad of that function; there is nothing to write by hand.
Both are jitted once per model: params are arguments, so new values never recompile.
"""
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..canonical import local_params
from .layers import build_layer
from .layout import from_native, to_native
from .losses import build_loss

__all__ = ["build_model", "set_params", "get_params", "loss_value", "loss_and_gradients"]


@dataclass
class Context:
    masks: dict            # dropout layer name -> (B, ...) keep-mask
    state: dict            # "i.running_mean" etc., replaced by BatchNorm's forward


@dataclass
class Model:
    spec: dict
    native: bool
    objective: object      # (params, state, x, y, masks) -> (loss, new state), pure
    value: object          # jax.jit(objective)
    value_and_grad: object  # jax.jit(jax.value_and_grad(objective, has_aux=True))
    params: dict = field(default_factory=dict)   # layer name -> that layer's params (layout.py)
    state: dict = field(default_factory=dict)    # canonical name -> running statistic
    names: list = field(default_factory=list)    # canonical parameter names, in the harness's order


def build_model(spec, native=False):
    layers = [(layer, build_layer(layer, spec["dtype"], native)) for layer in spec["layers"]]
    objective = make_objective(layers, build_loss(spec["loss"], native))
    return Model(spec, native, objective, jax.jit(objective),
                 jax.jit(jax.value_and_grad(objective, has_aux=True)))


def make_objective(layers, loss):
    """The whole network as one pure function: (params, state, x, y, masks) -> (loss, new state)."""

    def objective(params, state, x, y, masks):
        ctx = Context(masks, dict(state))
        for layer, forward in layers:
            x = forward(params[layer["name"]], x, ctx)  # shapes: layer["out_shape"]
        return loss(x, y), ctx.state
    return objective


def set_params(model, params, state):
    """Canonical NumPy arrays -> the params pytree {layer name: its params}, in the model's dtype."""
    dtype = model.spec["dtype"]
    model.params = {}
    for layer in model.spec["layers"]:
        local = {k: jnp.asarray(v, dtype) for k, v in local_params(params, layer).items()}
        model.params[layer["name"]] = to_native(layer, local)
    model.state = {k: jnp.asarray(v, dtype) for k, v in state.items()}
    model.names = list(params)


def canonical(model, tree):
    """A params-shaped pytree (params or gradients) -> {canonical name: NumPy array}, in order."""
    flat = {}
    for layer in model.spec["layers"]:
        flat.update({f"{layer['name']}.{k}": np.array(v)
                     for k, v in from_native(layer, tree[layer["name"]]).items()})
    return {k: flat[k] for k in model.names}


def get_params(model):
    return canonical(model, model.params), {k: np.array(v) for k, v in model.state.items()}


def inputs(model, x, y, masks):
    """NumPy batch -> JAX arrays in the model's dtype (token ids and class ids stay integers)."""
    dtype = model.spec["dtype"]
    x = jnp.asarray(x) if model.spec["input"] == "tokens" else jnp.asarray(x, dtype)
    y = jnp.asarray(y) if np.issubdtype(np.asarray(y).dtype, np.integer) else jnp.asarray(y, dtype)
    return x, y, {k: jnp.asarray(m, dtype) for k, m in masks.items()}


def loss_value(model, x, y, masks):
    loss, _ = model.value(model.params, model.state, *inputs(model, x, y, masks))
    return float(loss)


def loss_and_gradients(model, x, y, masks):
    """One jitted call: the loss, d loss / d params (a pytree like params) and the new state."""
    (loss, state), grads = model.value_and_grad(model.params, model.state,
                                                *inputs(model, x, y, masks))
    model.state = state
    return float(loss), canonical(model, grads), {k: np.array(v) for k, v in state.items()}
