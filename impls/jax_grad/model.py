"""The network as one pure function of (params, state, x, y, masks), and its gradient.

forward: x -> layer 0 -> layer 1 -> ... -> y_hat -> loss, each layer a pure function.
backward: jax.value_and_grad of that function; there is nothing to write by hand.
Both are jitted once per model: params are arguments, so new values never recompile.
"""
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..canonical import by_layer, layer_of, local_params
from .layers import build_layer
from .layout import activation_from_native, from_native, to_native
from .losses import build_loss

__all__ = ["build_model", "set_params", "get_params", "loss_value", "probe_losses",
           "loss_and_gradients", "layer_values", "hessian_vector_product"]


@dataclass
class Context:
    masks: dict            # dropout layer name -> (B, ...) keep-mask
    state: dict            # "i.running_mean" etc., replaced by BatchNorm's forward


@dataclass
class Model:
    spec: dict
    native: object  # False, True or pitfall names: canonical.native_on
    objective: object      # (params, state, x, y, masks) -> (loss, new state), pure
    value: object          # jax.jit(objective)
    value_and_grad: object  # jax.jit(jax.value_and_grad(objective, has_aux=True))
    tap_grads: object      # jax.jit(jax.grad(tapped objective, has_aux=True)): per-layer values
    hvp: object            # jax.jit(jvp of the gradient): Hessian-vector products
    params: dict = field(default_factory=dict)   # layer name -> that layer's params (layout.py)
    state: dict = field(default_factory=dict)    # canonical name -> running statistic
    names: list = field(default_factory=list)    # canonical parameter names, in the harness's order


def build_model(spec, native=False):
    layers = [(layer, build_layer(layer, spec["dtype"], native)) for layer in spec["layers"]]
    loss = build_loss(spec["loss"], native)
    objective = make_objective(layers, loss)
    return Model(spec, native, objective, jax.jit(objective),
                 jax.jit(jax.value_and_grad(objective, has_aux=True)),
                 jax.jit(jax.grad(make_tapped(layers, loss), has_aux=True)),
                 jax.jit(make_hvp(objective)))


def make_hvp(objective):
    """(params, direction, state, x, y, masks) -> H v: forward mode over reverse mode, the
    derivative of the gradient along v (jax.jvp of jax.grad), one pass."""

    def hvp(params, direction, state, x, y, masks):
        def gradient(p):
            return jax.grad(objective, has_aux=True)(p, state, x, y, masks)[0]
        return jax.jvp(gradient, (params,), (direction,))[1]
    return hvp


def make_objective(layers, loss):
    """The whole network as one pure function: (params, state, x, y, masks) -> (loss, new state)."""

    def objective(params, state, x, y, masks):
        ctx = Context(masks, dict(state))
        for layer, forward in layers:
            x = forward(params[layer["name"]], x, ctx)  # shapes: layer["out_shape"]
        return loss(x, y), ctx.state
    return objective


def make_tapped(layers, loss):
    """The objective with a zero "tap" added to each layer's input, as its first argument:
    d loss / d tap is d loss / d(that input), which grad gives where the layers hide it.
    (taps, params, state, x, y, masks) -> (loss, {layer name: its output})."""

    def tapped(taps, params, state, x, y, masks):
        ctx, outputs = Context(masks, dict(state)), {}
        for layer, forward in layers:
            if layer["name"] in taps:  # none before token ids: they have no gradient
                x = x + taps[layer["name"]]  # + 0: the values do not move
            x = outputs[layer["name"]] = forward(params[layer["name"]], x, ctx)
        return loss(x, y), outputs
    return tapped


def set_params(model, params, state):
    """Canonical NumPy arrays -> the params pytree {layer name: its params}, in the model's dtype.
    The leaves stay NumPy copies on the host: each jitted call moves its arguments to the
    device in one go, where a jnp.asarray per leaf costs about 0.1 ms (lockstep sets every
    parameter at every step)."""
    model.params = pytree(model, params)
    model.state = {k: np.array(v, model.spec["dtype"]) for k, v in state.items()}
    model.names = list(params)


def pytree(model, values):
    """{canonical name: array} (the parameters, or an optimizer's slot of them) -> the params
    pytree {layer name: its entries in layout.py's layouts}, NumPy copies in the model's dtype."""
    dtype, grouped = model.spec["dtype"], by_layer(values)
    return {layer["name"]: to_native(layer, {k: np.array(v, dtype) for k, v
                                             in grouped.get(layer["name"], {}).items()})
            for layer in model.spec["layers"]}


def canonical(model, tree):
    """A params-shaped pytree (params or gradients) -> {canonical name: NumPy array}, in order.

    The arrays are read before the layouts move (host), so a reshape is a NumPy view and not
    a JAX op dispatched for each array of each step in lockstep."""
    flat = {}
    for layer in model.spec["layers"]:
        native = tree[layer["name"]]
        if native:  # else a layer without parameters
            flat.update({f"{layer['name']}.{k}": v
                         for k, v in from_native(layer, host(native)).items()})
    return {k: flat[k] for k in model.names}


def host(values):
    """{name: array, or a dict of them (a residual block's sub-layers)} -> the same with NumPy
    leaves. np.asarray, not a copy with np.array: on the CPU it reads the JAX array's own
    memory, read-only, and a JAX array never changes (no jitted function here donates its
    arguments); lockstep reads every array of every step."""
    return {k: host(v) if isinstance(v, dict) else np.asarray(v) for k, v in values.items()}


def get_params(model):
    return canonical(model, model.params), host(model.state)


def inputs(model, x, y, masks):
    """NumPy batch -> JAX arrays in the model's dtype (token ids and class ids stay integers)."""
    dtype = model.spec["dtype"]
    x = jnp.asarray(x) if model.spec["input"] == "tokens" else jnp.asarray(x, dtype)
    y = jnp.asarray(y) if np.issubdtype(np.asarray(y).dtype, np.integer) else jnp.asarray(y, dtype)
    return x, y, {k: jnp.asarray(m, dtype) for k, m in masks.items()}


def loss_value(model, x, y, masks):
    loss, _ = model.value(model.params, model.state, *inputs(model, x, y, masks))
    return float(loss)


def probe_losses(model, params, x, y, masks, name, values):
    """The loss with the parameter `name` at each of `values` in turn, the others at `params`
    (as set), one jitted call each: only its layer's pytree entry is built again, the batch
    and the other parameters move to the device once (set_params keeps them on the host),
    and the losses are fetched together at the end (dispatch runs ahead). The layer's entry
    stays NumPy, cast on the host as jnp.asarray would: the jitted call moves it with its
    arguments, where a jnp.asarray of each value cost as much as the loss itself."""
    dtype, batch = model.spec["dtype"], inputs(model, x, y, masks)
    layer = next(layer for layer in model.spec["layers"] if layer["name"] == layer_of(name))
    key = name[len(layer["name"]) + 1:]
    local = {k: np.asarray(v, dtype) for k, v in local_params(params, layer).items()}
    resident, state = jax.device_put((model.params, model.state))
    losses = []
    for value in values:
        moved = to_native(layer, dict(local, **{key: np.asarray(value, dtype)}))
        tree = dict(resident, **{layer["name"]: moved})
        losses.append(model.value(tree, state, *batch)[0])
    return [float(loss) for loss in losses]


def loss_and_gradients(model, x, y, masks):
    """One jitted call: the loss, d loss / d params (a pytree like params) and the new state."""
    (loss, state), grads = model.value_and_grad(model.params, model.state,
                                                *inputs(model, x, y, masks))
    model.state = state
    return float(loss), canonical(model, grads), host(state)


def layer_values(model, x, y, masks):
    """Each top-level layer's output and dloss/d(its input), in a pass of their own: the
    gradient with respect to the zero taps. {layer name: array}, spec order, canonical
    layouts. A layer fed token ids has no input gradient and no entry in the second dict.
    The taps are NumPy zeros, moved with the call's arguments: a jnp.zeros each was an op
    of its own, compiled for each shape."""
    x, y, masks = inputs(model, x, y, masks)
    layers = model.spec["layers"]
    taps = {layer["name"]: np.zeros((len(x), *layer["in_shape"]), model.spec["dtype"])
            for i, layer in enumerate(layers) if i > 0 or model.spec["input"] != "tokens"}
    input_grads, outputs = model.tap_grads(taps, model.params, model.state, x, y, masks)
    out, grads = {}, {}
    for layer in layers:  # jit returns dicts with sorted keys: back to spec order
        name = layer["name"]
        out[name] = np.array(activation_from_native(layer["out_shape"], outputs[name]))
        if name in input_grads:
            grads[name] = np.array(activation_from_native(layer["in_shape"], input_grads[name]))
    return out, grads


def hessian_vector_product(model, x, y, masks, vector):
    """H v, the Hessian of the loss times a direction v of the parameters ({canonical name:
    array}): jax.jvp of jax.grad, the tangent of the gradient along v, jitted once per model.
    -> ({canonical name: (H v) entry}, "jvp of grad")."""
    direction = pytree(model, vector)  # on the host, as the params: moved with the call
    hv = model.hvp(model.params, direction, model.state, *inputs(model, x, y, masks))
    return canonical(model, hv), "jvp of grad"
