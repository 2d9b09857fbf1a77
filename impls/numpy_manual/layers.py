"""Every layer as a pair: forward(p, x, ctx) -> (y, cache) and backward(p, cache, dy) -> (dx, grads).

`p` holds the layer's parameters under their local names ("W", "b", ...), in the
canonical layout, which is NumPy's own. `ctx` carries the dropout masks and the
BatchNorm running statistics. Shapes in comments include the batch axis B.
Scalars stay Python floats: a NumPy float64 scalar would silently promote float32 arrays.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

from ..canonical import block_key, share

__all__ = ["LAYERS", "build_layer"]


def sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))  # 1 / (1 + exp(-x)) without overflow


# ---- elementwise -----------------------------------------------------------------------------

class Activation:
    """f applied elementwise; backward multiplies by f'(x), written from x or from y = f(x)."""

    def __init__(self, layer):
        self.kind, self.alpha = layer["type"], layer.get("alpha")

    def forward(self, p, x, ctx):
        if self.kind == "sigmoid":
            y = sigmoid(x)
        elif self.kind == "tanh":
            y = np.tanh(x)
        elif self.kind == "relu":
            y = np.maximum(x, 0)
        elif self.kind == "leaky_relu":
            y = np.where(x > 0, x, self.alpha * x)
        elif self.kind == "gelu":
            y = 0.5 * x * (1 + erf(x / math.sqrt(2)))  # exact GELU: x * Phi(x)
        else:
            y = x
        return y, (x, y)

    def backward(self, p, cache, dy):
        x, y = cache
        if self.kind == "sigmoid":
            return dy * y * (1 - y), {}
        if self.kind == "tanh":
            return dy * (1 - y * y), {}
        if self.kind == "relu":
            return dy * (x > 0), {}  # the subgradient 0 at x == 0, as every framework picks
        if self.kind == "leaky_relu":
            return np.where(x > 0, dy, self.alpha * dy), {}  # not where(.., 1.0, alpha): float64
        if self.kind == "gelu":
            cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
            pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            return dy * (cdf + x * pdf), {}
        return dy, {}


class Dropout:
    """Inverted dropout with the harness's mask: y = x * mask / (1 - rate)."""

    def __init__(self, layer):
        self.name, self.rate = layer["name"], layer["rate"]

    def forward(self, p, x, ctx):
        scale = ctx.masks[self.name] / (1 - self.rate)  # (B, ...) of 0 and 1/(1-rate)
        return x * scale, scale

    def backward(self, p, scale, dy):
        return dy * scale, {}


class Flatten:
    """(B, H, W, C) -> (B, H*W*C), row-major: the canonical NHWC order."""

    def __init__(self, layer):
        pass

    def forward(self, p, x, ctx):
        return x.reshape(len(x), -1), x.shape

    def backward(self, p, shape, dy):
        return dy.reshape(shape), {}


# ---- dense and convolution -----------------------------------------------------------------

class Dense:
    """y = x W + b on the last axis: x (B, ..., in), W (in, out)."""

    def __init__(self, layer):
        self.use_bias = layer["use_bias"]

    def forward(self, p, x, ctx):
        y = x @ p["W"]  # (B, ..., out)
        return (y + p["b"] if self.use_bias else y), x

    def backward(self, p, x, dy):
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # (N, in), (N, out)
        grads = {"W": x2.T @ dy2}
        if self.use_bias:
            grads["b"] = dy2.sum(0)
        return dy @ p["W"].T, grads


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


class Conv2D:
    """Cross-correlation on NHWC: y[b,h,w,f] = sum_{i,j,c} xpad[b, h*sh+i, w*sw+j, c] W[i,j,c,f] + b[f]."""

    def __init__(self, layer):
        self.strides, self.pads = layer["strides"], layer["pads"]
        self.use_bias = layer["use_bias"]

    def forward(self, p, x, ctx):
        kh, kw, c_in, c_out = p["W"].shape
        xp = pad_hw(x, self.pads)
        cols = windows(xp, (kh, kw), self.strides)                   # (B, Ho, Wo, kh, kw, C_in)
        y = cols.reshape(*cols.shape[:3], -1) @ p["W"].reshape(-1, c_out)  # (B, Ho, Wo, C_out)
        return (y + p["b"] if self.use_bias else y), (cols, xp.shape)

    def backward(self, p, cache, dy):
        cols, padded_shape = cache
        kh, kw, c_in, c_out = p["W"].shape
        flat = cols.reshape(-1, kh * kw * c_in)                      # (B*Ho*Wo, kh*kw*C_in)
        grads = {"W": (flat.T @ dy.reshape(-1, c_out)).reshape(p["W"].shape)}
        if self.use_bias:
            grads["b"] = dy.sum((0, 1, 2))
        dcols = (dy @ p["W"].reshape(-1, c_out).T).reshape(cols.shape)  # (B, Ho, Wo, kh, kw, C_in)
        return crop_hw(scatter_windows(dcols, padded_shape, self.strides), self.pads), grads


class MaxPool2D:
    """Max over each window; padding is -inf so it never wins. Ties go to the first maximum."""

    def __init__(self, layer):
        self.size, self.strides, self.pads = layer["pool_size"], layer["strides"], layer["pads"]

    def forward(self, p, x, ctx):
        xp = pad_hw(x, self.pads, -np.inf)
        win = windows(xp, self.size, self.strides)
        flat = win.reshape(*win.shape[:3], -1, win.shape[-1])       # (B, Ho, Wo, kh*kw, C)
        arg = flat.argmax(3)                                        # (B, Ho, Wo, C)
        y = np.take_along_axis(flat, arg[:, :, :, None], 3)[:, :, :, 0]
        return y, (arg, win.shape, xp.shape)

    def backward(self, p, cache, dy):
        arg, win_shape, padded_shape = cache
        onehot = np.arange(win_shape[3] * win_shape[4])[:, None] == arg[:, :, :, None]
        dwin = (onehot * dy[:, :, :, None]).reshape(win_shape)       # (B, Ho, Wo, kh, kw, C)
        return crop_hw(scatter_windows(dwin, padded_shape, self.strides), self.pads), {}


class AvgPool2D:
    """Mean over the real pixels of each window (padding is not counted)."""

    def __init__(self, layer):
        self.size, self.strides, self.pads = layer["pool_size"], layer["strides"], layer["pads"]

    def forward(self, p, x, ctx):
        xp = pad_hw(x, self.pads)
        ones = pad_hw(np.ones((1, *x.shape[1:3], 1), x.dtype), self.pads)
        count = windows(ones, self.size, self.strides).sum((3, 4))  # (1, Ho, Wo, 1)
        y = windows(xp, self.size, self.strides).sum((3, 4)) / count
        return y, (count, xp.shape)

    def backward(self, p, cache, dy):
        count, padded_shape = cache
        kh, kw = self.size
        share = (dy / count)[:, :, :, None, None, :]                 # (B, Ho, Wo, 1, 1, C)
        dwin = np.broadcast_to(share, (*dy.shape[:3], kh, kw, dy.shape[3]))
        return crop_hw(scatter_windows(dwin, padded_shape, self.strides), self.pads), {}


# ---- normalisation ---------------------------------------------------------------------------

def normalize_backward(dxhat, xhat, inv_std, axes):
    """d/dx of xhat = (x - mean) * inv_std, mean and (biased) variance taken over `axes`."""
    n = math.prod(xhat.shape[a] for a in axes)
    return inv_std / n * (n * dxhat - dxhat.sum(axes, keepdims=True)
                          - xhat * (dxhat * xhat).sum(axes, keepdims=True))


class BatchNorm:
    """Training mode: batch statistics over every axis but the last; updates running stats."""

    def __init__(self, layer):
        self.name, self.eps, self.momentum = layer["name"], layer["eps"], layer["momentum"]

    def forward(self, p, x, ctx):
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axes), x.var(axes)                        # (C,), biased
        inv_std = 1 / np.sqrt(var + self.eps)
        xhat = (x - mean) * inv_std
        n, m = x.size // x.shape[-1], self.momentum
        for stat, batch in (("running_mean", mean), ("running_var", var * n / (n - 1))):
            key = f"{self.name}.{stat}"  # the running variance takes the unbiased estimate
            ctx.state[key] = (1 - m) * ctx.state[key] + m * batch
        return p["gamma"] * xhat + p["beta"], (xhat, inv_std, axes)

    def backward(self, p, cache, dy):
        xhat, inv_std, axes = cache
        grads = {"gamma": (dy * xhat).sum(axes), "beta": dy.sum(axes)}
        return normalize_backward(dy * p["gamma"], xhat, inv_std, axes), grads


class LayerNorm:
    """Normalise over the last axis of each example (and time step)."""

    def __init__(self, layer):
        self.eps = layer["eps"]

    def forward(self, p, x, ctx):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        inv_std = 1 / np.sqrt(var + self.eps)
        xhat = (x - mean) * inv_std
        return p["gamma"] * xhat + p["beta"], (xhat, inv_std)

    def backward(self, p, cache, dy):
        xhat, inv_std = cache
        axes = tuple(range(dy.ndim - 1))
        grads = {"gamma": (dy * xhat).sum(axes), "beta": dy.sum(axes)}
        return normalize_backward(dy * p["gamma"], xhat, inv_std, (-1,)), grads


# ---- composition -----------------------------------------------------------------------------

class Residual:
    """y = x + f(x), f a stack of sub-layers: the gradient takes both paths and adds."""

    def __init__(self, layer):
        self.layers = [build_layer(sub, None, False) for sub in layer["layers"]]
        self.keys = [block_key(sub, layer) for sub in layer["layers"]]  # "3.1" in "3" -> "1"

    def forward(self, p, x, ctx):
        h, caches = x, []
        for layer, key in zip(self.layers, self.keys):
            h, cache = layer.forward(share(p, key), h, ctx)
            caches.append(cache)
        return x + h, caches

    def backward(self, p, caches, dy):
        dh, grads = dy, {}
        for layer, key, cache in reversed(list(zip(self.layers, self.keys, caches))):
            dh, sub = layer.backward(share(p, key), cache, dh)
            grads.update({f"{key}.{k}": g for k, g in sub.items()})
        return dy + dh, grads


class SequenceMean:
    """(B, T, D) -> (B, D)."""

    def __init__(self, layer):
        pass

    def forward(self, p, x, ctx):
        return x.mean(1), x.shape[1]

    def backward(self, p, time, dy):
        return np.repeat(dy[:, None, :] / time, time, axis=1), {}


class Embedding:
    """Token ids (B, T) -> rows of E: (B, T, dim). No gradient flows to integer inputs."""

    def __init__(self, layer):
        pass

    def forward(self, p, x, ctx):
        return p["E"][x], x

    def backward(self, p, x, dy):
        dE = np.zeros_like(p["E"])
        np.add.at(dE, x, dy)  # a token used twice collects both gradients
        return None, {"E": dE}


# ---- recurrent: backpropagation through time ----------------------------------------------

class Recurrent:
    """Shared loop of rnn/lstm/gru: run `cell` over time, then BPTT with `cell_backward`."""

    def __init__(self, layer):
        self.units, self.return_sequences = layer["units"], layer["return_sequences"]

    def forward(self, p, x, ctx):
        batch, time, _ = x.shape
        carry = self.zero_carry(batch, x.dtype)
        hs, caches = [], []
        for t in range(time):
            carry, cache = self.cell(p, x[:, t], carry)
            hs.append(carry[0])
            caches.append(cache)
        y = np.stack(hs, 1) if self.return_sequences else hs[-1]   # (B, T, H) or (B, H)
        return y, (caches, x.shape)

    def backward(self, p, cache, dy):
        caches, (batch, time, _) = cache
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros((batch, time, p["W"].shape[0]), dy.dtype)
        dcarry = self.zero_carry(batch, dy.dtype)
        for t in reversed(range(time)):
            dh_out = dy[:, t] if self.return_sequences else (dy if t == time - 1 else 0)
            dcarry = (dcarry[0] + dh_out, *dcarry[1:])
            dx[:, t], dcarry = self.cell_backward(p, caches[t], dcarry, grads)
        return dx, grads

    def zero_carry(self, batch, dtype):
        return (np.zeros((batch, self.units), dtype),)


class SimpleRNN(Recurrent):
    """h = tanh(x W + h_prev U + b)."""

    def cell(self, p, x, carry):
        (h_prev,) = carry
        h = np.tanh(x @ p["W"] + h_prev @ p["U"] + p["b"])
        return (h,), (x, h_prev, h)

    def cell_backward(self, p, cache, dcarry, grads):
        x, h_prev, h = cache
        dz = dcarry[0] * (1 - h * h)
        _accumulate(grads, p, x, h_prev, dz, dz)
        return dz @ p["W"].T, (dz @ p["U"].T,)


class LSTM(Recurrent):
    """Gates [i, f, g, o] = split(x W + h_prev U + b); c = f c_prev + i g; h = o tanh(c)."""

    def zero_carry(self, batch, dtype):
        return (np.zeros((batch, self.units), dtype), np.zeros((batch, self.units), dtype))

    def cell(self, p, x, carry):
        h_prev, c_prev = carry
        z = x @ p["W"] + h_prev @ p["U"] + p["b"]                    # (B, 4H)
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        i, f, g, o = sigmoid(zi), sigmoid(zf), np.tanh(zg), sigmoid(zo)
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        return (h, c), (x, h_prev, c_prev, i, f, g, o, c)

    def cell_backward(self, p, cache, dcarry, grads):
        x, h_prev, c_prev, i, f, g, o, c = cache
        dh, dc = dcarry
        tanh_c = np.tanh(c)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                             dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=1)
        _accumulate(grads, p, x, h_prev, dz, dz)
        return dz @ p["W"].T, (dz @ p["U"].T, dc * f)


class GRU(Recurrent):
    """r, z = sigmoid(...); n = tanh(x W_n + b0_n + r (h U_n + b1_n)); h = (1 - z) n + z h_prev."""

    def cell(self, p, x, carry):
        (h_prev,) = carry
        gx = x @ p["W"] + p["b"][0]                                  # (B, 3H), input side
        gh = h_prev @ p["U"] + p["b"][1]                             # (B, 3H), recurrent side
        (xr, xz, xn), (hr, hz, hn) = np.split(gx, 3, 1), np.split(gh, 3, 1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1 - z) * n + z * h_prev
        return (h,), (x, h_prev, r, z, n, hn)

    def cell_backward(self, p, cache, dcarry, grads):
        x, h_prev, r, z, n, hn = cache
        (dh,) = dcarry
        dn = dh * (1 - z) * (1 - n * n)                              # through tanh
        dzr = dh * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dgx = np.concatenate([dr, dzr, dn], 1)                       # (B, 3H)
        dgh = np.concatenate([dr, dzr, dn * r], 1)
        _accumulate(grads, p, x, h_prev, dgx, dgh)
        return dgx @ p["W"].T, (dgh @ p["U"].T + dh * z,)


def _accumulate(grads, p, x, h_prev, dgx, dgh):
    """Add one time step's weight gradients; GRU keeps the two biases apart."""
    grads["W"] += x.T @ dgx
    grads["U"] += h_prev.T @ dgh
    if grads["b"].ndim == 2:
        grads["b"][0] += dgx.sum(0)
        grads["b"][1] += dgh.sum(0)
    else:
        grads["b"] += dgx.sum(0)


# ---- attention -------------------------------------------------------------------------------

def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Attention:
    """Multi-head self-attention: softmax(q k^T / sqrt(key_dim)) v, heads concatenated, then Wo."""

    def __init__(self, layer):
        self.heads, self.key_dim = layer["heads"], layer["key_dim"]
        self.causal, self.use_bias = layer["causal"], layer["use_bias"]

    def project(self, p, x, w):
        y = x @ p["W" + w]
        return y + p["b" + w] if self.use_bias else y

    def split(self, t):
        """(B, T, heads*key_dim) -> (B, heads, T, key_dim)."""
        b, time, _ = t.shape
        return t.reshape(b, time, self.heads, self.key_dim).transpose(0, 2, 1, 3)

    def merge(self, t):
        """(B, heads, T, key_dim) -> (B, T, heads*key_dim)."""
        b, _, time, _ = t.shape
        return t.transpose(0, 2, 1, 3).reshape(b, time, -1)

    def forward(self, p, x, ctx):
        q, k, v = (self.split(self.project(p, x, w)) for w in "qkv")
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(self.key_dim)   # (B, heads, T, T)
        if self.causal:
            time = x.shape[1]
            s = np.where(np.tri(time, dtype=bool), s, -np.inf)     # query i sees keys j <= i
        a = softmax(s)
        o = self.merge(a @ v)                                        # (B, T, heads*key_dim)
        return self.project(p, o, "o"), (x, q, k, v, a, o)

    def backward(self, p, cache, dy):
        x, q, k, v, a, o = cache
        grads, scale = {}, 1 / math.sqrt(self.key_dim)
        do = dy @ p["Wo"].T
        self.project_backward(grads, "o", o, dy)
        da = self.split(do) @ v.transpose(0, 1, 3, 2)                # (B, heads, T, T)
        dv = a.transpose(0, 1, 3, 2) @ self.split(do)
        ds = a * (da - (da * a).sum(-1, keepdims=True))              # softmax backward
        dq, dk = ds @ k * scale, ds.transpose(0, 1, 3, 2) @ q * scale
        dx = 0
        for w, dt in (("q", dq), ("k", dk), ("v", dv)):
            dt = self.merge(dt)
            self.project_backward(grads, w, x, dt)
            dx = dx + dt @ p["W" + w].T
        return dx, grads

    def project_backward(self, grads, w, x, dy):
        grads["W" + w] = x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
        if self.use_bias:
            grads["b" + w] = dy.sum((0, 1))


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {
    **dict.fromkeys(("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity"), Activation),
    "dense": Dense, "flatten": Flatten, "conv2d": Conv2D, "maxpool2d": MaxPool2D,
    "avgpool2d": AvgPool2D, "batchnorm": BatchNorm, "layernorm": LayerNorm, "dropout": Dropout,
    "residual": Residual, "rnn": SimpleRNN, "lstm": LSTM, "gru": GRU, "attention": Attention,
    "sequence_mean": SequenceMean, "embedding": Embedding,
}


def build_layer(layer, dtype, native):
    """The layer object for one spec entry. NumPy is the reference: `native` changes nothing."""
    return LAYERS[layer["type"]](layer)
