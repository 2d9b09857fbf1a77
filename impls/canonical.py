"""Plumbing the four implementations share, so that what differs between their folders
is the framework's idiom only: canonical names, the penalised weights, curve records,
and the checks on what a plugin layer returns.

Canonical parameter names are "<layer>.<local>" ("3.W"), and "<block>.<j>.<local>"
inside a residual block ("3.1.b"). Nothing here imports a framework.
"""
import math
import os

__all__ = ["local_params", "by_layer", "block_key", "share", "per_sublayer", "penalised",
           "squares_fit", "positive_zero",
           "layer_of", "per_layer", "new_curves", "record", "native_on", "SLOTS", "slot_key",
           "slots_of", "lockstep_record",
           "PluginError", "plugin_method", "plugin_error", "returned_pair", "check_output",
           "check_gradients", "no_gradient", "NoForm"]


def local_params(params, layer):
    """{"3.W": .., "3.0.b": ..} -> the params of layer "3" by local name {"W": .., "0.b": ..}."""
    return share(params, layer["name"])


def by_layer(values):
    """{"3.W": .., "3.0.b": .., "4.W": ..} -> {"3": {"W": .., "0.b": ..}, "4": {"W": ..}}: every
    layer's local params in one pass (local_params per layer scans every name for every
    layer; a deep model's loss evaluation spent most of its time there)."""
    out = {}
    for name, value in values.items():
        layer, _, local = name.partition(".")
        out.setdefault(layer, {})[local] = value
    return out


def block_key(sub, block):
    """A sub-layer's key inside its residual block: "3.1" inside "3" -> "1"."""
    return sub["name"][len(block["name"]) + 1:]


def share(values, key):
    """The entries under `key`, with the prefix dropped: share({"1.W": w}, "1") == {"W": w}."""
    prefix = key + "."
    return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}


def per_sublayer(block, values, convert):
    """A residual block's values converted sub-layer by sub-layer: convert(sub, its share)."""
    out = {}
    for sub in block["layers"]:
        j = block_key(sub, block)
        out.update({f"{j}.{k}": v for k, v in convert(sub, share(values, j)).items()})
    return out


def penalised(params):
    """The tensors L1/L2 apply to: those whose local name is exactly "W" (not biases, not U)."""
    return {k: v for k, v in params.items() if k.rsplit(".", 1)[-1] == "W"}


def squares_fit(sum_of_squares, size, largest, eps):
    """Whether a sum of `size` squares stays finite in any order of summation (NaN and inf do
    not), from one such sum as a Python float, in a dtype with this largest value and eps.

    Where both coefficients are 0, the L1/L2 penalty's value is exactly +0 and its gradient
    is a signed zero per entry, unless a sum |W| or W^2 is not finite (0 * inf is NaN, and a
    diverging run records it). |W| sums below sqrt(largest) * size once W^2's sum is finite.
    Sums of non-negative terms in two orders are within a factor 1 + size * eps of each
    other; a factor 4 leaves room to spare. Frameworks that take the penalty step by step
    (NumPy, PyTorch) then skip its passes over every weight: the gradient can change only
    where it is exactly 0, and only its sign."""
    return sum_of_squares * 4 * (1 + size * eps) < largest


def positive_zero(value):
    """Whether a coefficient is +0.0 (not -0.0, whose products carry the other sign)."""
    return value == 0 and math.copysign(1.0, value) > 0


def layer_of(name):
    """The top-level layer a (canonical or framework) parameter name belongs to: "3.0.W" -> "3"."""
    return name.split(".", 1)[0]


def per_layer(named, measure):
    """{top-level layer: sum of measure(value)} over named values, in the values' dtype."""
    out = {}
    for name, value in named.items():
        layer = layer_of(name)
        out[layer] = out.get(layer, 0.0) + measure(value)
    return out


def new_curves():
    """What train() returns: the loss and norms before each update, and where it stopped."""
    return {"loss": [], "grad_norm": [], "layer_norms": {}, "diverged_at": None}


def record(curves, loss, norm, layer_norms):
    """Append one step's loss, global gradient norm and per-layer norms (Python floats)."""
    for layer, value in layer_norms.items():
        curves["layer_norms"].setdefault(layer, []).append(value)
    curves["loss"].append(loss)
    curves["grad_norm"].append(norm)
    return loss, norm


# ---- native defaults, one pitfall at a time (impls/README.md, "Native defaults") -------------

def native_on(native, pitfall):
    """Whether a framework default named `pitfall` ("keras.adam_epsilon_hat") is kept.

    `native` is False (aligned: the canonical math), True (every framework default, as
    `--native-defaults` runs them) or a collection of pitfall names (the others aligned:
    `crossgrad pitfalls` switches one at a time).
    """
    return native is True or (bool(native) and pitfall in native)


# ---- optimizer state: canonical names (impls/README.md, "Optimizer state") -----------------------

# per optimizer type, the slots the canonical rule keeps for every parameter, each of the
# parameter's shape and layout; besides them "step", the number of updates applied so far
SLOTS = {"sgd": (), "momentum": ("v",), "nesterov": ("v",), "adam": ("m", "v"),
         "adamw": ("m", "v"), "rmsprop": ("v",), "adagrad": ("s",)}


def slot_key(param, slot):
    """The canonical name of a parameter's slot: slot_key("0.W", "m") == "0.W/m"."""
    return f"{param}/{slot}"


def slots_of(state, slot):
    """{parameter name: value} of one slot from a canonical optimizer state ("0.W/m" -> "0.W")."""
    tail = "/" + slot
    return {k[:-len(tail)]: v for k, v in state.items() if k.endswith(tail)}


def lockstep_record(loss, grads, params, state, optimizer):
    """What lockstep() yields per step, all canonical: the loss and gradients of the objective
    (before clipping) at the step's start, and the parameters, running statistics and
    optimizer state after its update."""
    return {"loss": loss, "grads": grads, "params": params, "state": state,
            "optimizer": optimizer}


# ---- plugin layers: what every framework's `plugin` builder checks -----------------------------

class NoForm(TypeError):
    """A layer has no form in the format asked for (SciPy's erf has no long double): a fact
    of the platform, told as its sentence alone, with no exception name or line of code."""
    sentence = True


class PluginError(ValueError):
    """A plugin layer returned something its model cannot use (shape, dtype, kind)."""
    located = True  # the message names the plugin's method, file and line


def plugin_method(layer, method, framework):
    """The plugin's `method` (e.g. "torch"), or NotImplementedError saying which one is missing."""
    found = getattr(layer["plugin"], method, None)
    if not callable(found):
        raise NotImplementedError(f"plugin {layer['type']} has no {framework} implementation")
    return found


def returned_pair(layer, method, value, form):
    """`value` if it is a pair, as `method` must return (form: "(y, cache)"), else PluginError."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value
    raise plugin_error(layer, method, f"must return {form}, returned a {type(value).__name__}")


def check_output(layer, method, value, shape, dtype, facts, what="y", batched=True):
    """`value` if it is a tensor of `shape` (batch axis first, if `batched`) in `dtype`, else
    PluginError.

    facts(value) -> (shape, dtype name) in the framework's terms, or (None, type name) for
    something that is not one of its tensors; an unknown (None) axis matches any size.
    """
    got_shape, got_dtype = facts(value)
    if got_shape is None:
        problem = f"returned {what} as a {got_dtype}, not a tensor"
    elif len(got_shape) != len(shape) or any(
            g is not None and g != s for g, s in zip(got_shape, shape)):
        # a batch axis both agree on says "batch": Keras builds a layer on one example
        batch = batched and got_shape[:1] == tuple(shape[:1])
        problem = (f"returned {what} of shape {_shape(got_shape, batch)}, expected "
                   f"{_shape(shape, batch)}")
    elif got_dtype != dtype:
        problem = f"returned {what} in {got_dtype}, the model computes in {dtype}"
    else:
        return value
    raise plugin_error(layer, method, problem)


def check_gradients(layer, method, grads, dtype, facts):
    """`grads` if it holds one gradient per parameter, each of its parameter's shape and dtype."""
    if not isinstance(grads, dict):
        raise plugin_error(layer, method, f"must return the gradients as a dict by parameter "
                                          f"name, returned a {type(grads).__name__}")
    if set(grads) != set(layer["params"]):
        raise plugin_error(layer, method, f"returned gradients for {sorted(grads)}, "
                                          f"its parameters are {sorted(layer['params'])}")
    for name, shape in layer["params"].items():
        check_output(layer, method, grads[name], tuple(shape), dtype, facts,
                     what=f"the gradient of {name}", batched=False)
    return grads


def plugin_error(layer, method, problem):
    """PluginError("plugin <type>: <method> <problem> (<Class.method> at <file>:<line>)")."""
    name = getattr(method, "__name__", str(method))
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    where = (f" ({getattr(method, '__qualname__', name)} at "
             f"{os.path.basename(code.co_filename)}:{code.co_firstlineno})" if code else "")
    return PluginError(f"plugin {layer['type']}: {name} {problem}{where}")


def no_gradient(spec, name, framework):
    """The error for canonical parameter `name`, which no gradient reached in `framework`: a
    plugin layer's method that cut the graph on its way (a detach, a NumPy round trip, a
    stop_gradient) is named, with its file and line."""
    layer, local = owner(spec["layers"], name)
    if layer is not None and "plugin" in layer:
        return plugin_error(layer, getattr(layer["plugin"], framework),
                            f"cut the graph: no gradient reached its parameter {local!r} "
                            "(a detach, a NumPy round trip or a stop_gradient on the way?)")
    return ValueError(f"no gradient reached {name}: the loss does not depend on it in "
                      f"{framework}")


def owner(layers, name):
    """(the layer entry, a residual block's sub-layer included, local name) of canonical
    parameter `name`, or (None, name)."""
    for layer in layers:
        if name.startswith(layer["name"] + "."):
            inner, local = owner(layer.get("layers", []), name)
            return (inner, local) if inner is not None else (layer, name[len(layer["name"]) + 1:])
    return None, name


def _shape(shape, batch=False):
    """(6, 7), (6,), (?, 7) for an axis of unknown size, or (batch, 7) for a batch axis."""
    axes = ["?" if s is None else str(s) for s in shape]
    axes[:1] = ["batch"] * len(axes[:1]) if batch else axes[:1]
    return f"({axes[0]},)" if len(axes) == 1 else f"({', '.join(axes)})"
