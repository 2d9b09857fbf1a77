"""Each loss returns (value, d value / d y_hat); `penalty` adds L1/L2 on the weights.

One builder per loss type, `def <type>(loss, native)`, with the same name, signature,
order and first docstring line (the canonical formula) as in the other three folders;
it returns loss(y_hat, y) -> (value, dvalue/dy_hat), the gradient written by hand.
Reductions: "mean" averages over the batch (and over elements for the elementwise
losses mse and the binary cross-entropies, as PyTorch and Keras do); "sum" sums.
NumPy is the reference: `native` changes nothing.
`penalty_vanishes` and `add_vanishing_penalty`, outside the shared API (TensorFlow and
JAX compile the penalty into their step): the zero penalty's shortcut, the same bits.
"""
import numpy as np

from ..canonical import positive_zero, squares_fit
from .layers import logistic

__all__ = ["mse", "half_squared_error", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "softmax_cross_entropy", "LOSSES", "build_loss",
           "penalty"]


def reduced(terms, loss):
    """loss(y_hat, y) -> (value, gradient), from terms(y_hat, y) -> (sum, its gradient, count):
    "mean" divides both by the count, "sum" keeps them. The gradient is a new array of terms'
    own, divided where it is."""
    mean = loss["reduction"] == "mean"

    def loss_fn(y_hat, y):
        total, grad, count = terms(y_hat, y)
        if mean:
            total = total / count
            grad /= count
        return total, grad
    return loss_fn


def mse(loss, native):
    """L = sum_{b,k} (y_hat - y)^2, divided by B*K for "mean": y_hat, y (B, K)

    dL/dy_hat = 2 (y_hat - y).
    """
    def terms(y_hat, y):
        diff = y_hat - y
        return (diff * diff).sum(), 2 * diff, diff.size
    return reduced(terms, loss)


def half_squared_error(loss, native):
    """L = sum_b 0.5 sum_k (y_hat - y)^2, divided by B for "mean": y_hat, y (B, K)

    dL/dy_hat = y_hat - y.
    """
    def terms(y_hat, y):
        diff = y_hat - y
        return 0.5 * (diff * diff).sum(), diff, len(diff)
    return reduced(terms, loss)


def binary_cross_entropy(loss, native):
    """L = -sum_{b,k} y log p + (1 - y) log(1 - p), divided by B*K for "mean": p, y (B, K)

    dL/dp = (p - y) / (p (1 - p)); no clipping: the exact math.
    """
    def terms(p, y):
        value = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()
        return value, (p - y) / (p * (1 - p)), p.size
    return reduced(terms, loss)


def binary_cross_entropy_with_logits(loss, native):
    """L = -sum_{b,k} y log s(z) + (1 - y) log(1 - s(z)), s the sigmoid, / (B*K) for "mean": z, y (B, K)

    Written max(z, 0) - z y + log(1 + exp(-|z|)), equal and never overflowing;
    dL/dz = s(z) - y.
    """
    def terms(z, y):
        value = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum()
        return value, logistic(z) - y, z.size
    return reduced(terms, loss)


def softmax_cross_entropy(loss, native):
    """L = -sum_b log softmax(z_b)[y_b], divided by B for "mean": z (B, C) logits, y (B,) class ids

    dL/dz = softmax(z) - one_hot(y).
    """
    def terms(logits, labels):
        shifted = logits - logits.max(1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))  # (B, C)
        rows = np.arange(len(labels))
        dlogits = np.exp(log_probs)
        dlogits[rows, labels] -= 1  # softmax - one_hot
        return -log_probs[rows, labels].sum(), dlogits, len(labels)
    return reduced(terms, loss)


LOSSES = {builder.__name__: builder for builder in (  # loss type -> builder of the same name
    mse, half_squared_error, binary_cross_entropy, binary_cross_entropy_with_logits,
    softmax_cross_entropy)}


def build_loss(loss, native):
    """loss(y_hat, y) -> (value, dvalue/dy_hat) for the spec's loss section."""
    return LOSSES[loss["type"]](loss, native)


def buffer(scratch, like, role):
    """An array of like's shape and dtype to write into: made once and kept in `scratch`
    ({key: array}, the training loop's, kept between steps), or a new one without it. A new
    784 x 300 array each step cost more than the pass that fills it."""
    if scratch is None:
        return np.empty_like(like)
    key = (role, like.shape, like.dtype)
    made = scratch.get(key)
    if made is None:
        made = scratch[key] = np.empty_like(like)
    return made


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors -> (value, {name: gradient})."""
    return buffered_penalty(weights, l1, l2, None)


def buffered_penalty(weights, l1, l2, scratch):
    """penalty(), its arrays written into buffers (see buffer): with a `scratch`, the
    gradients it returns are valid until the next call."""
    value, grads = 0.0, {}
    for name, w in weights.items():
        tmp = buffer(scratch, w, "penalty")  # one temporary for the four W-sized terms
        g = grads[name] = buffer(scratch, w, ("penalty", name))
        absolute = np.abs(w, out=tmp).sum()
        if not signed_sum(g, tmp, w, l1, 2 * l2):
            np.sign(w, out=g)
            g *= l1
            g += np.multiply(w, 2 * l2, out=tmp)  # l1 sign(w) + (2 l2) w, the same roundings
        value += l1 * absolute + l2 * np.multiply(w, w, out=tmp).sum()
    return value, grads


# a float format -> the unsigned integer of its width, and its sign bit
SIGN_BIT = {np.dtype(np.float32): (np.uint32, np.uint32(1 << 31)),
            np.dtype(np.float64): (np.uint64, np.uint64(1 << 63))}


def signed_sum(out, magnitude, w, l1, c):
    """out = l1 sign(w) + c w, as rounded there, in two passes fewer, from `magnitude` = |w|
    (overwritten): where no w is 0 or NaN and l1, c >= 0, each term has the sign of w, so the
    sum is sign(w) (l1 + c |w|), and a rounding to nearest rounds -x to -(its rounding of x).
    The sign bit of w goes onto l1 + c |w| (never -0) by integer operations: np.sign and
    np.copysign are loops of their own, three to four times as slow. -> whether it did."""
    if w.dtype not in SIGN_BIT or not (l1 >= 0 and c >= 0) or not w.size:
        return False
    if not np.minimum.reduce(magnitude, axis=None) > 0:  # a 0 (sign(0) is 0) or a NaN
        return False
    magnitude *= c
    magnitude += l1
    ints, sign = SIGN_BIT[w.dtype]
    np.bitwise_and(w.view(ints), sign, out=out.view(ints))
    np.bitwise_or(out.view(ints), magnitude.view(ints), out=out.view(ints))
    return True


# the formats the zero penalty's shortcut takes -> (largest value, eps), np.finfo's read once
LIMITS = {np.dtype(t): (float(np.finfo(t).max), float(np.finfo(t).eps))
          for t in (np.float32, np.float64)}


def penalty_vanishes(weights, l1, l2):
    """Whether `penalty` is exactly +0 with signed zeros for its gradient: l1 = l2 = +0 and every
    tensor's W^2 sums finite (canonical.squares_fit). Then add_vanishing_penalty does
    what adding its gradient would, in three passes over each weight instead of nine."""
    if not (positive_zero(l1) and positive_zero(l2)):
        return False
    for w in weights.values():
        limits = LIMITS.get(w.dtype)
        if limits is None:
            return False
        flat = w.reshape(-1)
        if not squares_fit(float(np.dot(flat, flat)), w.size, *limits):
            return False
    return True


def add_vanishing_penalty(grads, weights, l1, l2, scratch=None):
    """grads[name] += a vanishing penalty's gradient: l1 sign(W) + (2 l2) W is -0 where W < 0
    and +0 elsewhere (sign(-0) is +0), which is 0 * sign(W). Adding a zero changes a gradient
    entry only where it is -0 (-0 + +0 is +0; g + 0 is g for every other g, +0 included), so a
    gradient without a -0 is left alone: one pass over it instead of three over W. (A matrix
    product's zeros are +0: the zoo's MLPs have thousands of zero gradient entries and no -0.)"""
    for name, w in weights.items():
        g = grads[name]
        if has_negative_zero(g):
            zero = np.sign(w, out=buffer(scratch, w, "penalty"))
            zero *= 0.0
            g += zero


# a float format -> the signed integer of its width, and -0's bits (the sign bit alone) read
# as one: the smallest such integer
NEGATIVE_ZERO = {np.dtype(np.float32): (np.int32, np.iinfo(np.int32).min),
                 np.dtype(np.float64): (np.int64, np.iinfo(np.int64).min)}


def has_negative_zero(a):
    """Whether `a` holds a -0, compared as bits (as floats -0 == +0); any other dtype: True.
    Read as signed integers, no other value (a NaN with the sign bit included) is as small
    as -0: one reduce over `a`, and no mask of it to make and read."""
    if a.dtype not in NEGATIVE_ZERO:
        return True
    ints, negative_zero = NEGATIVE_ZERO[a.dtype]
    smallest = np.minimum.reduce(a.view(ints), axis=None, initial=0)  # 0: an empty `a` has none
    return bool(smallest == negative_zero)


# ---- second order: the R-operator ------------------------------------------------------------

def curvature(loss):
    """(y_hat, y, r) -> (d^2 L / d y_hat^2) r: the tangent of dL/dy_hat along r, by hand.

    Each is the derivative of the gradient above; "mean" divides by the same count.
    """
    kind, mean = loss["type"], loss["reduction"] == "mean"

    def terms(y_hat, y, r):
        if kind == "mse":                                  # d(2 diff) = 2 r
            return 2 * r, r.size
        if kind == "half_squared_error":                   # d(diff) = r
            return r, len(r)
        if kind == "binary_cross_entropy":                 # d/dp (p - y) / (p (1 - p))
            p, q = y_hat, y_hat * (1 - y_hat)
            return r * (q - (p - y) * (1 - 2 * p)) / (q * q), r.size
        if kind == "binary_cross_entropy_with_logits":     # d s(z) = s (1 - s) r
            s = logistic(y_hat)
            return r * s * (1 - s), r.size
        shifted = y_hat - y_hat.max(1, keepdims=True)      # softmax_cross_entropy
        s = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)  # (B, C)
        return s * (r - (s * r).sum(1, keepdims=True)), len(r)  # (diag(s) - s s^T) r

    def hessian_times(y_hat, y, r):
        value, count = terms(y_hat, y, r)
        return value / count if mean else value
    return hessian_times
