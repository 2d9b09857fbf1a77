"""Lockstep training, judged (the measurements come from run/lockstep.py, in each worker).

Every step starts both the framework and the reference from the reference's state, so
the differences stay at the rounding of one step whatever the dynamics do: they get the
pairwise tolerances (float64 1e-12, float32 1e-5), relative to each entry's largest
value, but for gradients: each is measured against the largest gradient entry of its
layer. A bias gradient is a sum over the batch of the layer's output gradients, whose
terms cancel as training fits the data, so its own largest entry can fall far below the
size of what was summed, and with it rounding's share: the output bias of a 5-16-3 tanh
network trained 45 steps in float32 sums terms of 0.02 to 1e-3, and NumPy and PyTorch
part by 1.6e-8, 1.6e-5 of its largest entry and 8e-7 of the layer's (its weight
gradient carries the same output gradients). A gradient that is zero by construction
(compare/zeros.py) is rounding noise, so it is measured against the model's largest
gradient entry instead; its parameter and
optimizer slots are not judged: the loss does not depend on them, and a normalising
optimizer (Adam, RMSprop, Adagrad) turns noise of 1e-17 into a step of lr * 1e-17 / eps,
different in every framework (tiny_transformer's attention key bias under AdamW moves
by 3e-12 at the first step). The first step
where an entry leaves tolerance is where a formula differs, and the entries of that step
are named in the order the step computes them (running statistics, loss, gradients,
optimizer state, parameters): the first is the cause, the rest its consequences.
"""
import math

import numpy as np

from ..run.lockstep import layer_of
from .pairwise import PAIRWISE

WORDS = {"state": "running statistic", "loss": "loss", "grad": "gradient",
         "optimizer": "optimizer state", "param": "parameter"}
ORDER = list(WORDS)  # the order a step computes them in


@np.errstate(all="ignore")
def relative_errors(measured, zeros):
    """(steps, entries) relative errors: |a - b| max over the entry / the reference's largest
    |value|; NaN where nothing is judged (a step count the framework does not keep, the
    parameter and slots of a gradient that is zero by construction)."""
    diff, scale = scaled(measured, zeros)
    rel = np.where(scale > 0, diff / scale, np.where(diff == 0, 0.0, math.inf))
    return np.where(np.isnan(diff), np.nan, rel)


def scaled(measured, zeros):
    """(steps, entries) absolute differences, NaN where not judged, and what each is
    relative to (relative_errors)."""
    entries, diff = measured["entries"], np.array(measured["abs_err"], np.float64)
    own = np.array(measured["scale"], np.float64)
    scale = own.copy()
    grads = [j for j, (kind, name) in enumerate(entries) if kind == "grad" and name not in zeros]
    for j, (kind, name) in enumerate(entries):
        if kind == "grad" and name not in zeros:  # against its layer's largest gradient entry
            layer = [i for i in grads if layer_of(entries[i][1]) == layer_of(name)]
            scale[:, j] = own[:, layer].max(axis=1)
        elif name.split("/")[0] not in zeros:
            continue
        elif kind == "grad" and grads:  # noise against noise means nothing
            scale[:, j] = own[:, grads].max(axis=1)
        elif kind in ("param", "optimizer"):
            diff[:, j] = np.nan
    return diff, scale


def judge(measured, dtype, zeros):
    """The framework's lockstep fields for the JSON, and the per-step worst error (or None).

    lockstep_max_rel_err: the worst entry over every step; lockstep_parted_at: the first
    step with an entry beyond tolerance, or None; lockstep_differs: that step's failing
    entries, the worst of each kind, in the order the step computes them."""
    if not measured:
        return {}, None
    if "error" in measured:
        return {"lockstep_error": measured["error"]}, None
    rel = relative_errors(measured, zeros)
    if not rel.size:
        return {"lockstep_error": "no step was compared"}, None
    per_step = np.nanmax(rel, axis=1)
    beyond = beyond_tolerance(rel, dtype)
    failing = np.flatnonzero(beyond.any(axis=1))
    parted = int(failing[0]) if len(failing) else None
    return {"lockstep_seconds": measured.get("seconds"), "lockstep_steps": int(len(rel)),
            "lockstep_max_rel_err": float(np.nanmax(per_step)),
            "lockstep_parted_at": parted,
            "lockstep_differs": [] if parted is None else differs(measured["entries"],
                                                                  rel[parted], beyond[parted])}, per_step


def beyond_tolerance(rel, dtype):
    """(steps, entries) booleans: the relative errors beyond the pairwise tolerance."""
    return np.nan_to_num(rel, nan=0.0) > PAIRWISE[dtype]


def differs(entries, rel, beyond):
    """The worst failing entry of each kind at one step, in the order the step computes them."""
    worst = {}
    for (kind, name), r, bad in zip(entries, rel, beyond):
        if bad and (kind not in worst or r > worst[kind]["rel_err"]):
            worst[kind] = {"kind": kind, "entry": name, "rel_err": float(r)}
    return [worst[k] for k in ORDER if k in worst]


def differs_text(items):
    """'optimizer state 0.W/v (3.1e-04), then parameter 0.W (2.0e-06)'."""
    parts = [f"{WORDS[i['kind']]} {i['entry']} ({i['rel_err']:.1e})" if i["kind"] != "loss"
             else f"the loss ({i['rel_err']:.1e})" for i in items]
    return ", then ".join(parts)
