"""One small spec per layer type: what `crossgrad explain` runs to measure a layer's agreement.

Each spec (a plain dict, as a spec file would read) puts the layer between a few others
and ends in a classifier, with odd sizes on purpose, so that every framework's layout of
that layer is exercised; the test suite checks them all (tests/cases.py imports them).
`for_type(t)` names the examples that hold a layer of type t, its own example first.
"""

DIGITS_IMG = {"source": "digits", "batch_size": 6}
SEQ = {"source": "random_sequence", "classes": 3, "examples": 20, "batch_size": 5}
TOKENS = {"source": "random_tokens", "vocab": 11, "classes": 3, "examples": 20, "batch_size": 5}
NORMAL_BIAS = {"type": "normal", "std": 0.2}


def spec(name, layers, input_shape, data, loss="softmax_cross_entropy", **extra):
    return {"name": name, "seed": 3, "input_shape": input_shape, "data": data, "layers": layers,
            "loss": {"type": loss}, **extra}


def dense(units, **kw):
    return {"type": "dense", "units": units, **kw}


# one spec per layer type (and activation), each ending in a classifier
LAYERS = {
    "dense": spec("dense", [dense(7, init="he_uniform", bias_init=NORMAL_BIAS),
                            {"type": "tanh"}, dense(10)], [64], {"source": "digits", "batch_size": 7}),
    "sigmoid": spec("sigmoid", [dense(5), {"type": "sigmoid"}, dense(10)], [64], DIGITS_IMG),
    "relu": spec("relu", [dense(9, bias_init=NORMAL_BIAS), {"type": "relu"}, dense(10)], [64], DIGITS_IMG),
    "leaky_relu": spec("leaky_relu", [dense(9), {"type": "leaky_relu", "alpha": 0.2}, dense(10)],
                       [64], DIGITS_IMG),
    "gelu": spec("gelu", [dense(9, bias_init=NORMAL_BIAS), {"type": "gelu"}, dense(10)], [64], DIGITS_IMG),
    "identity": spec("identity", [dense(4, use_bias=False), {"type": "identity"}, dense(10)], [64],
                     DIGITS_IMG),
    "conv2d_same_stride2": spec("conv2d_same_stride2", [
        {"type": "conv2d", "filters": 3, "kernel_size": [3, 2], "strides": [2, 2], "padding": "same",
         "bias_init": NORMAL_BIAS}, {"type": "tanh"}, {"type": "flatten"}, dense(10)], [8, 8, 1], DIGITS_IMG),
    "conv2d_explicit_padding": spec("conv2d_explicit_padding", [
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": [1, 2], "use_bias": False},
        {"type": "sigmoid"}, {"type": "conv2d", "filters": 3, "kernel_size": [2, 3], "strides": [1, 2]},
        {"type": "flatten"}, dense(10)], [8, 8, 1], DIGITS_IMG),
    "maxpool2d": spec("maxpool2d", [
        {"type": "conv2d", "filters": 2, "kernel_size": 2, "bias_init": NORMAL_BIAS},
        {"type": "maxpool2d", "pool_size": [3, 2], "strides": [2, 1], "padding": "same"},
        {"type": "flatten"}, dense(10)], [8, 8, 1], DIGITS_IMG),
    "avgpool2d": spec("avgpool2d", [
        {"type": "conv2d", "filters": 2, "kernel_size": 2},
        {"type": "avgpool2d", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "avgpool2d", "pool_size": 2, "padding": [1, 0]},
        {"type": "flatten"}, dense(10)], [8, 8, 1], DIGITS_IMG),
    "batchnorm": spec("batchnorm", [dense(7, use_bias=False), {"type": "batchnorm", "momentum": 0.3,
                                                               "eps": 1e-3}, {"type": "relu"}, dense(10)],
                      [64], {"source": "digits", "batch_size": 9}),
    "batchnorm_conv": spec("batchnorm_conv", [
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "use_bias": False},
        {"type": "batchnorm", "gamma_init": {"type": "normal", "mean": 1, "std": 0.2}},
        {"type": "flatten"}, dense(10)], [8, 8, 1], DIGITS_IMG),
    "layernorm": spec("layernorm", [dense(7), {"type": "layernorm", "eps": 1e-3, "beta_init": NORMAL_BIAS,
                                               "gamma_init": {"type": "normal", "mean": 1, "std": 0.2}},
                                    {"type": "tanh"}, dense(10)], [64], DIGITS_IMG),
    "dropout": spec("dropout", [dense(7), {"type": "dropout", "rate": 0.3}, {"type": "tanh"}, dense(10)],
                    [64], DIGITS_IMG),
    "residual_nested": spec("residual_nested", [
        dense(6), {"type": "residual", "layers": [
            {"type": "layernorm"}, dense(5), {"type": "tanh"},
            {"type": "residual", "layers": [dense(5), {"type": "sigmoid"}]}, dense(6)]},
        dense(10)], [64], DIGITS_IMG),
    "rnn": spec("rnn", [{"type": "rnn", "units": 5, "return_sequences": True, "bias_init": NORMAL_BIAS},
                        {"type": "rnn", "units": 4}, dense(3)], [6, 3], SEQ),
    "lstm": spec("lstm", [{"type": "lstm", "units": 5, "return_sequences": True, "bias_init": NORMAL_BIAS},
                          {"type": "lstm", "units": 3}, dense(3)], [6, 3], SEQ),
    "gru": spec("gru", [{"type": "gru", "units": 5, "return_sequences": True, "bias_init": NORMAL_BIAS},
                        {"type": "gru", "units": 3}, dense(3)], [6, 3], SEQ),
    "attention_causal": spec("attention_causal", [
        # unit-scale token vectors: with the default U(-0.05, 0.05) every score is ~0, the
        # softmax is flat and dL/dWq is all cancellation, beyond float32's reach
        {"type": "embedding", "vocab": 11, "dim": 6, "init": {"type": "normal", "std": 1.0}},
        {"type": "attention", "heads": 2, "key_dim": 3, "causal": True, "bias_init": NORMAL_BIAS},
        {"type": "sequence_mean"}, dense(3)], [7], TOKENS),
    "attention": spec("attention", [{"type": "attention", "heads": 3, "key_dim": 2, "use_bias": False},
                                    {"type": "sequence_mean"}, dense(3)], [5, 4], SEQ),
}


def layer_types(layers):
    """Every layer type in `layers`, residual blocks included, in order of appearance."""
    out = []
    for layer in layers:
        out.append(layer["type"])
        out += layer_types(layer.get("layers", []))
    return list(dict.fromkeys(out))


def for_type(layer_type):
    """The names of the examples holding a layer of `layer_type`: the one named after it (or
    after it with a suffix) first, then the others in catalog order."""
    holding = [name for name, raw in LAYERS.items() if layer_type in layer_types(raw["layers"])]
    own = sorted((n for n in holding if n == layer_type or n.startswith(layer_type + "_")),
                 key=lambda n: n != layer_type)
    return own + [n for n in holding if n not in own]
