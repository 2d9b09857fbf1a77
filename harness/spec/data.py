"""Data sets, batch order and dropout masks, all drawn once in NumPy from the seed.

Nothing is downloaded: `digits` ships inside scikit-learn, `mnist` reads files
the user points at, and the random sources are generated here.
Random streams are keyed by (seed, purpose, ...): 1 data, 2 batch order, 3 dropout.
"""
import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

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
    data["batch_size"] = table.int("batch_size", None, min=1)
    data["shuffle"] = table.bool("shuffle", True)
    data["input"] = "tokens" if source == "random_tokens" else "float"
    data["task"] = REGRESSION if source == "random_regression" else CLASSIFICATION
    data["classes"] = {"xor": 2, "digits": 10, "digits28": 10, "mnist": 10}.get(
        source, data.get("classes"))
    table.finish()
    return data


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
    elif source == "mnist":
        x, labels = load_mnist(data["path"], spec_file)
    else:
        x, labels = _random(data, input_shape, rng)
    if data.get("examples"):
        x, labels = x[:data["examples"]], labels[:data["examples"]]
    x = x.reshape((len(x), *input_shape))
    return Dataset(x if source == "random_tokens" else x.astype(np.float64), labels)


def _digits(resize28):
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    digits = load_digits()
    x = digits.images / 16.0  # (1797, 8, 8) in [0, 1]
    if resize28:
        r = _bilinear_matrix(8, 28)
        x = np.einsum("ij,njk,lk->nil", r, x, r)  # (1797, 28, 28)
    return x, digits.target.astype(np.int64)


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


# ---- MNIST files: IDX (optionally gzipped) or .npz --------------------------------------

IDX_NAMES = {"images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
             "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")}


def load_mnist(path, spec_file):
    """`path` is an .npz (x/y or x_train/y_train) or a folder with the IDX training files."""
    p = Path(path)
    if not p.is_absolute() and spec_file and Path(spec_file).exists():
        p = Path(spec_file).parent / p
    if not p.exists():
        raise InputError(spec_file, "data.path", f"no such file or folder: {p}")
    if p.is_dir():
        images, labels = (_find_idx(p, kind, spec_file) for kind in ("images", "labels"))
        x, y = read_idx(images, 3), read_idx(labels, 1)
        source = images
    else:
        x, y = _read_npz(p)
        source = p
    if x.shape[1:] != (28, 28) or len(x) != len(y):
        raise InputError(source, None, f"expected N images of 28x28 and N labels, "
                                       f"got images {x.shape} and labels {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise InputError(source, None, f"labels must be digits 0-9, found {y.min()}..{y.max()}")
    return x.astype(np.float64) / 255.0, y.astype(np.int64)


def _find_idx(folder, kind, spec_file):
    for stem in IDX_NAMES[kind]:
        for name in (stem, stem + ".gz"):
            if (folder / name).exists():
                return folder / name
    raise InputError(spec_file, "data.path", f"{folder} has no {IDX_NAMES[kind][0]}[.gz]")


def read_idx(path, rank):
    """An IDX file (LeCun's MNIST format): magic 0x0000 08 <rank>, big-endian sizes, bytes."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise InputError(path, None, f"cannot read: {err}") from None
    if len(raw) < 4 + 4 * rank or raw[:3] != b"\x00\x00\x08" or raw[3] != rank:
        raise InputError(path, "byte 0", f"not an IDX file of rank {rank} "
                                         f"(magic {raw[:4].hex() or 'missing'})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    body = raw[4 + 4 * rank:]
    if len(body) != math.prod(dims):
        raise InputError(path, f"byte {4 + 4 * rank}", f"header says {dims} = "
                         f"{math.prod(dims)} bytes of data, the file has {len(body)}")
    return np.frombuffer(body, np.uint8).reshape(dims)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            for xk, yk in (("x", "y"), ("x_train", "y_train")):
                if xk in z and yk in z:
                    return np.asarray(z[xk]), np.asarray(z[yk])
            keys = ", ".join(z.files) or "none"
    except (OSError, ValueError, EOFError, zlib.error) as err:
        raise InputError(path, None, f"not a readable .npz file: {err}") from None
    raise InputError(path, None, f"needs arrays x and y (or x_train and y_train), has {keys}")


# ---- targets, batches and masks -------------------------------------------------------------

def targets(labels, loss, out_shape, dtype):
    """Labels in the form the loss takes: class ids for softmax CE, floats otherwise."""
    if loss == "softmax_cross_entropy" or labels.ndim == 2:
        return labels if labels.ndim == 1 else labels.astype(dtype)
    if out_shape == [1]:
        return labels[:, None].astype(dtype)   # (N, 1): the probability of class 1
    return np.eye(out_shape[0], dtype=dtype)[labels]  # (N, C) one-hot


def batch_order(n, batch_size, steps, seed, shuffle=True):
    """(steps, batch_size) example indices: epochs of a seeded permutation, remainder dropped."""
    rng = np.random.default_rng([seed, 2])
    per_epoch = n // batch_size
    epochs = math.ceil(steps / per_epoch)
    order = [rng.permutation(n) if shuffle else np.arange(n) for _ in range(epochs)]
    order = np.stack([o[:per_epoch * batch_size] for o in order])
    return order.reshape(-1, batch_size)[:steps]


def dropout_masks(dropout_layers, batch_size, steps, seed, dtype):
    """name -> (steps, batch_size, *shape) keep-masks of 0/1: the same dice for every framework."""
    masks = {}
    for layer in dropout_layers:
        rng = np.random.default_rng([seed, 3, zlib.crc32(layer["name"].encode())])
        u = rng.random((steps, batch_size, *layer["in_shape"]))
        masks[layer["name"]] = (u >= layer["rate"]).astype(dtype)
    return masks
