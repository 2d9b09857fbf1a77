"""An LSTM layer written out, and a backward through time that uses the wrong cell state.

Gates [i, f, g, o] = x W + h U + b; i, f, o through a sigmoid, g through tanh;
c' = f * c + i * g; h' = o * tanh(c'). The forget gate multiplies the *previous* cell
state c, so dL/d(forget gate's pre-activation) = dc' * c * f (1 - f).
"""
import numpy as np

import crossgrad

NETWORK = "lstm"   # harness/spec/examples.py: lstm (5, sequences), lstm (3), dense (3)


def logistic(x):
    return np.exp(-np.logaddexp(0, -x))


@crossgrad.layer("lstm_right")
class LSTM:
    """gates [i, f, g, o] = x W + h U + b; c' = f*c + i*g; h' = o*tanh(c'); returns the last h"""
    keys = {"units": int}

    def params(self, in_shape):
        features, h = in_shape[-1], self.units
        return {"W": ((features, 4 * h), "glorot_uniform"), "U": ((h, 4 * h), "orthogonal"),
                "b": ((4 * h,), "zeros")}

    def out_shape(self, in_shape):
        return (self.units,)

    def numpy_forward(self, p, x):
        h = c = np.zeros((len(x), self.units), x.dtype)
        steps = []
        for t in range(x.shape[1]):
            zi, zf, zg, zo = np.split(x[:, t] @ p["W"] + h @ p["U"] + p["b"], 4, axis=1)
            i, f, g, o = logistic(zi), logistic(zf), np.tanh(zg), logistic(zo)
            steps.append((x[:, t], h, c, i, f, g, o))
            c = f * c + i * g
            h = o * np.tanh(c)
        return h, (steps, c)

    def numpy_backward(self, p, cache, dy):
        steps, c_next = cache
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        dx = np.zeros((len(dy), len(steps), len(p["W"])), dy.dtype)
        dh, dc = dy, np.zeros_like(dy)
        for t in reversed(range(len(steps))):
            x, h_prev, c_prev, i, f, g, o = steps[t]
            tanh_c = np.tanh(c_next)
            dc = dc + dh * o * (1 - tanh_c ** 2)
            dz = self.gate_gradients(dc, dh, c_prev, c_next, tanh_c, i, f, g, o)
            grads["W"] += x.T @ dz
            grads["U"] += h_prev.T @ dz
            grads["b"] += dz.sum(0)
            dx[:, t] = dz @ p["W"].T
            dh, dc, c_next = dz @ p["U"].T, dc * f, c_prev
        return dx, grads

    def gate_gradients(self, dc, dh, c_prev, c, tanh_c, i, f, g, o):
        """dL/d(pre-activation) of [i, f, g, o], from dc' and dh'."""
        return np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                               dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=1)

    def torch(self, p, x):
        import torch
        h = c = x.new_zeros(len(x), self.units)
        for t in range(x.shape[1]):
            zi, zf, zg, zo = (x[:, t] @ p["W"] + h @ p["U"] + p["b"]).chunk(4, -1)
            c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
            h = torch.sigmoid(zo) * torch.tanh(c)
        return h

    def tensorflow(self, p, x):
        import tensorflow as tf
        h = c = tf.zeros((tf.shape(x)[0], self.units), x.dtype)
        for t in range(x.shape[1]):
            zi, zf, zg, zo = tf.split(x[:, t] @ p["W"] + h @ p["U"] + p["b"], 4, -1)
            c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
            h = tf.sigmoid(zo) * tf.tanh(c)
        return h

    def jax(self, p, x):
        import jax
        import jax.numpy as jnp
        h = c = jnp.zeros((len(x), self.units), x.dtype)
        for t in range(x.shape[1]):
            zi, zf, zg, zo = jnp.split(x[:, t] @ p["W"] + h @ p["U"] + p["b"], 4, -1)
            c = jax.nn.sigmoid(zf) * c + jax.nn.sigmoid(zi) * jnp.tanh(zg)
            h = jax.nn.sigmoid(zo) * jnp.tanh(c)
        return h


@crossgrad.layer("lstm_forget_gate_new_cell")
class LSTMForgetGateNewCell(LSTM):
    """d(forget gate) = dc' * c' * f (1 - f): through the new cell state c', not the previous c"""
    at = 1
    why = ("In c' = f * c + i * g the forget gate multiplies the previous cell state c; "
           "the new state c' is what it produces, not what it scales.")

    def gate_gradients(self, dc, dh, c_prev, c, tanh_c, i, f, g, o):
        return np.concatenate([dc * g * i * (1 - i), dc * c * f * (1 - f),
                               dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=1)
