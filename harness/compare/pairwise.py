"""Every pair of frameworks, tensor by tensor: the loss, each gradient, the BatchNorm state.

Errors are relative to the reference tensor's largest entry (max |a - b| / max |a|),
the scale at which float rounding lives; the tolerances below are explained in
the README ("Tolerances").
"""
import math

import numpy as np

from ..registry import PARTICIPANTS
from ..spec.precision import PAIRWISE  # noqa: F401 (the tolerances, read from here)


@np.errstate(all="ignore")  # diverged runs hold inf and nan: they compare as inf/nan
def tensor_errors(a, b):
    """(max abs error, relative error, cosine similarity) of two arrays of one shape."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    max_abs, rel = max_errors(a, b)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cosine = float((a * b).sum() / (na * nb)) if na and nb else (1.0 if na == nb else 0.0)
    return max_abs, rel, cosine


@np.errstate(all="ignore")
def max_errors(a, b):
    """(max abs error, relative error): tensor_errors without the cosine, whose two norms
    and product are half of its passes over the arrays. Where both hold the same infinity
    they agree there (inf - inf would be nan), and the scale is the largest finite entry
    (an inf one would make every finite difference relative 0); a nan disagrees."""
    # flat: a loss is 0-d, and an inf loss in both would be patched where it is equal below
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if not a.size:
        return 0.0, 0.0
    diff = np.abs(a - b)
    if np.isinf(a).any():
        diff[a == b] = 0.0
        a = a[np.isfinite(a)]
    max_abs = float(np.max(diff))
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return max_abs, max_abs / scale if scale else (0.0 if max_abs == 0 else math.inf)


def worst(errors):
    """The largest of some relative errors, nan if one is nan (max() keeps whichever comes
    first when it compares a nan: a pair whose loss was nan showed a worst error of 0.0);
    None if there are none."""
    errors = list(errors)
    if any(math.isnan(e) for e in errors):
        return math.nan
    return max(errors, default=None)


def worst_by_pair(rows):
    """(a, b) -> the worst relative error over the rows of each pair."""
    pairs = {}
    for row in rows:
        pairs.setdefault((row["a"], row["b"]), []).append(row["rel_err"])
    return {pair: worst(errors) for pair, errors in pairs.items()}


def validate(result, params, state, dtype):
    """Why a framework's check result cannot be compared, or None if it can."""
    grads = result.get("grads", {})
    missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
    if missing or extra:
        return f"gradients do not match the parameters (missing {missing}, unexpected {extra})"
    for name, p in list(params.items()) + list(state.items()):
        got = grads[name] if name in params else result.get("state", {}).get(name)
        if got is None:
            return f"no value returned for state {name}"
        if got.shape != p.shape or got.dtype != np.dtype(dtype):
            return (f"{name}: returned {got.dtype}{list(got.shape)}, "
                    f"expected {dtype}{list(p.shape)}")
    return None


def pairwise(results, dtype, zeros=None, tol=None):
    """Rows comparing every ok pair (a before b in registry order): loss, gradients, state.
    `tol`: the pass mark where it is not PAIRWISE[dtype] (reduced precision: per model)."""
    rows, tol, zeros = [], PAIRWISE[dtype] if tol is None else tol, zeros or {}
    ok = [fw for fw in PARTICIPANTS if results.get(fw, {}).get("status") == "ok"]
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            ra, rb = results[a], results[b]
            scale = max((float(np.max(np.abs(g))) for k, g in ra["grads"].items()
                         if k not in zeros and g.size), default=0.0)
            tensors = [("loss", "loss", ra["loss"], rb["loss"])]
            tensors += [(k, "grad", g, rb["grads"][k]) for k, g in ra["grads"].items()]
            tensors += [(k, "state", s, rb["state"][k]) for k, s in ra["state"].items()]
            for name, kind, ta, tb in tensors:
                max_abs, rel, cosine = tensor_errors(ta, tb)
                row = {"param": name, "kind": kind, "a": a, "b": b, "max_abs_err": max_abs,
                       "rel_err": rel, "cosine": None if kind == "loss" else cosine}
                if kind == "grad" and name in zeros:
                    row.update(rel_err=max_abs / scale if scale else rel, cosine=None,
                               note=f"zero by construction ({zeros[name]}); error relative "
                                    "to the model's largest gradient entry")
                rows.append(dict(row, passed=bool(row["rel_err"] <= tol)))
    return rows
