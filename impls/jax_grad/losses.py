"""Each loss maps (y_hat, y) to a scalar; jax.grad does the rest. `penalty`: L1/L2 on the weights.

Optax's losses return one value per example or per element and leave the reduction to
the caller, so each function below returns the terms whose average is the "mean"
reduction: per element for mse and the binary cross-entropies (as PyTorch and Keras
average them), per example for half_squared_error and softmax cross-entropy.
"""
import jax.numpy as jnp
import optax

__all__ = ["build_loss", "penalty"]


def mse(y_hat, y):
    return optax.squared_error(y_hat, y)                       # (B, k)


def half_squared_error(y_hat, y):
    return optax.l2_loss(y_hat, y).sum(-1)                     # 0.5 * sum_k (y_hat - y)^2: (B,)


def binary_cross_entropy(p, y):
    # Optax has no cross-entropy on probabilities; no clipping: the exact math
    return -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))        # (B, k)


def binary_cross_entropy_with_logits(z, y):
    return optax.sigmoid_binary_cross_entropy(z, y)            # via log_sigmoid: never overflows


def softmax_cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)  # (B,)


LOSSES = {f.__name__: f for f in (mse, half_squared_error, binary_cross_entropy,
                                  binary_cross_entropy_with_logits, softmax_cross_entropy)}


def build_loss(loss, native):
    """loss(y_hat, y) -> scalar. Optax's losses are the canonical math: `native` changes nothing."""
    fn, reduce = LOSSES[loss["type"]], jnp.mean if loss["reduction"] == "mean" else jnp.sum
    return lambda y_hat, y: reduce(fn(y_hat, y))


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors; jax.grad gives its gradient."""
    return sum(l1 * jnp.abs(w).sum() + l2 * (w * w).sum() for w in weights.values())
