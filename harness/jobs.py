"""Jobs: everything one framework needs for one model, and what it sends back.

A job is a plain dict of NumPy arrays and JSON-able values, so it crosses a
pipe or a Ray cluster unchanged. The harness builds it (params, data, batches,
masks, probe directions, all drawn from the seed) and `execute` runs it inside a
worker against one implementation.
"""
import hashlib
import json
import time

import numpy as np

from . import finite_diff
from .data import batch_order, dropout_masks, load_data, targets
from .init import init_params, init_state


class Inputs:
    """The arrays of one (spec, dtype, seed): drawn once, shared by every framework."""

    def __init__(self, spec, steps=None):
        self.spec = spec
        data = load_data(spec.data, spec.input_shape, spec.seed, spec.file)
        n = len(data.x)
        self.batch_size = spec.data["batch_size"] or n
        if self.batch_size > n:
            from .errors import InputError
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
    job = {"kind": "check", "framework": framework, "model": spec.name, "dtype": spec.dtype,
           "native": native, "spec": spec.for_impls(), "params": inputs.params,
           "state": inputs.state, "x": x, "y": y, "masks": masks, "probes": [], "steps": None}
    if spec.dtype == "float64":  # finite differences mean nothing in float32
        job["probes"] = finite_diff.probes({k: v.shape for k, v in inputs.params.items()},
                                           spec.seed)
        job["steps"] = finite_diff.steps()
    return job


def train_job(spec, inputs, framework, native=False):
    return {"kind": "train", "framework": framework, "model": spec.name, "dtype": spec.dtype,
            "native": native, "spec": spec.for_impls(), "params": inputs.params,
            "state": inputs.state, "x": inputs.x, "y": inputs.y, "batches": inputs.batches,
            "masks": inputs.masks}


# ---- inside the worker ------------------------------------------------------------------------

def execute(impl, job):
    """Run one job against one implementation; every array returned is canonical NumPy."""
    start = time.perf_counter()
    model = impl.model.build_model(job["spec"], native=job["native"])
    impl.model.set_params(model, job["params"], job["state"])
    if job["kind"] == "check":
        result = _check(impl, model, job)
    else:
        curves = impl.train.train(model, job["x"], job["y"], job["batches"], job["masks"])
        params, state = impl.model.get_params(model)
        result = {"curves": curves, "params": _numpy(params), "state": _numpy(state)}
    result["seconds"] = time.perf_counter() - start
    return result


def _check(impl, model, job):
    x, y, masks = job["x"], job["y"], job["masks"]
    loss, grads, state = impl.model.loss_and_gradients(model, x, y, masks)
    fd_values = []
    for name, direction in job["probes"]:
        row = []
        for t in job["steps"]:
            moved = dict(job["params"], **{name: job["params"][name] + t * direction})
            impl.model.set_params(model, moved, job["state"])
            row.append(impl.model.loss_value(model, x, y, masks))
        fd_values.append(row)
    return {"loss": float(loss), "grads": _numpy(grads), "state": _numpy(state),
            "fd_values": np.asarray(fd_values)}


def _numpy(arrays):
    return {k: np.asarray(v) for k, v in arrays.items()}
