"""The control of lockstep steps that part, the worker side: NumPy one format wider.

A lockstep step compares a framework's forward and backward pass with the reference's
(NumPy's) from the same start. On an ill-conditioned network both lose digits there, and
the step parts beyond the pairwise tolerance with neither computing anything else, as a
check's pair does (compare/control.py). For each asked step this job walks the reference's
own lockstep trajectory to the step's start, then takes the step's forward and backward
pass (running statistics, the objective, its gradients) three ways from that start:

- the control: NumPy in the next wider format (float64 for float32, long double for
  float64), from the start widened (exact);
- the reference's step itself, as the framework's lockstep compared with it;
- PERTURBATIONS more passes in the checked format, every value leaving a layer also moved
  by one unit roundoff (the NumPy model's "jitter", as the check's control draws it).

It returns, per step and entry, the reference's distance from the control and rounding's
level there (the farthest of the reference and the draws from the control), both absolute,
the control's largest entry, and how far the draws land from the reference's own step
(`spread`: what rounding alone moves it by). compare/lockstep_control.py judges the frameworks with them.
"""
import math

import numpy as np

from .lockstep import KEYS, Feed
from .reference import each_in_format, in_format, model_in_format

JUDGED = ("state", "loss", "grad")  # the pass's half of a step; the update is not controlled


def measure(impl, job):
    """{"entries": [[kind, name], ...], "steps": [k, ...], "ref_err", "level", "scale":
    (steps, entries) lists of floats}, for the asked steps the walk reaches."""
    wanted, dtype = sorted(set(job["steps"])), job["spec"]["dtype"]
    model = impl.model.build_model(job["spec"], native=False)
    feed = Feed((job["params"], job["state"], None))
    walk = impl.train.lockstep(model, job["x"], job["y"], job["batches"], job["masks"], feed)
    rows, entries = {}, []
    for k, record in zip(range(wanted[-1] + 1 if wanted else 0), walk):
        if k in wanted:
            entries = entries or _entries(record)
            rows[k] = _row(impl, job, feed.start, k, record, entries, dtype)
        feed.start = (record["params"], record["state"], record["optimizer"])
    return {"entries": entries, "steps": list(rows), **{
        part: [row[part] for row in rows.values()] for part in PARTS}}


PARTS = ("ref_err", "level", "scale", "spread")  # the figures of each step and entry


def _entries(record):
    """The pass's entries of a record, named as run/lockstep.py names them."""
    return [[kind, name] for kind in JUDGED
            for name in (("loss",) if KEYS[kind] is None else record[KEYS[kind]])]


def _row(impl, job, start, k, record, entries, dtype):
    """One step's figures, each entry's: {"ref_err", "level", "scale"}: lists."""
    wide = _pass(impl, job, start, k, job["wider"])
    draws = [_pass(impl, job, start, k, dtype, jitter={"unit": job["perturb"]["unit"],
                                                      "seed": [job["perturb"]["seed"], k, i]})
             for i in range(job["perturb"]["count"])]
    out = {"ref_err": [], "level": [], "scale": [], "spread": []}
    for kind, name in entries:
        exact, own = _value(wide, kind, name), _value(record, kind, name)
        ref_err = _farthest(exact, [own])
        drawn = [_value(d, kind, name) for d in draws]
        out["ref_err"].append(ref_err)
        out["level"].append(max(ref_err, _farthest(exact, drawn)))
        out["scale"].append(float(np.max(np.abs(exact))) if exact.size else 0.0)
        out["spread"].append(_farthest(own.astype(exact.dtype), drawn))  # rounding's own reach
    return out


def _pass(impl, job, start, k, dtype, jitter=None):
    """The forward and backward pass of step k from `start`, NumPy in `dtype` (the start's
    arrays widened to it where wider: exact): {"loss", "grads", "state"}."""
    params, state, _ = start
    model = model_in_format(impl, job["spec"], params, state, dtype, jitter)
    idx = job["batches"][k]
    loss, grads, _, _ = impl.train.gradients(
        model, in_format(job["x"][idx], dtype), in_format(job["y"][idx], dtype),
        each_in_format(impl.train.step_masks(job["masks"], k), dtype))
    return {"loss": loss, "grads": grads, "state": impl.model.get_params(model)[1]}


def _value(record, kind, name):
    value = record["loss"] if KEYS[kind] is None else record[KEYS[kind]][name]
    return np.asarray(value)


def _farthest(exact, values):
    """The largest |value - exact| over `values`' entries, computed in exact's format (the
    wider one), as a float; inf where one is not finite (a value or the control)."""
    worst = 0.0
    with np.errstate(all="ignore"):
        for value in values:
            diff = np.abs(value.astype(exact.dtype) - exact)
            largest = float(np.max(diff)) if diff.size else 0.0
            if not math.isfinite(largest):
                return math.inf
            worst = max(worst, largest)
    return worst
