"""Data sets, batch order and dropout masks, all drawn in NumPy from the seed.

Nothing is downloaded: `digits` ships inside scikit-learn, `mnist` reads files
the user points at (spec/mnist.py), and the random sources are generated here.
Random streams are keyed by (seed, purpose, ...): 1 data, 2 batch order, 3 dropout.
The data set is drawn once; the batch order and dropout masks step by step, when a
step asks for them (BatchOrder, DropoutMasks), so nothing grows with train.steps.
"""
import functools
import gzip
import importlib.util
import math
import operator
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .mnist import load_mnist, mnist_digest, mnist_sizes
from .precision import rounded

CLASSIFICATION, REGRESSION = "classification", "regression"

# source -> (accepted input shapes or None for any, keys with defaults)
SOURCES = {
    "xor": ([[2]], {}),
    "digits": ([[64], [8, 8, 1]], {"examples": None}),
    "digits28": ([[784], [28, 28, 1]], {"examples": None}),
    "mnist": ([[784], [28, 28, 1]], {"path": "", "examples": None}),
    "random_classification": (None, {"classes": 3, "examples": 256}),
    "random_regression": (None, {"outputs": 1, "examples": 256}),
    "random_sequence": ("sequence", {"classes": 3, "examples": 256}),
    "random_tokens": ("tokens", {"vocab": 16, "classes": 3, "examples": 256}),
}


def parse_data(table, input_shape):
    """The [data] table -> plain dict; checks keys against the source and the input shape."""
    source = table.str("source", required=True, choices=list(SOURCES))
    shapes, keys = SOURCES[source]
    data = {"source": source}
    for key, default in keys.items():
        if key == "path":
            data["path"] = table.str("path", required=True)
        else:
            data[key] = table.int(key, default, min=2 if key == "classes" else 1)
    if shapes == "sequence" and len(input_shape) != 2:
        raise table.error("source", f"random_sequence needs input_shape [time, features], "
                                    f"got {input_shape}")
    elif shapes == "tokens" and len(input_shape) != 1:
        raise table.error("source", f"random_tokens needs input_shape [time], got {input_shape}")
    elif isinstance(shapes, list) and input_shape not in shapes:
        raise table.error("source", f"{source} needs input_shape "
                                    f"{' or '.join(map(str, shapes))}, got {input_shape}")
    if source in ("digits", "digits28") and data["examples"] is not None \
            and data["examples"] > len(_bundled_digits()):
        raise table.error("examples", f"{source} has {len(_bundled_digits())} examples; "
                                      f"{data['examples']} asked")
    data["batch_size"] = table.int("batch_size", None, min=1)
    data["shuffle"] = table.bool("shuffle", True)
    data["input"] = "tokens" if source == "random_tokens" else "float"
    data["task"] = REGRESSION if source == "random_regression" else CLASSIFICATION
    data["classes"] = {"xor": 2, "digits": 10, "digits28": 10, "mnist": 10}.get(
        source, data.get("classes"))
    table.finish()
    return data


def first_batch(data, spec_file):
    """The batch size the layers will see, where it is known as the spec is read: the
    batch_size, else the whole data set (`examples`, or an MNIST file's count from its
    headers), None for a bundled or drawn set without `examples` (hundreds of examples)."""
    if data["batch_size"] or data.get("examples"):
        return data["batch_size"] or data["examples"]
    if data["source"] == "mnist":  # a file of one example is a batch of one
        return mnist_sizes(data["path"], spec_file)[0]
    return None


def data_digest(data, spec_file):
    """What the spec hash takes of the data beyond the [data] table: the sha256 of the data
    a file the spec points at holds (mnist; spec/mnist.mnist_digest), None where the table
    alone determines the data (bundled or drawn from the seed)."""
    if data["source"] == "mnist":
        return mnist_digest(data["path"], spec_file)
    return None


@dataclass
class Dataset:
    x: np.ndarray          # (N, *input_shape), float64, or int64 tokens
    labels: np.ndarray     # (N,) int64 class ids, or (N, outputs) float64 targets


def load_data(data, input_shape, seed, spec_file):
    """The whole data set, float64 (or int64 tokens); cast to the spec's dtype later."""
    source, rng = data["source"], np.random.default_rng([seed, 1])
    if source == "xor":
        x, labels = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), np.array([0, 1, 1, 0])
    elif source in ("digits", "digits28"):
        x, labels = _digits(source == "digits28")
    elif source == "mnist":  # the first `examples` only, converted from the file's bytes
        x, labels = load_mnist(data["path"], spec_file, data.get("examples"))
    else:
        x, labels = _random(data, input_shape, rng)
    if data.get("examples"):
        x, labels = x[:data["examples"]], labels[:data["examples"]]
    x = x.reshape((len(x), *input_shape))
    return Dataset(x if source == "random_tokens" else x.astype(np.float64), labels)


def _digits(resize28):
    """(images, labels): the images read-only (load_data copies them into the Dataset)."""
    return _digit_images(resize28), _bundled_digits()[:, -1].astype(int).astype(np.int64)


@functools.cache  # the 28 x 28 resize is 0.4 s, and a run's specs of both dtypes share it
def _digit_images(resize28):
    table = _bundled_digits()  # (1797, 65): 64 pixels in 0..16, then the label
    x = table[:, :-1].reshape(-1, 8, 8) / 16.0  # (1797, 8, 8) in [0, 1]
    if resize28:
        r = _bilinear_matrix(8, 28)
        x = np.einsum("ij,njk,lk->nil", r, x, r)  # (1797, 28, 28)
    x.flags.writeable = False
    return x


@functools.cache  # parsing the text takes 0.15 s, and a run reads it once per spec that uses it
def _bundled_digits():
    """scikit-learn's digits.csv.gz (no download), read as its load_digits reads it, but
    found without importing scikit-learn: that import is seconds of a short check's start.
    Read-only: every caller shares the one table."""
    found = importlib.util.find_spec("sklearn")
    if found is None:
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")
    path = Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, mode="rt", encoding="utf-8") as text:
        table = np.loadtxt(text, delimiter=",")
    table.flags.writeable = False
    return table


def _bilinear_matrix(n_in, n_out):
    """(n_out, n_in) weights of bilinear resizing with half-pixel centres."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - (pos - lo)
    m[np.arange(n_out), hi] += pos - lo
    return m


def _random(data, input_shape, rng):
    """Random inputs with labels from a random teacher, so that training can make progress."""
    n, source = data["examples"], data["source"]
    if source == "random_tokens":
        x = rng.integers(0, data["vocab"], (n, *input_shape))
        # majority class of the tokens, token t voting for class t % classes
        votes = np.stack([(x % data["classes"] == c).sum(1) for c in range(data["classes"])], 1)
        return x, votes.argmax(1)
    x = rng.standard_normal((n, *input_shape))
    features = x.mean(1) if source == "random_sequence" else x.reshape(n, -1)
    width = data["outputs"] if source == "random_regression" else data["classes"]
    teacher = rng.standard_normal((features.shape[1], width))
    if source == "random_regression":
        return x, features @ teacher / math.sqrt(features.shape[1])
    return x, (features @ teacher).argmax(1)


# ---- targets, batches and masks -------------------------------------------------------------

def targets(labels, loss, out_shape, dtype):
    """Labels in the form the loss takes: class ids for softmax CE, floats otherwise."""
    if loss == "softmax_cross_entropy" or labels.ndim == 2:
        return labels if labels.ndim == 1 else rounded(labels, dtype)
    if out_shape == [1]:
        return labels[:, None].astype(dtype)   # (N, 1): the probability of class 1
    return np.eye(out_shape[0], dtype=dtype)[labels]  # (N, C) one-hot


class BatchOrder:
    """Step k's example indices, (batch_size,), drawn when asked for.

    The order is epochs of a seeded permutation, each epoch's remainder dropped: step k
    is batch k % per_epoch of epoch k // per_epoch. Only the current epoch's permutation
    is held (walking forward replays the stream; going back restarts it), so memory does
    not grow with steps, and the object pickles as its sizes and seed. The numbers are
    those of drawing every epoch up front from the same stream."""

    def __init__(self, n, batch_size, steps, seed, shuffle=True):
        self.n, self.batch_size, self.steps = n, batch_size, steps
        self.seed, self.shuffle = seed, shuffle
        self.per_epoch = n // batch_size
        self._forget()

    def _forget(self):
        self._rng, self._epoch, self._order = None, -1, None
        self._lock = threading.Lock()  # one walk of the stream at a time (phases share it)

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("n", "batch_size", "steps", "seed", "shuffle")}

    def __setstate__(self, state):
        self.__init__(**state)

    def __len__(self):
        return self.steps

    @property
    def shape(self):
        return (self.steps, self.batch_size)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return _stack([self[i] for i in range(*k.indices(self.steps))], (self.batch_size,),
                          np.int64)
        epoch, j = divmod(_step(k, self.steps), self.per_epoch)
        start = j * self.batch_size
        with self._lock:
            return self._epoch_order(epoch)[start:start + self.batch_size].copy()

    def __iter__(self):
        return (self[k] for k in range(self.steps))

    def __array__(self, dtype=None, copy=None):
        """(steps, batch_size): the whole order, for --save."""
        return self[:].astype(dtype or np.int64, copy=False)

    def _epoch_order(self, epoch):
        if not self.shuffle:
            return np.arange(self.n)
        if self._rng is None or epoch < self._epoch:
            self._rng, self._epoch = np.random.default_rng([self.seed, 2]), -1
        while self._epoch < epoch:  # one permutation per epoch, in stream order
            self._order, self._epoch = self._rng.permutation(self.n), self._epoch + 1
        return self._order


class DropoutMasks:
    """Step k's keep-mask of one dropout layer, (batch_size, *shape) of 0/1, drawn when asked.

    Step k's uniforms are draws k*size .. (k+1)*size - 1 of the layer's PCG64 stream
    (one draw per float64): the stream is advanced there and read, so any step costs one
    mask and the numbers are those of drawing (steps, batch_size, *shape) at once."""

    def __init__(self, name, rate, batch_size, shape, steps, seed, dtype):
        self.name, self.rate, self.batch_size = name, rate, batch_size
        self.example_shape = list(shape)
        self.steps, self.seed, self.dtype = steps, seed, dtype
        self.size = batch_size * math.prod(shape)
        self._rng, self._next = None, None
        self._lock = threading.Lock()  # one walk of the stream at a time (phases share it)

    def __getstate__(self):
        return {"name": self.name, "rate": self.rate, "batch_size": self.batch_size,
                "shape": self.example_shape, "steps": self.steps, "seed": self.seed,
                "dtype": self.dtype}

    def __setstate__(self, state):
        self.__init__(**state)

    def __len__(self):
        return self.steps

    @property
    def shape(self):
        return (self.steps, self.batch_size, *self.example_shape)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return _stack([self[i] for i in range(*k.indices(self.steps))],
                          self.shape[1:], self.dtype)
        k = _step(k, self.steps)
        with self._lock:
            if k != self._next:  # not the step after the last one: jump there in the stream
                self._rng = np.random.default_rng([self.seed, 3, zlib.crc32(self.name.encode())])
                self._rng.bit_generator.advance(k * self.size)
            self._next = k + 1
            u = self._rng.random((self.batch_size, *self.example_shape))
        return (u >= self.rate).astype(self.dtype)

    def __iter__(self):
        return (self[k] for k in range(self.steps))

    def __array__(self, dtype=None, copy=None):
        """(steps, batch_size, *shape): every step's mask, for --save."""
        return self[:].astype(dtype or self.dtype, copy=False)


def _step(k, steps):
    k = operator.index(k)
    if k < 0:
        k += steps
    if not 0 <= k < steps:
        raise IndexError(f"step {k} of {steps}")
    return k


def _stack(rows, shape, dtype):
    return np.stack(rows) if rows else np.zeros((0, *shape), dtype)


def batch_order(n, batch_size, steps, seed, shuffle=True):
    """(steps, batch_size) example indices, drawn step by step: see BatchOrder."""
    return BatchOrder(n, batch_size, steps, seed, shuffle)


def dropout_masks(dropout_layers, batch_size, steps, seed, dtype):
    """name -> (steps, batch_size, *shape) keep-masks of 0/1, drawn step by step: the same
    dice for every framework (see DropoutMasks)."""
    return {layer["name"]: DropoutMasks(layer["name"], layer["rate"], batch_size,
                                        layer["in_shape"], steps, seed, dtype)
            for layer in dropout_layers}
