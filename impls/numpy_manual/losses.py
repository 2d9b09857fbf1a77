"""Each loss returns (value, d value / d y_hat); `penalty` adds L1/L2 on the weights.

Reductions: "mean" averages over the batch (and over elements for the elementwise
losses mse and the binary cross-entropies, as PyTorch and Keras do); "sum" sums.
"""
import numpy as np

from .layers import sigmoid

__all__ = ["build_loss", "penalty"]


def mse(y_hat, y):
    diff = y_hat - y
    return (diff * diff).sum(), 2 * diff, diff.size


def half_squared_error(y_hat, y):
    diff = y_hat - y  # 0.5 * sum_k (y_hat - y)^2 per example
    return 0.5 * (diff * diff).sum(), diff, len(diff)


def binary_cross_entropy(p, y):
    value = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()  # no clipping: the exact math
    return value, (p - y) / (p * (1 - p)), p.size


def binary_cross_entropy_with_logits(z, y):
    # max(z, 0) - z y + log(1 + exp(-|z|)): equal to the definition, and never overflows
    value = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum()
    return value, sigmoid(z) - y, z.size


def softmax_cross_entropy(logits, labels):
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))  # (B, C)
    rows = np.arange(len(labels))
    dlogits = np.exp(log_probs)
    dlogits[rows, labels] -= 1  # softmax - one_hot
    return -log_probs[rows, labels].sum(), dlogits, len(labels)


LOSSES = {f.__name__: f for f in (mse, half_squared_error, binary_cross_entropy,
                                  binary_cross_entropy_with_logits, softmax_cross_entropy)}


def build_loss(loss, native):
    """loss(y_hat, y) -> (value, dvalue/dy_hat). NumPy is the reference: `native` changes nothing."""
    fn, mean = LOSSES[loss["type"]], loss["reduction"] == "mean"

    def loss_fn(y_hat, y):
        total, grad, count = fn(y_hat, y)
        return (total / count, grad / count) if mean else (total, grad)
    return loss_fn


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors -> (value, {name: gradient})."""
    value, grads = 0.0, {}
    for name, w in weights.items():
        value += l1 * np.abs(w).sum() + l2 * (w * w).sum()
        grads[name] = l1 * np.sign(w) + 2 * l2 * w
    return value, grads
