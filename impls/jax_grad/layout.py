"""Canonical layout -> the params pytree the functions in layers.py take, and back.

The canonical layouts are JAX's natural ones (and Flax's): dense W (in, out) is a Flax
kernel, conv W (kh, kw, C_in, C_out) is lax's HWIO on NHWC images, and the recurrent
cells in layers.py are written in the canonical gate order. So for most layers nothing
moves. Two things do: attention gets an explicit heads axis (the layout of Flax's
MultiHeadDotProductAttention), and a residual block's flat local names ("0.W")
become a nested pytree ({"0": {"W": ...}}). A plugin layer's parameters pass through.
"""

from ..canonical import block_key, share

__all__ = ["to_native", "from_native", "activation_from_native"]


def to_native(layer, params):
    if "plugin" in layer:
        return dict(params)  # a plugin takes its parameters canonical
    if layer["type"] == "attention":
        return {name: split_heads(layer, name, p) for name, p in params.items()}
    if layer["type"] == "residual":  # "0.W" -> {"0": {"W": ...}}, each sub-layer by its own rule
        return {block_key(sub, layer): to_native(sub, share(params, block_key(sub, layer)))
                for sub in layer["layers"]}
    # dense, conv2d, rnn/lstm/gru, batchnorm/layernorm, embedding: nothing moves
    return dict(params)


def from_native(layer, native):
    if "plugin" in layer:
        return dict(native)
    if layer["type"] == "attention":
        return {name: merge_heads(name, p) for name, p in native.items()}
    if layer["type"] == "residual":  # {"0": {"W": ...}} -> "0.W"
        return {f"{block_key(sub, layer)}.{local}": p for sub in layer["layers"]
                for local, p in from_native(sub, native[block_key(sub, layer)]).items()}
    return dict(native)  # nothing moves


def split_heads(layer, name, p):
    heads, key_dim = layer["heads"], layer["key_dim"]
    if name == "Wo":
        return p.reshape(heads, key_dim, -1)         # (heads*key_dim, D) -> (heads, key_dim, D)
    if name == "bo":
        return p                                     # (D,): unchanged
    return p.reshape(*p.shape[:-1], heads, key_dim)  # W (D, heads*key_dim) -> (D, heads, key_dim),
                                                     # b (heads*key_dim,) -> (heads, key_dim)


def merge_heads(name, p):
    if name == "Wo":
        return p.reshape(-1, p.shape[-1])            # (heads, key_dim, D) -> (heads*key_dim, D)
    if name == "bo":
        return p
    return p.reshape(*p.shape[:-2], -1)              # (D, heads, key_dim) -> (D, heads*key_dim),
                                                     # (heads, key_dim) -> (heads*key_dim,)


def activation_from_native(shape, value):
    """A layer's input or output (or its gradient): images run NHWC here too, nothing moves."""
    return value
