"""A pair that disagrees, judged against arithmetic one format wider: the control.

Two frameworks can part by more than the pairwise tolerance with neither of them wrong: a
network that cancels digits (a BatchNorm fed 10 +- 0.01 subtracts its mean from values
that agree in their first three digits) amplifies rounding, and every implementation
loses digits there. The control tells that apart from an implementation computing
something else, or computing it in an unstable way. It runs only for models with a
failing pair, after every other job.

The control is NumPy on the very arrays every framework was given (run/reference.py), in
the next wider format: float64 for a float32 check, the platform's extended long double
for a float64 one (x86-64: 64 significand bits against 53). Where there is none (long
double is float64 on the platform, or a layer has no long double form, e.g. SciPy's erf),
the FAIL stands and says so. For each failing row, every framework's distance from the
control (relative as the row is: to the control's largest entry; a zero by construction
to the model's largest gradient entry), and **rounding's level** at that tensor: how far
honest roundings of the control's own formula land from it. NumPy computes the model in
the checked format (the frameworks' results include NumPy's, so once as checked) and
PERTURBATIONS more times there with every value leaving a layer (output, dL/dx, gradients)
also moved at random by one unit roundoff (worker._perturbed): each draw rounds inside
every layer as the format does, and lands elsewhere. The level is the farthest of them.
Only NumPy's formula sets it, never the frameworks being judged.

- **amplified**: both frameworks within SPREAD x level (at least what the format gets
  right at this depth, precision.tolerance). The row passes; a model whose failing rows all
  are, and that passes otherwise, is PASS*. Where the level is above 1 the tensor is
  rounding noise: a zero by construction nobody declared.
- a framework beyond it parts from exact arithmetic by more than rounding explains (a bug,
  or an unstable formula): the row stays failed and its note names it.
- NumPy's code is the control's: where NumPy agrees with the control and the others agree
  with each other but not with it, NumPy's formula and theirs differ (a wrong hand-written
  backward), which the control cannot referee: the row stays failed and says so, as it
  does where NumPy is in the pair and no other framework is near the control.
- NumPy's code in the checked format sets the level only where rounding is what moves it:
  where it lands far from its own code one format wider, its draws move it by less than
  1/APART of that (`spread`), and a framework lands more than SPREAD times nearer the
  control, NumPy's code computes something else in that format (a backward that is wrong
  in float32 only), which the control cannot referee: the row stays failed and says so.
"""
import numpy as np

from ..registry import REFERENCE
from ..spec.precision import UNIT_ROUNDOFF
from .pairwise import worst
from .precision import (PERTURBATIONS, SPREAD, distance as _distance, reference_off,
                        spread_of, tensor_of as _tensor, tolerance)
from .zeros import structural_zeros

LONG = np.dtype(np.longdouble).name  # NumPy's name: float128 on x86-64 (80 bits, padded)
WIDER = {"float32": "float64", "float64": LONG}
NAMES = {LONG: "long double"}  # as the JSON and the notes say it


def control_dtype(dtype):
    """The format of the control of a `dtype` check, or None: float32 -> float64; float64 ->
    long double where it has more significand bits than float64."""
    wider = WIDER.get(dtype)
    if wider == LONG and np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:
        return None
    return wider


def perturbation(spec):
    """What the control's job computes again (run/reference.reference_job's `perturb`)."""
    return {"dtype": spec.dtype, "unit": UNIT_ROUNDOFF[spec.dtype], "count": PERTURBATIONS,
            "seed": spec.seed}


def missing(wider, control, otherwise="no result"):
    """Why a control did not judge: no wider format here, or its job's error."""
    if wider is None:
        return "no format wider than float64 on this platform (long double is float64)"
    return (control or {}).get("error") or otherwise


def failing(entry):
    """The pair rows that failed (a model with none needs no control)."""
    return [c for c in entry["comparisons"] if not c["passed"]]


def attach(entry, spec, results, control):
    """Judge the failing rows of a check entry (`results`: its frameworks' arrays) against
    `control` (the control job's result, or None where there is no wider format); the
    entry's verdict follows."""
    rows = failing(entry)
    if not rows:
        return entry
    wider = control_dtype(spec.dtype)
    said = NAMES.get(wider, wider)  # None: no wider format here
    if control is None or control.get("status") != "ok" or "perturbed" not in control:
        entry["control"] = {"dtype": said, "status": "failed",
                            "error": missing(wider, control, "the control has no gradients")}
        return entry
    floor = tolerance(spec.dtype, spec.layers)
    entry["control"] = {"dtype": said, "status": "ok", "floor": floor, "spread": SPREAD}
    scales = _scales(control, structural_zeros(spec.layers))
    for row in rows:
        exact, scale = _tensor(control, row), scales.get(row["param"])
        if exact is not None and not np.isfinite(np.asarray(exact, np.float64)).all():
            said_here = (f"{said}'s value is not finite here ({REFERENCE}'s code one format "
                         f"wider): the control cannot referee this row")
            row["note"] = f"{row['note']}; {said_here}" if row.get("note") else said_here
            continue
        moved = max(_distance(exact, _tensor(p, row), scale) for p in control["perturbed"])
        far = {fw: _distance(exact, _tensor(r, row), scale) for fw, r in results.items()
               if r.get("status") == "ok" and _tensor(r, row) is not None}
        level = max(moved, far.get(REFERENCE, 0.0))
        bound = max(floor, SPREAD * level)
        pair = {fw: far[fw] for fw in (row["a"], row["b"])}
        row["control"] = {"err": pair, "sensitivity": moved, "level": level, "bound": bound}
        spread = spread_of(results.get(REFERENCE), control["perturbed"], row, scale, exact)
        if spread is not None:
            row["control"]["spread"] = spread
        said_here = (_reference_off(far, spread, spec.dtype, said)
                     or _judged(row, pair, far, _mutual(entry, row), level, bound, said))
        row["note"] = f"{row['note']}; {said_here}" if row.get("note") else said_here
    if all(r["passed"] for r in entry["comparisons"]) and _passes_otherwise(entry):
        entry["passed"] = True
        entry["amplified"] = (f"{len(rows)} pair rows beyond the {spec.dtype} tolerance, every "
                              f"framework within rounding's level of {said} arithmetic")
    return entry


def _judged(row, pair, far, mutual, level, bound, said):
    """Mark the row amplified, or not; -> what its note says. `mutual`: the largest error
    between two frameworks other than NumPy on this tensor (None with fewer than two). The
    control runs NumPy's code: where NumPy and the control agree and the others agree with
    each other far better than with the control, the two share a formula the others do not
    (a wrong hand-written backward), which the control cannot referee: the row stays
    failed, and says so."""
    distances = f"{_both(pair)}; rounding's level here {level:.1e}"
    others = [err for fw, err in far.items() if fw != REFERENCE]
    if REFERENCE in far and mutual is not None and np.isfinite([mutual, *far.values()]).all() \
            and max(far[REFERENCE], mutual) * SPREAD < min(others):
        return (f"{REFERENCE} agrees with the control, which runs its code, and the others with "
                f"each other ({mutual:.1e}), not with the control ({min(others):.1e} and more): "
                f"a formula of {REFERENCE}'s against theirs, which the control cannot referee")
    beyond = [fw for fw, err in pair.items() if not err <= bound]
    if beyond:
        confirmed = any(err <= bound for fw, err in far.items() if fw != REFERENCE)
        caveat = (f"; the control runs {REFERENCE}'s code and no other framework is near it: "
                  f"this may be a formula of {REFERENCE}'s" if REFERENCE in pair
                  and REFERENCE not in beyond and not confirmed else "")
        return (f"{' and '.join(beyond)} part{'s' * (len(beyond) == 1)} from {said} beyond "
                f"rounding at this point ({distances}, bound {bound:.1e}){caveat}")
    row.update(passed=True, status="amplified")
    if level >= 1:  # rounding moves it by more than its own size: a zero, computed as noise
        return (f"rounding noise: one rounding per layer moves the control's value by "
                f"{level:.1e} of its size ({_both(pair)}); a gradient zero by construction? "
                f"(a plugin layer declares it: zero_gradients, cancels_shifts)")
    return f"both within {bound:.1e} of {said} ({distances}): rounding amplified by the network"


def _reference_off(far, spread, dtype, said):
    """The row's note where NumPy's own checked result cannot set rounding's level
    (precision.reference_off): a formula of NumPy's for this format (a path that depends on
    the dtype, such as a plugin's backward), not rounding, which the control cannot referee:
    the row stays failed. None otherwise."""
    nearer = reference_off(far, spread)
    if not nearer:
        return None
    own, fw = far[REFERENCE], min(nearer, key=nearer.get)
    return (f"{REFERENCE}'s {dtype} code lands {own:.1e} from its own code in {said}, where one "
            f"rounding per layer moves it by {spread:.1e} and {fw} is {nearer[fw]:.1e} from "
            f"{said}'s: a {dtype} formula of {REFERENCE}'s, not rounding, which the control "
            f"cannot referee")


def _mutual(entry, row):
    """The largest error on the row's tensor between two frameworks other than NumPy."""
    return worst(c["rel_err"] for c in entry["comparisons"] if c["param"] == row["param"]
                 and c["kind"] == row["kind"] and REFERENCE not in (c["a"], c["b"]))


def _scales(control, zeros):
    """A zero by construction's scale: the control's largest gradient entry elsewhere."""
    largest = max((float(np.max(np.abs(g))) for k, g in control["grads"].items()
                   if k not in zeros and g.size), default=0.0)
    return {k: largest for k in zeros}


def _both(far):
    return ", ".join(f"{fw} {err:.1e}" for fw, err in far.items())


def _passes_otherwise(entry):
    failed = any(info["status"] == "failed" for info in entry["frameworks"].values())
    return bool(not failed and not entry.get("not_finite")
                and all(r["passed"] for r in entry["finite_difference"]))
