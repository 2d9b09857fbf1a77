"""Initial parameters, drawn once in NumPy from the seed, in the canonical layout.

Each parameter tensor gets its own random stream, keyed by the seed and its
canonical name, so adding a layer never changes the weights of the others.
Normal initializers are plain (not truncated) normals, as in torch.nn.init;
Keras' glorot_normal/he_normal/lecun_normal truncate, so the spec names the
distribution and every framework receives the same numbers anyway.
"""
import math
import zlib

import numpy as np

from ..errors import InputError
from .precision import rounded_in_range
from .table import Table

# name -> (keys with defaults, draw(rng, shape, fan_in, fan_out, **keys) -> float64 array)
INITIALIZERS = {
    "zeros": ({}, lambda rng, shape, fi, fo: np.zeros(shape)),
    "ones": ({}, lambda rng, shape, fi, fo: np.ones(shape)),
    "constant": ({"value": None}, lambda rng, shape, fi, fo, value: np.full(shape, value)),
    "normal": ({"mean": 0.0, "std": 1.0},
               lambda rng, shape, fi, fo, mean, std: rng.normal(mean, std, shape)),
    "uniform": ({"low": -0.05, "high": 0.05},
                lambda rng, shape, fi, fo, low, high: rng.uniform(low, high, shape)),
    "glorot_uniform": ({}, lambda rng, shape, fi, fo: _uniform(rng, shape, np.sqrt(6 / (fi + fo)))),
    "glorot_normal": ({}, lambda rng, shape, fi, fo: rng.normal(0, np.sqrt(2 / (fi + fo)), shape)),
    "he_uniform": ({}, lambda rng, shape, fi, fo: _uniform(rng, shape, np.sqrt(6 / fi))),
    "he_normal": ({}, lambda rng, shape, fi, fo: rng.normal(0, np.sqrt(2 / fi), shape)),
    "lecun_normal": ({}, lambda rng, shape, fi, fo: rng.normal(0, np.sqrt(1 / fi), shape)),
    # PyTorch nn.Linear / nn.Conv2d: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)),
    # and the bias uses the fan_in of its layer's weight.
    "torch_default": ({}, lambda rng, shape, fi, fo: _uniform(rng, shape, 1 / np.sqrt(fi))),
    "small_normal": ({}, lambda rng, shape, fi, fo: rng.standard_normal(shape) * 0.01),
    "orthogonal": ({"gain": 1.0}, lambda rng, shape, fi, fo, gain: gain * _orthogonal(rng, shape)),
}


def _uniform(rng, shape, limit):
    return rng.uniform(-limit, limit, shape)


def _orthogonal(rng, shape):
    """Orthonormal rows or columns (whichever are fewer) of the parameter seen as a matrix
    (every axis but the last, the last), as Keras builds it. A conv2d kernel (kh, kw, C_in,
    C_out) is then (kh*kw*C_in, C_out); torch's orthogonal_ flattens its (C_out, C_in, kh, kw)
    weight to (C_out, C_in*kh*kw), the transpose of that matrix with the kh*kw*C_in entries
    in another order, which keeps them orthonormal: the kernel is orthogonal for both."""
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # makes the decomposition unique
    return (q if rows >= cols else q.T).reshape(shape)


def parse_initializer(table: Table, key, default, shape=None):
    """`init = "he_normal"` or `init = { type = "normal", std = 0.1 }` -> (type, {keys}).
    `shape`: the smallest parameter it initializes, where one may have fewer than two axes."""
    value = table.raw(key, default)
    if isinstance(value, str):
        sub = Table(table.file, table.field(key), {"type": value})
    elif isinstance(value, dict):
        sub = Table(table.file, table.field(key), value)
    else:
        raise table.error(key, "must be an initializer name or a table with a 'type'")
    kind = sub.str("type", required=True, choices=list(INITIALIZERS))
    defaults, _ = INITIALIZERS[kind]
    keys = {}
    for name, fallback in defaults.items():
        keys[name] = sub.float(name, default=fallback, required=fallback is None,
                               min=0.0 if name in ("std", "gain") else None)
    if kind == "uniform" and keys["low"] >= keys["high"]:
        raise sub.error("high", f"must be greater than low ({keys['low']})")
    if kind == "uniform" and not math.isfinite(keys["high"] - keys["low"]):
        raise sub.error("high", f"minus low ({keys['low']}) must be a finite number: NumPy "
                                f"draws low + (high - low) u")
    if kind == "orthogonal" and shape is not None and len(shape) < 2:
        raise sub.error("type", f"orthogonal needs a parameter of two or more axes (as Keras' "
                                f"and torch's do); this one has shape {tuple(shape)}")
    sub.finish()
    return {"type": kind, **keys}


def draw(init, shape, fan_in, fan_out, seed, name):
    """One tensor, float64, from the stream of (seed, name)."""
    rng = np.random.default_rng([seed, 0, zlib.crc32(name.encode())])
    _, fn = INITIALIZERS[init["type"]]
    keys = {k: v for k, v in init.items() if k != "type"}
    return np.asarray(fn(rng, tuple(shape), fan_in, fan_out, **keys), dtype=np.float64)


def init_params(model):
    """Canonical name -> initial array, in the model's dtype (rounded once from float64). A
    draw beyond the dtype's range is bad input, named by its layer's field."""
    def error(name, kind):
        layer = ".".join(f"layers[{i}]" for i in name.split(".")[:-1])  # names are positions
        return lambda why: InputError(model.file, layer, f"the initial {name} ({kind}) {why}")
    return {name: rounded_in_range(draw(p["init"], p["shape"], p["fan_in"], p["fan_out"],
                                        model.seed, name), model.dtype,
                                   error(name, p["init"]["type"]))
            for name, p in model.param_specs().items()}


def init_state(model):
    """Non-trainable state (BatchNorm running statistics): name -> initial array."""
    return {name: np.full(s["shape"], s["value"], dtype=model.dtype)
            for name, s in model.state_specs().items()}
