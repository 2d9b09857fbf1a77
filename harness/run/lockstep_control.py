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
(`spread`: what rounding alone moves it by); and the pass one format wider again with
the ReLU inputs that lie within rounding's reach of 0 taken to their other side
(`flips`), where a framework's rounding may have put them. compare/lockstep_control.py
judges the frameworks with them.
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


PARTS = ("ref_err", "level", "scale", "spread", "flips")  # each step's figures (_row)


def _entries(record):
    """The pass's entries of a record, named as run/lockstep.py names them."""
    return [[kind, name] for kind in JUDGED
            for name in (("loss",) if KEYS[kind] is None else record[KEYS[kind]])]


def _row(impl, job, start, k, record, entries, dtype):
    """One step's figures, each entry's: {"ref_err", "level", "scale", "spread"}: lists; and
    "flips", the pass one format wider with ReLU inputs taken to their other side (_flips)."""
    wide = _pass(impl, job, start, k, job["wider"])
    jitters = [{"unit": job["perturb"]["unit"], "seed": [job["perturb"]["seed"], k, i]}
               for i in range(job["perturb"]["count"])]
    draws = [_pass(impl, job, start, k, dtype, jitter=jitter) for jitter in jitters]
    out = {"ref_err": [], "level": [], "scale": [], "spread": []}
    for kind, name in entries:
        exact, own = _value(wide, kind, name), _value(record, kind, name)
        ref_err = _farthest(exact, [own])
        drawn = [_value(d, kind, name) for d in draws]
        out["ref_err"].append(ref_err)
        out["level"].append(max(ref_err, _farthest(exact, drawn)))
        out["scale"].append(float(np.max(np.abs(exact))) if exact.size else 0.0)
        out["spread"].append(_farthest(own.astype(exact.dtype), drawn))  # rounding's own reach
    out["flips"] = _flips(impl, job, start, k, dtype, jitters) if job.get("kinks") and \
        _kinked(job["spec"]["layers"]) else []
    return out


KINKS = ("relu", "leaky_relu")  # layers whose gradient jumps where their input crosses 0
MOST_FLIPS = 4  # ReLU inputs taken to their other side, the nearest to 0: one at a time, and all


def _flips(impl, job, start, k, dtype, jitters):
    """[{"at": {layer: [flat index]}, "from_zero": [|input| one format wider], "loss",
    "grads", "state"}]: the step's pass one format wider with ReLU inputs on their other side.
    An input is a candidate where it lies within job["kinks"] (SPREAD) times rounding's
    reach of 0, the reach being how far the checked format's pass (as NumPy rounds it, and
    its draws) moves that layer's inputs at most: a framework's rounding may have put it on
    either side. The MOST_FLIPS nearest, each alone and all together."""
    wide = _inputs(impl, job, start, k, job["wider"])
    rounded = [_inputs(impl, job, start, k, dtype, j) for j in [None, *jitters]]
    near = []
    for name, z in wide.items():
        reach = max(float(np.max(np.abs(r[name].astype(z.dtype) - z))) for r in rounded)
        flat = np.abs(z.reshape(-1))
        for i in np.flatnonzero((flat > 0) & (flat <= job["kinks"] * reach)):
            near.append((float(flat[i]) / reach, name, int(i), float(flat[i])))
    near = sorted(near)[:MOST_FLIPS]
    sets = [[n] for n in near] + ([near] if len(near) > 1 else [])
    out = []
    for chosen in sets:
        at = {}
        for _, name, i, _ in chosen:
            at.setdefault(name, []).append(i)
        flipped = _pass(impl, dict(job, spec=dict(job["spec"], flip=at)), start, k, job["wider"])
        out.append({"at": at, "from_zero": [d for _, _, _, d in chosen], **flipped})
    return out


def _kinked(layers):
    """[(the name of each top-level ReLU but the first layer, that of the layer feeding it)]:
    data has no rounding to cross 0 by."""
    return [(layer["name"], layers[i - 1]["name"]) for i, layer in enumerate(layers)
            if i > 0 and layer["type"] in KINKS]


def _inputs(impl, job, start, k, dtype, jitter=None):
    """{name: its input} of each ReLU of _kinked in step k's forward pass from `start`,
    NumPy in `dtype`."""
    params, state, _ = start
    model = model_in_format(impl, job["spec"], params, state, dtype, jitter)
    idx = job["batches"][k]
    outputs, _ = impl.model.layer_values(
        model, in_format(job["x"][idx], dtype), in_format(job["y"][idx], dtype),
        each_in_format(impl.train.step_masks(job["masks"], k), dtype))
    return {name: np.asarray(outputs[feeding]) for name, feeding in _kinked(job["spec"]["layers"])}


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
