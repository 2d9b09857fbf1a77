"""Each loss returns a scalar tensor, for the tape to differentiate; `penalty` adds L1/L2.

Reductions: "mean" averages over the batch (and over elements for the elementwise
losses mse and the binary cross-entropies, as PyTorch and Keras do); "sum" sums.
Keras' loss classes are used where their math is the canonical one; Keras' mse and
binary cross-entropies average over the last axis before reducing, so their "sum" is
1/outputs of the canonical sum, and BinaryCrossentropy on probabilities clips them to
[1e-7, 1 - 1e-7]. Those cases are written out with tf ops (in native mode, Keras' classes).
"""
import keras
import tensorflow as tf

__all__ = ["build_loss", "penalty"]


# ---- the canonical math, per element (mse, bce) or per example --------------------------------

def mse(y_hat, y):
    return tf.square(y_hat - y)


def half_squared_error(y_hat, y):
    return 0.5 * tf.reduce_sum(tf.square(y_hat - y), axis=-1)  # (B,)


def binary_cross_entropy(p, y):
    return -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))  # no clipping: the exact math


def binary_cross_entropy_with_logits(z, y):
    # max(z, 0) - z y + log(1 + exp(-|z|)): equal to the definition, and never overflows
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)


LOSSES = {f.__name__: f for f in (mse, half_squared_error, binary_cross_entropy,
                                  binary_cross_entropy_with_logits)}


# ---- Keras' classes --------------------------------------------------------------------------

KERAS_LOSSES = {
    "softmax_cross_entropy": lambda **kw: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, **kw),
    "mse": keras.losses.MeanSquaredError,
    "binary_cross_entropy": keras.losses.BinaryCrossentropy,
    "binary_cross_entropy_with_logits": lambda **kw: keras.losses.BinaryCrossentropy(
        from_logits=True, **kw),
}
CANONICAL_IN_KERAS = {("softmax_cross_entropy", "mean"), ("softmax_cross_entropy", "sum"),
                      ("mse", "mean"), ("binary_cross_entropy_with_logits", "mean")}


def keras_loss(kind, reduction):
    keras_reduction = "sum_over_batch_size" if reduction == "mean" else "sum"

    def loss_fn(y_hat, y):
        # dtype: a Keras loss computes in floatx() (float32) unless told otherwise
        loss = KERAS_LOSSES[kind](reduction=keras_reduction, dtype=y_hat.dtype)
        return loss(y, y_hat)
    return loss_fn


def build_loss(loss, native):
    """loss(y_hat, y) -> scalar tensor in y_hat's dtype."""
    kind, reduction = loss["type"], loss["reduction"]
    if (kind, reduction) in CANONICAL_IN_KERAS or native and kind in KERAS_LOSSES:
        return keras_loss(kind, reduction)
    fn, mean = LOSSES[kind], reduction == "mean"

    def loss_fn(y_hat, y):
        values = fn(y_hat, y)
        return tf.reduce_mean(values) if mean else tf.reduce_sum(values)
    return loss_fn


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors; its gradient comes from the tape."""
    value = 0.0
    for w in weights.values():
        value += l1 * tf.reduce_sum(tf.abs(w)) + l2 * tf.reduce_sum(tf.square(w))
    return value
