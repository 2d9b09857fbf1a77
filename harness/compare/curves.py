"""Loss curves against the reference's: agreement, where they part, and float32 branches."""
import numpy as np

CURVES = {"float64": 1e-10, "float32": 1e-4}
PARTED = 1e-3  # native mode: the first step where a curve is this far from the reference


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
        out[fw] = {"max_rel_diff": worst, "rel_diff": rel,
                   "parted_at": int(parted[0]) if len(parted) else None,
                   "passed": None if native else bool(same_end and worst <= CURVES[dtype])}
    return out


def branch_step(rel_diff, dtype):
    """The step where a float32 curve left the reference in one jump, or None.

    Rounding alone moves float32 curves by ~1e-7 a step; a jump of 100x or more in one
    step, out of agreement, is a branch: a ReLU or max sitting within rounding of its
    kink went the other way, and from there the two runs follow different (equally
    valid) trajectories. Only meaningful when the float64 curves agree (see api)."""
    if dtype != "float32":
        return None
    d = np.asarray(rel_diff, np.float64)
    out = np.flatnonzero(d > BRANCH_FROM)
    if not len(out) or out[0] == 0:
        return None
    k = int(out[0])
    return k if d[k] >= BRANCH_JUMP * max(d[k - 1], 1e-8) else None


BRANCH_FROM, BRANCH_JUMP = 1e-5, 100.0
