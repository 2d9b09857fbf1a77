"""Each loss returns a scalar tensor, for the tape to differentiate; `penalty` adds L1/L2.

One builder per loss type, `def <type>(loss, native)`, with the same name, signature,
order and first docstring line (the canonical formula) as in the other three folders.
Reductions: "mean" averages over the batch (and over elements for the elementwise
losses mse and the binary cross-entropies, as PyTorch and Keras do); "sum" sums.
Keras' loss classes are used where their math is the canonical one; Keras' mse and
binary cross-entropies average over the last axis before reducing, so their "sum" is
1/outputs of the canonical sum, and BinaryCrossentropy on probabilities clips them to
[1e-7, 1 - 1e-7]. Those cases are written out with tf ops (in native mode, Keras' classes:
the pitfalls keras.loss_sum_of_means and keras.binary_crossentropy).
"""
from functools import partial

import keras
import tensorflow as tf

from ..canonical import native_on

__all__ = ["mse", "half_squared_error", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "softmax_cross_entropy", "LOSSES", "build_loss",
           "penalty"]


def keras_loss(make, loss, outputs_sum=False):
    """loss(y_hat, y) with the Keras class `make`; "mean" is Keras' sum_over_batch_size.
    outputs_sum: Keras' "sum" of per-example means over the outputs, times their number K."""
    keras_reduction = "sum_over_batch_size" if loss["reduction"] == "mean" else "sum"

    def loss_fn(y_hat, y):
        # dtype: a Keras loss computes in floatx() (float32) unless told otherwise
        value = make(reduction=keras_reduction, dtype=y_hat.dtype)(y, y_hat)
        return value * y_hat.shape[-1] if outputs_sum else value
    return loss_fn


def sums_means(loss, native):
    """Whether Keras' "sum" (1/K of the canonical one) is kept: keras.loss_sum_of_means."""
    return loss["reduction"] == "sum" and native_on(native, "keras.loss_sum_of_means")


def reduced(values, loss):
    """loss(y_hat, y): the mean or the sum of values(y_hat, y), per element or per example."""
    mean = loss["reduction"] == "mean"

    def loss_fn(y_hat, y):
        v = values(y_hat, y)
        return tf.reduce_mean(v) if mean else tf.reduce_sum(v)
    return loss_fn


def mse(loss, native):
    """L = sum_{b,k} (y_hat - y)^2, divided by B*K for "mean": y_hat, y (B, K)

    keras.losses.MeanSquaredError for "mean" (and in native mode); for "sum" it would
    divide by K, so the squares are summed here.
    """
    if loss["reduction"] == "mean" or sums_means(loss, native):
        return keras_loss(keras.losses.MeanSquaredError, loss)
    return reduced(lambda y_hat, y: tf.square(y_hat - y), loss)


def half_squared_error(loss, native):
    """L = sum_b 0.5 sum_k (y_hat - y)^2, divided by B for "mean": y_hat, y (B, K)

    tf ops: Keras has no such loss.
    """
    return reduced(lambda y_hat, y: 0.5 * tf.reduce_sum(tf.square(y_hat - y), axis=-1), loss)


def binary_cross_entropy(loss, native):
    """L = -sum_{b,k} y log p + (1 - y) log(1 - p), divided by B*K for "mean": p, y (B, K)

    Aligned: the exact formula, no clipping; native (keras.binary_crossentropy):
    keras.losses.BinaryCrossentropy, which clips p to [1e-7, 1 - 1e-7].
    """
    if native_on(native, "keras.binary_crossentropy"):
        return keras_loss(keras.losses.BinaryCrossentropy, loss,
                          outputs_sum=loss["reduction"] == "sum" and not sums_means(loss, native))

    def terms(p, y):
        return -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
    if sums_means(loss, native):  # Keras' "sum" alone: of each example's mean over K
        return reduced(lambda p, y: tf.reduce_mean(terms(p, y), axis=-1), loss)
    return reduced(terms, loss)


def binary_cross_entropy_with_logits(loss, native):
    """L = -sum_{b,k} y log s(z) + (1 - y) log(1 - s(z)), s the sigmoid, / (B*K) for "mean": z, y (B, K)

    keras.losses.BinaryCrossentropy(from_logits=True) for "mean" (and in native mode);
    for "sum", tf.nn.sigmoid_cross_entropy_with_logits summed.
    """
    if loss["reduction"] == "mean" or sums_means(loss, native):
        return keras_loss(partial(keras.losses.BinaryCrossentropy, from_logits=True), loss)
    # max(z, 0) - z y + log(1 + exp(-|z|)): equal to the definition, and never overflows
    return reduced(lambda z, y: tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z), loss)


def softmax_cross_entropy(loss, native):
    """L = -sum_b log softmax(z_b)[y_b], divided by B for "mean": z (B, C) logits, y (B,) class ids

    keras.losses.SparseCategoricalCrossentropy(from_logits=True).
    """
    return keras_loss(partial(keras.losses.SparseCategoricalCrossentropy, from_logits=True), loss)


LOSSES = {builder.__name__: builder for builder in (  # loss type -> builder of the same name
    mse, half_squared_error, binary_cross_entropy, binary_cross_entropy_with_logits,
    softmax_cross_entropy)}


def build_loss(loss, native):
    """loss(y_hat, y) -> scalar tensor in y_hat's dtype, for the spec's loss section."""
    return LOSSES[loss["type"]](loss, native)


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors; its gradient comes from the tape."""
    value = 0.0
    for w in weights.values():
        value += l1 * tf.reduce_sum(tf.abs(w)) + l2 * tf.reduce_sum(tf.square(w))
    return value
