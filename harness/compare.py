"""Comparisons: every pair of frameworks per tensor, finite differences, loss curves.

Errors are relative to the reference tensor's largest entry (max |a - b| / max |a|),
the scale at which float rounding lives; the tolerances below are explained in
the README ("Tolerances").
"""
import math

import numpy as np

from . import finite_diff
from .registry import ORDER

PAIRWISE = {"float64": 1e-12, "float32": 1e-5}
CURVES = {"float64": 1e-10, "float32": 1e-4}
PARTED = 1e-3  # native mode: the first step where a curve is this far from the reference


@np.errstate(all="ignore")  # diverged runs hold inf and nan: they compare as inf/nan
def tensor_errors(a, b):
    """(max abs error, relative error, cosine similarity) of two arrays of one shape."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    rel = max_abs / scale if scale else (0.0 if max_abs == 0 else math.inf)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cosine = float((a * b).sum() / (na * nb)) if na and nb else (1.0 if na == nb else 0.0)
    return max_abs, rel, cosine


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


def structural_zeros(layers):
    """Gradients that are exactly zero whatever the data, so that every framework returns
    rounding noise for them: name -> why. These are compared against the model's largest
    gradient entry instead of their own (noise against noise means nothing)."""
    zeros, prev = {}, None
    for layer in layers:
        if layer["type"] == "batchnorm" and prev and prev["type"] in ("dense", "conv2d") \
                and prev["use_bias"]:
            zeros[f"{prev['name']}.b"] = "a bias right before BatchNorm: the batch mean cancels it"
        if layer["type"] == "attention" and layer["use_bias"]:
            zeros[f"{layer['name']}.bk"] = ("the key bias adds q.bk to every score of a query: "
                                            "softmax cancels it")
        zeros.update(structural_zeros(layer.get("layers", [])))
        if layer["type"] != "identity":
            prev = layer
    return zeros


def pairwise(results, dtype, zeros=None):
    """Rows comparing every ok pair (a before b in registry order): loss, gradients, state."""
    rows, tol, zeros = [], PAIRWISE[dtype], zeros or {}
    ok = [fw for fw in ORDER if results.get(fw, {}).get("status") == "ok"]
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


def finite_differences(results, probes):
    """One row per (framework, probe), from the loss values each worker computed."""
    rows = []
    for fw in ORDER:
        result = results.get(fw, {})
        if result.get("status") != "ok" or not len(probes):
            continue
        for (name, direction), values in zip(probes, result["fd_values"]):
            row = finite_diff.check(name, direction, result["grads"][name], result["loss"], values)
            rows.append({"framework": fw, **row, "passed": row["status"] != "mismatch"})
    return rows


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
