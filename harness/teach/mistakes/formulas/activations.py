"""The sigmoid and softmax outputs of the 3-4-2 network, and two wrong derivatives.

sigmoid: y = 1 / (1 + exp(-x)), dy/dx = y (1 - y), written from the output y.
softmax: s = exp(x) / sum exp(x) per example; its Jacobian ds_i/dx_j = s_i (delta_ij - s_j)
is a full matrix, so dx = s * (dy - sum_j dy_j s_j).
"""
import numpy as np

import crossgrad

NETWORK = "mlp_3_4_2"


def logistic(x):
    return np.exp(-np.logaddexp(0, -x))  # 1 / (1 + exp(-x)) without overflow


@crossgrad.layer("sigmoid_right")
class Sigmoid:
    """y = 1 / (1 + exp(-x))"""

    def numpy_forward(self, p, x):
        y = logistic(x)
        return y, y

    def numpy_backward(self, p, y, dy):
        return dy * y * (1 - y), {}      # sigma'(x) = sigma(x) (1 - sigma(x)) = y (1 - y)

    def torch(self, p, x):
        import torch
        return torch.sigmoid(x)

    def tensorflow(self, p, x):
        import tensorflow as tf
        return tf.sigmoid(x)

    def jax(self, p, x):
        import jax
        return jax.nn.sigmoid(x)


@crossgrad.layer("sigmoid_derivative_of_output")
class SigmoidDerivativeOfOutput(Sigmoid):
    """dx = dy * sigma(y) (1 - sigma(y)): the derivative evaluated at the output, not the input"""
    at = 3   # the output sigmoid: the tutorial's delta = (o - t) * sigma'(net)
    why = ("sigma'(x) = sigma(x) (1 - sigma(x)) = y (1 - y) with y the output already; "
           "applying sigma to y again evaluates the derivative at the wrong point.")

    def numpy_backward(self, p, y, dy):
        s = logistic(y)
        return dy * s * (1 - s), {}


@crossgrad.layer("softmax_right")
class Softmax:
    """s = exp(x) / sum exp(x) over the last axis"""

    def numpy_forward(self, p, x):
        e = np.exp(x - x.max(-1, keepdims=True))
        s = e / e.sum(-1, keepdims=True)
        return s, s

    def numpy_backward(self, p, s, dy):
        return s * (dy - (dy * s).sum(-1, keepdims=True)), {}   # the whole Jacobian

    def torch(self, p, x):
        import torch
        return torch.softmax(x, -1)

    def tensorflow(self, p, x):
        import tensorflow as tf
        return tf.nn.softmax(x, -1)

    def jax(self, p, x):
        import jax
        return jax.nn.softmax(x, -1)


@crossgrad.layer("softmax_diagonal_only")
class SoftmaxDiagonalOnly(Softmax):
    """dx = dy * s (1 - s): only the softmax Jacobian's diagonal, as if each were a sigmoid"""
    at = 3   # the output sigmoid of the 3-4-2 network becomes a softmax
    why = ("Each softmax output depends on every input through the shared sum, so "
           "ds_i/dx_j = -s_i s_j off the diagonal; leaving those terms out drops the "
           "-s * sum(dy s) part of dx.")

    def numpy_backward(self, p, s, dy):
        return dy * s * (1 - s), {}
