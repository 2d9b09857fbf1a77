"""Jobs: everything one framework needs for one model, built on the harness side.

A job is a plain dict of NumPy arrays and JSON-able values, so it crosses a pipe or
a Ray cluster unchanged. `Inputs` draws every array of one (spec, dtype, seed) once:
params, data, batch order, dropout masks and the finite-difference probes; every
framework's job is cut from the same Inputs. worker.py runs a job inside a worker.
"""
import hashlib
import json

from ..errors import InputError
from ..spec import probes
from ..spec.data import batch_order, dropout_masks, load_data, targets
from ..spec.initializers import init_params, init_state


class Inputs:
    """The arrays of one (spec, dtype, seed): drawn once, shared by every framework."""

    def __init__(self, spec, steps=None):
        self.spec = spec
        data = load_data(spec.data, spec.input_shape, spec.seed, spec.file)
        n = len(data.x)
        self.batch_size = spec.data["batch_size"] or n
        if self.batch_size > n:
            raise InputError(spec.file, "data.batch_size",
                             f"is {self.batch_size} but the data set has only {n} examples")
        self.x = data.x if spec.data["input"] == "tokens" else data.x.astype(spec.dtype)
        self.y = targets(data.labels, spec.loss["type"], spec.out_shape, spec.dtype)
        self.params, self.state = init_params(spec), init_state(spec)
        self.steps = steps or spec.train["steps"]
        self.batches = batch_order(n, self.batch_size, self.steps, spec.seed,
                                   spec.data["shuffle"])
        self.masks = dropout_masks(spec.dropout_layers(), self.batch_size, self.steps,
                                   spec.seed, spec.dtype)
        # finite differences mean nothing in float32: no probes there
        self.probes = probes.probes({k: v.shape for k, v in self.params.items()}, spec.seed) \
            if spec.dtype == "float64" else []

    def first_batch(self):
        idx = self.batches[0]
        return self.x[idx], self.y[idx], {k: m[0] for k, m in self.masks.items()}


def job_key(kind, spec, framework, version, native, steps=None):
    """What a cached result is keyed by: spec hash, framework and version, dtype, seed, mode."""
    body = {"kind": kind, "spec": spec.hash, "framework": framework, "version": version,
            "dtype": spec.dtype, "seed": spec.seed, "native": native, "steps": steps}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def check_job(spec, inputs, framework, native=False):
    x, y, masks = inputs.first_batch()
    return {"kind": "check", "framework": framework, "model": spec.name, "dtype": spec.dtype,
            "native": native, "spec": spec.for_impls(), "params": inputs.params,
            "state": inputs.state, "x": x, "y": y, "masks": masks, "probes": inputs.probes,
            "steps": probes.steps() if inputs.probes else None}


def train_job(spec, inputs, framework, native=False):
    return {"kind": "train", "framework": framework, "model": spec.name, "dtype": spec.dtype,
            "native": native, "spec": spec.for_impls(), "params": inputs.params,
            "state": inputs.state, "x": inputs.x, "y": inputs.y, "batches": inputs.batches,
            "masks": inputs.masks}
