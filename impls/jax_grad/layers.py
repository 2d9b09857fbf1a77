"""Every layer as a pure function forward(p, x, ctx) -> y, built from its spec entry.

One builder per layer type, `def <type>(layer, dtype, native)`, with the same name,
signature, order and first docstring line (the canonical equation) as in the other three
folders; it returns the layer's forward. `p` is the layer's own slice of the params
pytree (layout.py says how it differs from the canonical one), `ctx` carries the dropout
masks and the BatchNorm running statistics. There is no backward: jax.grad
differentiates these functions. Shapes in comments include the batch axis B.
Scalars stay Python floats: they are weakly typed, so a float32 model stays float32.

native=True keeps JAX's own defaults where they differ from the canonical math, and
Flax's documented defaults for the layer settings the spec did not write.
"""
import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ..canonical import block_key, check_output, native_on, plugin_method

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity", "dropout", "flatten",
           "dense", "conv2d", "maxpool2d", "avgpool2d", "batchnorm", "layernorm", "residual",
           "sequence_mean", "embedding", "rnn", "lstm", "gru", "attention", "plugin",
           "LAYERS", "build_layer"]


def setting(layer, name, native, pitfall, flax_default):
    """The spec's value; Flax's default when the user did not write it and `pitfall` is on.
    (Flax is not a dependency: its documented defaults are written here.)"""
    return flax_default if native_on(native, pitfall) and name not in layer["explicit"] \
        else layer[name]


# ---- elementwise -----------------------------------------------------------------------------

def elementwise(f):
    """The forward of y = f(x); jax.grad takes f' itself."""
    return lambda p, x, ctx: f(x)


def sigmoid(layer, dtype, native):
    """y = 1 / (1 + exp(-x)), elementwise: x, y (B, ...)

    jax.nn.sigmoid.
    """
    return elementwise(jax.nn.sigmoid)


def tanh(layer, dtype, native):
    """y = tanh(x), elementwise: x, y (B, ...)

    jnp.tanh.
    """
    return elementwise(jnp.tanh)


def relu(layer, dtype, native):
    """y = max(x, 0), elementwise, slope 0 at x = 0: x, y (B, ...)

    jax.nn.relu, whose gradient at 0 is 0, as every framework picks.
    """
    return elementwise(jax.nn.relu)


def leaky_relu(layer, dtype, native):
    """y = x if x > 0 else alpha * x, elementwise: x, y (B, ...)

    jax.nn.leaky_relu tests x >= 0 (slope 1 at 0), so aligned mode writes the canonical
    x > 0 with jnp.where; native mode is jax.nn.leaky_relu (jax.leaky_relu_slope_at_zero).
    """
    alpha = layer["alpha"]
    if native_on(native, "jax.leaky_relu_slope_at_zero"):
        return elementwise(partial(jax.nn.leaky_relu, negative_slope=alpha))
    return elementwise(lambda x: jnp.where(x > 0, x, alpha * x))


def gelu(layer, dtype, native):
    """y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), elementwise (exact, not tanh): x, y (B, ...)

    jax.nn.gelu(approximate=False); native mode keeps its default, the tanh approximation
    (jax.gelu_tanh).
    """
    tanh_form = native_on(native, "jax.gelu_tanh")
    return elementwise(jax.nn.gelu if tanh_form else partial(jax.nn.gelu, approximate=False))


def identity(layer, dtype, native):
    """y = x: x, y (B, ...)"""
    return elementwise(lambda x: x)


def dropout(layer, dtype, native):
    """y = x * mask / (1 - rate), mask (B, ...) of 0 and 1 drawn by the harness: x, y (B, ...)

    The harness's mask, not a PRNG key, comes in through ctx.
    """
    name, rate = layer["name"], layer["rate"]
    return lambda p, x, ctx: x * (ctx.masks[name] / (1 - rate))


def flatten(layer, dtype, native):
    """y = x reshaped to (B, H*W*C), row-major over (H, W, C): x (B, H, W, C)

    x.reshape: JAX runs images NHWC, the canonical order.
    """
    return lambda p, x, ctx: x.reshape(x.shape[0], -1)


# ---- dense and convolution -----------------------------------------------------------------

def dense(layer, dtype, native):
    """y = x W + b on the last axis: x (B, ..., in), W (in, out), b (out,), y (B, ..., out)

    A matmul; W is a Flax Dense kernel as it stands.
    """
    use_bias = layer["use_bias"]

    def forward(p, x, ctx):
        y = x @ p["W"]  # (B, ..., out)
        return y + p["b"] if use_bias else y
    return forward


def pairs(pads):
    """[[top, bottom], [left, right]] -> ((top, bottom), (left, right)), as lax takes them."""
    return tuple(tuple(p) for p in pads)


def conv2d(layer, dtype, native):
    """y[b,i,j] = sum_{u,v} xpad[b, i*sh+u, j*sw+v] W[u,v] + b: x (B, H, W, C_in), W (kh, kw, C_in, C_out)

    lax.conv_general_dilated (a cross-correlation) on NHWC images and HWIO kernels, with
    the canonical pads (TensorFlow's 'same' already resolved).
    """
    strides, pads, use_bias = tuple(layer["strides"]), pairs(layer["pads"]), layer["use_bias"]

    def forward(p, x, ctx):
        y = lax.conv_general_dilated(x, p["W"], strides, pads,  # y: (B, Ho, Wo, C_out)
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p["b"] if use_bias else y
    return forward


def window(layer):
    """reduce_window's arguments: one entry per NHWC axis, the batch and channel axes left alone."""
    (kh, kw), (sh, sw) = layer["pool_size"], layer["strides"]
    return (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), *pairs(layer["pads"]), (0, 0))


def maxpool2d(layer, dtype, native):
    """y[b,i,j] = max_{u,v} xpad[b, i*sh+u, j*sw+v], padded with -inf: x (B, H, W, C), y (B, Ho, Wo, C)

    lax.reduce_window with lax.max from -inf, so the padding never wins; with tied maxima
    XLA's select_and_scatter (>=) sends the gradient to the first one.
    """
    dims, strides, padding = window(layer)

    def forward(p, x, ctx):
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, padding)  # (B, Ho, Wo, C)
    return forward


def avgpool2d(layer, dtype, native):
    """y[b,i,j] = mean_{u,v} x[b, i*sh+u, j*sw+v], real pixels only: x (B, H, W, C), y (B, Ho, Wo, C)

    Window sums (lax.reduce_window) over a count of the real pixels. Flax's avg_pool
    counts the padding (count_include_pad=True) unless told otherwise: native mode keeps that
    (flax.avg_pool_counts_padding).
    """
    dims, strides, padding = window(layer)
    counts_padding = native_on(native, "flax.avg_pool_counts_padding")

    def forward(p, x, ctx):
        total = lax.reduce_window(x, 0.0, lax.add, dims, strides, padding)       # (B, Ho, Wo, C)
        if counts_padding:
            return total / math.prod(dims)
        ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
        count = lax.reduce_window(ones, 0.0, lax.add, dims, strides, padding)  # (1, Ho, Wo, 1)
        return total / count
    return forward


# ---- normalisation ---------------------------------------------------------------------------

def batchnorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over all axes but the last: x (B, ..., C)

    Training mode; the running statistics are replaced in ctx.state. Native: Flax's
    BatchNorm, momentum 0.99 as the weight of the OLD value (so 0.01 of the new one),
    epsilon 1e-5, and the running variance from the biased batch variance (Flax's
    one-pass E[x^2] - E[x]^2 variance is not copied: it only moves the last bits).
    """
    name = layer["name"]
    eps = layer["eps"]  # Flax's default, 1e-5, is the spec's
    m = setting(layer, "momentum", native, "flax.batchnorm_momentum", 1 - 0.99)
    biased = native_on(native, "flax.batchnorm_biased_variance")

    def forward(p, x, ctx):
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axes), x.var(axes)                        # (C,), biased
        n = x.size // x.shape[-1]
        batch_var = var if biased else var * n / (n - 1)  # canonical (PyTorch): unbiased; Flax: biased
        for stat, batch in (("running_mean", mean), ("running_var", batch_var)):
            k = f"{name}.{stat}"
            ctx.state[k] = (1 - m) * ctx.state[k] + m * batch
        return p["gamma"] * ((x - mean) * lax.rsqrt(var + eps)) + p["beta"]
    return forward


def layernorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over the last axis: x (B, ..., D)

    Biased variance, per example (and time step). Flax's epsilon is 1e-6.
    """
    eps = setting(layer, "eps", native, "flax.layernorm_epsilon", 1e-6)

    def forward(p, x, ctx):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)  # biased
        return p["gamma"] * ((x - mean) * lax.rsqrt(var + eps)) + p["beta"]
    return forward


# ---- composition -----------------------------------------------------------------------------

def residual(layer, dtype, native):
    """y = x + f(x), f the block's layers in order: x, y (B, ...)

    The sub-layers' forwards in turn; p is nested: {"0": {"W": ...}, ...} (layout.py).
    """
    subs = [(block_key(sub, layer), build_layer(sub, dtype, native)) for sub in layer["layers"]]

    def forward(p, x, ctx):
        h = x
        for k, sub in subs:
            h = sub(p[k], h, ctx)
        return x + h
    return forward


def sequence_mean(layer, dtype, native):
    """y = mean over t of x[:, t]: x (B, T, D), y (B, D)"""
    return lambda p, x, ctx: x.mean(1)


def embedding(layer, dtype, native):
    """y = E[x], the row of E for each token id: x (B, T) integers, E (vocab, dim), y (B, T, dim)

    jnp.take; the gradient is a scatter-add into E.
    """
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


def rnn(layer, dtype, native):
    """h' = tanh(x W + h U + b): x (B, T, F), W (F, H), U (H, H), b (H,), y (B, T, H) or (B, H)"""
    def cell(p, carry, x):
        (h_prev,) = carry
        h = jnp.tanh(x @ p["W"] + h_prev @ p["U"] + p["b"])
        return (h,), h
    return recurrent(layer, cell, carries=1)


def lstm(layer, dtype, native):
    """gates [i, f, g, o] = x W + h U + b; c' = f*c + i*g; h' = o*tanh(c'): W (F, 4H), U (H, 4H), b (4H,)

    The cell written in the canonical gate order, run by lax.scan; h0 = c0 = 0.
    """
    def cell(p, carry, x):
        h_prev, c_prev = carry
        z = x @ p["W"] + h_prev @ p["U"] + p["b"]                     # (B, 4H)
        zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
        c = f * c_prev + i * g
        h = o * jnp.tanh(c)
        return (h, c), h
    return recurrent(layer, cell, carries=2)


def gru(layer, dtype, native):
    """r, z = sigmoid(x W + b[0] + h U + b[1]); n = tanh(x W_n + b[0]_n + r*(h U_n + b[1]_n)); h' = (1-z)*n + z*h

    The cell written in the canonical gate order [r, z, n] (PyTorch's reset-after form),
    run by lax.scan; h0 = 0.
    """
    def cell(p, carry, x):
        (h_prev,) = carry
        gx = x @ p["W"] + p["b"][0]                                   # (B, 3H), input side
        gh = h_prev @ p["U"] + p["b"][1]                              # (B, 3H), recurrent side
        (xr, xz, xn), (hr, hz, hn) = jnp.split(gx, 3, axis=-1), jnp.split(gh, 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h_prev
        return (h,), h
    return recurrent(layer, cell, carries=1)


# ---- attention -------------------------------------------------------------------------------

def attention(layer, dtype, native):
    """y = concat_heads(softmax(q k^T / sqrt(key_dim)) v) Wo + bo, q = x Wq + bq (k, v alike): x, y (B, T, D)

    On Flax's layout: Wq/Wk/Wv (D, heads, key_dim) and Wo (heads, key_dim, D). Native:
    jax.nn.dot_product_attention, which takes the softmax in float32 even for float64
    inputs (jax/_src/nn/functions.py, _dot_product_attention_core):
    jax.attention_float32_softmax.
    """
    causal, use_bias, key_dim = layer["causal"], layer["use_bias"], layer["key_dim"]
    jax_attention = native_on(native, "jax.attention_float32_softmax")

    def project(p, x, w):
        y = jnp.einsum("btm,mhd->bthd", x, p["W" + w])                # (B, T, heads, key_dim)
        return y + p["b" + w] if use_bias else y

    def forward(p, x, ctx):
        q, k, v = (project(p, x, w) for w in "qkv")
        if jax_attention:
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


# ---- a user's layer --------------------------------------------------------------------------

def plugin(layer, dtype, native):
    """y = the plugin's own forward(p, x), p by local name: x (B, *in_shape), y (B, *out_shape)

    JAX: the user's jax(p, x), a pure function of jax arrays; jax.grad differentiates it.
    Its output is checked once, when jit traces it.
    """
    user_forward = plugin_method(layer, "jax", "jax")

    def forward(p, x, ctx):
        return check_output(layer, user_forward, user_forward(p, x),
                            (x.shape[0], *layer["out_shape"]), dtype, facts)
    return forward


def facts(y):
    """(shape, dtype name) of a jax array (or tracer); (None, its type's name) for anything else."""
    if isinstance(y, jax.Array):
        return y.shape, y.dtype.name
    return None, type(y).__name__


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {builder.__name__: builder for builder in (  # spec type -> builder of the same name
    sigmoid, tanh, relu, leaky_relu, gelu, identity, dropout, flatten, dense, conv2d, maxpool2d,
    avgpool2d, batchnorm, layernorm, residual, sequence_mean, embedding, rnn, lstm, gru,
    attention)}


def build_layer(layer, dtype, native):
    """The pure function forward(p, x, ctx) -> y for one spec entry; a plugin's entry carries
    "plugin"."""
    builder = plugin if "plugin" in layer else LAYERS[layer["type"]]
    return builder(layer, dtype, native)
