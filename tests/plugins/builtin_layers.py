"""dense, conv2d and lstm written again as plugins, four ways each, with the same operations
as the built-in layers (impls/*/layers.py), so their gradients must agree bit for bit.

The frameworks are imported inside the methods: every worker loads this file, and the
NumPy worker should not import PyTorch.
"""
import math

import numpy as np

import crossgrad


def logistic(x):
    return np.exp(-np.logaddexp(0, -x))


def same_padding(n, k, s):
    """TensorFlow's 'same': output ceil(n/s), the odd pixel of padding at the end."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return [total // 2, total - total // 2]


@crossgrad.layer("my_dense")
class Dense:
    """y = x W + b on the last axis."""
    keys = {"units": int}

    def params(self, in_shape):
        return {"W": ((in_shape[-1], self.units), "glorot_uniform"), "b": ((self.units,), "zeros")}

    def out_shape(self, in_shape):
        return (*in_shape[:-1], self.units)

    def numpy_forward(self, p, x):
        return x @ p["W"] + p["b"], x

    def numpy_backward(self, p, x, dy):
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        return dy @ p["W"].T, {"W": x2.T @ dy2, "b": dy2.sum(0)}

    def torch(self, p, x):
        import torch.nn.functional as F
        # what nn.Linear computes, its weight being W^T, laid out as nn.Linear's own: MKL
        # rounds a transposed view otherwise on some CPUs (AMD EPYC)
        return F.linear(x, p["W"].T.contiguous(), p["b"])

    def tensorflow(self, p, x):
        import tensorflow as tf
        # what keras.layers.Dense computes: keras' ops.add adds a bias with tf.nn.bias_add,
        # whose gradient sums over the batch in another order than tf.add's
        return tf.nn.bias_add(tf.matmul(x, p["W"]), p["b"])

    def jax(self, p, x):
        return x @ p["W"] + p["b"]


@crossgrad.layer("my_conv2d")
class Conv2D:
    """Cross-correlation on NHWC images, W (kh, kw, C_in, C_out), 'valid' or 'same' padding."""
    keys = {"filters": int, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid"}

    def pads(self, h, w):
        if self.padding == "valid":
            return [[0, 0], [0, 0]]
        return [same_padding(n, k, s) for n, k, s in zip((h, w), self.kernel_size, self.strides)]

    def params(self, in_shape):
        kh, kw = self.kernel_size
        return {"W": ((kh, kw, in_shape[2], self.filters), "glorot_uniform"),
                "b": ((self.filters,), "zeros")}

    def out_shape(self, in_shape):
        pads = self.pads(*in_shape[:2])
        return (*[(n + sum(p) - k) // s + 1 for n, p, k, s in
                  zip(in_shape[:2], pads, self.kernel_size, self.strides)], self.filters)

    def numpy_forward(self, p, x):
        from numpy.lib.stride_tricks import sliding_window_view
        kh, kw, c_in, c_out = p["W"].shape
        pads = self.pads(*x.shape[1:3])
        xp = np.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
        cols = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::self.strides[0],
                                                                ::self.strides[1]]
        cols = cols.transpose(0, 1, 2, 4, 5, 3)                     # (B, Ho, Wo, kh, kw, C_in)
        y = cols.reshape(*cols.shape[:3], -1) @ p["W"].reshape(-1, c_out)
        return y + p["b"], (cols, xp.shape, pads)

    def numpy_backward(self, p, cache, dy):
        cols, padded_shape, pads = cache
        kh, kw, c_in, c_out = p["W"].shape
        flat = cols.reshape(-1, kh * kw * c_in)
        grads = {"W": (flat.T @ dy.reshape(-1, c_out)).reshape(p["W"].shape),
                 "b": dy.sum((0, 1, 2))}
        dcols = (dy @ p["W"].reshape(-1, c_out).T).reshape(cols.shape)
        dxp = np.zeros(padded_shape, dcols.dtype)
        _, ho, wo, _, _, _ = dcols.shape
        sh, sw = self.strides
        for i in range(kh):
            for j in range(kw):
                dxp[:, i:i + sh * ho:sh, j:j + sw * wo:sw] += dcols[:, :, :, i, j]
        (top, bottom), (left, right) = pads
        return dxp[:, top:dxp.shape[1] - bottom, left:dxp.shape[2] - right], grads

    def torch(self, p, x):
        import torch.nn.functional as F
        (top, bottom), (left, right) = self.pads(*x.shape[1:3])
        x = F.pad(x.permute(0, 3, 1, 2), (left, right, top, bottom))  # NCHW, as nn.Conv2d runs
        y = F.conv2d(x, p["W"].permute(3, 2, 0, 1).contiguous(), p["b"],  # as nn.Conv2d's
                     stride=self.strides)
        return y.permute(0, 2, 3, 1)                                      # back to NHWC

    def tensorflow(self, p, x):
        import tensorflow as tf
        y = tf.nn.convolution(x, p["W"], strides=self.strides, padding=self.padding.upper())
        return tf.nn.bias_add(y, p["b"])  # as keras.layers.Conv2D (ops.add of its bias)

    def jax(self, p, x):
        from jax import lax
        pads = tuple(tuple(q) for q in self.pads(*x.shape[1:3]))
        y = lax.conv_general_dilated(x, p["W"], tuple(self.strides), pads,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + p["b"]


@crossgrad.layer("my_lstm")
class LSTM:
    """gates [i, f, g, o] = x W + h U + b; c' = f*c + i*g; h' = o*tanh(c'); the last h."""
    keys = {"units": int}

    def params(self, in_shape):
        width = 4 * self.units
        return {"W": ((in_shape[1], width), "glorot_uniform"),
                "U": ((self.units, width), "orthogonal"), "b": ((width,), "zeros")}

    def out_shape(self, in_shape):
        return (self.units,)

    def numpy_forward(self, p, x):
        batch, time, _ = x.shape
        h = c = np.zeros((batch, self.units), x.dtype)
        caches = []
        for t in range(time):
            z = x[:, t] @ p["W"] + h @ p["U"] + p["b"]
            zi, zf, zg, zo = np.split(z, 4, axis=1)
            i, f, g, o = logistic(zi), logistic(zf), np.tanh(zg), logistic(zo)
            c_prev, h_prev = c, h
            c = f * c_prev + i * g
            h = o * np.tanh(c)
            caches.append((x[:, t], h_prev, c_prev, i, f, g, o, c))
        return h, (caches, x.shape)

    def numpy_backward(self, p, cache, dy):
        caches, (batch, time, _) = cache
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros((batch, time, p["W"].shape[0]), dy.dtype)
        dh, dc = np.zeros((batch, self.units), dy.dtype), np.zeros((batch, self.units), dy.dtype)
        for t in reversed(range(time)):
            dh = dh + (dy if t == time - 1 else 0)
            x, h_prev, c_prev, i, f, g, o, c = caches[t]
            tanh_c = np.tanh(c)
            dc = dc + dh * o * (1 - tanh_c * tanh_c)
            dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                 dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=1)
            grads["W"] += x.T @ dz
            grads["U"] += h_prev.T @ dz
            grads["b"] += dz.sum(0)
            dx[:, t], dh, dc = dz @ p["W"].T, dz @ p["U"].T, dc * f
        return dx, grads

    def torch(self, p, x):
        import torch
        # nn.LSTM's CPU loop (ATen RNN.cpp): the input projections of every step first,
        # time-major (the order their gradients are summed in), then per step
        # gates = h U + (x W + b), chunked [i, f, g, o]; the weights laid out as nn.LSTM's
        # own (W^T, U^T contiguous), which MKL rounds otherwise on some CPUs (AMD EPYC)
        linear = torch.nn.functional.linear
        xw = linear(x.transpose(0, 1), p["W"].T.contiguous(), p["b"]).unbind(0)
        u = p["U"].T.contiguous()
        h = c = x.new_zeros((x.shape[0], self.units))
        for t in range(x.shape[1]):
            gates = linear(h, u).add_(xw[t])
            i, f, g, o = gates.chunk(4, 1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * c + i * g
            h = o * c.tanh()
        return h

    def tensorflow(self, p, x):
        import tensorflow as tf
        # what keras.layers.LSTM's cell computes per step, in a tf.while_loop over time
        def step(carry, x_t):
            h, c = carry
            z = tf.nn.bias_add(tf.add(tf.matmul(x_t, p["W"]), tf.matmul(h, p["U"])), p["b"])
            zi, zf, zg, zo = tf.split(z, 4, axis=1)
            i, f = tf.sigmoid(zi), tf.sigmoid(zf)
            c = f * c + i * tf.tanh(zg)
            h = tf.sigmoid(zo) * tf.tanh(c)
            return h, c
        zeros = tf.zeros((tf.shape(x)[0], self.units), x.dtype)
        h, _ = tf.scan(step, tf.transpose(x, (1, 0, 2)), initializer=(zeros, zeros))
        return h[-1]

    def jax(self, p, x):
        import jax
        import jax.numpy as jnp
        from jax import lax

        def cell(carry, x_t):
            h_prev, c_prev = carry
            z = x_t @ p["W"] + h_prev @ p["U"] + p["b"]
            zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
            i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
            c = f * c_prev + i * g
            h = o * jnp.tanh(c)
            return (h, c), h
        zeros = jnp.zeros((x.shape[0], self.units), x.dtype)
        _, hs = lax.scan(cell, (zeros, zeros), x.swapaxes(0, 1))
        return hs[-1]
