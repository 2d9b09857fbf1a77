"""Canonical layout <-> Keras layout: the only place where parameters are renamed or moved.

Native keys are the Keras variable paths inside the layer built for a spec entry
("kernel", "lstm_cell/bias", "query/kernel"; "1.kernel" for sub-layer 1 of a residual
block). Values may be NumPy arrays, tensors or variables, so the same functions turn
initial values into Keras', and Keras' gradients back into canonical ones. A plugin
layer's variables are its local names, canonical: they pass through.
"""
import tensorflow as tf

from ..canonical import per_sublayer

__all__ = ["to_native", "from_native", "activation_from_native"]

_CELL = {"rnn": "simple_rnn_cell", "lstm": "lstm_cell", "gru": "gru_cell"}

# canonical local name -> Keras variable path, per layer type
NAMES = {
    "dense": {"W": "kernel", "b": "bias"},        # Keras Dense kernel is (in, out), like W
    "conv2d": {"W": "kernel", "b": "bias"},       # Conv2D kernel is (kh, kw, C_in, C_out), like W
    "batchnorm": {"gamma": "gamma", "beta": "beta",               # running_* are Keras' moving_*
                  "running_mean": "moving_mean", "running_var": "moving_variance"},
    "layernorm": {"gamma": "gamma", "beta": "beta"},
    "embedding": {"E": "embeddings"},             # (vocab, dim), like E
    # LSTM gates [i, f, c, o] are the canonical [i, f, g, o]; SimpleRNN and LSTM have one bias
    **{kind: {"W": f"{cell}/kernel", "U": f"{cell}/recurrent_kernel", "b": f"{cell}/bias"}
       for kind, cell in _CELL.items()},
    # attention: Wq -> query/kernel, ..., bo -> attention_output/bias
    "attention": {f"{p}{w}": f"{sub}/{var}" for w, sub in
                  (("q", "query"), ("k", "key"), ("v", "value"), ("o", "attention_output"))
                  for p, var in (("W", "kernel"), ("b", "bias"))},
}


def to_native(layer, params):
    """{canonical local name: value} -> {Keras variable path: value}."""
    kind = layer["type"]
    if "plugin" in layer:
        return dict(params)  # a plugin's variables are named and shaped as canonical
    if kind == "residual":
        return per_sublayer(layer, params, to_native)  # "1.W" -> "1.kernel", per sub-layer
    if kind == "gru":
        params = {k: _swap_r_z(v) for k, v in params.items()}   # gates [r, z, n] -> Keras [z, r, h]
    if kind == "attention":
        params = {k: tf.reshape(v, _heads_shape(layer, k)) for k, v in params.items()}
    return {NAMES[kind][k]: v for k, v in params.items()}  # params is {} for activations etc.


def from_native(layer, native):
    """{Keras variable path: value} -> {canonical local name: value}."""
    kind = layer["type"]
    if "plugin" in layer:
        return dict(native)
    if kind == "residual":
        return per_sublayer(layer, native, from_native)
    names = {path: ours for ours, path in NAMES.get(kind, {}).items()}
    params = {names[k]: v for k, v in native.items()}
    if kind == "gru":
        params = {k: _swap_r_z(v) for k, v in params.items()}   # Keras [z, r, h] -> gates [r, z, n]
    if kind == "attention":
        params = {k: tf.reshape(v, layer["params"][k]) for k, v in params.items()}  # heads merged
    return params


def _swap_r_z(v):
    """Swap the first two gate blocks on the last axis: W (F, 3H), U (H, 3H), b (2, 3H)."""
    first, second, third = tf.split(v, 3, axis=-1)
    return tf.concat([second, first, third], axis=-1)


def _heads_shape(layer, local):
    """Keras keeps the heads apart: Wq (D, heads*key_dim) -> (D, heads, key_dim), bq -> (heads,
    key_dim), Wo (heads*key_dim, D) -> (heads, key_dim, D); bo (D,) stays."""
    heads, key_dim, d = layer["heads"], layer["key_dim"], layer["in_shape"][1]
    if local == "Wo":
        return (heads, key_dim, d)
    if local == "bo":
        return (d,)
    return (d, heads, key_dim) if local[0] == "W" else (heads, key_dim)


def activation_from_native(shape, value):
    """A layer's input or output (or its gradient): Keras runs images NHWC, nothing moves."""
    return value
