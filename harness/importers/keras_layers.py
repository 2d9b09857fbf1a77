"""One Keras layer -> its spec layers (Pieces), or NotMapped naming it.

`pieces(layer, call_kwargs, ctx)` maps a layer of a Sequential or functional model. A
Dense or Conv2D with an activation becomes two pieces (the layer, then the activation:
the spec has no fused activation); the original then runs them as its two halves,
the same operations in the same order. Options are mapped where crossgrad has them
(padding, strides, epsilon, use_bias, slopes) and refused where not (dilation, groups,
masking, ...). Keras' BatchNormalization momentum weighs the old value: the spec's is
1 - it; Keras' moving variance takes the biased batch variance, the spec's the unbiased
one (a difference the import notes: the running variances then part). A GRU must be
reset_after=True (PyTorch's form, the spec's); its gates [z, r, h] are permuted.
"""
import inspect

import numpy as np

from .pieces import CANONICAL, NCHW, Link, NotMapped, Piece, layout_note, per_feature, \
    rows_to_canonical, rows_to_native, same

ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "gelu": "gelu",
               "linear": "identity", "leaky_relu": "leaky_relu"}


def pieces(layer, call_kwargs, ctx):
    kind = type(layer).__name__
    if not type(layer).__module__.startswith("keras"):
        raise NotMapped(where(layer), f"{kind} (a layer of your own) has no crossgrad layer")
    builder = LAYERS.get(kind)
    if builder is None:
        raise NotMapped(where(layer), f"keras.layers.{kind} has no crossgrad layer")
    extra = next(iter(_extras(layer)), None)
    _refuse_if(layer, extra is not None,
               f"with {extra}: crossgrad's layers have no constraints and no regularizers "
               "of their own (L1/L2 on every weight matrix: the spec's [train] l1, l2)")
    _refuse_if(layer, any(getattr(sub, "lora_enabled", False) for sub in _inside(layer)),
               "with LoRA (lora_rank): its kernel is kernel + lora_kernel_a @ lora_kernel_b, "
               "trained apart; crossgrad's layer has one weight matrix (merge the LoRA weights "
               "into the kernel first)")
    return builder(layer, call_kwargs, ctx)


def _inside(layer):
    """The layer and the layers it holds (an LSTM's cell, MultiHeadAttention's projections):
    an option set on any of them acts on the layer's math."""
    flatten = getattr(layer, "_flatten_layers", None)
    return list(flatten(include_self=True, recursive=True)) if flatten else [layer]


def _extras(layer):
    """The regularizers and constraints set on a layer, by their arguments' names. Dense
    keeps them as public attributes (kernel_regularizer), MultiHeadAttention as private ones
    (_kernel_regularizer, _activity_regularizer), and each weight carries its own: all are
    read, so that none is taken for a layer without one (it would add to model.losses, or
    clip the weights after each step, in the original only)."""
    found = []
    for sub in _inside(layer):
        for name, value in vars(sub).items():
            option = name.lstrip("_")
            if value is not None and option.endswith(("_regularizer", "_constraint")) and \
                    option not in found:
                found.append(option)
        for variable in sub.weights:
            for what in ("regularizer", "constraint"):
                if getattr(variable, what, None) is not None and not found:
                    found.append(f"a {what} on {variable.path}")
    return found


def where(layer):
    return f"model.{layer.name}"


def _new(layer, table, ctx, out_layout=None, **kw):
    return Piece(table, where(layer), f"keras.layers.{type(layer).__name__}", ctx.layout,
                 ctx.layout if out_layout is None else out_layout, node=layer, **kw)


def _refuse_if(layer, condition, message):
    if condition:
        raise NotMapped(where(layer), f"keras.layers.{type(layer).__name__} {message}")


def _activation_name(layer, fn):
    name = getattr(fn, "__name__", str(fn))
    if name not in ACTIVATIONS:
        raise NotMapped(where(layer), f"activation {name!r} has no crossgrad layer")
    if _approximate(fn):
        raise NotMapped(where(layer), f"activation {name!r} with approximate=True (the tanh "
                                      "form, keras.ops.gelu's default; keras.activations.gelu's "
                                      "is False): crossgrad's gelu is the exact (erf) form")
    return name


def _approximate(fn):
    """Whether a gelu computes the tanh form: keras.ops.gelu and keras.activations.gelu are
    both named "gelu", and differ in their default (True, False)."""
    try:
        option = inspect.signature(fn).parameters.get("approximate")
    except (TypeError, ValueError):   # no signature to read: a builtin, not a gelu of Keras'
        return False
    return option is not None and option.default is True


def _with_activation(layer, piece, ctx):
    """[the layer's piece] + [its activation's piece], unless it is linear."""
    name = _activation_name(layer, layer.activation)
    if name == "linear":
        return [piece]
    act = Piece({"type": ACTIVATIONS[name], **_slope(name)}, where(layer),
                f"the activation {name!r} of keras.layers.{type(layer).__name__}",
                piece.out_layout, piece.out_layout, node=layer)
    piece.notes.append(f"its activation {name!r} is the next layer")
    piece.part, act.part = "linear", "activation"   # the original runs the two halves
    return [piece, act]


def _slope(name):
    return {"alpha": 0.2} if name == "leaky_relu" else {}  # keras.activations.leaky_relu's


# ---- elementwise -------------------------------------------------------------------------------

def activation(layer, kw, ctx):
    name = _activation_name(layer, layer.activation)
    return [_new(layer, {"type": ACTIVATIONS[name], **_slope(name)}, ctx)]


def relu(layer, kw, ctx):
    _refuse_if(layer, layer.max_value is not None or layer.threshold,
               "with max_value or threshold: crossgrad's relu has neither")
    slope = float(layer.negative_slope)
    return [_new(layer, {"type": "leaky_relu", "alpha": slope} if slope else {"type": "relu"},
                 ctx)]


def leaky_relu(layer, kw, ctx):
    return [_new(layer, {"type": "leaky_relu", "alpha": float(layer.negative_slope)}, ctx)]


def identity(layer, kw, ctx):
    return [_new(layer, {"type": "identity"}, ctx)]


def dropout(layer, kw, ctx):
    _refuse_if(layer, layer.noise_shape is not None, "with noise_shape: crossgrad's dropout "
                                                     "drops single values")
    # refused here, naming the layer, rather than by the spec's check of layers[i].rate
    _refuse_if(layer, layer.rate >= 1, f"rate={layer.rate}: drops every value; crossgrad's "
                                       "dropout rate must be below 1")
    return [_new(layer, {"type": "dropout", "rate": float(layer.rate)}, ctx)]


# ---- shapes ------------------------------------------------------------------------------------

def flatten(layer, kw, ctx):
    """Keras' Flatten with data_format="channels_first" moves the channels last first (the
    canonical order); with the default, a channels_first image flattens in (C, H, W) order.
    A flatten of values already flat changes nothing: they keep the order they came in."""
    layout = CANONICAL if len(ctx.shape_in) > 1 else ctx.layout
    if ctx.layout == NCHW and layer.data_format != "channels_first":
        layout = ("chw", *ctx.shape_in)
    _refuse_if(layer, ctx.layout != NCHW and layer.data_format == "channels_first"
               and len(ctx.shape_in) > 1, "(data_format='channels_first') on a channels_last "
               "input takes its second axis for the channels: crossgrad's flatten keeps the "
               "order")
    return [_new(layer, {"type": "flatten"}, ctx, out_layout=layout)]


def sequence_mean(layer, kw, ctx):
    _refuse_if(layer, layer.data_format != "channels_last" or layer.keepdims,
               "with channels_first or keepdims: crossgrad's sequence_mean takes (batch, time, "
               "features) to (batch, features)")
    return [_new(layer, {"type": "sequence_mean"}, ctx)]


# ---- dense and convolution ---------------------------------------------------------------------

def dense(layer, kw, ctx):
    layout = ctx.layout
    _refuse_if(layer, layout == NCHW, "on a channels_first image acts on its width; "
                                      "crossgrad's dense acts on the channels")
    links = {"W": Link(("kernel",), lambda n: rows_to_canonical(n["kernel"], layout),  # (in, out)
                       lambda a: {"kernel": rows_to_native(a, layout)})}
    if layer.use_bias:
        links["b"] = same("bias")
    piece = _new(layer, {"type": "dense", "units": layer.units, "use_bias": layer.use_bias},
                 ctx, out_layout=CANONICAL, links=links,
                 notes=[layout_note(layout)] if layout[0] == "chw" else [])
    return _with_activation(layer, piece, ctx)


def _image_layout(layer, ctx):
    first = layer.data_format == "channels_first"
    if (ctx.layout == NCHW) != first or len(ctx.shape_in) != 3:
        raise NotMapped(where(layer), f"keras.layers.{type(layer).__name__} "
                                      f"({layer.data_format}) on an input of shape "
                                      f"{ctx.shape_in}: expected an image of that layout")


def conv2d(layer, kw, ctx):
    _image_layout(layer, ctx)
    _refuse_if(layer, tuple(layer.dilation_rate) != (1, 1),
               f"dilation_rate={layer.dilation_rate}: crossgrad's conv2d has no dilation")
    _refuse_if(layer, layer.groups != 1, f"groups={layer.groups}: crossgrad's conv2d has none")
    links = {"W": same("kernel")}     # (kh, kw, C_in, C_out) in both data formats, like W
    if layer.use_bias:
        links["b"] = same("bias")
    piece = _new(layer, {"type": "conv2d", "filters": layer.filters,
                         "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
                         "padding": layer.padding, "use_bias": layer.use_bias}, ctx, links=links)
    return _with_activation(layer, piece, ctx)


def pool2d(layer, kw, ctx):
    _image_layout(layer, ctx)
    kind = "maxpool2d" if "Max" in type(layer).__name__ else "avgpool2d"
    # max pads with -inf, average counts only the real pixels: both the spec's rules
    return [_new(layer, {"type": kind, "pool_size": list(layer.pool_size),
                         "strides": list(layer.strides or layer.pool_size),
                         "padding": layer.padding}, ctx)]


# ---- normalisation -----------------------------------------------------------------------------

def _last_axis(layer, axis, ctx):
    """The normalised axis, as the spec's: the features (last, or C of a channels_first image)."""
    rank = len(ctx.shape_in) + 1
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    axes = [a % rank for a in axes]
    want = 1 if ctx.layout == NCHW else rank - 1
    if axes != [want]:
        raise NotMapped(where(layer), f"keras.layers.{type(layer).__name__} over axis "
                                      f"{axis}: crossgrad normalises the features (axis "
                                      f"{want} here)")


def batchnorm(layer, kw, ctx):
    _last_axis(layer, layer.axis, ctx)
    _refuse_if(layer, not (layer.center and layer.scale),
               "without center or scale: crossgrad's batchnorm learns gamma and beta")
    _refuse_if(layer, getattr(layer, "renorm", False),
               "with renorm: crossgrad's batchnorm normalises by the batch's statistics alone")
    layout = ctx.layout
    links = {local: per_feature(native, layout) for local, native in (
        ("gamma", "gamma"), ("beta", "beta"), ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"))}
    notes = [f"momentum = 1 - Keras' {layer.momentum:g} (Keras weighs the old value); Keras "
             "keeps the biased batch variance in moving_variance, crossgrad the unbiased: "
             "the running variances part"]
    return [_new(layer, {"type": "batchnorm", "eps": float(layer.epsilon),
                         "momentum": float(f"{1.0 - layer.momentum:.12g}")}, ctx, links=links,
                 state=("running_mean", "running_var"),
                 notes=notes + ([layout_note(layout)] if layout[0] == "chw" else []))]


def layernorm(layer, kw, ctx):
    _refuse_if(layer, ctx.layout == NCHW, "on a channels_first image: crossgrad normalises "
                                          "the last axis")
    _last_axis(layer, layer.axis, ctx)
    _refuse_if(layer, not (layer.center and layer.scale) or layer.rms_scaling,
               "without center or scale, or with rms_scaling: crossgrad's layernorm learns "
               "gamma and beta")
    layout = ctx.layout
    return [_new(layer, {"type": "layernorm", "eps": float(layer.epsilon)}, ctx,
                 links={"gamma": per_feature("gamma", layout),
                        "beta": per_feature("beta", layout)})]


# ---- embedding, recurrent, attention -----------------------------------------------------------

def embedding(layer, kw, ctx):
    _refuse_if(layer, layer.mask_zero, "with mask_zero: crossgrad's embedding masks nothing")
    return [_new(layer, {"type": "embedding", "vocab": layer.input_dim,
                         "dim": layer.output_dim}, ctx, links={"E": same("embeddings")})]


def _swap_r_z(a):
    """Keras' GRU gates [z, r, h] <-> the spec's [r, z, n], on the last axis (its own inverse)."""
    z, r, h = np.split(a, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


def recurrent(layer, kw, ctx):
    kind = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}[type(layer).__name__]
    cell = layer.cell
    for option, bad in (("return_state", layer.return_state),
                        ("go_backwards", layer.go_backwards), ("stateful", layer.stateful),
                        ("dropout", cell.dropout), ("recurrent_dropout", cell.recurrent_dropout),
                        ("use_bias=False", not cell.use_bias)):
        _refuse_if(layer, bad, f"with {option}: crossgrad's {kind} has none")
    _refuse_if(layer, _activation_name(layer, cell.activation) != "tanh",
               "with an activation other than tanh")
    if kind != "rnn":
        _refuse_if(layer, getattr(cell.recurrent_activation, "__name__", "") != "sigmoid",
                   "with a recurrent_activation other than sigmoid")
    if kind == "gru":
        _refuse_if(layer, not cell.reset_after, "with reset_after=False: crossgrad's GRU is "
                                                "the reset-after form (PyTorch's)")
    path = {"rnn": "simple_rnn_cell", "lstm": "lstm_cell", "gru": "gru_cell"}[kind]
    convert = _swap_r_z if kind == "gru" else (lambda a: a)
    links = {local: Link((f"{path}/{native}",), lambda n, k=f"{path}/{native}": convert(n[k]),
                         lambda a, k=f"{path}/{native}": {k: convert(a)})
             for local, native in (("W", "kernel"), ("U", "recurrent_kernel"), ("b", "bias"))}
    return [_new(layer, {"type": kind, "units": cell.units,
                         "return_sequences": layer.return_sequences}, ctx, links=links,
                 notes=["gates [z, r, h] permuted to [r, z, n]"] if kind == "gru" else [])]


def attention(layer, kw, ctx):
    axes = layer._attention_axes  # built: the time axis, (1,), when none was given
    _refuse_if(layer, layer._value_dim not in (None, layer._key_dim) or
               layer._output_shape is not None or axes not in (None, (1,), [1]),
               "with value_dim, output_shape or attention_axes: crossgrad's attention has none")
    _refuse_if(layer, layer._dropout, f"with dropout={layer._dropout}: crossgrad's attention "
                                      "has no dropout of its weights")
    _refuse_if(layer, getattr(layer, "_use_gate", False) or getattr(layer, "_sliding_window",
                                                                    None) is not None,
               "with use_gate or a sliding_window: crossgrad's attention has neither")
    if kw.get("attention_mask") is not None or kw.get("return_attention_scores"):
        raise NotMapped(where(layer), "with an attention_mask or returning the scores: "
                                      "crossgrad's attention masks the future only")
    heads, key_dim, d = layer._num_heads, layer._key_dim, ctx.shape_in[-1]
    links = {}
    for w, sub in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "attention_output")):
        shape = (heads, key_dim, d) if w == "o" else (d, heads, key_dim)
        flat = (heads * key_dim, d) if w == "o" else (d, heads * key_dim)
        links["W" + w] = Link((f"{sub}/kernel",),
                              lambda n, s=sub, f=flat: n[f"{s}/kernel"].reshape(f),  # heads merged
                              lambda a, s=sub, sh=shape: {f"{s}/kernel": a.reshape(sh)})
        if layer._use_bias:
            bias = (d,) if w == "o" else (heads, key_dim)
            links["b" + w] = Link((f"{sub}/bias",),
                                  lambda n, s=sub: n[f"{s}/bias"].reshape(-1),
                                  lambda a, s=sub, sh=bias: {f"{s}/bias": a.reshape(sh)})
    return [_new(layer, {"type": "attention", "heads": heads, "key_dim": key_dim,
                         "causal": bool(kw.get("use_causal_mask", False)),
                         "use_bias": bool(layer._use_bias)}, ctx, links=links)]


LAYERS = {"Activation": activation, "ReLU": relu, "LeakyReLU": leaky_relu, "Identity": identity,
          "Dropout": dropout, "Flatten": flatten, "GlobalAveragePooling1D": sequence_mean,
          "Dense": dense, "Conv2D": conv2d, "MaxPooling2D": pool2d, "AveragePooling2D": pool2d,
          "BatchNormalization": batchnorm, "LayerNormalization": layernorm,
          "Embedding": embedding, "SimpleRNN": recurrent, "LSTM": recurrent, "GRU": recurrent,
          "MultiHeadAttention": attention}
