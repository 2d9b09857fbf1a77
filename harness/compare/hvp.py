"""Second-order cross-check (`check --order 2`): Hessian-vector products along the probes.

For every finite-difference probe direction v each worker returned H v (autodiff, or
NumPy's hand R-operator) and differences of its own gradient along v (run/second_order.py).
Two kinds of rows, each comparing two estimates of the same vector H v:

  pair  two frameworks (a before b in registry order). Both exact (autodiff or the
        R-operator): max |a - b| <= 1e-10 of the larger of their largest entries (a
        framework whose H v is all zero is then off by 1, not by inf). One of them
        differences of a gradient (NumPy on a layer without an R-operator): the
        finite-difference rule.
  own   a framework against differences of its own gradient (b = "differences"), by the
        finite-difference rule. Skipped where its H v is those differences already.

The finite-difference rule is compare/finite_diff.py's, for vectors: with s the largest
entry of the exact side and err the extrapolation's error estimate,
    rel_err = max |a - b| / (s + 3 err / 1e-6) <= 1e-6,
and a probe beyond it crosses a kink (status "kink", neither passed nor failed) when the
loss has a kink along it by finite_diff.py's own rule (its gradient then jumps within the
steps), or when the forward and backward one-sided differences of the gradient part by
more than 1e-6 s + 3 (their errors) (its second derivative jumps).

A direction along a parameter whose gradient is zero by construction (compare/zeros.py)
has H v = 0 by construction too: its rows are measured against the model's largest H v
entry, as its gradient rows are against the largest gradient entry.
"""
import numpy as np

from ..registry import ORDER
from ..run.second_order import DIFFERENCES
from .finite_diff import TOLERANCE, describe, estimate
from .zeros import structural_zeros

EXACT = 1e-10        # float64, between two exact second derivatives

# Causes found: (framework, layer types, what it does). A failing framework whose model holds
# one of the layers gets the line in its notes (and `known_cause` in the JSON).
KNOWN = [
    ("tensorflow", ("batchnorm", "layernorm"),
     "tf.nn.moments (BatchNormalization, LayerNormalization) takes the variance around "
     "stop_gradient(mean): the gradient is exact (d var / d mean = 0), the second derivative "
     "through the mean is dropped (tensorflow/python/ops/nn_impl.py, moments)"),
]


def attach(entry, results, probes, layers):
    """Add the second-order rows to a model's check entry (compare/results.assemble_check):
    "hvp" rows, each framework's method or error, and the verdict. A framework whose H v
    failed fails the check; one without gradients (a NumPy plugin without numpy_backward)
    has none to differentiate and is skipped."""
    rows = hvp_rows(results, probes, structural_zeros(layers))
    entry["hvp"] = rows
    if not probes:
        entry["hvp_note"] = (f"no second-order check in {entry['dtype']}: the probe directions "
                             "and differences are float64 only")
    elif not rows:  # e.g. NumPy alone, whose H v is differences of its own gradient
        entry["hvp_note"] = ("nothing compared at second order: no two frameworks gave H v, and "
                             "none by an exact method to hold against differences of its gradient")
    frameworks = entry["frameworks"]
    for fw, info in methods(results).items():
        frameworks[fw]["hvp"] = info
    failed = False
    for fw, r in results.items():
        if "hvp_error" in r:
            frameworks[fw]["hvp"] = {"method": None, "error": r["hvp_error"]}
            failed = True
        elif "hvp_skipped" in r:
            frameworks[fw]["hvp"] = {"method": None, "skipped": r["hvp_skipped"]}
    types = set(_types(layers))
    for fw, kinds, text in KNOWN:
        if set(kinds) & types and any(not r["passed"] and fw in (r["a"], r["b"]) for r in rows):
            frameworks[fw]["hvp"]["known_cause"] = text
    entry["passed"] = bool(entry["passed"] and not failed and all(r["passed"] for r in rows))
    return entry


def _types(layers):
    for layer in layers:
        yield layer["type"]
        yield from _types(layer.get("layers", []))


@np.errstate(over="ignore", invalid="ignore")  # an overflowing forward: inf and nan, shown
def hvp_rows(results, probes, zeros):
    """Every pair and every framework against its own differences, probe by probe."""
    done = [fw for fw in ORDER if results.get(fw, {}).get("status") == "ok"
            and "second_order" in results[fw]]
    if not done:
        return []
    largest = max((_size(e["hvp"]) for fw in done for e in results[fw]["second_order"]),
                  default=0.0)
    rows = []
    for i, (name, direction) in enumerate(probes):
        base = {"param": name, "direction": describe(direction), "probe": i}
        floor = largest if name in zeros else 0.0
        entries = {fw: dict(results[fw]["second_order"][i],
                            loss_kink=_loss_kink(results[fw], i, name, direction))
                   for fw in done}
        for j, a in enumerate(done):
            for b in done[j + 1:]:
                rows.append(dict(base, **_pair(a, b, entries[a], entries[b], floor)))
        for fw in done:
            if entries[fw]["method"] != DIFFERENCES:
                rows.append(dict(base, **_own(fw, entries[fw], floor)))
    return rows


def _loss_kink(result, i, name, direction):
    """compare/finite_diff.py's kink rule on the loss along this probe: where the loss has a
    kink within the steps, its gradient jumps there, and differences of it mean nothing."""
    _, (fwd, f_err), (bwd, b_err) = estimate(result["loss"], result["fd_values"][i])
    norm = float(np.linalg.norm(result["grads"][name])) if name in result["grads"] else 0.0
    return bool(abs(fwd - bwd) > TOLERANCE * norm + 3 * (f_err + b_err))


def _pair(a, b, ea, eb, floor):
    exact = [e for e in (ea, eb) if e["method"] != DIFFERENCES] or [ea, eb]
    differenced = [e for e in (ea, eb) if e["method"] == DIFFERENCES]
    scale = max(max(_size(e["hvp"]) for e in exact), floor)  # one side all zero: rel_err 1
    gap = _gap(ea["hvp"], eb["hvp"])
    row = {"kind": "pair", "framework": None, "a": a, "b": b,
           "method_a": ea["method"], "method_b": eb["method"], "max_abs_err": gap}
    if not differenced:
        rel = gap / scale if scale else (0.0 if gap == 0 else np.inf)
        status = "ok" if rel <= EXACT else "mismatch"
        return dict(row, rel_err=rel, tolerance=EXACT, status=status, passed=status == "ok")
    return dict(row, **_judged(gap, scale, differenced))


def _own(fw, entry, floor):
    scale = max(_size(entry["hvp"]), floor)
    gap = _gap(entry["hvp"], entry["differences"])
    row = {"kind": "own", "framework": fw, "a": fw, "b": "differences",
           "method_a": entry["method"], "method_b": DIFFERENCES, "max_abs_err": gap}
    return dict(row, **_judged(gap, scale, [entry]))


def _judged(gap, scale, differenced):
    """The finite-difference rule, against the differences' error estimates (both sides' if
    both are differences); a kink: the loss has one along the probe, or the one-sided
    differences of the gradient part (its derivative jumps)."""
    err = sum(e["differences_err"] for e in differenced)
    rel = gap / max(scale + 3 * err / TOLERANCE, 1e-300)
    kink = any(e["loss_kink"] or e["one_sided_gap"] > TOLERANCE * scale + 3 * e["one_sided_err"]
               for e in differenced)
    status = "ok" if rel <= TOLERANCE else ("kink" if kink else "mismatch")
    return {"rel_err": rel, "tolerance": TOLERANCE, "status": status,
            "passed": status != "mismatch"}


def _size(vector):
    return max((float(np.abs(v).max()) for v in vector.values() if np.size(v)), default=0.0)


def _gap(a, b):
    return max((float(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)).max())
                for k in a if np.size(a[k])), default=0.0)


def methods(results):
    """{framework: how it computed H v} ("double backward", ..., "gradient differences"),
    with NumPy's reason when it fell back to differences."""
    out = {}
    for fw, r in results.items():
        entries = r.get("second_order") or []
        if entries:
            out[fw] = {"method": entries[0]["method"]}
            if entries[0].get("why"):
                out[fw]["why"] = entries[0]["why"]
    return out


def summary(rows):
    """(worst rel_err of exact pairs, worst rel_err against differences), kinks left out."""
    exact = [r["rel_err"] for r in rows if r["tolerance"] == EXACT]
    differenced = [r["rel_err"] for r in rows if r["tolerance"] != EXACT and r["status"] != "kink"]
    return (max(exact) if exact else None), (max(differenced) if differenced else None)


def hvp_notes(m):
    """The terminal's lines on a model's second-order check (empty without --order 2)."""
    if "hvp" not in m:
        return []
    head = f"  {m['name']} {m['dtype']}:"
    notes = [f"{head} {m['hvp_note']}"] if m.get("hvp_note") else []
    for fw, info in m["frameworks"].items():
        hvp = info.get("hvp") or {}
        if hvp.get("error"):
            notes.append(f"{head} {fw} has no H v: {hvp['error']}")
        elif hvp.get("skipped"):
            notes.append(f"{head} {fw} H v skipped: {hvp['skipped']}")
        elif hvp.get("method") == DIFFERENCES:
            notes.append(f"{head} {fw} H v from differences of its gradient ({hvp.get('why')})")
    bad = sorted((r for r in m["hvp"] if r["status"] == "mismatch"), key=lambda r: -r["rel_err"])
    for r in bad[:3]:
        along = f"H v along {r['param']} ({r['direction']})"
        who = (f"{r['a']} vs {r['b']} disagree on {along}" if r["kind"] == "pair"
               else f"{r['a']}'s {along} disagrees with differences of its own gradient")
        notes.append(f"{head} {who}: rel err {r['rel_err']:.1e} (tolerance {r['tolerance']:g})")
    notes += [f"{head} {fw}: {info['hvp']['known_cause']}" for fw, info in m["frameworks"].items()
              if (info.get("hvp") or {}).get("known_cause")]
    kinks = sum(r["status"] == "kink" for r in m["hvp"])
    if kinks:
        notes.append(f"{head} {kinks} H v rows against gradient differences cross a kink "
                     "(the gradient is not differentiable there along the probe)")
    return notes
