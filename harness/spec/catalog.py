"""The layer catalog: each layer type's spec keys, defaults, output shape and parameters.

`parse_layers` turns the spec's `[[layers]]` tables into plain dicts that every
implementation receives (see impls/README.md): the user's keys with defaults
filled in, plus `name`, `in_shape`, `out_shape`, `params` and `state`.
Shapes here are per example (no batch axis). Canonical layouts:
dense W (in, out); conv2d W (kh, kw, C_in, C_out) on NHWC images; recurrent
W (features, gates*units), U (units, gates*units) with LSTM gates [i, f, g, o]
and GRU gates [r, z, n]; attention Wq/Wk/Wv (D, heads*key_dim), Wo (heads*key_dim, D).
"""
import math

from ..errors import InputError
from .limits import LAYERS, RESIDUAL_DEPTH
from .initializers import parse_initializer

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity")


def parse_layers(tables, in_shape, prefix, ctx):
    """[[layers]] tables -> list of layer dicts, checking each follows the one before."""
    layers, shape = [], list(in_shape)
    parsers = {**PARSERS, **ctx.get("plugins", {})}  # plugin types: spec/plugins.py
    _count(tables, ctx)
    for i, t in enumerate(tables):
        kind = t.str("type", required=True, choices=list(parsers))
        name = f"{prefix}{i}"
        if kind == "embedding" and (prefix or i or ctx["input"] != "tokens"):
            raise t.error("type", "embedding must be the first layer, on integer token inputs")
        if i == 0 and not prefix and ctx["input"] == "tokens" and kind != "embedding" \
                and kind not in ctx.get("plugins", {}):  # a plugin gets the ids themselves
            raise t.error("type", "token inputs need an embedding (or a plugin layer, which "
                                  "receives the integer ids) as the first layer")
        layer = {"type": kind, "name": name, "in_shape": list(shape), "params": {}, "state": {}}
        parsers[kind](t, layer, ctx)
        layer["explicit"] = t.explicit()
        t.finish()
        shape = layer["out_shape"]
        layers.append(layer)
    return layers, shape


def _count(tables, ctx):
    """At most LAYERS layers in all, residual blocks' included: refused before parsing."""
    ctx["layers"] = ctx.get("layers", 0) + len(tables)
    if tables and ctx["layers"] > LAYERS:
        where = tables[0].path.rsplit("[", 1)[0]
        raise InputError(tables[0].file, where, f"the spec has more than {LAYERS} "
                         f"layers (counting those inside residual blocks); at most "
                         f"{LAYERS}")


def _need_rank(t, layer, rank, what):
    if len(layer["in_shape"]) != rank:
        raise t.error("type", f"{layer['type']} needs an input of shape {what}, "
                              f"got {tuple(layer['in_shape'])} from the layer before")


def _param(layer, local, shape, init, fan_in, fan_out):
    layer["params"][local] = {"shape": list(shape), "init": init,
                              "fan_in": fan_in, "fan_out": fan_out}


def _weights(t, layer, weights, biases, default_init="glorot_uniform"):
    """Weight tensors sharing `init`, plus optional biases sharing `bias_init`; each tensor
    is {local: (shape, fan_in, fan_out)}, a bias with the fans of the weight it adds to
    (torch_default draws a bias from its weight's fan_in)."""
    init = parse_initializer(t, "init", default_init)
    for local, (shape, fan_in, fan_out) in weights.items():
        _param(layer, local, shape, init, fan_in, fan_out)
    layer["use_bias"] = t.bool("use_bias", True)
    if not layer["use_bias"] and "bias_init" in t.data:  # a contradiction, not a typo
        raise t.error("bias_init", "is given with use_bias = false: the layer has no bias")
    if layer["use_bias"]:
        smallest = min((shape for shape, _, _ in biases.values()), key=len)
        bias_init = parse_initializer(t, "bias_init", "zeros", smallest)
        for local, (shape, fan_in, fan_out) in biases.items():
            _param(layer, local, shape, bias_init, fan_in, fan_out)


def parse_activation(t, layer, ctx):
    if layer["type"] == "leaky_relu":
        layer["alpha"] = t.float("alpha", 0.01, min=0.0, held=ctx.get("dtype"))
    layer["out_shape"] = list(layer["in_shape"])


def parse_dense(t, layer, ctx):
    if not layer["in_shape"]:
        raise t.error("type", "dense needs at least one input axis")
    n_in, units = layer["in_shape"][-1], t.int("units", required=True, min=1)
    layer["units"] = units
    _weights(t, layer, {"W": ((n_in, units), n_in, units)}, {"b": ((units,), n_in, units)})
    layer["out_shape"] = layer["in_shape"][:-1] + [units]  # acts on the last axis


def parse_flatten(t, layer, ctx):
    layer["out_shape"] = [math.prod(layer["in_shape"])]  # row-major over (H, W, C)


def same_padding(n, k, s):
    """TensorFlow's 'same': output ceil(n/s); the odd pixel of padding goes at the end."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return [total // 2, total - total // 2]


# the largest stride or window: TensorFlow takes them as int32 (2^31 failed in its worker
# alone); a stride past the padded input gives one output, as this one does
LARGEST_STEP = 2 ** 31 - 1


def _window(t, layer, kernel, strides):
    """Resolve `padding` into explicit [[top, bottom], [left, right]] and the output size."""
    padding = t.raw("padding", "valid")
    h, w = layer["in_shape"][:2]
    if padding == "same":
        pads = [same_padding(h, kernel[0], strides[0]), same_padding(w, kernel[1], strides[1])]
    elif padding == "valid":
        pads = [[0, 0], [0, 0]]
    elif isinstance(padding, list):
        ph, pw = t.ints("padding", length=2, min=0)
        pads = [[ph, ph], [pw, pw]]
    else:
        raise t.error("padding", f"must be \"valid\", \"same\" or [ph, pw], got {padding!r}")
    out = []
    for axis, (n, k, s, (lo, hi)) in enumerate(zip((h, w), kernel, strides, pads)):
        if n + lo + hi < k:
            raise t.error("kernel_size" if "kernel_size" in t.data else "pool_size",
                          f"window {k} is larger than the padded input ({n + lo + hi}) "
                          f"along {'height' if axis == 0 else 'width'}")
        out.append((n + lo + hi - k) // s + 1)
    layer["padding"], layer["pads"] = padding, pads
    return out


def parse_conv2d(t, layer, ctx):
    _need_rank(t, layer, 3, "(height, width, channels)")
    layer["filters"] = filters = t.int("filters", required=True, min=1)
    layer["kernel_size"] = kernel = t.ints("kernel_size", length=2, required=True)
    layer["strides"] = strides = t.ints("strides", length=2, default=1, max=LARGEST_STEP)
    out_hw = _window(t, layer, kernel, strides)
    c_in = layer["in_shape"][2]
    fans = kernel[0] * kernel[1] * c_in, kernel[0] * kernel[1] * filters
    _weights(t, layer, {"W": ((*kernel, c_in, filters), *fans)}, {"b": ((filters,), *fans)})
    layer["out_shape"] = out_hw + [filters]


def parse_pool2d(t, layer, ctx):
    _need_rank(t, layer, 3, "(height, width, channels)")
    layer["pool_size"] = pool = t.ints("pool_size", length=2, default=2)
    layer["strides"] = strides = t.ints("strides", length=2, default=pool, max=LARGEST_STEP)
    layer["out_shape"] = _window(t, layer, pool, strides) + [layer["in_shape"][2]]
    for (lo, hi), k in zip(layer["pads"], pool):
        if max(lo, hi) >= k:  # a window of padding alone: max -inf, an average of nothing
            raise t.error("padding", f"{max(lo, hi)} is as wide as the pool ({k}): a window "
                                     f"would hold padding alone; at most {k - 1}")


def _norm_params(t, layer):
    n = layer["in_shape"][-1]
    _param(layer, "gamma", (n,), parse_initializer(t, "gamma_init", "ones", (n,)), n, n)
    _param(layer, "beta", (n,), parse_initializer(t, "beta_init", "zeros", (n,)), n, n)
    layer["out_shape"] = list(layer["in_shape"])


def parse_batchnorm(t, layer, ctx):
    if not layer["in_shape"]:
        raise t.error("type", "batchnorm needs at least one input axis")
    if ctx.get("batch") == 1 and math.prod(layer["in_shape"][:-1]) == 1:
        raise t.error("type", "batchnorm needs more than one value per channel in a batch, "
                              "and a batch of one example has one")
    layer["eps"] = t.float("eps", 1e-5, above=0.0, held=ctx.get("dtype"))
    # momentum: weight of the NEW batch statistic (PyTorch's meaning; Keras' is 1 - this).
    layer["momentum"] = t.float("momentum", 0.1, min=0.0, max=1.0, held=ctx.get("dtype"))
    _norm_params(t, layer)
    n = layer["in_shape"][-1]
    layer["state"] = {"running_mean": {"shape": [n], "value": 0.0},
                      "running_var": {"shape": [n], "value": 1.0}}


def parse_layernorm(t, layer, ctx):
    if not layer["in_shape"]:
        raise t.error("type", "layernorm needs at least one input axis")
    layer["eps"] = t.float("eps", 1e-5, above=0.0, held=ctx.get("dtype"))
    _norm_params(t, layer)


def parse_dropout(t, layer, ctx):
    layer["rate"] = t.float("rate", required=True, min=0.0, below=1.0)
    layer["out_shape"] = list(layer["in_shape"])


def parse_residual(t, layer, ctx):
    depth = layer["name"].count(".") + 1  # "3" is a block at depth 1, "3.0" inside it at 2
    if depth > RESIDUAL_DEPTH:
        raise t.error("type", f"residual blocks nest {depth} deep here; at most "
                              f"{RESIDUAL_DEPTH}")
    subs = t.tables("layers", required=True)
    layer["layers"], out = parse_layers(subs, layer["in_shape"], layer["name"] + ".", ctx)
    if out != layer["in_shape"]:
        raise t.error("layers", f"a residual block must keep its input shape "
                                f"{tuple(layer['in_shape'])}, its layers end at {tuple(out)}")
    layer["out_shape"] = list(out)


GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def parse_recurrent(t, layer, ctx):
    _need_rank(t, layer, 2, "(time, features)")
    layer["units"] = units = t.int("units", required=True, min=1)
    layer["return_sequences"] = t.bool("return_sequences", False)
    time, features = layer["in_shape"]
    width = GATES[layer["type"]] * units
    init = parse_initializer(t, "init", "glorot_uniform")
    _param(layer, "W", (features, width), init, features, width)
    _param(layer, "U", (units, width), parse_initializer(t, "recurrent_init", "orthogonal"),
           units, width)
    # GRU keeps two biases (input side, recurrent side) because the reset gate
    # multiplies the recurrent one; for RNN and LSTM only their sum matters.
    bias_shape = (2, width) if layer["type"] == "gru" else (width,)
    _param(layer, "b", bias_shape, parse_initializer(t, "bias_init", "zeros", bias_shape),
           features, width)
    layer["out_shape"] = [time, units] if layer["return_sequences"] else [units]


def parse_attention(t, layer, ctx):
    _need_rank(t, layer, 2, "(time, features)")
    layer["heads"] = heads = t.int("heads", required=True, min=1)
    layer["key_dim"] = key_dim = t.int("key_dim", required=True, min=1)
    layer["causal"] = t.bool("causal", False)
    d, inner = layer["in_shape"][1], heads * key_dim
    # the projections in map D -> heads*key_dim, Wo maps back: its fan_in is heads*key_dim
    weights = {**{w: ((d, inner), d, inner) for w in ("Wq", "Wk", "Wv")},
               "Wo": ((inner, d), inner, d)}
    biases = {**{b: ((inner,), d, inner) for b in ("bq", "bk", "bv")}, "bo": ((d,), inner, d)}
    _weights(t, layer, weights, biases)
    layer["out_shape"] = list(layer["in_shape"])


def parse_sequence_mean(t, layer, ctx):
    _need_rank(t, layer, 2, "(time, features)")
    layer["out_shape"] = [layer["in_shape"][1]]


def parse_embedding(t, layer, ctx):
    layer["vocab"] = vocab = t.int("vocab", required=True, min=1)
    layer["dim"] = dim = t.int("dim", required=True, min=1)
    if ctx.get("vocab") is not None and ctx["vocab"] > vocab:
        raise t.error("vocab", f"is {vocab} but the data has {ctx['vocab']} token ids")
    _param(layer, "E", (vocab, dim), parse_initializer(t, "init", {"type": "uniform"}),
           vocab, dim)
    layer["out_shape"] = list(layer["in_shape"]) + [dim]


PARSERS = {
    **{kind: parse_activation for kind in ACTIVATIONS},
    "dense": parse_dense, "flatten": parse_flatten, "conv2d": parse_conv2d,
    "maxpool2d": parse_pool2d, "avgpool2d": parse_pool2d,
    "batchnorm": parse_batchnorm, "layernorm": parse_layernorm, "dropout": parse_dropout,
    "residual": parse_residual, "rnn": parse_recurrent, "lstm": parse_recurrent,
    "gru": parse_recurrent, "attention": parse_attention,
    "sequence_mean": parse_sequence_mean, "embedding": parse_embedding,
}


def walk(layers):
    """Every layer, depth first, residual blocks before their sub-layers."""
    for layer in layers:
        yield layer
        yield from walk(layer.get("layers", []))
