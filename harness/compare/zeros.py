"""Gradients that are zero by construction, named from the spec.

BatchNorm (in training) subtracts each feature's mean over the batch: a constant added to
a feature before it changes nothing after it, so every parameter that only adds such a
constant has a zero gradient. A bias is one; so is any shift that reaches the BatchNorm
through layers that carry a per-feature constant on as a per-feature constant (dense and
a 'valid' conv2d: linear; pooling, flatten, identity, the mean over time). Attention's
key bias is zero by itself: q.bk is the same for every key of a query, and softmax
cancels it; its value bias and output bias are shifts of its output (softmax weights sum
to 1). A LayerNorm over a single feature (its last axis of size 1) subtracts that feature
from itself: its output is beta whatever its input, so its gamma and every parameter
before it (in its residual block, if it is in one: the skip path goes around it) have a
zero gradient. (A BatchNorm whose batch holds a single value per channel is the same
math; the spec refuses it, spec/catalog.py.) A plugin layer declares its own
(spec/plugins.py: shifts, cancels_shifts, zero_gradients).
"""
from ..spec.catalog import walk

CARRY = {"dense", "flatten", "identity", "maxpool2d", "avgpool2d", "sequence_mean"}
CANCELS = "BatchNorm: the batch mean"


def structural_zeros(layers):
    """Gradients that are exactly zero whatever the data, so that every framework returns
    rounding noise for them: name -> why. These are compared against the model's largest
    gradient entry instead of their own (noise against noise means nothing)."""
    return _walk(layers, [])[0]


def _walk(layers, shifts):
    """-> (zeros, the shifts that reach the end): `shifts` are the (name, layer type, whether
    right before: no layer but identity since) of parameters that, so far, only add a
    constant to each feature of the current values."""
    zeros = {}
    for i, layer in enumerate(layers):
        declared = layer.get("zeros") or {}
        kind = layer["type"]
        if kind == "layernorm" and layer["in_shape"][-1] == 1:
            zeros = {**_one_feature(layer, layers[:i]), **zeros}  # a reason found before stands
        if kind == "batchnorm" or declared.get("cancels_shifts"):
            what = CANCELS if kind == "batchnorm" else \
                f"{kind}, which (its plugin says) ignores a shift of its input,"
            zeros.update({name: _why(of, what, right_before)
                          for name, of, right_before in shifts})
            shifts = []
        elif kind == "residual":
            zeros_in, shifts = _residual(layer, shifts)
            zeros.update(zeros_in)
        elif not _carries(layer):
            shifts = []
        elif kind != "identity":  # carried on, no longer right before what cancels it
            shifts = [(name, of, False) for name, of, _ in shifts]
        if kind == "attention" and layer["in_shape"][0] == 1:  # scores of one key
            zeros.update({f"{layer['name']}.{local}": "one time step: softmax over a single "
                          "key is 1 whatever the scores" for local in ("Wq", "Wk", "bq", "bk")
                          if local in layer["params"]})
        elif kind == "attention" and layer["use_bias"]:
            zeros[f"{layer['name']}.bk"] = ("the key bias adds q.bk to every score of a query: "
                                            "softmax cancels it")
        zeros.update({f"{layer['name']}.{local}": f"{why} (its plugin says)"
                      for local, why in declared.get("zero_gradients", {}).items()})
        shifts = shifts + [(f"{layer['name']}.{local}", kind, True)
                           for local in _own_shifts(layer)]
    return zeros, shifts


OUTER = "a shift from outside the block"  # a stand-in, followed through the block's inside


def _residual(block, shifts):
    """x + f(x) -> (zeros inside, the shifts that reach the block's output): f's own output
    shifts, and the shifts x carried in, where f keeps them constants per feature (x + c +
    f(x + c): f linear, or cancelling c itself, the skip path still carries it) and not
    where f bends them (a tanh). A stand-in for them is walked through f, not they: their
    gradient through the skip path is no zero, whatever cancels them inside f."""
    inner, reached = _walk(block["layers"], [(OUTER, "residual", False)])
    kept = OUTER in inner or any(name == OUTER for name, _, _ in reached)
    inner.pop(OUTER, None)
    carried = [(name, of, False) for name, of, _ in (shifts if kept else []) + reached
               if name != OUTER]
    return inner, carried


def _one_feature(layer, before):
    """A LayerNorm over one feature: its gamma, and every parameter of the layers `before` it
    (those of residual blocks among them included)."""
    why = f"LayerNorm {layer['name']} normalises a single feature: x - mean(x) is 0, so it " \
          "outputs its beta whatever its input"
    upstream = [f"{sub['name']}.{local}" for sub in walk(before) for local in sub["params"]]
    return {name: why for name in upstream + [f"{layer['name']}.gamma"]}


def _carries(layer):
    """Whether a per-feature constant in the layer's input is one in its output."""
    if layer["type"] == "conv2d":  # zero padding breaks the constant at the borders
        return all(p == 0 for side in layer["pads"] for p in side)
    return layer["type"] in CARRY


def _own_shifts(layer):
    """The layer's parameters that only add a constant to each output feature."""
    kind = layer["type"]
    if kind in ("dense", "conv2d"):
        return ["b"] if layer["use_bias"] else []
    if kind in ("batchnorm", "layernorm"):
        return ["beta"]
    if kind == "attention":
        return ["bv", "bo"] if layer["use_bias"] else []
    return (layer.get("zeros") or {}).get("shifts", [])


def _why(of, what, right_before):
    shift = "a bias" if of in ("dense", "conv2d") else f"a shift of {of}'s output"
    if right_before:
        return f"{shift} right before {what} cancels it"
    return f"{shift}, carried on by the layers after it (as a constant per feature) to {what} " \
           f"cancels it"
