"""A Keras model -> its chain of Pieces.

`load(path)` reads a .keras file (safe mode: no code from the file runs); `chain(model)`
walks a Sequential's layers, or a functional model's operations from its input to its
output: each takes the value before it (a straight chain), and an Add of that value and
an earlier one closes a residual block. keras_layers.py maps each layer. Imported by the
importer and, in a tensorflow worker, by the original participant.
"""
import hashlib
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402

from .keras_layers import pieces as layer_pieces  # noqa: E402
from .pieces import (CANONICAL, NCHW, NotMapped, Piece, first_sentence,  # noqa: E402
                     in_canonical_order)

ADDS = ("Add",)   # keras.layers.Add and the operation `x + y` makes between KerasTensors


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load(path, digest=None):
    """The model in a .keras file; ValueError, one line, for anything else."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError("expected a .keras file (model.save('my_model.keras'))")
    if not path.is_file():
        raise ValueError(f"no such file: {path}" if not path.exists() else
                         f"{path} is not a file (a .keras model is one zip file)")
    if digest is not None and sha256(path) != digest:
        raise ValueError(f"{path.name} changed since the import (its sha256 differs from the "
                         "spec's original.sha256); import it again")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:
        raise ValueError(f"not a Keras model file Keras can load ({first_sentence(err)})") \
            from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"holds a {type(model).__name__}, not a keras.Model")
    return model


class Walk:
    def __init__(self):
        self.layout, self.shape_in = CANONICAL, ()


def chain(model):
    """-> (pieces, input layout, the input shape per example (the model's layout), tokens)."""
    steps = _steps(model)
    shape = tuple(model.inputs[0].shape[1:])  # the Sequential's too: it was built
    if not shape or None in shape:
        raise NotMapped("model", f"its input shape {shape} is not fixed; crossgrad needs one "
                                 "example's shape")
    first = steps[0][0] if steps else None
    tokens = type(first).__name__ == "Embedding"
    layout = NCHW if len(shape) == 3 and _channels_first(steps) else CANONICAL
    ctx = Walk()
    ctx.layout, ctx.shape_in = layout, shape
    out = _walk(steps, ctx, -1 if isinstance(model, keras.Sequential) else id(model.inputs[0]))
    if not out:
        raise NotMapped("model", "has no layer crossgrad could map")
    _no_shared_weights(steps)
    _no_losses_of_its_own(model)
    if not in_canonical_order(ctx.layout):
        raise NotMapped("model", "its output is an image or a flattened channels_first image; "
                                 "crossgrad's last layer gives one vector per example")
    return out, layout, shape, tokens


def _channels_first(steps):
    """The model's images are channels_first if its first image layer says so."""
    for layer, *_ in steps:
        fmt = getattr(layer, "data_format", None)
        if fmt is not None and type(layer).__name__ != "Flatten":
            return fmt == "channels_first"
    return False


def _steps(model):
    """[(layer or operation, its call's keyword arguments, the id of the value it adds to
    the chain's (a residual block) or None, the id of its output, its output's shape)], in
    order; NotMapped where the model is not a straight chain."""
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise NotMapped("model", "is not built: give it a keras.Input (or call it once)")
        calls = Counter(id(layer) for layer in model.layers)  # Sequential([d, d]) calls d twice
        for layer in model.layers:
            _once(layer, calls[id(layer)])
        return [(layer, {}, None, i, tuple(layer.output.shape[1:]))
                for i, layer in enumerate(model.layers)]
    if type(model).__name__ != "Functional":
        raise NotMapped("model", f"is a subclassed {type(model).__name__}: crossgrad reads "
                                 "Sequential and functional models")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotMapped("model", "has several inputs or outputs; crossgrad feeds one input to "
                                 "one output")
    current, steps, calls = id(model.inputs[0]), [], _calls(model)
    # this model's calls of each layer: one shared with another model (an encoder reused
    # in a bigger model) has that model's calls too in its _inbound_nodes
    times = Counter(id(op) for op, _ in calls)
    for k, (op, node) in enumerate(calls):
        if type(op).__name__ == "InputLayer":
            continue
        _once(op, times[id(op)])
        ins = [id(t) for t in node.input_tensors]
        added = None
        if type(op).__name__ in ADDS and len(ins) == 2 and current in ins and ins[0] != ins[1]:
            added = ins[1] if ins[0] == current else ins[0]
        elif not ins or any(i != current for i in ins):
            raise _not_a_chain(calls[k:])
        (out,) = node.output_tensors
        steps.append((op, dict(node.arguments.kwargs), added, id(out), tuple(out.shape[1:])))
        current = id(out)
    if current != id(model.outputs[0]):
        raise NotMapped("model", "its output is not the end of the chain of layers")
    return steps


def _not_a_chain(calls):
    """NotMapped for calls[0], the first call that does not take the chain's value. It starts
    a branch beside the chain (or is the layer joining one): the layer where branches join
    (a Concatenate, a Multiply, an Add of two branches) is the one to name, and its inputs."""
    op = calls[0][0]
    join = next(((o, n) for o, n in calls if len(n.input_tensors) > 1), None)
    if join is None:
        return NotMapped(f"model.{op.name}", "does not follow the layer before it: crossgrad "
                                             "reads straight chains (with x + f(x) blocks)")
    op, node = join
    kind = f"keras.layers.{type(op).__name__}" if isinstance(op, keras.layers.Layer) \
        else f"the operation {op.name}"
    joined = ", ".join(_made_by(t) for t in node.input_tensors)
    return NotMapped(f"model.{op.name}", f"{kind} joins branches ({joined}): crossgrad reads "
                                         "straight chains (with x + f(x) blocks)")


def _made_by(tensor):
    """"model.dense_3", the layer whose output a KerasTensor is (Keras keeps it in the
    tensor's _keras_history)."""
    made = getattr(getattr(tensor, "_keras_history", None), "operation", None)
    return f"model.{made.name}" if made is not None else "an input"


def _calls(model):
    """[(operation, node)]: each call inside a functional model, in the order it runs (a
    layer applied twice comes twice)."""
    order = {id(op): i for i, op in enumerate(model.operations)}
    return [(node.operation, node)
            for depth in sorted(model._nodes_by_depth, reverse=True)
            for node in sorted(model._nodes_by_depth[depth],
                               key=lambda n: order.get(id(n.operation), -1))]


def _once(op, times):
    """A layer called more than once (`times`, in the model imported) is one spec layer per
    call only if the calls share nothing: no weights, and no randomness (a Dropout draws one
    mask per call, each crossgrad dropout layer its own). One ReLU object applied twice is
    two relu layers."""
    if times <= 1:
        return
    if "Dropout" in type(op).__name__ or "Noise" in type(op).__name__:
        raise NotMapped(f"model.{op.name}", f"{type(op).__name__} is called more than once: "
                                            "it draws a mask (or noise) per call, and each "
                                            "crossgrad dropout layer has its own; give each "
                                            "call its own layer")
    if op.weights:
        raise NotMapped(f"model.{op.name}", "is called more than once (shared weights); "
                                            "each crossgrad layer has its own")


def _no_shared_weights(steps):
    """Two layers holding the same variable (one assigned the other's) train one tensor;
    the spec would make two of it, each trained alone."""
    owner = {}
    for layer, *_ in steps:
        for variable in getattr(layer, "weights", ()):   # an operation (x + y) has none
            other = owner.setdefault(id(variable), layer)
            if other is not layer:
                raise NotMapped(f"model.{layer.name}", f"shares its weight {variable.path} with "
                                                       f"model.{other.name}; each crossgrad "
                                                       "layer has its own")


def _no_losses_of_its_own(model):
    """model.losses (weight regularizers, however a layer keeps them) would add to the
    original's loss and not to the four's: the spec's only penalties are [train] l1, l2."""
    if model.losses:
        raise NotMapped("model", f"adds {len(model.losses)} loss(es) of its own "
                                 "(model.losses: a regularizer): crossgrad's loss is the spec's, "
                                 "with L1/L2 in its [train]")


def _walk(steps, ctx, first):
    """The steps as pieces; `first` is the id of the model's input."""
    out, positions = [], {first: 0}   # value -> how many pieces came before it
    for layer, kwargs, added, value, shape in steps:
        if added is not None:
            start = positions.get(added)
            if start is None:
                raise NotMapped(f"model.{layer.name}", "adds values that are not x and f(x): "
                                                       "crossgrad reads x + f(x) blocks only")
            block = out[start:]
            if block and block[0].in_layout != ctx.layout:
                raise NotMapped(f"model.{layer.name}", "x + f(x) where f changes the layout "
                                                       f"(from {_layout_name(block[0].in_layout)}"
                                                       f" to {_layout_name(ctx.layout)}): "
                                                       "crossgrad adds values of one layout")
            del out[start:]
            out.append(Piece({"type": "residual"}, f"model.{layer.name}", "x + f(x)",
                             block[0].in_layout, ctx.layout, layers=block, node=layer,
                             shape=shape))
            positions = {v: k for v, k in positions.items() if k <= start}
        else:
            made = layer_pieces(layer, kwargs, ctx)
            for p in made:
                p.shape = shape
            out += made
            ctx.layout, ctx.shape_in = made[-1].out_layout, shape
        positions[value] = len(out)
    return out


def _layout_name(layout):
    return {CANONICAL: "the canonical order", NCHW: "channels_first"}.get(layout,
                                                                        "(C, H, W) order")


def read_native(piece, name):
    """A piece's native array: the variable at `name` inside its Keras layer."""
    return native_variables(piece.node)[name].numpy()


def native_variables(layer):
    """{path inside the layer: variable}: "kernel", "lstm_cell/kernel", "query/kernel"."""
    return {v.path[len(layer.path) + 1:]: v for v in layer.weights}
