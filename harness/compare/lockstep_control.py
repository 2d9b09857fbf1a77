"""Lockstep steps that part, judged against NumPy one format wider: the lockstep's control.

A lockstep step starts a framework and the reference (NumPy) from the same state, so a
difference beyond the pairwise tolerance is one step's doing: a formula that differs, or
an ill-conditioned operation that both round differently (a BatchNorm fed 10 +- 0.01).
check's control (control.py) tells the two apart at the initial weights; this one does it
at every step where an aligned training's lockstep parts, on the step's own start and
batch (run/lockstep_control.py computes the figures, in a NumPy worker).

For a failing entry (a running statistic, the loss or a gradient: the step's forward and
backward pass) at step s, with F the framework's value, R the reference's, C the control's:

- |F - C| <= |F - R| + |R - C|: the first is what lockstep measured, the second the control
  job's, so the framework's distance from exact arithmetic is bounded without its values;
- rounding's level: the farthest of R and PERTURBATIONS roundings of NumPy's own pass from
  C, as check's control takes it; the entry is **amplified** when the bound is within
  SPREAD x level (at least what the format gets right at this depth), all relative to
  what lockstep measured the entry against.

A training whose lockstep parts only at such entries, at every one of its failing steps,
is PASS* (the lockstep's `lockstep_amplified`); one failing entry beyond, or a failing
entry of the update (optimizer state, parameters: the reference's rule applied to the
framework's own gradients, not controlled here), keeps the FAIL, and says which. The bound
is an upper bound, so a framework within it is within rounding's reach for certain; one
beyond it is not shown to be, which is all a FAIL says. NumPy's code is the control's too:
a gradient NumPy gets wrong with a framework right is beyond the bound (the framework's
distance from the reference is the whole error) and stays failed.
"""
import hashlib

import numpy as np

from ..registry import REFERENCE
from ..run.lockstep_control import JUDGED, PARTS
from .control import NAMES, SPREAD, control_dtype, missing, perturbation
from .lockstep import beyond_tolerance, relative_errors, scaled
from .precision import APART, tolerance
from .results import training_passed
from .zeros import structural_zeros

WHAT = {"state": "running statistic ", "loss": "the loss", "grad": "gradient "}


def parted(entry, results, spec):
    """{framework: (measured, beyond)} of an aligned training's frameworks whose lockstep
    parted: its measurements and the (steps, entries) booleans beyond tolerance."""
    zeros, out = structural_zeros(spec.layers), {}
    for fw, info in entry["frameworks"].items():
        if info.get("lockstep_parted_at") is not None:
            measured = results[fw]["lockstep"]
            out[fw] = (measured, beyond_tolerance(relative_errors(measured, zeros), spec.dtype))
    return out


def first_steps(parts):
    """The first failing step of every framework whose failing entries are all of the pass:
    the first control job's. A framework beyond rounding there fails whatever its other
    steps do, so most bugs cost one step of NumPy one format wider."""
    return sorted({_failing_steps(beyond)[0] for measured, beyond in parts.values()
                   if _pass_only(measured, beyond)})


def later_steps(parts, first, spec):
    """The other failing steps of the frameworks amplified at their first (against `first`,
    the first job's result): the second control job's."""
    steps = set()
    for fw in _survivors(parts, first, spec):
        steps.update(_failing_steps(parts[fw][1]))
    return sorted(steps - set(first["steps"])) if steps else []


def _survivors(parts, first, spec):
    """The frameworks still in question after the first job: within rounding's reach at
    every failing step it has, with failing steps it has not."""
    if not _ok(first):
        return []
    zeros, floor = structural_zeros(spec.layers), tolerance(spec.dtype, spec.layers)
    return [fw for fw, (measured, beyond) in parts.items() if _pass_only(measured, beyond)
            and set(_failing_steps(beyond)) - set(first["steps"])
            and _judged(measured, beyond, first, zeros, floor)["worst_ratio"] <= 1.0]


def _failing_steps(beyond):
    return [int(s) for s in np.flatnonzero(beyond.any(axis=1))]


def job(train_job, steps, spec):
    """The control's job, cut from the reference's train job of the same model. `kinks`: how
    many times rounding's reach from 0 a ReLU input may lie for its other side to be
    tried (run/lockstep_control.py's flips)."""
    wider = control_dtype(spec.dtype)
    tag = f"lockstep_control:{wider}:{steps}:kinks"
    return dict(train_job, kind="lockstep_control", steps=steps, wider=wider,
                perturb=perturbation(spec), lockstep=False, kinks=SPREAD,
                key=hashlib.sha256(f"{train_job['key']}:{tag}".encode()).hexdigest()[:24])


def attach(entry, spec, parts, first, later=None):
    """Judge each parted framework of `parts` (parted()) against the control jobs' results
    (`first`, `later`; None where there is no wider format): its "lockstep_control", and
    PASS* where every failing entry is amplified; the entry's verdict follows."""
    wider = control_dtype(spec.dtype)
    said = NAMES.get(wider, wider)
    floor, zeros = tolerance(spec.dtype, spec.layers), structural_zeros(spec.layers)
    needing = set(_survivors(parts, first, spec))
    for fw, (measured, beyond) in parts.items():
        info = entry["frameworks"][fw]
        control = _merged(first, later) if fw in needing else first
        if not _pass_only(measured, beyond):
            info["lockstep_control"] = {"dtype": said, "status": "not judged", "error": (
                "the update parts too (optimizer state or parameters), which the control "
                "does not judge")}
        elif not _ok(control):
            info["lockstep_control"] = {"dtype": said, "status": "failed",
                                        "error": missing(wider, control)}
        else:
            judged = _judged(measured, beyond, control, zeros, floor)
            judged.pop("worst_ratio")
            info["lockstep_control"] = dict(
                {"dtype": said, "status": "ok", "floor": floor, "spread": SPREAD}, **judged)
            if judged["amplified"]:
                info.update(passed=True, verdict="PASS*", lockstep_amplified=True)
    entry["passed"] = training_passed(entry["frameworks"])
    return entry


def _ok(control):
    return control is not None and control.get("status") == "ok"


def _merged(first, later):
    """The two jobs' figures as one result (the second's steps after the first's), or the
    second where it failed."""
    if not _ok(later):
        return later or {"status": "failed", "error": "no result"}
    return dict(first, steps=first["steps"] + later["steps"],
                **{part: first[part] + later[part] for part in PARTS
                   if part in first and part in later})


def _judged(measured, beyond, control, zeros, floor):
    """{"amplified", "steps", "entries", "judged", "worst", "worst_ratio"}: each failing entry
    at a step the control has, its bound against its allowance; amplified where every
    failing entry was judged and each is within. The worst is the one nearest to (or
    farthest past) its allowance."""
    diff, scale = scaled(measured, zeros)
    column = {tuple(e): j for j, e in enumerate(control["entries"])}
    row = {s: i for i, s in enumerate(control["steps"])}
    branches = {s: found for s in _failing_steps(beyond) if row.get(s) is not None
                and (found := _branch(measured, s, beyond[s], diff[s], scale[s], control,
                                      row[s], column, floor))}
    worst, count, judged = None, 0, 0
    for s, j in zip(*np.nonzero(beyond)):
        kind, name = measured["entries"][j]
        at, c = row.get(int(s)), column.get((kind, name))
        count += 1
        if at is None:  # a step left to the second job, which this one does not need
            continue
        judged += 1
        if c is None or not scale[s, j] > 0:  # nothing to judge it by
            figures = {"bound": np.inf, "level": np.inf, "allowed": 0.0}
        else:
            figures = _figures(diff[s, j], scale[s, j], control, at, c, floor)
            if int(s) in branches:  # its distance from the pass on the ReLU's other side
                figures["bound"] = branches[int(s)][1][j]
        figures = dict(step=int(s), kind=kind, entry=name,
                       rel_err=float(diff[s, j] / scale[s, j]) if scale[s, j] > 0 else np.inf,
                       **{k: float(v) for k, v in figures.items()})
        if worst is None or _ratio(figures) > _ratio(worst):
            worst = figures
    ratio = _ratio(worst) if worst else np.inf
    return {"amplified": judged == count and ratio <= 1.0, "steps": len(_failing_steps(beyond)),
            "entries": count, "judged": judged, "worst": worst, "worst_ratio": ratio,
            **({"branched": [_branched_at(s, flip) for s, (flip, _) in sorted(branches.items())]}
               if branches else {})}


def _branch(measured, s, failing, diff, scale, control, at, column, floor):
    """(the flip, {entry index: distance}) that explains step `s`, or None: a pass of
    control["flips"] (NumPy one format wider with ReLU inputs within rounding's reach of 0 on
    their other side) from which each failing entry of the framework's own pass values
    (measured["pass_values"], the worker's) is within its allowance, as an entry is from the
    control. Then the framework took that ReLU's other side, which rounding may: the bound is
    its distance from that pass. Only distances to real values can show it: a bound on
    distances from the reference only grows with the jump."""
    values = (measured.get("pass_values") or {}).get(str(s))
    flips = control["flips"][at] if "flips" in control else []
    for flip in flips if values is not None else []:
        distances = {}
        for j in np.flatnonzero(failing):
            kind, name = measured["entries"][j]
            c, mine, exact = column.get((kind, name)), _of(values, kind, name), _of(flip, kind,
                                                                                   name)
            if c is None or mine is None or exact is None or not scale[j] > 0:
                break
            far = float(np.max(np.abs(np.subtract(mine, exact, dtype=np.float64))))
            if not far / scale[j] <= _figures(diff[j], scale[j], control, at, c, floor)["allowed"]:
                break
            distances[j] = far / scale[j]
        else:
            return flip, distances
    return None


def _of(values, kind, name):
    """An entry's value in a pass's values ({"loss", "grads", "state"}), or None."""
    return values.get("loss") if kind == "loss" else \
        values.get("grads" if kind == "grad" else "state", {}).get(name)


def _branched_at(step, flip):
    """The JSON's record of a step a ReLU's other side explains."""
    return {"step": int(step), "inputs": {layer: len(at) for layer, at in flip["at"].items()},
            "from_zero": max(flip["from_zero"])}


def _figures(diff, scale, control, at, c, floor):
    """{"bound", "level", "allowed"} of one failing entry, relative to `scale`. The
    reference's own distance from the control sets the level only where rounding is what
    moves it: where its draws land within 1/APART of that distance from its own step
    (`spread`) while the framework is as far from the reference as 1/SPREAD of it or more
    (it does not share the reference's departure), NumPy's code computes something else in
    this format (a backward that is wrong in float32 only), and the level is the draws'
    spread alone: `reference_off`."""
    ref_err, level = control["ref_err"][at][c] / scale, control["level"][at][c] / scale
    figures = {"bound": (diff + control["ref_err"][at][c]) / scale}
    spread = control["spread"][at][c] / scale if "spread" in control else None
    if spread is not None and spread * APART < ref_err <= diff / scale * SPREAD:
        level, figures["reference_off"] = spread, ref_err
    return dict(figures, level=level, allowed=max(floor, SPREAD * level))


def _ratio(judged):
    allowed = judged["allowed"]
    return judged["bound"] / allowed if allowed > 0 else np.inf


def _pass_only(measured, beyond):
    """Whether every failing entry is of the step's pass (not of its update)."""
    kinds = {measured["entries"][j][0] for j in np.flatnonzero(beyond.any(axis=0))}
    return kinds <= set(JUDGED)


def line(info):
    """What the control said of a framework's lockstep, for its sentence, or None."""
    said = info.get("lockstep_control")
    if not said:
        return None
    if said["status"] == "not judged":
        return f"not judged one format wider: {said['error']}"
    if said["status"] != "ok":
        return f"no control in a wider format: {said['error']}"
    w = said["worst"]
    where = f"{WHAT[w['kind']]}{w['entry'] if w['kind'] != 'loss' else ''} at step {w['step']}"
    figures = (f"up to {w['bound']:.1e} from {said['dtype']} arithmetic, rounding's level of "
               f"{REFERENCE}'s own formula {w['level']:.1e}, bound {w['allowed']:.1e}")
    if "reference_off" in w:
        figures += (f"; {REFERENCE}'s own step lands {w['reference_off']:.1e} from "
                    f"{said['dtype']} arithmetic where rounding moves it by {w['level']:.1e}: "
                    f"a formula of {REFERENCE}'s for this format, not rounding")
    if said["amplified"]:
        return (f"each of its {said['entries']} entries beyond tolerance, over "
                f"{said['steps']} steps, is within rounding's reach of {said['dtype']} "
                f"arithmetic (nearest the bound: {where}, {figures}){_branches(said)}: "
                f"rounding amplified by the network")
    return (f"not within rounding's reach of {said['dtype']} arithmetic at {where} "
            f"({figures}){_branches(said)}")


def _branches(said):
    """'; at step 19 a ReLU input ...': the steps a ReLU's other side explains, or ''."""
    if not said.get("branched"):
        return ""
    steps = said["branched"]
    first = steps[0]
    inputs = ", ".join(f"layer {layer}: {n} input{'s' * (n > 1)}"
                       for layer, n in first["inputs"].items())
    more = f" (and at {len(steps) - 1} more steps)" if len(steps) > 1 else ""
    return (f"; at step {first['step']}{more} the framework took a ReLU's other side, within "
            f"rounding's reach of its kink ({inputs}, {first['from_zero']:.1e} from 0 in "
            f"{said['dtype']}), and is within the bound of that side's pass")
