"""Every layer as a pair: forward(p, x, ctx) -> (y, cache) and backward(p, cache, dy) -> (dx, grads).

One builder per layer type, `def <type>(layer, dtype, native)`, with the same name,
signature, order and first docstring line (the canonical equation) as in the other three
folders; it returns a `Layer` holding the forward and the backward written by hand.
`p` holds the layer's parameters under their local names ("W", "b", ...), in the
canonical layout, which is NumPy's own. `ctx` carries the dropout masks and the
BatchNorm running statistics. NumPy is the reference: `native` changes nothing.
Shapes in comments include the batch axis B.
Scalars stay Python floats: a NumPy float64 scalar would silently promote float32 arrays.
"""
import math
from typing import Callable, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

from ..canonical import (NoForm, block_key, check_gradients, check_output, plugin_method,
                         returned_pair, share)

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity", "dropout", "flatten",
           "dense", "conv2d", "maxpool2d", "avgpool2d", "batchnorm", "layernorm", "residual",
           "sequence_mean", "embedding", "rnn", "lstm", "gru", "attention", "plugin",
           "LAYERS", "build_layer"]


class Layer(NamedTuple):
    """What every builder returns: the layer's forward and its hand-written backward, and
    (dense, conv2d) the parameters' gradients alone: the first layer's dx is a matrix
    product nothing reads while training."""
    forward: Callable   # (p, x, ctx) -> (y, cache)
    backward: Callable  # (p, cache, dy) -> (dx, {local name: gradient})
    gradients: Callable = None  # (p, cache, dy) -> {local name: gradient}, no dx


def logistic(x):
    return np.exp(-np.logaddexp(0, -x))  # 1 / (1 + exp(-x)) without overflow


# ---- elementwise -----------------------------------------------------------------------------

def elementwise(f, df):
    """The Layer of y = f(x): backward multiplies dy by f', written from x or from y = f(x)."""

    def forward(p, x, ctx):
        y = f(x)
        return y, (x, y)

    def backward(p, cache, dy):
        x, y = cache
        return df(x, y, dy), {}
    return Layer(forward, backward)


def sigmoid(layer, dtype, native):
    """y = 1 / (1 + exp(-x)), elementwise: x, y (B, ...)

    dy/dx = y (1 - y), from the output.
    """
    def backward(x, y, dy):
        d = dy * y
        d *= 1 - y  # (dy y) (1 - y)
        return d
    return elementwise(logistic, backward)


def tanh(layer, dtype, native):
    """y = tanh(x), elementwise: x, y (B, ...)

    dy/dx = 1 - y^2, from the output.
    """
    def backward(x, y, dy):
        d = np.multiply(y, y)
        np.subtract(1, d, out=d)
        d *= dy  # dy * (1 - y^2), in one temporary
        return d
    return elementwise(np.tanh, backward)


def relu(layer, dtype, native):
    """y = max(x, 0), elementwise, slope 0 at x = 0: x, y (B, ...)

    The subgradient 0 at x == 0, as every framework picks.
    """
    return elementwise(lambda x: np.maximum(x, 0), lambda x, y, dy: dy * (x > 0))


def leaky_relu(layer, dtype, native):
    """y = x if x > 0 else alpha * x, elementwise: x, y (B, ...)

    The backward selects dy or alpha * dy (not dy * where(.., 1.0, alpha): that is float64).
    """
    alpha = layer["alpha"]
    return elementwise(lambda x: np.where(x > 0, x, alpha * x),
                       lambda x, y, dy: np.where(x > 0, dy, alpha * dy))


def gelu(layer, dtype, native):
    """y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), elementwise (exact, not tanh): x, y (B, ...)

    dy/dx = Phi(x) + x phi(x), phi the standard normal density.
    """
    def backward(x, y, dy):
        cdf = 0.5 * (1 + phi_erf(x))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return dy * (cdf + x * pdf)
    return elementwise(lambda x: 0.5 * x * (1 + phi_erf(x)), backward)


def phi_erf(x):
    """erf(x / sqrt(2)) in x's dtype: SciPy has no float16 erf and returns float64 for it,
    and none for a long double wider than float64 (the harness's control asks for one)."""
    if x.dtype.kind == "f" and x.dtype.itemsize > 8:
        raise NoForm(f"SciPy's erf (GELU) has no {x.dtype} form")
    return erf(x / math.sqrt(2)).astype(x.dtype, copy=False)


def identity(layer, dtype, native):
    """y = x: x, y (B, ...)"""
    return elementwise(lambda x: x, lambda x, y, dy: dy)


def dropout(layer, dtype, native):
    """y = x * mask / (1 - rate), mask (B, ...) of 0 and 1 drawn by the harness: x, y (B, ...)

    Inverted dropout: the backward scales dy by the same factor.
    """
    name, rate = layer["name"], layer["rate"]

    def forward(p, x, ctx):
        scale = ctx.masks[name] / (1 - rate)  # (B, ...) of 0 and 1/(1-rate)
        return x * scale, scale

    def backward(p, scale, dy):
        return dy * scale, {}
    return Layer(forward, backward)


def flatten(layer, dtype, native):
    """y = x reshaped to (B, H*W*C), row-major over (H, W, C): x (B, H, W, C)

    The canonical NHWC order; the backward reshapes back.
    """
    def forward(p, x, ctx):
        return x.reshape(len(x), -1), x.shape

    def backward(p, shape, dy):
        return dy.reshape(shape), {}
    return Layer(forward, backward)


# ---- dense and convolution -----------------------------------------------------------------

def rows_outer(a, b):
    """a^T b, a (N, in) and b (N, out) -> (in, out): the sum over the N rows of their outer
    products. For one row (a batch of one) each entry is one product, and NumPy's matmul takes
    its slow loop for that shape (22 us for 64 x 300; 6 us as an outer product). A matrix
    product's sum starts at +0, so a product that is -0 comes out +0: the same here."""
    if len(a) != 1:
        return a.T @ b
    out = np.multiply.outer(a[0], b[0])
    out += 0.0  # -0 -> +0; every other value unchanged
    return out


def dense(layer, dtype, native):
    """y = x W + b on the last axis: x (B, ..., in), W (in, out), b (out,), y (B, ..., out)

    dW = x^T dy and db = sum dy over every axis but the last; dx = dy W^T.
    """
    use_bias = layer["use_bias"]

    def forward(p, x, ctx):
        y = x @ p["W"]  # (B, ..., out)
        if use_bias:
            y += p["b"]  # y is new: add in place
        return y, x

    def gradients(p, x, dy):
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # (N, in), (N, out)
        grads = {"W": rows_outer(x2, dy2)}
        if use_bias:
            grads["b"] = dy2.sum(0)
        return grads

    def backward(p, x, dy):
        return dy @ p["W"].T, gradients(p, x, dy)
    return Layer(forward, backward, gradients)


def pad_hw(x, pads, value=0.0):
    """(B, H, W, C) -> (B, H+top+bottom, W+left+right, C)."""
    return np.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=value)


def windows(xp, size, strides):
    """(B, Hp, Wp, C) -> (B, Ho, Wo, kh, kw, C): every window the kernel visits (a view)."""
    w = sliding_window_view(xp, size, axis=(1, 2))[:, ::strides[0], ::strides[1]]
    return w.transpose(0, 1, 2, 4, 5, 3)


def scatter_windows(dwin, padded_shape, strides):
    """Adjoint of `windows`: add each window's gradient back where it came from."""
    dxp = np.zeros(padded_shape, dwin.dtype)
    _, ho, wo, kh, kw, _ = dwin.shape
    sh, sw = strides
    for i in range(kh):
        for j in range(kw):
            dxp[:, i:i + sh * ho:sh, j:j + sw * wo:sw] += dwin[:, :, :, i, j]
    return dxp


def crop_hw(xp, pads):
    (top, bottom), (left, right) = pads
    return xp[:, top:xp.shape[1] - bottom, left:xp.shape[2] - right]


def conv2d(layer, dtype, native):
    """y[b,i,j] = sum_{u,v} xpad[b, i*sh+u, j*sw+v] W[u,v] + b: x (B, H, W, C_in), W (kh, kw, C_in, C_out)

    Cross-correlation on NHWC as one matrix product over every window the kernel visits;
    the backward scatters each window's gradient back onto the padded input.
    """
    strides, pads, use_bias = layer["strides"], layer["pads"], layer["use_bias"]

    def forward(p, x, ctx):
        kh, kw, c_in, c_out = p["W"].shape
        xp = pad_hw(x, pads)
        cols = windows(xp, (kh, kw), strides)                        # (B, Ho, Wo, kh, kw, C_in)
        y = cols.reshape(*cols.shape[:3], -1) @ p["W"].reshape(-1, c_out)  # (B, Ho, Wo, C_out)
        return (y + p["b"] if use_bias else y), (cols, xp.shape)

    def gradients(p, cache, dy):
        cols, _ = cache
        kh, kw, c_in, c_out = p["W"].shape
        flat = cols.reshape(-1, kh * kw * c_in)                      # (B*Ho*Wo, kh*kw*C_in)
        grads = {"W": (flat.T @ dy.reshape(-1, c_out)).reshape(p["W"].shape)}
        if use_bias:
            grads["b"] = dy.sum((0, 1, 2))
        return grads

    def backward(p, cache, dy):
        cols, padded_shape = cache
        c_out = p["W"].shape[-1]
        dcols = (dy @ p["W"].reshape(-1, c_out).T).reshape(cols.shape)  # (B, Ho, Wo, kh, kw, C_in)
        return crop_hw(scatter_windows(dcols, padded_shape, strides), pads), gradients(p, cache, dy)
    return Layer(forward, backward, gradients)


def maxpool2d(layer, dtype, native):
    """y[b,i,j] = max_{u,v} xpad[b, i*sh+u, j*sw+v], padded with -inf: x (B, H, W, C), y (B, Ho, Wo, C)

    The padding never wins; with tied maxima the gradient goes to the first one.
    """
    size, strides, pads = layer["pool_size"], layer["strides"], layer["pads"]

    def forward(p, x, ctx):
        xp = pad_hw(x, pads, -np.inf)
        win = windows(xp, size, strides)
        flat = win.reshape(*win.shape[:3], -1, win.shape[-1])       # (B, Ho, Wo, kh*kw, C)
        arg = flat.argmax(3)                                        # (B, Ho, Wo, C)
        y = np.take_along_axis(flat, arg[:, :, :, None], 3)[:, :, :, 0]
        return y, (arg, win.shape, xp.shape)

    def backward(p, cache, dy):
        arg, win_shape, padded_shape = cache
        onehot = np.arange(win_shape[3] * win_shape[4])[:, None] == arg[:, :, :, None]
        dwin = (onehot * dy[:, :, :, None]).reshape(win_shape)       # (B, Ho, Wo, kh, kw, C)
        return crop_hw(scatter_windows(dwin, padded_shape, strides), pads), {}
    return Layer(forward, backward)


def avgpool2d(layer, dtype, native):
    """y[b,i,j] = mean_{u,v} x[b, i*sh+u, j*sw+v], real pixels only: x (B, H, W, C), y (B, Ho, Wo, C)

    The padding is not counted (TensorFlow's rule); each pixel gets dy / count back.
    """
    size, strides, pads = layer["pool_size"], layer["strides"], layer["pads"]

    def forward(p, x, ctx):
        xp = pad_hw(x, pads)
        ones = pad_hw(np.ones((1, *x.shape[1:3], 1), x.dtype), pads)
        count = windows(ones, size, strides).sum((3, 4))            # (1, Ho, Wo, 1)
        y = windows(xp, size, strides).sum((3, 4)) / count
        return y, (count, xp.shape)

    def backward(p, cache, dy):
        count, padded_shape = cache
        kh, kw = size
        part = (dy / count)[:, :, :, None, None, :]                  # (B, Ho, Wo, 1, 1, C)
        dwin = np.broadcast_to(part, (*dy.shape[:3], kh, kw, dy.shape[3]))
        return crop_hw(scatter_windows(dwin, padded_shape, strides), pads), {}
    return Layer(forward, backward)


# ---- normalisation ---------------------------------------------------------------------------

def normalize_backward(dxhat, xhat, inv_std, axes):
    """d/dx of xhat = (x - mean) * inv_std, mean and (biased) variance taken over `axes`."""
    n = math.prod(xhat.shape[a] for a in axes)
    return inv_std / n * (n * dxhat - dxhat.sum(axes, keepdims=True)
                          - xhat * (dxhat * xhat).sum(axes, keepdims=True))


def batchnorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over all axes but the last: x (B, ..., C)

    Training mode, biased variance in the normalisation; the running statistics take
    `momentum` of the batch mean and of the unbiased batch variance.
    """
    name, eps, m = layer["name"], layer["eps"], layer["momentum"]

    def forward(p, x, ctx):
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axes), x.var(axes)                        # (C,), biased
        inv_std = 1 / np.sqrt(var + eps)
        xhat = (x - mean) * inv_std
        n = x.size // x.shape[-1]
        for stat, batch in (("running_mean", mean), ("running_var", var * n / (n - 1))):
            key = f"{name}.{stat}"  # the running variance takes the unbiased estimate
            ctx.state[key] = (1 - m) * ctx.state[key] + m * batch
        return p["gamma"] * xhat + p["beta"], (xhat, inv_std, axes)

    def backward(p, cache, dy):
        xhat, inv_std, axes = cache
        grads = {"gamma": (dy * xhat).sum(axes), "beta": dy.sum(axes)}
        return normalize_backward(dy * p["gamma"], xhat, inv_std, axes), grads
    return Layer(forward, backward)


def layernorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over the last axis: x (B, ..., D)

    Biased variance, per example (and time step).
    """
    eps = layer["eps"]

    def forward(p, x, ctx):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        inv_std = 1 / np.sqrt(var + eps)
        xhat = (x - mean) * inv_std
        return p["gamma"] * xhat + p["beta"], (xhat, inv_std)

    def backward(p, cache, dy):
        xhat, inv_std = cache
        axes = tuple(range(dy.ndim - 1))
        grads = {"gamma": (dy * xhat).sum(axes), "beta": dy.sum(axes)}
        return normalize_backward(dy * p["gamma"], xhat, inv_std, (-1,)), grads
    return Layer(forward, backward)


# ---- composition -----------------------------------------------------------------------------

def residual(layer, dtype, native):
    """y = x + f(x), f the block's layers in order: x, y (B, ...)

    The gradient takes both paths and adds: dx = dy + (f's backward of dy).
    """
    subs = [(block_key(sub, layer), build_layer(sub, dtype, native))  # "3.1" in "3" -> "1"
            for sub in layer["layers"]]

    def forward(p, x, ctx):
        h, caches = x, []
        for key, sub in subs:
            h, cache = sub.forward(share(p, key), h, ctx)
            caches.append(cache)
        return x + h, caches

    def backward(p, caches, dy):
        dh, grads = dy, {}
        for (key, sub), cache in reversed(list(zip(subs, caches))):
            dh, local = sub.backward(share(p, key), cache, dh)
            grads.update({f"{key}.{k}": g for k, g in local.items()})
        return dy + dh, grads
    return Layer(forward, backward)


def sequence_mean(layer, dtype, native):
    """y = mean over t of x[:, t]: x (B, T, D), y (B, D)"""
    def forward(p, x, ctx):
        return x.mean(1), x.shape[1]

    def backward(p, time, dy):
        return np.repeat(dy[:, None, :] / time, time, axis=1), {}
    return Layer(forward, backward)


def embedding(layer, dtype, native):
    """y = E[x], the row of E for each token id: x (B, T) integers, E (vocab, dim), y (B, T, dim)

    No gradient flows to integer inputs; dE adds dy into the rows that were read.
    """
    def forward(p, x, ctx):
        return p["E"][x], x

    def backward(p, x, dy):
        dE = np.zeros_like(p["E"])
        np.add.at(dE, x, dy)  # a token used twice collects both gradients
        return None, {"E": dE}
    return Layer(forward, backward)


# ---- recurrent: backpropagation through time ----------------------------------------------

def recurrent(layer, cell, cell_backward, carries):
    """Run `cell` over time from zero carries; backward: `cell_backward` from the last step to
    the first (backpropagation through time), each adding its weight gradients to `grads`."""
    units, return_sequences = layer["units"], layer["return_sequences"]

    def zeros(batch, dtype):
        return tuple(np.zeros((batch, units), dtype) for _ in range(carries))

    def forward(p, x, ctx):
        batch, time, _ = x.shape
        carry, hs, caches = zeros(batch, x.dtype), [], []
        for t in range(time):
            carry, cache = cell(p, x[:, t], carry)
            hs.append(carry[0])
            caches.append(cache)
        y = np.stack(hs, 1) if return_sequences else hs[-1]         # (B, T, H) or (B, H)
        return y, (caches, x.shape)

    def backward(p, cache, dy):
        caches, (batch, time, _) = cache
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros((batch, time, p["W"].shape[0]), dy.dtype)
        dcarry = zeros(batch, dy.dtype)
        for t in reversed(range(time)):
            dh_out = dy[:, t] if return_sequences else (dy if t == time - 1 else 0)
            dcarry = (dcarry[0] + dh_out, *dcarry[1:])
            dx[:, t], dcarry = cell_backward(p, caches[t], dcarry, grads)
        return dx, grads
    return Layer(forward, backward)


def add_step_gradients(grads, x, h_prev, dgx, dgh):
    """Add one time step's weight gradients; GRU keeps the two biases apart."""
    grads["W"] += x.T @ dgx
    grads["U"] += h_prev.T @ dgh
    if grads["b"].ndim == 2:
        grads["b"][0] += dgx.sum(0)
        grads["b"][1] += dgh.sum(0)
    else:
        grads["b"] += dgx.sum(0)


def rnn(layer, dtype, native):
    """h' = tanh(x W + h U + b): x (B, T, F), W (F, H), U (H, H), b (H,), y (B, T, H) or (B, H)"""
    def cell(p, x, carry):
        (h_prev,) = carry
        h = np.tanh(x @ p["W"] + h_prev @ p["U"] + p["b"])
        return (h,), (x, h_prev, h)

    def cell_backward(p, cache, dcarry, grads):
        x, h_prev, h = cache
        dz = dcarry[0] * (1 - h * h)
        add_step_gradients(grads, x, h_prev, dz, dz)
        return dz @ p["W"].T, (dz @ p["U"].T,)
    return recurrent(layer, cell, cell_backward, carries=1)


def lstm(layer, dtype, native):
    """gates [i, f, g, o] = x W + h U + b; c' = f*c + i*g; h' = o*tanh(c'): W (F, 4H), U (H, 4H), b (4H,)

    i, f, o through a sigmoid, g through tanh; h0 = c0 = 0. The backward carries dh and dc.
    """
    def cell(p, x, carry):
        h_prev, c_prev = carry
        z = x @ p["W"] + h_prev @ p["U"] + p["b"]                    # (B, 4H)
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        i, f, g, o = logistic(zi), logistic(zf), np.tanh(zg), logistic(zo)
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        return (h, c), (x, h_prev, c_prev, i, f, g, o, c)

    def cell_backward(p, cache, dcarry, grads):
        x, h_prev, c_prev, i, f, g, o, c = cache
        dh, dc = dcarry
        tanh_c = np.tanh(c)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                             dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=1)
        add_step_gradients(grads, x, h_prev, dz, dz)
        return dz @ p["W"].T, (dz @ p["U"].T, dc * f)
    return recurrent(layer, cell, cell_backward, carries=2)


def gru(layer, dtype, native):
    """r, z = sigmoid(x W + b[0] + h U + b[1]); n = tanh(x W_n + b[0]_n + r*(h U_n + b[1]_n)); h' = (1-z)*n + z*h

    Gates [r, z, n]: W (F, 3H), U (H, 3H), b (2, 3H) = [input side, recurrent side];
    the reset gate applied after U (PyTorch's form). h0 = 0.
    """
    def cell(p, x, carry):
        (h_prev,) = carry
        gx = x @ p["W"] + p["b"][0]                                  # (B, 3H), input side
        gh = h_prev @ p["U"] + p["b"][1]                             # (B, 3H), recurrent side
        (xr, xz, xn), (hr, hz, hn) = np.split(gx, 3, 1), np.split(gh, 3, 1)
        r, z = logistic(xr + hr), logistic(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1 - z) * n + z * h_prev
        return (h,), (x, h_prev, r, z, n, hn)

    def cell_backward(p, cache, dcarry, grads):
        x, h_prev, r, z, n, hn = cache
        (dh,) = dcarry
        dn = dh * (1 - z) * (1 - n * n)                              # through tanh
        dzr = dh * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dgx = np.concatenate([dr, dzr, dn], 1)                       # (B, 3H)
        dgh = np.concatenate([dr, dzr, dn * r], 1)
        add_step_gradients(grads, x, h_prev, dgx, dgh)
        return dgx @ p["W"].T, (dgh @ p["U"].T + dh * z,)
    return recurrent(layer, cell, cell_backward, carries=1)


# ---- attention -------------------------------------------------------------------------------

def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def split_heads(t, heads, key_dim):
    """(B, T, heads*key_dim) -> (B, heads, T, key_dim)."""
    b, time, _ = t.shape
    return t.reshape(b, time, heads, key_dim).transpose(0, 2, 1, 3)


def merge_heads(t):
    """(B, heads, T, key_dim) -> (B, T, heads*key_dim)."""
    b, _, time, _ = t.shape
    return t.transpose(0, 2, 1, 3).reshape(b, time, -1)


def attention(layer, dtype, native):
    """y = concat_heads(softmax(q k^T / sqrt(key_dim)) v) Wo + bo, q = x Wq + bq (k, v alike): x, y (B, T, D)

    Wq, Wk, Wv (D, heads*key_dim), Wo (heads*key_dim, D); with `causal`, query i sees
    keys j <= i. The backward runs the same steps in reverse, softmax's Jacobian included.
    """
    heads, key_dim, causal, use_bias = (layer[k] for k in ("heads", "key_dim", "causal",
                                                           "use_bias"))

    def project(p, x, w):
        y = x @ p["W" + w]
        return y + p["b" + w] if use_bias else y

    def project_backward(grads, w, x, dy):
        grads["W" + w] = x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
        if use_bias:
            grads["b" + w] = dy.sum((0, 1))

    def forward(p, x, ctx):
        q, k, v = (split_heads(project(p, x, w), heads, key_dim) for w in "qkv")
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(key_dim)        # (B, heads, T, T)
        if causal:
            time = x.shape[1]
            s = np.where(np.tri(time, dtype=bool), s, -np.inf)     # query i sees keys j <= i
        a = softmax(s)
        o = merge_heads(a @ v)                                       # (B, T, heads*key_dim)
        return project(p, o, "o"), (x, q, k, v, a, o)

    def backward(p, cache, dy):
        x, q, k, v, a, o = cache
        grads, scale = {}, 1 / math.sqrt(key_dim)
        do = split_heads(dy @ p["Wo"].T, heads, key_dim)             # (B, heads, T, key_dim)
        project_backward(grads, "o", o, dy)
        da = do @ v.transpose(0, 1, 3, 2)                            # (B, heads, T, T)
        dv = a.transpose(0, 1, 3, 2) @ do
        ds = a * (da - (da * a).sum(-1, keepdims=True))              # softmax backward
        dq, dk = ds @ k * scale, ds.transpose(0, 1, 3, 2) @ q * scale
        dx = 0
        for w, dt in (("q", dq), ("k", dk), ("v", dv)):
            dt = merge_heads(dt)
            project_backward(grads, w, x, dt)
            dx = dx + dt @ p["W" + w].T
        return dx, grads
    return Layer(forward, backward)


# ---- a user's layer --------------------------------------------------------------------------

def plugin(layer, dtype, native):
    """y = the plugin's own forward(p, x), p by local name: x (B, *in_shape), y (B, *out_shape)

    NumPy: the user's numpy_forward(p, x) -> (y, cache) and numpy_backward(p, cache, dy)
    -> (dx, {name: gradient}), both in canonical layouts. Without numpy_backward the
    forward still runs (the loss can be evaluated); the backward raises.
    """
    numpy_forward = plugin_method(layer, "numpy_forward", "numpy")
    numpy_backward = getattr(layer["plugin"], "numpy_backward", None)

    def forward(p, x, ctx):
        y, cache = returned_pair(layer, numpy_forward, numpy_forward(p, x), "(y, cache)")
        check_output(layer, numpy_forward, y, (len(x), *layer["out_shape"]), dtype, facts)
        return y, (cache, x)

    def backward(p, cache, dy):
        if numpy_backward is None:
            raise NotImplementedError(f"plugin {layer['type']} has no numpy_backward: NumPy can "
                                      "evaluate its loss but not its gradients")
        cache, x = cache
        dx, grads = returned_pair(layer, numpy_backward, numpy_backward(p, cache, dy),
                                  "(dx, {name: gradient})")
        if np.issubdtype(x.dtype, np.floating):  # integer inputs (token ids) take no gradient
            check_output(layer, numpy_backward, dx, x.shape, dtype, facts, what="dx")
        check_gradients(layer, numpy_backward, grads, dtype, facts)
        # np.sum's gradient of a () parameter is a NumPy scalar: an array, as the loop
        # clips and updates its gradients in place
        return dx, {name: np.array(g) if isinstance(g, np.generic) else g
                    for name, g in grads.items()}
    return Layer(forward, backward)


def facts(y):
    """(shape, dtype name) of a NumPy array or scalar (np.float64(...), as np.sum returns);
    (None, its type's name) for anything else."""
    if isinstance(y, (np.ndarray, np.generic)):
        return y.shape, y.dtype.name
    return None, type(y).__name__


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {builder.__name__: builder for builder in (  # spec type -> builder of the same name
    sigmoid, tanh, relu, leaky_relu, gelu, identity, dropout, flatten, dense, conv2d, maxpool2d,
    avgpool2d, batchnorm, layernorm, residual, sequence_mean, embedding, rnn, lstm, gru,
    attention)}


def build_layer(layer, dtype, native):
    """The Layer (forward, backward) for one spec entry; a plugin's entry carries "plugin"."""
    builder = plugin if "plugin" in layer else LAYERS[layer["type"]]
    return builder(layer, dtype, native)


# ---- second order: the R-operator ------------------------------------------------------------
# Pearlmutter's R{f} = d/de f(params + e v): the tangent of a value along a direction v of the
# parameters. Running every layer's forward and backward together with their tangents gives
# R{gradient} = H v, the Hessian-vector product, exactly (model.hessian_vector_product).
# Written by hand for dense, the elementwise layers, the linear reshapes and residual blocks;
# `tangent` returns None for the others, whose H v then comes from differences of the gradient.

class Tangent(NamedTuple):
    """A layer's R-operator, reading the cache of its forward."""
    forward: Callable   # (p, rp, cache, rx) -> ry: the output's tangent from the input's
    backward: Callable  # (p, rp, cache, rx, dy, rdy) -> (rdx, {local name: R{gradient}})


SECOND_DERIVATIVES = {  # elementwise type -> f''(x, y), y = f(x)
    "sigmoid": lambda x, y: y * (1 - y) * (1 - 2 * y),
    "tanh": lambda x, y: -2 * y * (1 - y * y),
    "relu": lambda x, y: 0.0,                      # piecewise linear: f'' = 0 off the kink
    "leaky_relu": lambda x, y: 0.0,
    "identity": lambda x, y: 0.0,
    "gelu": lambda x, y: (2 - x * x) * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi),
}


def elementwise_tangent(obj, second):
    """y = f(x): R{y} = f'(x) rx and R{dx} = f'(x) rdy + f''(x) rx dy. The backward already
    multiplies by the diagonal f'(x), so it gives both first terms."""
    def forward(p, rp, cache, rx):
        return obj.backward(p, cache, rx)[0]

    def backward(p, rp, cache, rx, dy, rdy):
        x, y = cache
        return obj.backward(p, cache, rdy)[0] + second(x, y) * rx * dy, {}
    return Tangent(forward, backward)


def dense_tangent(layer):
    """y = x W + b: R{y} = rx W + x rW + rb; dx = dy W^T and dW = x^T dy are products, so
    R{dx} = rdy W^T + dy rW^T, R{dW} = rx^T dy + x^T rdy, R{db} = sum rdy."""
    use_bias = layer["use_bias"]

    def rows(a):
        return a.reshape(-1, a.shape[-1])  # (B, ..., n) -> (N, n)

    def forward(p, rp, x, rx):
        ry = rx @ p["W"] + x @ rp["W"]                               # (B, ..., out)
        return ry + rp["b"] if use_bias else ry

    def backward(p, rp, x, rx, dy, rdy):
        grads = {"W": rows(rx).T @ rows(dy) + rows(x).T @ rows(rdy)}
        if use_bias:
            grads["b"] = rows(rdy).sum(0)
        return rdy @ p["W"].T + dy @ rp["W"].T, grads
    return Tangent(forward, backward)


def linear_tangent(obj, forward):
    """A layer linear in x without parameters: its backward is already the tangent's."""
    return Tangent(forward, lambda p, rp, cache, rx, dy, rdy: (obj.backward(p, cache, rdy)[0], {}))


def residual_tangent(layer, dtype):
    """y = x + f(x): R{y} = rx + R{f}. On the way down the block replays its sub-layers'
    backward and their input tangents: each sub-layer's tangent needs the dy and rx it saw."""
    subs = [(block_key(sub, layer), build_layer(sub, dtype, False), tangent(sub, dtype))
            for sub in layer["layers"]]
    if any(t is None for _, _, t in subs):
        return None

    def inputs(p, rp, caches, rx):
        """Each sub-layer's input tangent, and the block's f(x) tangent last."""
        rins = [rx]
        for (key, _, t), cache in zip(subs, caches):
            rins.append(t.forward(share(p, key), share(rp, key), cache, rins[-1]))
        return rins

    def forward(p, rp, caches, rx):
        return rx + inputs(p, rp, caches, rx)[-1]

    def backward(p, rp, caches, rx, dy, rdy):
        rins = inputs(p, rp, caches, rx)[:-1]
        dh, rdh, grads = dy, rdy, {}
        for (key, obj, t), cache, rin in reversed(list(zip(subs, caches, rins))):
            pk, rk = share(p, key), share(rp, key)
            (rdh, local), dh = t.backward(pk, rk, cache, rin, dh, rdh), obj.backward(pk, cache, dh)[0]
            grads.update({f"{key}.{k}": g for k, g in local.items()})
        return rdy + rdh, grads
    return Tangent(forward, backward)


def tangent(layer, dtype):
    """The layer's Tangent, or None where none is written by hand (its H v: differences)."""
    kind = layer["type"]
    if "plugin" in layer:
        return None
    if kind in SECOND_DERIVATIVES:
        return elementwise_tangent(build_layer(layer, dtype, False), SECOND_DERIVATIVES[kind])
    if kind == "dense":
        return dense_tangent(layer)
    if kind == "residual":
        return residual_tangent(layer, dtype)
    obj = build_layer(layer, dtype, False)
    reshapes = {"dropout": lambda p, rp, scale, rx: rx * scale,
                "flatten": lambda p, rp, shape, rx: rx.reshape(len(rx), -1),
                "sequence_mean": lambda p, rp, time, rx: rx.mean(1)}
    return linear_tangent(obj, reshapes[kind]) if kind in reshapes else None
