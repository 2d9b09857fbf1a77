"""Every spec entry as a Keras layer; custom layers only where Keras cannot say the canonical math.

`build_layer(layer, dtype, native)` returns one Keras layer per spec entry; its variables
are what layout.py maps to canonical names. `dtype` goes to every layer, so a float64
network computes and stores in float64. `native=True` keeps Keras' defaults for the keys
the spec did not set explicitly (LeakyReLU slope, normalisation epsilon and momentum).
Shapes in comments include the batch axis B.
"""
import math

import keras
import numpy as np
import tensorflow as tf

__all__ = ["LAYERS", "build_layer"]


def keras_default(layer, native, key, keras_key):
    """{keras_key: the spec's value}, or {} in native mode when the user did not write `key`."""
    return {} if native and key not in layer["explicit"] else {keras_key: layer[key]}


# ---- elementwise -----------------------------------------------------------------------------

def gelu(x):
    """Exact GELU, x * Phi(x), in x's dtype.

    tf.nn.gelu (Keras' "gelu") casts its constant 1/sqrt(2) with tf.cast from a Python
    float, which goes through float32 (tensorflow/python/ops/nn_ops.py, gelu).
    """
    return 0.5 * x * (1 + tf.math.erf(x / math.sqrt(2)))


def leaky_relu(alpha):
    """x where x > 0, else alpha * x, with alpha in x's dtype.

    tf.nn.leaky_relu (Keras' LeakyReLU) keeps the slope in a float32 op attribute.
    """
    return lambda x: tf.where(x > 0, x, alpha * x)


def activation(layer, dtype, native):
    kind = layer["type"]
    if kind == "identity":
        return keras.layers.Identity(dtype=dtype)
    if kind == "leaky_relu" and native:  # Keras' own default slope is 0.3, the spec's 0.01
        slope = keras_default(layer, native, "alpha", "negative_slope")
        return keras.layers.LeakyReLU(**slope, dtype=dtype)
    if kind == "leaky_relu":
        return keras.layers.Activation(leaky_relu(layer["alpha"]), dtype=dtype)
    if kind == "gelu" and not native:
        return keras.layers.Activation(gelu, dtype=dtype)
    return keras.layers.Activation(kind, dtype=dtype)  # native "gelu": approximate=False, exact


class Dropout(keras.layers.Layer):
    """y = x * mask / (1 - rate) with the harness's mask: keras.layers.Dropout draws its own."""

    def __init__(self, layer, dtype, native):
        super().__init__(dtype=dtype)
        self.key, self.rate = layer["name"], layer["rate"]

    def call(self, x, masks):
        return x * (masks[self.key] / (1 - self.rate))  # (B, ...) of 0 and 1/(1-rate)


def flatten(layer, dtype, native):
    return keras.layers.Flatten(dtype=dtype)  # (B, H, W, C) -> (B, H*W*C), row-major


# ---- dense and convolution -----------------------------------------------------------------

def dense(layer, dtype, native):
    return keras.layers.Dense(layer["units"], use_bias=layer["use_bias"], dtype=dtype)


def explicit_pads(layer):
    """[ph, pw] padding: Keras layers know only 'valid' and 'same' (TensorFlow's rule)."""
    return isinstance(layer["padding"], list)


def pad_hw(x, pads, value=0.0):
    """(B, H, W, C) -> (B, H+top+bottom, W+left+right, C)."""
    return tf.pad(x, [[0, 0], *pads, [0, 0]], constant_values=value)


class PaddedConv2D(keras.layers.Conv2D):
    """ZeroPadding2D, then a 'valid' Conv2D."""

    def __init__(self, pads, **kwargs):
        super().__init__(padding="valid", **kwargs)
        self.pad = keras.layers.ZeroPadding2D(pads, dtype=kwargs["dtype"])

    def call(self, x):
        return super().call(self.pad(x))


def conv2d(layer, dtype, native):
    kwargs = dict(filters=layer["filters"], kernel_size=layer["kernel_size"],
                  strides=layer["strides"], use_bias=layer["use_bias"], dtype=dtype)
    if explicit_pads(layer):
        return PaddedConv2D(layer["pads"], **kwargs)
    return keras.layers.Conv2D(padding=layer["padding"], **kwargs)


class PaddedMaxPool2D(keras.layers.MaxPooling2D):
    """-inf padding (it never wins), then a 'valid' MaxPooling2D."""

    def __init__(self, pads, **kwargs):
        super().__init__(padding="valid", **kwargs)
        self.pads = pads

    def call(self, x):
        return super().call(pad_hw(x, self.pads, -np.inf))


class PaddedAvgPool2D(keras.layers.AveragePooling2D):
    """Mean over the real pixels: pool the zero-padded input and a padded map of ones, divide."""

    def __init__(self, pads, **kwargs):
        super().__init__(padding="valid", **kwargs)
        self.pads = pads

    def call(self, x):
        ones = tf.ones_like(x[:1, :, :, :1])                        # (1, H, W, 1)
        share = super().call(pad_hw(ones, self.pads))   # (1, Ho, Wo, 1): real pixels / (kh*kw)
        return super().call(pad_hw(x, self.pads)) / share


def pool2d(layer, dtype, native):
    # 'same' in Keras is TensorFlow's rule: max ignores the padding, average does not count it
    kwargs = dict(pool_size=layer["pool_size"], strides=layer["strides"], dtype=dtype)
    maxpool = layer["type"] == "maxpool2d"
    if explicit_pads(layer):
        return (PaddedMaxPool2D if maxpool else PaddedAvgPool2D)(layer["pads"], **kwargs)
    keras_pool = keras.layers.MaxPooling2D if maxpool else keras.layers.AveragePooling2D
    return keras_pool(padding=layer["padding"], **kwargs)


# ---- normalisation ---------------------------------------------------------------------------

class BatchNorm(keras.layers.BatchNormalization):
    """Keras' BatchNormalization with the canonical (PyTorch's) running statistics.

    Keras' `momentum` weighs the OLD running value and its running variance takes the
    biased batch variance; canonically `momentum` weighs the NEW batch value and the
    running variance takes the unbiased one. Same variables, same normalisation.
    """

    def __init__(self, layer, dtype):
        super().__init__(epsilon=layer["eps"], dtype=dtype)
        self.new_weight = layer["momentum"]

    def call(self, x, training=None):
        if not training:
            return super().call(x, training=False)
        axes = list(range(len(x.shape) - 1))
        mean, var = tf.nn.moments(x, axes)                            # (C,), biased
        n, m = math.prod(x.shape[:-1]), self.new_weight
        for running, batch in ((self.moving_mean, mean), (self.moving_variance, var * n / (n - 1))):
            running.assign((1 - m) * running + m * batch)
        return tf.nn.batch_normalization(x, mean, var, self.beta, self.gamma, self.epsilon)


def batchnorm(layer, dtype, native):
    if not native:
        return BatchNorm(layer, dtype)
    # the spec's momentum weighs the new batch value, Keras' the old running one
    momentum = {} if "momentum" not in layer["explicit"] else {"momentum": 1 - layer["momentum"]}
    epsilon = keras_default(layer, native, "eps", "epsilon")
    return keras.layers.BatchNormalization(**momentum, **epsilon, dtype=dtype)


def layernorm(layer, dtype, native):
    return keras.layers.LayerNormalization(**keras_default(layer, native, "eps", "epsilon"),
                                           dtype=dtype)


# ---- composition -----------------------------------------------------------------------------

class Residual(keras.layers.Layer):
    """y = x + f(x), f the block's layers in turn: the tape follows both paths and adds."""

    def __init__(self, layer, dtype, native):
        super().__init__(dtype=dtype)
        self.blocks = [build_layer(sub, dtype, native) for sub in layer["layers"]]

    def build(self, x_shape):
        """Nothing of its own: the sub-layers create their variables on the first call."""

    def call(self, x, masks, training=None):
        return x + call_layers(self.blocks, x, masks, training)


def call_layers(layers, x, masks, training):
    """x through each layer in turn; dropout and residual blocks also get the masks."""
    for layer in layers:
        if isinstance(layer, (Dropout, Residual)):
            x = layer(x, masks, training=training)
        else:
            x = layer(x, training=training)
    return x


def sequence_mean(layer, dtype, native):
    return keras.layers.GlobalAveragePooling1D(dtype=dtype)  # (B, T, D) -> (B, D)


def embedding(layer, dtype, native):
    # token ids (B, T) -> rows of E: (B, T, dim)
    return keras.layers.Embedding(layer["vocab"], layer["dim"], dtype=dtype)


# ---- recurrent: Keras runs the loop, the tape backpropagates through time --------------------

def recurrent(layer, dtype, native):
    kwargs = dict(units=layer["units"], return_sequences=layer["return_sequences"], dtype=dtype)
    if layer["type"] == "rnn":
        return keras.layers.SimpleRNN(**kwargs)
    if layer["type"] == "lstm":
        return keras.layers.LSTM(**kwargs)
    return keras.layers.GRU(reset_after=True, **kwargs)  # reset gate after U: PyTorch's form


# ---- attention -------------------------------------------------------------------------------

class SelfAttention(keras.layers.MultiHeadAttention):
    """MultiHeadAttention(x, x): Keras' layer takes query and value as two inputs."""

    def __init__(self, layer, dtype):
        super().__init__(num_heads=layer["heads"], key_dim=layer["key_dim"],
                         use_bias=layer["use_bias"], dtype=dtype)
        self.causal = layer["causal"]

    def build(self, x_shape):
        super().build(x_shape, x_shape)

    def call(self, x, training=None):
        return super().call(x, x, use_causal_mask=self.causal, training=training)


class Attention(SelfAttention):
    """Keras' projections and heads, with the scores computed in the model's dtype.

    Keras scales the scores by 1/sqrt(key_dim) after tf.cast from a Python float,
    which goes through float32 (keras/src/backend/tensorflow/nn.py,
    _dot_product_attention_xla). `_compute_attention` is Keras' hook for this.
    """

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False):
        # query (B, T, heads, key_dim), key and value (B, S, heads, key_dim)
        scores = tf.einsum("btnh,bsnh->bnts", query, key) / math.sqrt(self.key_dim)
        if attention_mask is not None:                               # (1, T, S): s <= t
            scores = tf.where(attention_mask[:, None], scores, -np.inf)
        weights = tf.nn.softmax(scores)                              # (B, heads, T, S)
        return tf.einsum("bnts,bsnh->btnh", weights, value), weights


def attention(layer, dtype, native):
    return SelfAttention(layer, dtype) if native else Attention(layer, dtype)


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {
    **dict.fromkeys(("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity"), activation),
    "dense": dense, "flatten": flatten, "conv2d": conv2d, "maxpool2d": pool2d,
    "avgpool2d": pool2d, "batchnorm": batchnorm, "layernorm": layernorm, "dropout": Dropout,
    "residual": Residual, "rnn": recurrent, "lstm": recurrent, "gru": recurrent,
    "attention": attention, "sequence_mean": sequence_mean, "embedding": embedding,
}


def build_layer(layer, dtype, native):
    """The Keras layer for one spec entry."""
    return LAYERS[layer["type"]](layer, dtype, native)
