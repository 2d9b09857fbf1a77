"""Every layer as a pure function forward(p, x, ctx) -> y, built from its spec entry.

`p` is the layer's own slice of the params pytree (layout.py says how it differs from
the canonical one), `ctx` carries the dropout masks and the BatchNorm running
statistics. There is no backward: jax.grad differentiates these functions.
Shapes in comments include the batch axis B.
Scalars stay Python floats: they are weakly typed, so a float32 model stays float32.

native=True keeps JAX's own defaults where they differ from the canonical math, and
Flax's documented defaults for the layer settings the spec did not write.
"""
import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ..canonical import block_key

__all__ = ["LAYERS", "build_layer"]


def setting(layer, name, native, flax_default):
    """The spec's value; in native mode, Flax's default unless the user wrote it."""
    return flax_default if native and name not in layer["explicit"] else layer[name]


# ---- elementwise -----------------------------------------------------------------------------

ELEMENTWISE = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "identity": lambda x: x,
               "relu": jax.nn.relu}  # jax.nn.relu's gradient at 0 is 0, as every framework picks


def activation(layer, native):
    kind = layer["type"]
    if kind == "gelu":
        # jax.nn.gelu defaults to the tanh approximation; the canonical GELU is the exact x Phi(x)
        f = jax.nn.gelu if native else partial(jax.nn.gelu, approximate=False)
    elif kind == "leaky_relu":
        alpha = layer["alpha"]
        # jax.nn.leaky_relu tests x >= 0 (slope 1 at 0); the canonical rule tests x > 0
        f = (partial(jax.nn.leaky_relu, negative_slope=alpha) if native
             else lambda x: jnp.where(x > 0, x, alpha * x))
    else:
        f = ELEMENTWISE[kind]
    return lambda p, x, ctx: f(x)


def dropout(layer, native):
    """Inverted dropout with the harness's mask (not a PRNG key): y = x * mask / (1 - rate)."""
    name, rate = layer["name"], layer["rate"]
    return lambda p, x, ctx: x * (ctx.masks[name] / (1 - rate))


def flatten(layer, native):
    """(B, H, W, C) -> (B, H*W*C), row-major: the canonical NHWC order."""
    return lambda p, x, ctx: x.reshape(x.shape[0], -1)


# ---- dense and convolution -----------------------------------------------------------------

def dense(layer, native):
    """y = x W + b on the last axis: x (B, ..., in), W (in, out)."""
    use_bias = layer["use_bias"]

    def forward(p, x, ctx):
        y = x @ p["W"]  # (B, ..., out)
        return y + p["b"] if use_bias else y
    return forward


def conv2d(layer, native):
    """Cross-correlation on NHWC images, HWIO kernels; `pads` has TensorFlow's 'same' resolved."""
    strides, pads, use_bias = tuple(layer["strides"]), pairs(layer["pads"]), layer["use_bias"]

    def forward(p, x, ctx):
        y = lax.conv_general_dilated(x, p["W"], strides, pads,  # y: (B, Ho, Wo, C_out)
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p["b"] if use_bias else y
    return forward


def pairs(pads):
    """[[top, bottom], [left, right]] -> ((top, bottom), (left, right)), as lax takes them."""
    return tuple(tuple(p) for p in pads)


def window(layer):
    """reduce_window's arguments: one entry per NHWC axis, the batch and channel axes left alone."""
    (kh, kw), (sh, sw) = layer["pool_size"], layer["strides"]
    return (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), *pairs(layer["pads"]), (0, 0))


def maxpool2d(layer, native):
    """Max over each window. The padding takes the init value -inf, so it never wins; with
    tied maxima XLA's select_and_scatter (>=) sends the gradient to the first one."""
    dims, strides, padding = window(layer)

    def forward(p, x, ctx):
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, padding)  # (B, Ho, Wo, C)
    return forward


def avgpool2d(layer, native):
    """Mean over the real pixels of each window. Flax's avg_pool counts the padding
    (count_include_pad=True) unless told otherwise: native mode keeps that default."""
    dims, strides, padding = window(layer)

    def forward(p, x, ctx):
        total = lax.reduce_window(x, 0.0, lax.add, dims, strides, padding)       # (B, Ho, Wo, C)
        if native:
            return total / math.prod(dims)
        ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
        count = lax.reduce_window(ones, 0.0, lax.add, dims, strides, padding)  # (1, Ho, Wo, 1)
        return total / count
    return forward


# ---- normalisation ---------------------------------------------------------------------------

def batchnorm(layer, native):
    """Training mode: batch statistics over every axis but the last; updates the running ones.
    Native: Flax's BatchNorm, momentum 0.99 as the weight of the OLD value (so 0.01 of the
    new one), epsilon 1e-5, and the running variance from the biased batch variance
    (Flax's one-pass E[x^2] - E[x]^2 variance is not copied: it only moves the last bits)."""
    name = layer["name"]
    eps = setting(layer, "eps", native, 1e-5)
    m = setting(layer, "momentum", native, 1 - 0.99)

    def forward(p, x, ctx):
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axes), x.var(axes)                        # (C,), biased
        n = x.size // x.shape[-1]
        batch_var = var if native else var * n / (n - 1)  # canonical (PyTorch): unbiased; Flax: biased
        for stat, batch in (("running_mean", mean), ("running_var", batch_var)):
            k = f"{name}.{stat}"
            ctx.state[k] = (1 - m) * ctx.state[k] + m * batch
        return p["gamma"] * ((x - mean) * lax.rsqrt(var + eps)) + p["beta"]
    return forward


def layernorm(layer, native):
    """Normalise over the last axis of each example (and time step). Flax's epsilon is 1e-6."""
    eps = setting(layer, "eps", native, 1e-6)

    def forward(p, x, ctx):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)  # biased
        return p["gamma"] * ((x - mean) * lax.rsqrt(var + eps)) + p["beta"]
    return forward


# ---- composition -----------------------------------------------------------------------------

def residual(layer, native):
    """y = x + f(x), f the block's sub-layers; p is nested: {"0": {"W": ...}, ...}."""
    subs = [(block_key(sub, layer), build_layer(sub, None, native)) for sub in layer["layers"]]

    def forward(p, x, ctx):
        h = x
        for k, sub in subs:
            h = sub(p[k], h, ctx)
        return x + h
    return forward


def sequence_mean(layer, native):
    """(B, T, D) -> (B, D)."""
    return lambda p, x, ctx: x.mean(1)


def embedding(layer, native):
    """Token ids (B, T) -> rows of E: (B, T, dim). The gradient is a scatter-add into E."""
    return lambda p, x, ctx: jnp.take(p["E"], x, axis=0)


# ---- recurrent: lax.scan over time -----------------------------------------------------------

def recurrent(layer, cell, carries):
    """Run `cell` over the time axis from zero carries; jax.grad differentiates through the scan."""
    units, return_sequences = layer["units"], layer["return_sequences"]

    def forward(p, x, ctx):
        carry = tuple(jnp.zeros((x.shape[0], units), x.dtype) for _ in range(carries))
        _, hs = lax.scan(partial(cell, p), carry, x.swapaxes(0, 1))  # over (T, B, F): hs (T, B, H)
        return hs.swapaxes(0, 1) if return_sequences else hs[-1]     # (B, T, H) or (B, H)
    return forward


def rnn_cell(p, carry, x):
    """h = tanh(x W + h_prev U + b)."""
    (h_prev,) = carry
    h = jnp.tanh(x @ p["W"] + h_prev @ p["U"] + p["b"])
    return (h,), h


def lstm_cell(p, carry, x):
    """Gates [i, f, g, o] = split(x W + h_prev U + b); c = f c_prev + i g; h = o tanh(c)."""
    h_prev, c_prev = carry
    z = x @ p["W"] + h_prev @ p["U"] + p["b"]                         # (B, 4H)
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
    c = f * c_prev + i * g
    h = o * jnp.tanh(c)
    return (h, c), h


def gru_cell(p, carry, x):
    """r, z = sigmoid(...); n = tanh(x W_n + b0_n + r (h U_n + b1_n)); h = (1 - z) n + z h_prev."""
    (h_prev,) = carry
    gx = x @ p["W"] + p["b"][0]                                       # (B, 3H), input side
    gh = h_prev @ p["U"] + p["b"][1]                                  # (B, 3H), recurrent side
    (xr, xz, xn), (hr, hz, hn) = jnp.split(gx, 3, axis=-1), jnp.split(gh, 3, axis=-1)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1 - z) * n + z * h_prev
    return (h,), h


def rnn(layer, native):
    return recurrent(layer, rnn_cell, 1)


def lstm(layer, native):
    return recurrent(layer, lstm_cell, 2)


def gru(layer, native):
    return recurrent(layer, gru_cell, 1)


# ---- attention -------------------------------------------------------------------------------

def attention(layer, native):
    """Multi-head self-attention on Flax's layout: Wq/Wk/Wv (D, heads, key_dim) and
    Wo (heads, key_dim, D). Native: jax.nn.dot_product_attention, which takes the softmax
    in float32 even for float64 inputs (jax/_src/nn/functions.py, _dot_product_attention_core)."""
    causal, use_bias, key_dim = layer["causal"], layer["use_bias"], layer["key_dim"]

    def project(p, x, w):
        y = jnp.einsum("btm,mhd->bthd", x, p["W" + w])                # (B, T, heads, key_dim)
        return y + p["b" + w] if use_bias else y

    def forward(p, x, ctx):
        q, k, v = (project(p, x, w) for w in "qkv")
        if native:
            o = jax.nn.dot_product_attention(q, k, v, is_causal=causal)
        else:
            o = dot_product_attention(q, k, v, causal, key_dim)       # (B, T, heads, key_dim)
        y = jnp.einsum("bqhd,hdm->bqm", o, p["Wo"])  # heads concatenated, then Wo: (B, T, D)
        return y + p["bo"] if use_bias else y
    return forward


def dot_product_attention(q, k, v, causal, key_dim):
    """softmax(q k^T / sqrt(key_dim)) v per head, in the inputs' dtype."""
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(key_dim)      # (B, heads, T, T)
    if causal:
        time = q.shape[1]
        sees = jnp.tril(jnp.ones((time, time), bool))                 # query i sees keys j <= i
        s = jnp.where(sees, s, -jnp.inf)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v)


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {
    **dict.fromkeys(("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity"), activation),
    "dense": dense, "flatten": flatten, "conv2d": conv2d, "maxpool2d": maxpool2d,
    "avgpool2d": avgpool2d, "batchnorm": batchnorm, "layernorm": layernorm, "dropout": dropout,
    "residual": residual, "rnn": rnn, "lstm": lstm, "gru": gru, "attention": attention,
    "sequence_mean": sequence_mean, "embedding": embedding,
}


def build_layer(layer, dtype, native):
    """The pure function forward(p, x, ctx) -> y for one spec entry."""
    return LAYERS[layer["type"]](layer, native)
