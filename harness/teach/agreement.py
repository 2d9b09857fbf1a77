"""The measured agreement of one layer type or zoo model, as rows the pages and the text print.

A layer is judged within its example's check: for every pair of frameworks, the error
of the layer's output, of dL/d(its input), and of its own parameters' gradients, each
max|a - b| / max|a| against the check's tolerance for the dtype, and in float64 the
finite differences of its parameters.
"""
from ..compare.finite_diff import TOLERANCE as FD_TOLERANCE
from ..compare.pairwise import PAIRWISE
from ..report.findings import worst_by_pair
from ..report.tables import check_result, train_result
from .measure import examples_of


def layer_rows(layer_type, entry):
    """One row per (pair, layer of this type): {pair, layer, forward, backward, params,
    passed}. Layers inside residual blocks are measured through their block."""
    tol = PAIRWISE[entry["dtype"]]
    rows = []
    for r in entry["layers"]:
        if r["type"] != layer_type:
            continue
        grads = [c["rel_err"] for c in entry["comparisons"] if c["a"] == r["a"]
                 and c["b"] == r["b"] and c["kind"] == "grad"
                 and c["param"].startswith(r["layer"] + ".")]
        params = max(grads) if grads else None
        errs = [e for e in (r["forward_rel_err"], r["backward_rel_err"], params) if e is not None]
        rows.append({"pair": (r["a"], r["b"]), "layer": r["layer"],
                     "forward": r["forward_rel_err"], "backward": r["backward_rel_err"],
                     "params": params, "passed": all(e <= tol for e in errs)})
    return rows


def layer_fd(layer_type, entry):
    """(worst finite-difference error over the probes of this type's parameters, probes,
    passed), or None where nothing was probed (float32, a layer without parameters)."""
    names = {r["layer"] for r in entry["layers"] if r["type"] == layer_type}
    rows = [r for r in entry["finite_difference"] if r["param"].split(".")[0] in names]
    errs = [r["rel_err"] for r in rows if r["status"] != "kink"]
    return (max(errs), len(rows), all(r["passed"] for r in rows)) if errs else None


def layer_summary(layer_type, measured):
    """{dtype: (worst pairwise error over every pair and quantity, or None where no pair
    ran, passed)} over the type's examples, finite differences included in `passed`."""
    out = {}
    for name in examples_of(layer_type):
        for dtype, entry in measured.layers.get(name, {}).items():
            rows = layer_rows(layer_type, entry)
            if rows or not entry["layers"]:
                errs = [e for r in rows for e in (r["forward"], r["backward"], r["params"])
                        if e is not None]
                fd = layer_fd(layer_type, entry)
                ok = all(r["passed"] for r in rows) and (fd is None or fd[2])
            else:  # not a top-level layer there: the whole example speaks for it
                errs, ok = list(worst_by_pair(entry).values()), entry["passed"]
            worst, was_ok = out.get(dtype, (None, True))
            every = [e for e in [worst, *errs] if e is not None]
            out[dtype] = (max(every) if every else None, was_ok and ok)
    return out


def check_rows(entry):
    """A zoo model's check in one dtype: {pair: worst gradient error}, the finite
    differences' worst, and the verdict."""
    fd = [r["rel_err"] for r in entry["finite_difference"] if r["status"] != "kink"]
    return {"pairs": worst_by_pair(entry), "fd": max(fd) if fd else None,
            "kinks": sum(r["status"] == "kink" for r in entry["finite_difference"]),
            "statuses": {fw: i["status"] for fw, i in entry["frameworks"].items()},
            "result": check_result(entry)}


def train_rows(entry):
    """A zoo model's aligned training in one dtype: one row per framework."""
    rows = []
    for fw, info in entry["frameworks"].items():
        rows.append({"framework": fw, "status": info["status"],
                     "final_loss": info.get("final_loss"),
                     "max_rel_diff": None if fw == entry["reference"] else info.get("max_rel_diff"),
                     "parted_at": info.get("parted_at"), "branched_at": info.get("branched_at")})
    return {"rows": rows, "steps": entry["steps"], "result": train_result(entry),
            "reference": entry["reference"]}


TOLERANCES = (f"pairwise: float64 <= {PAIRWISE['float64']:g}, float32 <= "
              f"{PAIRWISE['float32']:g}; finite differences <= {FD_TOLERANCE:g}")
