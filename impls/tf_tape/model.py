"""The network as a keras.Model; gradients from tf.GradientTape.

forward: x -> each Keras layer in turn -> y_hat -> loss, recorded on the tape;
tape.gradient then plays the recording backwards: the chain rule numpy_manual/model.py
writes out. Both run as tf.functions, traced once per model (inputs keep their
shapes and dtypes) and reused, so the finite-difference checks stay fast.
"""
from dataclasses import dataclass, field
from functools import partial

import keras
import numpy as np
import tensorflow as tf

from ..canonical import block_key, by_layer, layer_of, local_params, no_gradient
from .layers import build_layer, call_layers
from .layout import activation_from_native, from_native, to_native
from .losses import build_loss

__all__ = ["build_model", "set_params", "get_params", "loss_value", "probe_losses",
           "loss_and_gradients", "layer_values", "hessian_vector_product"]


class Network(keras.Model):
    """The spec's layers in order: (B, *input_shape) -> y_hat (B, outputs)."""

    def __init__(self, spec, native):
        super().__init__(dtype=spec["dtype"])
        self.blocks = [build_layer(layer, spec["dtype"], native) for layer in spec["layers"]]

    def build(self, x_shape):
        """Nothing of its own: the layers create their variables on the first call."""

    def call(self, x, masks, training=True):
        return call_layers(self.blocks, x, masks, training)


@dataclass
class Model:
    spec: dict
    native: object  # False, True or pitfall names: canonical.native_on
    net: Network
    loss: object                                       # loss(y_hat, y) -> scalar tensor
    variables: dict                                    # layer name -> {Keras path: variable}
    param_names: list = field(default_factory=list)    # canonical, in the harness's order
    state_names: list = field(default_factory=list)
    value: object = None                               # tf.function (x, y, masks) -> loss
    gradients: object = None                           # tf.function -> loss, grads, per layer
    hvp: object = None                                 # tf.function -> Hessian-vector product


def build_model(spec, native=False):
    net = Network(spec, native)
    create_variables(net, spec)
    variables = {layer["name"]: native_variables(obj, layer)
                 for layer, obj in zip(spec["layers"], net.blocks)}
    model = Model(spec, native, net, build_loss(spec["loss"], native), variables)
    # traced on first use, then reused. Without AutoGraph (its rewriting of a Python `if` or
    # `for` on a tensor into graph ops), as Keras 3's own fit() traces its step: every branch
    # and loop here is on Python values, so converting this code is work for nothing. A
    # layer's call, a plugin's too, never was converted: AutoGraph stops at Keras'
    # Layer.__call__, so a branch on a tensor is a tf.cond there, as under fit().
    model.value = tf.function(partial(compute_value, model), autograph=False)
    model.gradients = tf.function(partial(compute_gradients, model), autograph=False)  # + layers
    model.hvp = tf.function(partial(compute_hessian_vector_product, model), autograph=False)
    return model


def create_variables(net, spec):
    """Every variable of the model, as its first call would create them. Keras' own layers
    build from their input shapes, in the spec, without that call's forward pass (a third
    to a half of building the model, which each job does); a model with any other layer
    (layers.py's residual, attention and BatchNorm classes, a plugin) makes the call."""
    if all(type(block).__module__.startswith("keras.") for block in net.blocks):
        for layer, block in zip(spec["layers"], net.blocks):
            block.build((1, *layer["in_shape"]))
    else:
        net(*example_inputs(spec), training=False)


def example_inputs(spec):
    """One example of zeros, and keep-everything masks for the dropout layers."""
    dtype = "int64" if spec["input"] == "tokens" else spec["dtype"]
    masks = {layer["name"]: np.ones((1, *layer["in_shape"]), spec["dtype"])
             for layer in walk(spec["layers"]) if layer["type"] == "dropout"}
    return np.zeros((1, *spec["input_shape"]), dtype), masks


def walk(layers):
    for layer in layers:
        yield layer
        yield from walk(layer.get("layers", []))


def native_variables(obj, layer):
    """{Keras variable path inside the layer: variable}: "kernel", "lstm_cell/kernel", "1.bias"."""
    if layer["type"] == "residual":
        return {f"{block_key(sub, layer)}.{k}": v
                for sub, sub_obj in zip(layer["layers"], obj.blocks)
                for k, v in native_variables(sub_obj, sub).items()}
    return {v.path[len(obj.path) + 1:]: v for v in obj.weights}


def set_params(model, params, state):
    grouped, running = by_layer(params), by_layer(state)
    for layer in model.spec["layers"]:
        set_layer(model, layer, {**grouped.get(layer["name"], {}),
                                 **running.get(layer["name"], {})})
    model.param_names, model.state_names = list(params), list(state)


def set_layer(model, layer, local):
    """One layer's params and running statistics ({local canonical name: array}) into its
    variables, Keras layouts."""
    variables = model.variables[layer["name"]]
    for path, value in to_native(layer, local).items():
        # a tensor: Keras' own conversion of a NumPy array is most of an assign (0.1 ms)
        variables[path].assign(tf.convert_to_tensor(value))


def canonical_variables(model):
    """canonical name -> the variable, or a tensor view of it where layout.py moves entries."""
    out = {}
    for layer in model.spec["layers"]:
        local = from_native(layer, model.variables[layer["name"]])
        out.update({f"{layer['name']}.{k}": v for k, v in local.items()})
    return out


def get_params(model):
    values = {k: np.asarray(v) for k, v in canonical_variables(model).items()}
    return ({k: values[k] for k in model.param_names},
            {k: values[k] for k in model.state_names})


def forward(model, x, y, masks):
    y_hat = model.net(x, masks, training=True)  # (B, outputs); BatchNorm uses batch statistics
    return model.loss(y_hat, y)


def trainable(model):
    """[(layer name, Keras path, variable)] of every trainable variable."""
    return [(name, path, v) for name, variables in model.variables.items()
            for path, v in variables.items() if v.trainable]


def compute_value(model, x, y, masks):
    with keras.StatelessScope():  # BatchNorm's running-statistics updates are dropped
        return forward(model, x, y, masks)


def compute_gradients(model, x, y, masks):
    """One pass for both loss_and_gradients and layer_values, so that a check traces the
    forward and backward pass once (a trace costs more than the check's other work): the
    tape watches the parameters and each top-level layer's input as it goes by.
    -> (loss, {layer name: {Keras path: gradient}}, {layer name: output}, {layer name:
    dloss/d(its input)}, {layer name: {Keras path: running statistic after the batch}}),
    Keras' layouts. The running statistics' updates are returned, not made: layer_values
    leaves them as set, loss_and_gradients assigns them."""
    entries = trainable(model)
    inputs, outputs = {}, {}
    with keras.StatelessScope() as scope, tf.GradientTape() as tape:
        h = x
        for layer, block in zip(model.spec["layers"], model.net.blocks):
            if h.dtype.is_floating:  # token ids have no gradient
                tape.watch(h)
                inputs[layer["name"]] = h
            h = outputs[layer["name"]] = call_layers([block], h, masks, training=True)
        loss = model.loss(h, y)
    grads, input_grads = tape.gradient(loss, ([v for _, _, v in entries], inputs))
    native = {name: {} for name in model.variables}
    for (name, path, _), g in zip(entries, grads):
        if g is None:  # traced: this raises before anything runs
            raise no_gradient(model.spec, f"{name}.{path}", "tensorflow")
        native[name][path] = tf.convert_to_tensor(g)  # Embedding's IndexedSlices -> dense
    updates = {name: {path: value for path, v in variables.items()  # those assigned
                      if not v.trainable and (value := scope.get_current_value(v)) is not None}
               for name, variables in model.variables.items()}
    return loss, native, outputs, input_grads, updates


def direct(function):
    """`function`, a tf.function, called through the graph traced for the arguments of its
    first call, given the flat list of tensors that graph takes. Both of TensorFlow's own
    calls match the arguments again at every call: a tf.function's against its traces, a
    traced graph's against its signature (deep_relu_mlp's `load` of 43 tensors: 0.57 ms
    bound, 0.16 ms flat; any step: 0.1 to 0.2 ms), which for a small model is as long as
    the step itself. The match kept is the one that decides: the same nesting, dict keys,
    dtypes and shapes as the traced call. Arguments that differ take the graph traced for
    them, as a tf.function call would."""
    graph, traced = None, None

    def call(*args):
        nonlocal graph, traced
        flat = tf.nest.flatten(args)
        if traced is None or not fits(args, flat, traced):
            graph = function.get_concrete_function(*args)
            traced = flat_signature(graph, args, flat)
        if traced is None:  # a graph that takes other than these tensors (see flat_signature)
            return graph(*args)
        # ConcreteFunction's own call, after its binding: TensorFlow's private entry, the one
        # its bound call ends in (tensorflow/python/eager/polymorphic_function/
        # concrete_function.py), with the same tape recording and output packing
        return graph._call_flat(flat, graph.captured_inputs)  # pylint: disable=protected-access
    return call


def flat_signature(graph, args, flat):
    """(args, [(dtype, shape)] of their tensors), or None where `graph` does not take exactly
    these tensors in this order: where a leaf is no tensor (a Python number is traced as a
    constant, a variable passed twice is taken once)."""
    takes = len(graph.inputs) - len(graph.captured_inputs)
    if takes != len(flat) or not all(isinstance(t, tf.Tensor) for t in flat):
        return None
    return args, [(t.dtype, t.shape) for t in flat]


def fits(args, flat, traced):
    """Whether `args` nest as the traced call's, with tensors of the same dtypes and shapes
    (TensorFlow's dtypes are interned: `is` compares them)."""
    first, signature = traced
    try:
        tf.nest.assert_same_structure(args, first, check_types=True)
    except (ValueError, TypeError):
        return False
    return len(flat) == len(signature) and all(
        isinstance(t, tf.Tensor) and t.dtype is dtype and t.shape == shape
        for t, (dtype, shape) in zip(flat, signature))


def loss_value(model, x, y, masks):
    return float(model.value(x, y, masks))


def probe_losses(model, params, x, y, masks, name, values):
    """The loss with the parameter `name` at each of `values` in turn, the others at `params`
    (as set): only its variable is assigned again each time (layout.py maps each canonical
    tensor on its own; the running statistics stay as set: the loss alone never moves
    them). Then it is set back."""
    layer = next(layer for layer in model.spec["layers"] if layer["name"] == layer_of(name))
    key = name[len(layer["name"]) + 1:]
    # the batch converted once: a tf.function converts NumPy arguments again at every call
    batch = tf.nest.map_structure(tf.convert_to_tensor, (x, y, masks))
    # and its trace called directly: a tf.function call spends 0.2 to 0.4 ms matching its
    # arguments to a trace, as long as a small model's whole loss
    loss_of = direct(model.value)
    losses = []
    for value in values:
        set_layer(model, layer, {key: value})
        losses.append(loss_of(*batch))
    set_layer(model, layer, {key: params[name]})
    return [float(loss) for loss in losses]


def loss_and_gradients(model, x, y, masks):
    """The tape records the forward pass; tape.gradient walks it backwards. The batch moves
    the running statistics (BatchNorm's), as a training step's forward does."""
    loss, native_grads, _, _, updates = model.gradients(x, y, masks)
    for name, updated in updates.items():
        for path, value in updated.items():
            model.variables[name][path].assign(value)
    grads = {}
    for layer in model.spec["layers"]:
        local = from_native(layer, native_grads[layer["name"]])
        grads.update({f"{layer['name']}.{k}": np.asarray(g) for k, g in local.items()})
    _, state = get_params(model)
    return float(loss), {k: grads[k] for k in model.param_names}, state


def layer_values(model, x, y, masks):
    """Each top-level layer's output and dloss/d(its input), from the pass that gives the
    gradients (compute_gradients; the running statistics stay as set). {layer name: array},
    spec order, canonical layouts. A layer fed token ids has no input gradient and no entry
    in the second dict."""
    _, _, outputs, input_grads, _ = model.gradients(x, y, masks)  # dicts come back sorted
    out, grads = {}, {}
    for layer in model.spec["layers"]:
        name = layer["name"]
        out[name] = np.asarray(activation_from_native(layer["out_shape"], outputs[name]))
        if name in input_grads:
            grads[name] = np.asarray(activation_from_native(layer["in_shape"], input_grads[name]))
    return out, grads


def compute_hessian_vector_product(model, x, y, masks, directions):
    """-> {layer name: {Keras path: (H v) entry}}, v given per trainable variable in order.
    Nested tapes: the outer one records the inner one computing the gradient."""
    entries = trainable(model)
    variables = [v for _, _, v in entries]
    zero = tf.UnconnectedGradients.ZERO
    with keras.StatelessScope(), tf.GradientTape() as outer:  # running statistics untouched
        with tf.GradientTape() as inner:
            loss = forward(model, x, y, masks)
        grads = inner.gradient(loss, variables, unconnected_gradients=zero)
        dot = tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g) * d)  # Embedding's IndexedSlices
                        for g, d in zip(grads, directions)])
    hv = outer.gradient(dot, variables, unconnected_gradients=zero)
    native = {name: {} for name in model.variables}
    for (name, path, _), h in zip(entries, hv):
        native[name][path] = tf.convert_to_tensor(h)
    return native


def hessian_vector_product(model, x, y, masks, vector):
    """H v, the Hessian of the loss times a direction v of the parameters ({canonical name:
    array}), by nested GradientTapes: the gradient of <gradient, v>, the inner tape's result
    recorded by the outer tape. -> ({canonical name: (H v) entry}, "nested GradientTape")."""
    native = {layer["name"]: to_native(layer, local_params(vector, layer))
              for layer in model.spec["layers"]}
    directions = [tf.cast(native[name][path], v.dtype) for name, path, v in trainable(model)]
    native_hv = model.hvp(x, y, masks, directions)
    hv = {}
    for layer in model.spec["layers"]:
        local = from_native(layer, native_hv[layer["name"]])
        hv.update({f"{layer['name']}.{k}": np.asarray(h) for k, h in local.items()})
    return {k: hv[k] for k in model.param_names}, "nested GradientTape"
