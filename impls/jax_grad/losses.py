"""Each loss maps (y_hat, y) to a scalar; jax.grad does the rest. `penalty`: L1/L2 on the weights.

One builder per loss type, `def <type>(loss, native)`, with the same name, signature,
order and first docstring line (the canonical formula) as in the other three folders.
Optax's losses return one value per example or per element and leave the reduction to
the caller: per element for mse and the binary cross-entropies (as PyTorch and Keras
average them), per example for half_squared_error and softmax cross-entropy. They are
the canonical math: `native` changes nothing (the L1 penalty's native form: native_penalty).
"""
import jax.numpy as jnp
import optax

__all__ = ["mse", "half_squared_error", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "softmax_cross_entropy", "LOSSES", "build_loss",
           "penalty"]


def reduced(values, loss):
    """loss(y_hat, y): the mean or the sum of values(y_hat, y), per element or per example."""
    reduce = jnp.mean if loss["reduction"] == "mean" else jnp.sum
    return lambda y_hat, y: reduce(values(y_hat, y))


def mse(loss, native):
    """L = sum_{b,k} (y_hat - y)^2, divided by B*K for "mean": y_hat, y (B, K)

    optax.squared_error, per element.
    """
    return reduced(optax.squared_error, loss)


def half_squared_error(loss, native):
    """L = sum_b 0.5 sum_k (y_hat - y)^2, divided by B for "mean": y_hat, y (B, K)

    optax.l2_loss (0.5 (y_hat - y)^2) summed over k: per example.
    """
    return reduced(lambda y_hat, y: optax.l2_loss(y_hat, y).sum(-1), loss)


def binary_cross_entropy(loss, native):
    """L = -sum_{b,k} y log p + (1 - y) log(1 - p), divided by B*K for "mean": p, y (B, K)

    Written out: Optax has no cross-entropy on probabilities. No clipping: the exact math.
    """
    return reduced(lambda p, y: -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)), loss)


def binary_cross_entropy_with_logits(loss, native):
    """L = -sum_{b,k} y log s(z) + (1 - y) log(1 - s(z)), s the sigmoid, / (B*K) for "mean": z, y (B, K)

    optax.sigmoid_binary_cross_entropy, via log_sigmoid: it never overflows.
    """
    return reduced(optax.sigmoid_binary_cross_entropy, loss)


def softmax_cross_entropy(loss, native):
    """L = -sum_b log softmax(z_b)[y_b], divided by B for "mean": z (B, C) logits, y (B,) class ids

    optax.softmax_cross_entropy_with_integer_labels, per example.
    """
    return reduced(optax.softmax_cross_entropy_with_integer_labels, loss)


LOSSES = {builder.__name__: builder for builder in (  # loss type -> builder of the same name
    mse, half_squared_error, binary_cross_entropy, binary_cross_entropy_with_logits,
    softmax_cross_entropy)}


def build_loss(loss, native):
    """loss(y_hat, y) -> scalar, for the spec's loss section."""
    return LOSSES[loss["type"]](loss, native)


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors; jax.grad gives its gradient.

    |W| is written sign(W) W: the same values, and jax.grad takes its slope as sign(W), 0 at
    a weight of exactly 0 (a zero-initialised layer, a pruned weight), as NumPy, PyTorch and
    TensorFlow do. jnp.abs's slope there is 1: native_penalty."""
    return sum(l1 * (jnp.sign(w) * w).sum() + l2 * (w * w).sum() for w in weights.values())


def native_penalty(weights, l1, l2):
    """penalty() with jnp.abs, as a JAX user writes it (native mode: jax.abs_slope_at_zero)."""
    return sum(l1 * jnp.abs(w).sum() + l2 * (w * w).sum() for w in weights.values())
