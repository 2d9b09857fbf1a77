"""Every spec entry as a Keras layer; custom layers only where Keras cannot say the canonical math.

One builder per layer type, `def <type>(layer, dtype, native)`, with the same name,
signature, order and first docstring line (the canonical equation) as in the other three
folders; it returns one Keras layer, whose variables are what layout.py maps to
canonical names. `dtype` goes to every layer, so a float64 network computes and stores
in float64. Native mode keeps Keras' classes and Keras' defaults for the keys the spec
did not set explicitly, each switched by the pitfall it names (impls/README.md, "Native
defaults"). The tape supplies every backward pass. Shapes in comments include the batch
axis B.
"""
import inspect
import math

import keras
import numpy as np
import tensorflow as tf

from ..canonical import check_output, native_on, plugin_method

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "identity", "dropout", "flatten",
           "dense", "conv2d", "maxpool2d", "avgpool2d", "batchnorm", "layernorm", "residual",
           "sequence_mean", "embedding", "rnn", "lstm", "gru", "attention", "plugin",
           "LAYERS", "build_layer"]


def keras_setting(layer, native, pitfall, key, kind, keras_key):
    """The spec's value of `key`; the default of Keras' `kind` (its signature, never a copy)
    when the user did not write it and `pitfall` is on."""
    if key not in layer["explicit"] and native_on(native, pitfall):
        return inspect.signature(kind).parameters[keras_key].default
    return layer[key]


# ---- elementwise -----------------------------------------------------------------------------

def sigmoid(layer, dtype, native):
    """y = 1 / (1 + exp(-x)), elementwise: x, y (B, ...)

    keras.layers.Activation("sigmoid").
    """
    return keras.layers.Activation("sigmoid", dtype=dtype)


def tanh(layer, dtype, native):
    """y = tanh(x), elementwise: x, y (B, ...)

    keras.layers.Activation("tanh").
    """
    return keras.layers.Activation("tanh", dtype=dtype)


def relu(layer, dtype, native):
    """y = max(x, 0), elementwise, slope 0 at x = 0: x, y (B, ...)

    keras.layers.Activation("relu"); the tape's gradient at 0 is 0.
    """
    return keras.layers.Activation("relu", dtype=dtype)


def leaky_relu(layer, dtype, native):
    """y = x if x > 0 else alpha * x, elementwise: x, y (B, ...)

    tf.nn.leaky_relu (Keras' LeakyReLU) keeps the slope in a float32 op attribute, so
    aligned mode writes the rule with tf.where and alpha in x's dtype; native mode is
    keras.layers.LeakyReLU (tensorflow.leaky_relu_float32_alpha), with Keras' default
    slope 0.3 unless the spec set alpha (keras.leaky_relu_slope).
    """
    alpha = keras_setting(layer, native, "keras.leaky_relu_slope", "alpha",
                          keras.layers.LeakyReLU, "negative_slope")
    if native_on(native, "tensorflow.leaky_relu_float32_alpha"):
        return keras.layers.LeakyReLU(negative_slope=alpha, dtype=dtype)
    return keras.layers.Activation(lambda x: tf.where(x > 0, x, alpha * x), dtype=dtype)


def exact_gelu(x):
    """x * Phi(x), with 1/sqrt(2) in x's dtype.

    tf.nn.gelu (Keras' "gelu") casts its constant 1/sqrt(2) with tf.cast from a Python
    float, which goes through float32 (tensorflow/python/ops/nn_ops.py, gelu).
    """
    return 0.5 * x * (1 + tf.math.erf(x / math.sqrt(2)))


def gelu(layer, dtype, native):
    """y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), elementwise (exact, not tanh): x, y (B, ...)

    Aligned: exact_gelu above; native (tensorflow.gelu_float32_constant):
    keras.layers.Activation("gelu"), which is exact too (approximate=False) but rounds its
    constant through float32.
    """
    native_gelu = native_on(native, "tensorflow.gelu_float32_constant")
    return keras.layers.Activation("gelu" if native_gelu else exact_gelu, dtype=dtype)


def identity(layer, dtype, native):
    """y = x: x, y (B, ...)

    keras.layers.Identity.
    """
    return keras.layers.Identity(dtype=dtype)


class Dropout(keras.layers.Layer):
    """y = x * mask / (1 - rate) with the harness's mask: keras.layers.Dropout draws its own."""

    def __init__(self, layer, dtype):
        super().__init__(dtype=dtype)
        self.key, self.rate = layer["name"], layer["rate"]

    def call(self, x, masks):
        return x * (masks[self.key] / (1 - self.rate))  # (B, ...) of 0 and 1/(1-rate)


def dropout(layer, dtype, native):
    """y = x * mask / (1 - rate), mask (B, ...) of 0 and 1 drawn by the harness: x, y (B, ...)

    A Keras layer of its own (Dropout above), called with the masks.
    """
    return Dropout(layer, dtype)


def flatten(layer, dtype, native):
    """y = x reshaped to (B, H*W*C), row-major over (H, W, C): x (B, H, W, C)

    keras.layers.Flatten: Keras runs images NHWC, the canonical order.
    """
    return keras.layers.Flatten(dtype=dtype)


# ---- dense and convolution -----------------------------------------------------------------

def dense(layer, dtype, native):
    """y = x W + b on the last axis: x (B, ..., in), W (in, out), b (out,), y (B, ..., out)

    keras.layers.Dense: its kernel is W.
    """
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
    """y[b,i,j] = sum_{u,v} xpad[b, i*sh+u, j*sw+v] W[u,v] + b: x (B, H, W, C_in), W (kh, kw, C_in, C_out)

    keras.layers.Conv2D (a cross-correlation; its kernel is W); explicit [ph, pw]
    padding through PaddedConv2D above.
    """
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


def maxpool2d(layer, dtype, native):
    """y[b,i,j] = max_{u,v} xpad[b, i*sh+u, j*sw+v], padded with -inf: x (B, H, W, C), y (B, Ho, Wo, C)

    keras.layers.MaxPooling2D, whose 'same' ignores the padding; explicit [ph, pw]
    padding through PaddedMaxPool2D above.
    """
    kwargs = dict(pool_size=layer["pool_size"], strides=layer["strides"], dtype=dtype)
    if explicit_pads(layer):
        return PaddedMaxPool2D(layer["pads"], **kwargs)
    return keras.layers.MaxPooling2D(padding=layer["padding"], **kwargs)


class PaddedAvgPool2D(keras.layers.AveragePooling2D):
    """Mean over the real pixels: pool the zero-padded input and a padded map of ones, divide."""

    def __init__(self, pads, **kwargs):
        super().__init__(padding="valid", **kwargs)
        self.pads = pads

    def call(self, x):
        ones = tf.ones_like(x[:1, :, :, :1])                        # (1, H, W, 1)
        share = super().call(pad_hw(ones, self.pads))   # (1, Ho, Wo, 1): real pixels / (kh*kw)
        return super().call(pad_hw(x, self.pads)) / share


def avgpool2d(layer, dtype, native):
    """y[b,i,j] = mean_{u,v} x[b, i*sh+u, j*sw+v], real pixels only: x (B, H, W, C), y (B, Ho, Wo, C)

    keras.layers.AveragePooling2D, whose 'same' does not count the padding (TensorFlow's
    rule); explicit [ph, pw] padding through PaddedAvgPool2D above. So is aligned 'same'
    with a window wider than the input: there TensorFlow's AvgPoolGrad is wrong (height 4,
    window 5, stride 1, dy = 1, 2, 3, 4: dx = 1.5, 2.83, 2.83, 2.83, not 1.58, 2.92, 2.92,
    2.58), where its forward pass is right. Native mode keeps Keras' layer, bug and all
    (the pitfall tensorflow.avgpool_grad_wider_window).
    """
    kwargs = dict(pool_size=layer["pool_size"], strides=layer["strides"], dtype=dtype)
    wider = any(k > n for k, n in zip(layer["pool_size"], layer["in_shape"][:2]))
    if explicit_pads(layer) or (
            wider and not native_on(native, "tensorflow.avgpool_grad_wider_window")):
        return PaddedAvgPool2D(layer["pads"], **kwargs)
    return keras.layers.AveragePooling2D(padding=layer["padding"], **kwargs)


# ---- normalisation ---------------------------------------------------------------------------

class BatchNorm(keras.layers.BatchNormalization):
    """Keras' BatchNormalization with the canonical (PyTorch's) running statistics.

    Keras' `momentum` weighs the OLD running value and its running variance takes the
    biased batch variance; canonically `momentum` weighs the NEW batch value and the
    running variance takes the unbiased one. Same variables, same normalisation.
    """

    def __init__(self, layer, dtype, epsilon, new_weight):
        super().__init__(epsilon=epsilon, dtype=dtype)
        self.new_weight = new_weight

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
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over all axes but the last: x (B, ..., C)

    Aligned: BatchNorm above (canonical running statistics); native
    (keras.batchnorm_biased_variance): keras.layers.BatchNormalization, with Keras'
    momentum 0.99 (keras.batchnorm_momentum) and epsilon 1e-3 (keras.batchnorm_epsilon)
    for what the spec did not write.
    """
    kind = keras.layers.BatchNormalization
    epsilon = keras_setting(layer, native, "keras.batchnorm_epsilon", "eps", kind, "epsilon")
    # the spec's momentum weighs the new batch value, Keras' the old running one
    keras_momentum = ("momentum" not in layer["explicit"]
                      and native_on(native, "keras.batchnorm_momentum"))
    old = inspect.signature(kind).parameters["momentum"].default if keras_momentum \
        else 1 - layer["momentum"]
    if native_on(native, "keras.batchnorm_biased_variance"):
        return kind(momentum=old, epsilon=epsilon, dtype=dtype)
    return BatchNorm(layer, dtype, epsilon, 1 - old if keras_momentum else layer["momentum"])


def layernorm(layer, dtype, native):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over the last axis: x (B, ..., D)

    keras.layers.LayerNormalization (native mode: Keras' epsilon 1e-3 unless the spec set
    eps, keras.layernorm_epsilon).
    """
    kind = keras.layers.LayerNormalization
    return kind(epsilon=keras_setting(layer, native, "keras.layernorm_epsilon", "eps", kind,
                                      "epsilon"), dtype=dtype)


# ---- composition -----------------------------------------------------------------------------

class Residual(keras.layers.Layer):
    """x plus the output of the block's layers, called in turn with the masks."""

    def __init__(self, blocks, dtype):
        super().__init__(dtype=dtype)
        self.blocks = blocks

    def build(self, x_shape):
        """Nothing of its own: the sub-layers create their variables on the first call."""

    def call(self, x, masks, training=None):
        return x + call_layers(self.blocks, x, masks, training)


def residual(layer, dtype, native):
    """y = x + f(x), f the block's layers in order: x, y (B, ...)

    A Keras layer holding the sub-layers (Residual above); the tape follows both paths
    and adds.
    """
    return Residual([build_layer(sub, dtype, native) for sub in layer["layers"]], dtype)


def call_layers(layers, x, masks, training):
    """x through each layer in turn; dropout and residual blocks also get the masks."""
    for layer in layers:
        if isinstance(layer, (Dropout, Residual)):
            x = layer(x, masks, training=training)
        else:
            x = layer(x, training=training)
    return x


def sequence_mean(layer, dtype, native):
    """y = mean over t of x[:, t]: x (B, T, D), y (B, D)

    keras.layers.GlobalAveragePooling1D.
    """
    return keras.layers.GlobalAveragePooling1D(dtype=dtype)


def embedding(layer, dtype, native):
    """y = E[x], the row of E for each token id: x (B, T) integers, E (vocab, dim), y (B, T, dim)

    keras.layers.Embedding: its embeddings are E.
    """
    return keras.layers.Embedding(layer["vocab"], layer["dim"], dtype=dtype)


# ---- recurrent: Keras runs the loop, the tape backpropagates through time --------------------

def recurrent_options(layer, dtype):
    options = dict(units=layer["units"], return_sequences=layer["return_sequences"], dtype=dtype)
    if dtype == "bfloat16":
        # Keras draws its default orthogonal recurrent kernel with a QR decomposition, which
        # has no bfloat16 kernel ("Value for attr 'T' of bfloat16 is not in the list of
        # allowed values"); the weights are set from the spec anyway
        options["recurrent_initializer"] = "glorot_uniform"
    return options


def rnn(layer, dtype, native):
    """h' = tanh(x W + h U + b): x (B, T, F), W (F, H), U (H, H), b (H,), y (B, T, H) or (B, H)

    keras.layers.SimpleRNN (tanh by default).
    """
    return keras.layers.SimpleRNN(**recurrent_options(layer, dtype))


def lstm(layer, dtype, native):
    """gates [i, f, g, o] = x W + h U + b; c' = f*c + i*g; h' = o*tanh(c'): W (F, 4H), U (H, 4H), b (4H,)

    keras.layers.LSTM: its gates [i, f, c, o] are the canonical [i, f, g, o], one bias.
    """
    return keras.layers.LSTM(**recurrent_options(layer, dtype))


def gru(layer, dtype, native):
    """r, z = sigmoid(x W + b[0] + h U + b[1]); n = tanh(x W_n + b[0]_n + r*(h U_n + b[1]_n)); h' = (1-z)*n + z*h

    keras.layers.GRU with reset_after=True (the reset gate after U: PyTorch's form);
    Keras orders the gates [z, r, h], layout.py swaps them.
    """
    return keras.layers.GRU(reset_after=True, **recurrent_options(layer, dtype))


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
    """y = concat_heads(softmax(q k^T / sqrt(key_dim)) v) Wo + bo, q = x Wq + bq (k, v alike): x, y (B, T, D)

    keras.layers.MultiHeadAttention on (x, x) (SelfAttention above); aligned mode computes
    the scores in the model's dtype (Attention above).
    """
    native_scale = native_on(native, "keras.attention_float32_scale")
    return SelfAttention(layer, dtype) if native_scale else Attention(layer, dtype)


# ---- a user's layer --------------------------------------------------------------------------

class Plugin(keras.layers.Layer):
    """A user's layer: one add_weight per local name (so its variable paths are the local
    names), and the user's `tensorflow(p, x)` as the call, on canonical (NHWC) tensors."""

    def __init__(self, layer, dtype):
        super().__init__(dtype=dtype)
        self.user_call = plugin_method(layer, "tensorflow", "tensorflow")
        self.entry = {k: layer[k] for k in ("type", "params", "out_shape")}  # what call() needs

    def build(self, x_shape):
        # the values come from layout.py's to_native
        self.p = {name: self.add_weight(name=name, shape=tuple(shape), initializer="zeros")
                  for name, shape in self.entry["params"].items()}

    def call(self, x):
        y = self.user_call({name: v.value for name, v in self.p.items()}, x)  # tf.Variables
        return check_output(self.entry, self.user_call, y, (x.shape[0], *self.entry["out_shape"]),
                            self.dtype, facts)


def plugin(layer, dtype, native):
    """y = the plugin's own forward(p, x), p by local name: x (B, *in_shape), y (B, *out_shape)

    TensorFlow: the user's tensorflow(p, x), p name -> tf.Variable, inside a Keras layer
    (Plugin above); the tape differentiates it.
    """
    return Plugin(layer, dtype)


def facts(y):
    """(shape, dtype name) of a tensor; (None, its type's name) for anything else."""
    if tf.is_tensor(y):
        return tuple(y.shape), y.dtype.name
    return None, type(y).__name__


# ---- the catalog -----------------------------------------------------------------------------

LAYERS = {builder.__name__: builder for builder in (  # spec type -> builder of the same name
    sigmoid, tanh, relu, leaky_relu, gelu, identity, dropout, flatten, dense, conv2d, maxpool2d,
    avgpool2d, batchnorm, layernorm, residual, sequence_mean, embedding, rnn, lstm, gru,
    attention)}


def build_layer(layer, dtype, native):
    """The Keras layer for one spec entry; a plugin's entry carries "plugin"."""
    builder = plugin if "plugin" in layer else LAYERS[layer["type"]]
    return builder(layer, dtype, native)
