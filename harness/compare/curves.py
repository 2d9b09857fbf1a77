"""Loss curves against the reference's: agreement, where they part, and the verdict on a
curve that leaves its tolerance: a real difference (lockstep parts), rounding amplified
by the dynamics, or a float32 branch at a kink."""
import math

import numpy as np

CURVES = {"float64": 1e-10, "float32": 1e-4}
PARTED = 1e-3  # native mode: the first step where a curve is this far from the reference
# a few ulps of the loss: the difference one forward pass's rounding makes, nothing amplified
ROUNDING = {"float64": 4 * float(np.finfo(np.float64).eps),
            "float32": 4 * float(np.finfo(np.float32).eps)}


@np.errstate(all="ignore")
def curve_errors(curves, reference, dtype, native):
    """Per framework: how far its loss curve is from the reference framework's.

    Curves agree when they have the same length, stop (diverge) at the same step,
    and every finite step is within CURVES[dtype]. In native mode nothing passes or
    fails: the point is to show where the curves part (PARTED)."""
    ref_curve = curves[reference]
    ref = np.asarray(ref_curve["loss"], np.float64)
    out = {}
    for fw, c in curves.items():
        loss = np.asarray(c["loss"], np.float64)
        n = min(len(ref), len(loss))
        both = np.isfinite(ref[:n]) & np.isfinite(loss[:n])
        rel = np.abs(loss[:n] - ref[:n]) / np.maximum(np.abs(ref[:n]), 1e-300)
        rel[~both] = np.where(np.isfinite(ref[:n]) == np.isfinite(loss[:n]), 0.0, np.inf)[~both]
        worst = float(rel.max()) if n else 0.0
        parted = np.flatnonzero(rel > PARTED)
        same_end = len(loss) == len(ref) and c.get("diverged_at") == ref_curve.get("diverged_at")
        out[fw] = {"max_rel_diff": worst, "rel_diff": rel, "same_end": same_end,
                   "parted_at": int(parted[0]) if len(parted) else None,
                   "passed": None if native else bool(same_end and worst <= CURVES[dtype])}
    return out


def branch_step(rel_diff, dtype):
    """The step where a float32 curve left the reference in one jump, or None.

    Rounding alone moves float32 curves by ~1e-7 a step; a jump of 100x or more in one
    step, out of agreement, is a branch: a ReLU or max sitting within rounding of its
    kink went the other way, and from there the two runs follow different (equally
    valid) trajectories. Only meaningful when the arithmetic is known to agree: lockstep
    within tolerance, or (without lockstep) the float64 curves agreeing."""
    if dtype != "float32":
        return None
    d = np.asarray(rel_diff, np.float64)
    out = np.flatnonzero(d > BRANCH_FROM)
    if not len(out) or out[0] == 0:
        return None
    k = int(out[0])
    return k if d[k] >= BRANCH_JUMP * max(d[k - 1], 1e-8) else None


BRANCH_FROM, BRANCH_JUMP = 1e-5, 100.0


def exceeded_step(rel_diff, dtype):
    """The first step where the curve difference is beyond CURVES[dtype], or None."""
    out = np.flatnonzero(np.asarray(rel_diff, np.float64) > CURVES[dtype])
    return int(out[0]) if len(out) else None


def amplification(rel_diff, dtype):
    """(k, growth per step) of a curve difference that grew from rounding level past the
    tolerance (or to the last step compared): k is the step after the last one at the
    rounding level before that (ROUNDING, or step 0's difference if larger: one forward
    pass, nothing amplified yet), and the growth the geometric mean factor per step from
    there: (d[c] / d[k - 1]) ** (1 / (c - k + 1))."""
    d = np.asarray(rel_diff, np.float64)
    if not len(d):
        return None, None
    end = exceeded_step(d, dtype)
    end = len(d) - 1 if end is None else end
    floor = max(ROUNDING[dtype], float(d[0]) if np.isfinite(d[0]) else 0.0)
    low = np.flatnonzero(d[:end] <= floor)
    k = int(low[-1]) + 1 if len(low) else 0
    start = float(d[k - 1]) if k else floor
    top = float(d[end])
    if not math.isfinite(top) or end < k:
        return k, None
    return k, (max(top, start) / max(start, floor)) ** (1.0 / (end - k + 1))


def verdict(info, rel_diff, dtype, same_end=True):
    """An aligned run's verdict, in `info` (its JSON entry, with its curve's "passed" and the
    lockstep fields): FAIL where lockstep leaves its tolerance (a real difference, whatever
    the curves say), or where the run stops at another step than the reference's
    (`same_end` False: README, "Divergence"; lockstep runs only the reference's steps);
    PASS where the curve is within its tolerance; where it is not but lockstep agrees at
    every step, PASS* "branched" (a float32 jump at a kink) or PASS* "amplified" (rounding
    grown by the dynamics, with its onset and growth per step). Without lockstep a curve
    beyond tolerance is a FAIL, unless the float64 control of a float32 run says otherwise
    (results.explain_branches)."""
    info["exceeded_at"] = exceeded_step(rel_diff, dtype)
    locked = "lockstep_parted_at" in info
    if not same_end or locked and info["lockstep_parted_at"] is not None:
        info.update(passed=False, verdict="FAIL")
    elif info["passed"]:
        info["verdict"] = "PASS"
    elif locked:
        step = branch_step(rel_diff, dtype)
        if step is not None:
            info.update(passed=True, verdict="PASS*", branched_at=step)
        else:
            onset, growth = amplification(rel_diff, dtype)
            info.update(passed=True, verdict="PASS*", amplified_at=onset, growth_per_step=growth)
    else:
        info["verdict"] = "FAIL"
    return info
