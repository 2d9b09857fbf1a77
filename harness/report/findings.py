"""What the report points at, as plain data: the failing pairs and their worst tensors,
where native-defaults curves part and why, the per-layer agreement, and each framework's
speed. The text (content.py, models.py) and the plots (plots.py, panels.py) read these,
so they never disagree about what failed."""
import math

import numpy as np

from ..compare import pairwise
from ..compare.pairwise import PAIRWISE
from ..registry import ORDER


AMPLIFIED = "rounding amplified by the dynamics (lockstep agrees at every step)"
ALIGNED_FAILS = ("its aligned run fails too: the difference is the framework's own "
                 "computation, so no default is named")


def native_causes(info):
    """What the report names as the cause of a native-defaults curve's parting: one field
    of the framework's entry: the pitfalls in play that alone move the curve by then, with
    their effect (harness/ablation/causes.py); or, where lockstep agreed at every step up
    to the parting, the dynamics; or why none is named. Empty for a curve that does not part."""
    if info.get("native_aligned_fails"):
        return [ALIGNED_FAILS]
    if info.get("native_amplified"):
        return [AMPLIFIED]
    if info.get("native_defaults") or info.get("parted_at") is None:
        return list(info.get("native_defaults") or [])
    return [no_cause(info)]


def no_cause(info):
    """Why a parting native curve has no cause named: the defaults in play were measured and
    none moves it that far alone, or none is in play."""
    measured = len(info.get("native_ablation") or [])
    if measured:
        return (f"no known cause: none of the {measured} framework default(s) in play moves "
                f"the curve that far alone")
    return "no known cause: no framework default known to differ is in play"


def partings(native):
    """Every native-defaults curve that parts from the reference, in model order."""
    if not native:
        return []
    return [{"model": m["name"], "dtype": m["dtype"], "framework": fw,
             "reference": m["reference"], "step": info["parted_at"],
             "max_rel_diff": info.get("max_rel_diff"), "causes": native_causes(info)}
            for m in native.models for fw, info in m["frameworks"].items()
            if info.get("status") == "ok" and info.get("parted_at") is not None]


def failing_pairs(entry, saved=None, top=3):
    """One item per framework pair with a tensor beyond tolerance (none where the loss is not
    finite in any framework): its `top` worst tensors
    (with the two values where they differ most, when the arrays are at hand), the losses,
    and the first layer where the pair parts (the check's per-layer comparison)."""
    if entry.get("not_finite"):  # every pair "disagrees" on nan: results.not_finite says why
        return []
    arrays = saved.get((entry["name"], entry["dtype"]), (None, {}))[1] if saved else {}
    parted = entry.get("first_parting") or []
    out = []
    for a, b in _pairs(entry):
        rows = [c for c in entry["comparisons"] if (c["a"], c["b"]) == (a, b)]
        bad = sorted((c for c in rows if not c["passed"]), key=_severity)
        if not bad:
            continue
        worst = [dict(c, **_where(arrays, a, b, c)) for c in bad[:top]]
        first = [p for p in parted if tuple(p.get("pair", ())) == (a, b)]
        out.append({"pair": (a, b), "failing": len(bad), "tensors": len(rows), "worst": worst,
                    "losses": tuple(entry["frameworks"][fw].get("loss") for fw in (a, b)),
                    "first_parting": first, "tolerance": PAIRWISE[entry["dtype"]]})
    return out


def _pairs(entry):
    seen = []
    for c in entry["comparisons"]:
        if (c["a"], c["b"]) not in seen:
            seen.append((c["a"], c["b"]))
    return seen


def _severity(c):
    r = c["rel_err"]
    return -(math.inf if r is None or (isinstance(r, float) and math.isnan(r)) else r)


def _where(arrays, a, b, comparison):
    """The entry where the two tensors differ most: its index and both values."""
    ta, tb = _tensor(arrays.get(a), comparison), _tensor(arrays.get(b), comparison)
    if ta is None or tb is None or ta.shape != tb.shape or not ta.size:
        return {}
    with np.errstate(all="ignore"):
        diff = np.abs(ta.astype(np.float64) - tb.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    k = np.unravel_index(int(np.argmax(diff)), ta.shape)
    return {"index": [int(i) for i in k], "a_value": float(ta[k]), "b_value": float(tb[k])}


def _tensor(result, comparison):
    if not result or result.get("status") != "ok":
        return None
    kind, name = comparison["kind"], comparison["param"]
    value = {"loss": lambda: result.get("loss"), "grad": lambda: result["grads"].get(name),
             "state": lambda: result.get("state", {}).get(name)}[kind]()
    return None if value is None else np.asarray(value)


def worst_by_pair(entry):
    """(a, b) -> worst relative error over the pair's gradient tensors."""
    return pairwise.worst_by_pair(c for c in entry["comparisons"] if c["kind"] == "grad")


def layer_rows(entry):
    """The check's per-layer comparison (forward output and dL/dx of each top-level layer,
    pair by pair), when the check ran it."""
    return list(entry.get("layers") or [])


def seconds_per_step(train):
    """{(model, dtype): {framework: seconds per training step}}: the train job's wall time
    (building the model, tracing or compiling included) over its steps."""
    out = {}
    for m in train.models if train else []:
        steps = max(int(m.get("steps") or 0), 1)
        out[(m["name"], m["dtype"])] = {
            fw: info["seconds"] / steps for fw, info in m["frameworks"].items()
            if info.get("status") == "ok" and info.get("seconds") is not None}
    return out


def frameworks_in(models):
    return [fw for fw in ORDER if any(fw in m["frameworks"] for m in models)] + sorted(
        {fw for m in models for fw in m["frameworks"]} - set(ORDER))
