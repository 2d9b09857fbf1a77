"""Plain TensorFlow loops of the zoo's networks: what a Keras user writes first.

Keras layers, a `tf.function` step (GradientTape, the norms, clipping,
`optimizer.apply_gradients`), and a loop that keeps every recorded number as a tensor and
reads them once at the end. The same math as the spec (softmax cross-entropy on class ids,
mean; L1/L2 on the kernels when the spec asks; clipping by the global norm; the spec's
optimizer) with Keras' own initial weights: the baseline `crossgrad bench --step-time`
times each implementation against, not a reference for its numbers.
"""
import numpy as np
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers as L


def mlp(*sizes):
    """dense-tanh-...-dense: the LeCun MLPs."""
    return [L.Dense(n, activation="tanh") for n in sizes[1:-1]] + [L.Dense(sizes[-1])]


def digits_cnn():
    """(conv 3x3 same, ReLU, 2x2 max-pool) twice, then dense: 8x8x1 images, NHWC."""
    return [L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPool2D(2),
            L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPool2D(2),
            L.Flatten(), L.Dense(10)]


def seq_lstm():
    """An LSTM over (B, T, F), then a dense layer on its last hidden state."""
    return [L.LSTM(16), L.Dense(3)]


class TinyTransformer(keras.Model):
    """Embedding, x + attention(LN(x)) (causal, 2 heads of 8), x + MLP(LN(x)) (GELU), LN,
    mean over time, dense: the zoo's tiny_transformer."""

    def __init__(self, vocab=16, dim=16, heads=2, key_dim=8, hidden=32, classes=3):
        super().__init__()
        self.embed = L.Embedding(vocab, dim)
        self.norm1 = L.LayerNormalization(epsilon=1e-5)
        self.attn = L.MultiHeadAttention(heads, key_dim)
        self.norm2 = L.LayerNormalization(epsilon=1e-5)
        self.up, self.down = L.Dense(hidden, activation="gelu"), L.Dense(dim)
        self.norm3, self.head = L.LayerNormalization(epsilon=1e-5), L.Dense(classes)

    def call(self, tokens):
        h = self.embed(tokens)             # (B, T, D)
        a = self.norm1(h)
        h = h + self.attn(a, a, use_causal_mask=True)
        h = h + self.down(self.up(self.norm2(h)))
        return self.head(tf.reduce_mean(self.norm3(h), 1))

    def groups(self):  # the canonical layers: embedding, two residual blocks, LN, dense
        return [[self.embed], [self.norm1, self.attn], [self.norm2, self.up, self.down],
                [self.norm3], [self.head]]


NETWORKS = {"mnist_mlp": lambda: mlp(784, 300, 100, 10),
            "digits_mlp": lambda: mlp(64, 300, 100, 10),
            "digits_cnn": digits_cnn, "seq_lstm": seq_lstm, "tiny_transformer": TinyTransformer}


def optimizer_for(spec):
    o = spec["optimizer"]
    if o["type"] == "sgd":
        return keras.optimizers.SGD(o["lr"])
    if o["type"] == "adam":
        return keras.optimizers.Adam(o["lr"], o["beta1"], o["beta2"], o["eps"])
    if o["type"] == "adamw":
        return keras.optimizers.AdamW(o["lr"], o["weight_decay"], o["beta1"], o["beta2"], o["eps"])
    raise NotImplementedError(f"no plain loop for optimizer {o['type']}")


def build(name, spec):
    """The network of zoo model `name` in the spec's dtype, its tf.function step and groups."""
    floatx = keras.backend.floatx()
    keras.backend.set_floatx(spec["dtype"])  # the layers take their dtype when made
    try:
        made = NETWORKS[name]()
        net = made if isinstance(made, keras.Model) else keras.Sequential(made)
        net(np.zeros([1, *spec["input_shape"]],
                     "int32" if spec["input"] == "tokens" else spec["dtype"]))  # builds the weights
    finally:
        keras.backend.set_floatx(floatx)
    groups = net.groups() if hasattr(net, "groups") else [[l] for l in net.layers if l.weights]
    groups = [[v for layer in g for v in layer.trainable_variables] for g in groups]
    variables = [v for g in groups for v in g]
    optimizer, cfg = optimizer_for(spec), spec["train"]
    optimizer.build(variables)
    kernels = [v for v in variables if v.name == "kernel"]
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = cross_entropy(y, net(x, training=True))
            if cfg["l1"] or cfg["l2"]:
                loss += tf.add_n([cfg["l1"] * tf.reduce_sum(tf.abs(w)) +
                                  cfg["l2"] * tf.reduce_sum(w * w) for w in kernels])
        grads = tape.gradient(loss, variables)
        grads = [tf.convert_to_tensor(g) for g in grads]  # the embedding's is sparse
        squares, i = [], 0
        for g in groups:
            squares.append(tf.add_n([tf.reduce_sum(d * d) for d in grads[i:i + len(g)]]))
            i += len(g)
        squares = tf.stack(squares)
        if cfg["clip_norm"] is not None:
            scale = tf.minimum(1.0, cfg["clip_norm"] / tf.sqrt(tf.reduce_sum(squares)))
            grads = [g * scale for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
        return loss, squares
    state = variables + list(optimizer.variables)  # the weights, the slots and the step count
    return {"step": step, "state": state, "initial": [v.numpy() for v in state]}


def reset(plain):
    """Back to the initial weights and optimizer variables, as every timed call of the
    implementation starts from the spec's."""
    for v, value in zip(plain["state"], plain["initial"]):
        v.assign(value)


def train(plain, x, y, batches):
    """len(batches) steps; -> the curves, read from the device once."""
    x, y = tf.constant(x), tf.constant(y)
    losses, squares = [], []
    for idx in batches:
        loss, per_layer = plain["step"](tf.gather(x, idx), tf.gather(y, idx))
        losses.append(loss)
        squares.append(per_layer)
    squares = tf.stack(squares).numpy()
    return {"loss": tf.stack(losses).numpy().tolist(),
            "grad_norm": np.sqrt(squares.sum(1)).tolist(),
            "layer_norms": np.sqrt(squares).T.tolist()}


def matmul(n, dtype):
    """One synchronised (n, n) @ (n, n) matmul: the GEMM probe of the machine's peak."""
    a, b = tf.constant(np.random.default_rng(0).standard_normal((2, n, n)).astype(dtype))
    product = tf.function(tf.linalg.matmul)
    return lambda: product(a, b).numpy()
