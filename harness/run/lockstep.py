"""Lockstep training, the worker side: every step taken from the reference's state.

The worker that trains a framework also runs the reference implementation (NumPy's,
which imports nothing else) step by step, after the free run. Before step k both start
from the reference's parameters, running statistics and optimizer state after step
k - 1 (step 0: the initial parameters and each one's fresh optimizer), and both take
the step on batch k. A step has two halves, each measured on identical inputs: the
forward and backward pass (running statistics, loss, gradients before clipping) against
the reference's, and the update (clip, optimizer state, parameters) against the
reference's rule applied to the framework's own gradients. Comparing the updated
parameters with the reference's own step instead would mix the gradients' rounding
into the update, which Adam, RMSprop and Adagrad amplify by up to lr / eps where a
gradient entry is near zero (4e-5 of the largest float32 weight at the first step of
Adam with L1, L2 and eps 1e-6, whose gradients agree to 2e-7).

Each entry is measured as two numbers, the largest absolute difference and the
reference's largest absolute entry; the reference is deterministic, so every worker
follows the same trajectory: the first job of a model stores the reference's steps where
the executor's other workers read them (reference_steps.py), and only those two numbers
per entry go back to the harness.
compare/lockstep.py judges them.
"""
import copy
import math
import time

import numpy as np

from .. import registry
from ..spec.precision import PAIRWISE
from . import reference_steps

# what a step computes, in the order it computes it: the forward's running statistics and
# loss, the gradients, then the update's optimizer state and parameters
KINDS = (("state", "state"), ("loss", None), ("grad", "grads"), ("optimizer", "optimizer"),
         ("param", "params"))
KEYS = dict(KINDS)  # kind -> the record's key (None: the loss)
NOT_KEPT = math.nan  # not compared: a step count the framework does not keep (torch.optim.SGD,
#                     most of Optax), the optimizer state of a step that did not update
PASS_KINDS = ("state", "loss", "grad")  # a step's forward and backward pass (lockstep_control)
KEPT_STEPS = 3  # the failing steps whose pass values a framework sends back (_kept)


def layer_of(name):
    """The top-level layer of a canonical name: "3.0.W" -> "3"."""
    return name.split(".", 1)[0]


class Feed:
    """The start of the next step, read by both generators once per step."""

    def __init__(self, start):
        self.start = start

    def __iter__(self):
        return self

    def __next__(self):
        return self.start


def measure(impl, model, job):
    """{"entries": [[kind, name], ...], "abs_err": (steps, entries), "scale": (steps, entries),
    "reference_loss": [...], "seconds"}, or {"error": why} (the free run's results stand)."""
    start = time.perf_counter()
    try:
        reference = registry.load(registry.REFERENCE)
        ref_model = reference.model.build_model(job["spec"], native=False)
        feed = Feed((job["params"], job["state"], None))
        ours = impl.train.lockstep(model, job["x"], job["y"], job["batches"], job["masks"], feed)
        stored = reference_steps.stored_path(job)
        steps = reference_steps.load(stored)  # an earlier job's, or None: computed here
        theirs = iter(steps) if steps is not None else reference.train.lockstep(
            ref_model, job["x"], job["y"], copy.deepcopy(job["batches"]),  # its own walk
            copy.deepcopy(job["masks"]), feed)
        kept = {}
        with reference_steps.writing(stored if steps is None else None, job) as record:
            entries, abs_err, scale, ref_loss = _walk(reference, ref_model, job, feed, ours,
                                                      theirs, record, kept)
    except Exception as err:  # lockstep explains; it never takes the free run down
        return {"error": f"{type(err).__name__}: {err}"}
    return {"entries": entries or [], "abs_err": np.asarray(abs_err, np.float64),
            "scale": np.asarray(scale, np.float64), "reference_loss": ref_loss,
            "pass_values": kept, "seconds": time.perf_counter() - start}


def _walk(reference, ref_model, job, feed, ours, theirs, record, kept):
    """Both trajectories side by side, each step from the reference's start: (entries, the
    rows of differences, of scales, the reference's losses). record(the reference's step)
    keeps each for later jobs (reference_steps.writing); `kept` gets the framework's pass
    values of its first failing steps (_kept)."""
    entries, abs_err, scale, ref_loss = None, [], [], []
    for mine, ref in zip(ours, theirs):  # each reads the same start from the feed
        record(ref)
        entries = entries or _entries(ref)
        moved = _moved(ref)
        if moved:
            expected = dict(ref, **_update(reference, ref_model, job["spec"], feed.start, mine))
            row = _row(mine, expected, entries)
            _kept(kept, len(abs_err), mine, row, entries, job["spec"]["dtype"])
        else:
            row = _diverged(mine, entries)
        abs_err.append([d for d, _ in row])
        scale.append([s for _, s in row])
        ref_loss.append(ref["loss"])
        if not moved:  # the reference diverged: its trajectory ends here
            break
        feed.start = (ref["params"], ref["state"], ref["optimizer"])
    return entries, abs_err, scale, ref_loss


def _kept(kept, step, mine, row, entries, dtype):
    """The framework's own pass values (loss, gradients, running statistics) at the first
    KEPT_STEPS steps where a pass entry parts beyond the pairwise tolerance (a gradient
    relative to its layer's largest, as compare/lockstep.py measures it), into `kept`:
    {str(step): {"loss", "grads", "state"}} (keyed as the cache's JSON keys them). The
    control of a failing step (lockstep_control.py) tells from them whether the framework
    took a ReLU's other side within rounding's reach, which no bound on distances shows."""
    if len(kept) >= KEPT_STEPS or dtype not in PAIRWISE:
        return
    layers = {}
    for (kind, name), (_, s) in zip(entries, row):
        if kind == "grad":
            layers[layer_of(name)] = max(layers.get(layer_of(name), 0.0), s)
    for (kind, name), (diff, s) in zip(entries, row):
        s = layers[layer_of(name)] if kind == "grad" else s
        if kind in PASS_KINDS and diff > PAIRWISE[dtype] * s:  # NaN (not kept) never is
            kept[str(step)] = {"loss": float(mine["loss"]),
                               **{key: {k: np.asarray(v) for k, v in mine[key].items()}
                                  for key in ("grads", "state")}}
            return


def _diverged(mine, entries):
    """The row of a step where the reference diverged. Which entries turn NaN and which inf
    there depends on each framework's order of operations (a softmax of infinite logits is
    NaN everywhere in one, 0 and NaN in another), so only the divergence itself is judged,
    on the loss: 0 apart when this framework diverged at the same step, inf when it did not."""
    return [((0.0 if not _moved(mine) else math.inf), 0.0) if kind == "loss"
            else (NOT_KEPT, 0.0) for kind, _ in entries]


def _update(reference, model, spec, start, record):
    """The reference's update of `record`'s gradients from `start`: {"params", "optimizer"}.
    Where the record's step stopped before its update (a non-finite loss or gradient), the
    parameters are the start's and the optimizer state is not compared. The clip is the
    canonical g *= min(1, clip_norm / norm), as the reference's train does it."""
    params, _, opt_state = start
    grads, clip_norm = record["grads"], spec["train"]["clip_norm"]
    norm = None if clip_norm is None else _norm(grads)  # the clip's, which _moved reads too
    if not _moved(record, norm):
        return {"params": params, "optimizer": {}}
    optimizer = reference.optimizers.build_optimizer(spec["optimizer"], False)
    if opt_state is not None:
        reference.optimizers.set_optimizer_state(optimizer, model, opt_state)
    if clip_norm is not None:
        grads = {k: g * min(1.0, clip_norm / norm) for k, g in grads.items()}
    return {"params": optimizer.step(dict(params), grads),
            "optimizer": reference.optimizers.get_optimizer_state(optimizer, model)}


def _entries(record):
    out = []
    for kind, key in KINDS:
        out += [[kind, "loss"]] if key is None else [[kind, name] for name in record[key]]
    return out


def _value(record, kind, name):
    key = KEYS[kind]
    return record["loss"] if key is None else record[key].get(name)


def _row(mine, expected, entries):
    """[_difference(...) of each entry], or (NOT_KEPT, 0.0) where `expected` has none. The
    small entries of a step are measured together, in one pass over their concatenation:
    measured one by one, a zoo run spent more time calling NumPy for its biases, step
    counts and losses than on the weights. The figures are the same: both sides are cast to
    float64 (exact) before the subtraction, as _difference's does, and a maximum is exact in
    any grouping. An entry that is not finite on the way goes through _difference."""
    row, small = [], []
    for kind, name in entries:
        ref = _value(expected, kind, name)
        if ref is None:
            row.append((NOT_KEPT, 0.0))
            continue
        got, ref = _value(mine, kind, name), np.asarray(ref)
        if got is not None and _batchable(got := np.asarray(got), ref):
            small.append((len(row), got, ref, name))
            row.append(None)
        else:
            row.append(_difference(got, ref, name))
    if small:
        got = np.concatenate([g.reshape(-1) for _, g, _, _ in small], dtype=np.float64)
        ref = np.concatenate([r.reshape(-1) for _, _, r, _ in small], dtype=np.float64)
        starts = np.cumsum([0] + [r.size for _, _, r, _ in small[:-1]])
        with np.errstate(all="ignore"):
            worst = np.maximum.reduceat(np.abs(got - ref), starts).tolist()
            scale = np.maximum.reduceat(np.abs(ref), starts).tolist()
        for (at, g, r, name), w, s in zip(small, worst, scale):
            finite = math.isfinite(w) and math.isfinite(s)
            row[at] = (w, s) if finite else _difference(g, r, name)
    return row


BATCHED = 4096  # entries of at most this many values are measured together (_row)
MEASURABLE = frozenset("fiu")  # float and integer arrays: exact in float64 (step counts < 2^53)


def _batchable(mine, ref):
    """Whether an entry (two arrays) can go into _row's joint pass: numeric, the same
    non-empty shape, and small."""
    return (mine.dtype.kind in MEASURABLE and ref.dtype.kind in MEASURABLE
            and mine.shape == ref.shape and 0 < ref.size <= BATCHED)


def _difference(mine, ref, name):
    """(max |mine - ref|, max |ref| over its finite entries) as floats. Entries non-finite on
    both sides agree (a diverged step, as the curves count it); one non-finite side, a
    missing or a misshapen entry is inf apart; a step count this framework does not keep
    is NOT_KEPT."""
    ref = np.asarray(ref)
    with np.errstate(all="ignore"):
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        if mine is None:
            return (NOT_KEPT if name == "step" else math.inf), _finite_scale(ref, scale)
        mine = np.asarray(mine)
        if mine.shape != ref.shape:
            return math.inf, _finite_scale(ref, scale)
        worst = float(np.max(np.abs(np.subtract(mine, ref, dtype=np.float64)))) if ref.size else 0.0
        if math.isfinite(worst) and math.isfinite(scale):
            return worst, scale
        mine, ref = mine.astype(np.float64), ref.astype(np.float64)
        alike = (mine == ref) | (~np.isfinite(mine) & ~np.isfinite(ref))
        worst = float(np.max(np.where(alike, 0.0, np.abs(mine - ref))))
    return (math.inf if math.isnan(worst) else worst), _finite_scale(ref, scale)


def _finite_scale(ref, scale):
    if math.isfinite(scale):
        return scale
    finite = np.abs(ref[np.isfinite(ref)])
    return float(finite.max()) if finite.size else 0.0


def _moved(record, norm=None):
    """Whether the step updated: a non-finite loss or gradient norm stops before the update
    (the norm in the gradients' dtype, as the reference's train computes it; `norm` where
    already computed)."""
    if norm is None:
        if _norm_fits(record["grads"]):
            return math.isfinite(record["loss"])
        norm = _norm(record["grads"])
    return math.isfinite(record["loss"]) and bool(np.isfinite(norm))


def _norm(grads):
    """The gradients' global norm in their dtype, summed as the reference's train sums it."""
    with np.errstate(all="ignore"):
        return np.sqrt(sum((g * g).sum() for g in grads.values()))


def _norm_fits(grads):
    """True where _norm(grads) is surely finite, told from one dot product per gradient (one
    pass, no temporary array): sums of `size` non-negative terms in two orders are within a
    factor 1 + size * eps of each other, so where the dot products' sum fits under the
    largest value with a factor 4 to spare (the margin of impls/canonical.py's
    squares_fit, which the harness does not import), the pairwise sums _norm takes are
    finite too. Only for float arrays of one dtype, and while size * eps stays below 1.
    False leaves the answer to _norm (a NaN or inf entry never fits)."""
    arrays = list(grads.values())
    dtype = arrays[0].dtype if arrays and type(arrays[0]) is np.ndarray else None
    if dtype is None or dtype.kind != "f" or any(
            type(g) is not np.ndarray or g.dtype != dtype for g in arrays):
        return False
    info, size = np.finfo(dtype), sum(g.size for g in arrays)
    eps = float(info.eps)  # all in Python floats: an overflow is inf, not a warning
    total = sum(float(np.vdot(g, g)) for g in arrays)
    return size * eps < 1 and total * 4 * (1 + size * eps) < float(info.max)
