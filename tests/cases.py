"""Small specs covering every layer type, loss and optimizer, with odd sizes on purpose."""
import copy
import struct

import numpy as np

# one spec per layer type (and activation), each ending in a classifier: they live in the
# package, where `crossgrad explain` measures each layer with them
from crossgrad.harness.spec.examples import LAYERS, dense, spec  # noqa: F401  (re-exported)

REGRESSION = {"source": "random_regression", "outputs": 2, "examples": 12, "batch_size": 5}
BINARY = {"source": "random_classification", "classes": 2, "examples": 12}
LOSSES = {
    "mse": spec("mse", [dense(2)], [3], REGRESSION, "mse"),
    "half_squared_error": spec("half_squared_error", [dense(2)], [3], REGRESSION, "half_squared_error"),
    "binary_cross_entropy": spec("binary_cross_entropy", [dense(1), {"type": "sigmoid"}], [3], BINARY,
                                 "binary_cross_entropy"),
    "binary_cross_entropy_with_logits": spec(
        "binary_cross_entropy_with_logits", [dense(3)], [4],
        {"source": "random_classification", "classes": 3, "examples": 12}, "binary_cross_entropy_with_logits"),
    "softmax_cross_entropy": spec("softmax_cross_entropy", [dense(4)], [3],
                                  {"source": "random_classification", "classes": 4, "examples": 12}),
}


def with_reduction(case, reduction):
    case = copy.deepcopy(case)
    case["loss"]["reduction"] = reduction
    case["name"] += f"_{reduction}"
    return case


OPTIMIZERS = {
    "sgd": {"type": "sgd", "lr": 0.1, "weight_decay": 0.01},
    "momentum": {"type": "momentum", "lr": 0.05},
    "nesterov": {"type": "nesterov", "lr": 0.05, "momentum": 0.8},
    "adam": {"type": "adam", "lr": 0.01, "weight_decay": 0.05, "eps": 1e-6},
    "adamw": {"type": "adamw", "lr": 0.01},
    "rmsprop": {"type": "rmsprop", "lr": 0.01, "rho": 0.9},
    "adagrad": {"type": "adagrad", "lr": 0.1},
}


def training(opt_name, steps=100):
    """A small MLP trained with every regularizer on: L1, L2 and clipping."""
    return spec(f"train_{opt_name}", [dense(13), {"type": "tanh"}, dense(10)], [64],
                {"source": "digits", "batch_size": 16},
                optimizer=OPTIMIZERS[opt_name],
                train={"steps": steps, "l1": 1e-3, "l2": 1e-3, "clip_norm": 0.5})


def mnist_spec_file(tmp_path, path, batch_size):
    """tmp_path/mnist.toml: a one-dense-layer MNIST spec reading its data from `path`."""
    spec_file = tmp_path / "mnist.toml"
    spec_file.write_text(f"""
name = "mnist_small"
input_shape = [784]
[data]
source = "mnist"
path = "{path}"
batch_size = {batch_size}
[[layers]]
type = "dense"
units = 10
[loss]
type = "softmax_cross_entropy"
""")
    return spec_file


def idx(array, rank, dims=None):
    """An IDX file: magic 00 00 08 <rank>, big-endian sizes (`dims` to lie about them), bytes."""
    dims = array.shape if dims is None else dims
    return struct.pack(">BBBB", 0, 0, 8, rank) + b"".join(struct.pack(">I", n) for n in dims) + \
        array.astype(np.uint8).tobytes()
