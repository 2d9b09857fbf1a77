"""Every framework against float64: reduced precision (`check --dtype bfloat16|float16`), and
float32 under each framework's own matmul precision (`--matmul-precision`).

The reference is NumPy in float64 on the very arrays the frameworks were given (weights and
data rounded once to the format, widened exactly; run/reference.py): the exact result of
the rounded model. So the errors below are those of each framework's arithmetic in the
format, not those of rounding the inputs, which every framework shares.

Per framework and tensor (the loss, each gradient, BatchNorm's state): the relative error
max |x - ref| / max |ref| and its digits, -log10(rel_err). A gradient is measured against
the largest gradient entry of its layer, as lockstep training measures it
(compare/lockstep.py): a bias or BatchNorm beta gradient sums many terms that cancel, so
its own largest entry can be far below the size of what was summed, and rounding's share
with it (batchnorm_conv's beta: 43 times; float16 keeps 2.0 digits of it, 3.3 of the
layer's scale); one zero by construction against the model's largest gradient entry. Per layer: the error of its output and of dL/d(its input), which says
where the digits go. The tolerance (README, "Reduced precision"):

    tol = 2 u sqrt(2 depth) * 4,   u = 2^-p the unit roundoff of the format,

`depth` the number of layers that round (recurrent layers: one per time step); pairs of
frameworks get 2 tol. An operation that accumulates in the format itself (a sum of n
terms in bfloat16: error ~ sqrt(n) u, n u at worst, against u for a float32 accumulator
rounded once) leaves it for n of a few tens and more.
"""
import math

import numpy as np

from ..registry import REFERENCE
from ..spec.precision import REDUCED, SMALLEST_NORMAL, UNIT_ROUNDOFF
from .layers import first_partings
from .pairwise import max_errors
from .zeros import structural_zeros

EXACT_LAYERS = ("flatten", "identity", "embedding")   # they move or pick values, never round
KINKS = ("relu", "leaky_relu", "maxpool2d")            # where rounding can flip a branch
SAFETY = 4
SPREAD = 2 * SAFETY  # how far apart honest roundings of one computation land (control.py)
PERTURBATIONS = 3   # the reference's draws of NumPy's formula, each rounding moved at random


def depth(layers, time=None):
    """Layers whose outputs are rounded, along the network; a recurrent layer rounds at each
    of its time steps, a residual block at each of its sub-layers."""
    total = 0
    for layer in layers:
        if layer["type"] == "residual":
            total += depth(layer["layers"])
        elif layer["type"] in ("rnn", "lstm", "gru"):
            total += layer["in_shape"][0]
        elif layer["type"] not in EXACT_LAYERS:
            total += 1
    return total


def tolerance(dtype, layers):
    """The pass mark against float64 for one model (see the module's docstring)."""
    return SAFETY * 2 * UNIT_ROUNDOFF[dtype] * math.sqrt(2 * max(1, depth(layers)))


def attach(entry, spec, results, reference, matmul_precision):
    """Add the comparison with float64 to a model's check entry: "precision" rows (loss,
    gradients, state), "precision_layers" rows, each framework's digits, matmul settings and
    branch, the tolerance, and the verdict."""
    tol = tolerance(spec.dtype, spec.layers)
    entry["tolerance"] = {"unit_roundoff": UNIT_ROUNDOFF[spec.dtype], "depth": depth(spec.layers),
                          "versus_float64": tol, "pairwise": 2 * tol}
    entry["matmul_precision"] = matmul_precision or "highest"
    entry["reference"] = {"framework": "numpy", "dtype": "float64",
                          "status": reference.get("status", "failed"),
                          "loss": reference.get("loss")}
    for fw, r in results.items():
        if "precision" in r and fw in entry["frameworks"]:
            entry["frameworks"][fw]["precision"] = r["precision"]
    rows, layers, branches = [], [], {}
    if reference.get("status") != "ok" or "gradients" in reference:
        entry["reference"]["error"] = reference.get("error") or reference.get("gradients_reason")
    else:
        zeros = structural_zeros(spec.layers)
        entry["below_normal"] = {k: float(np.max(np.abs(g))) for k, g in reference["grads"].items()
                                 if g.size and np.max(np.abs(g)) < SMALLEST_NORMAL[spec.dtype]
                                 and k not in zeros}  # a zero by construction is noise anyway
        for fw, r in results.items():
            if r.get("status") != "ok":
                continue
            mine, per_layer = _rows(fw, r, reference, zeros, tol), _layer_rows(fw, spec.layers, r,
                                                                                reference)
            branches[fw] = branch(spec.layers, per_layer, tol, r, reference)
            if branches[fw] is not None:
                _excuse(mine, branches[fw], "float64")
                entry["frameworks"][fw]["branched_at"] = _where(spec.layers, branches[fw])
            rows, layers = rows + mine, layers + per_layer
            entry["frameworks"][fw]["digits"] = worst_digits([row["digits"] for row in mine])
    if "error" not in entry["reference"] and "perturbed" in reference:
        reached = within_reach(rows, reference, zeros, tol, results.get(REFERENCE))
        if spec.dtype in REDUCED:
            _pairs_within_reach(entry["comparisons"], reached)
    if spec.dtype in REDUCED:  # pairs below a kink that rounding flipped in either of them
        for c in entry["comparisons"]:
            at = max((b for fw in (c["a"], c["b"]) if (b := branches.get(fw)) is not None),
                     default=None)
            if at is not None:
                _excuse([c], at, "each other")
        entry["first_parting"] = first_partings(spec.layers, entry["layers"], entry["comparisons"],
                                                spec.dtype, 2 * tol)
    entry["precision"], entry["precision_layers"] = rows, layers
    failed = any(info["status"] == "failed" for info in entry["frameworks"].values())
    entry["passed"] = bool(not failed and "error" not in entry["reference"]
                           and all(r["passed"] for key in ("comparisons", "finite_difference",
                                                           "hvp", "precision")
                                   for r in entry.get(key, [])))
    amplified = sum(r["status"] == "amplified" for r in rows)
    if entry["passed"] and amplified:
        entry["amplified"] = (f"{amplified} rows beyond the tolerance against float64, every "
                              f"framework within rounding's reach of NumPy's formula in "
                              f"{spec.dtype}")
    return entry


def within_reach(rows, reference, zeros, tol, own_result=None):
    """Judge the rows beyond `tol` against rounding's reach (compare/control.py's level, with
    float64 as the wider format): how far NumPy's own formula lands from float64 in the
    checked format, computed once as checked (NumPy's rows) and PERTURBATIONS more times
    with every value leaving a layer moved by one unit roundoff (the reference's
    `perturbed`). A sum that cancels (a loss near its minimum, a bias gradient over 1024
    rows in float32) loses digits in every correct implementation alike. A row within
    SPREAD x that level passes, "amplified"; where SPREAD x the level reaches 1, rounding
    alone moves the tensor by about its size, and a bound that wide would pass anything:
    the format cannot hold it (float16's underflow, bfloat16's loss near a minimum), and the
    row stays failed, saying so. NumPy's own result (`own_result`) sets no level where
    rounding is not what moved it (reference_off): the level is then its draws' spread
    alone. -> {(framework, tensor): its status ("ok", "branched", "amplified") where it
    passes}."""
    far = {}
    for row in rows:
        far.setdefault(row["param"], {})[row["framework"]] = row["rel_err"]
    scales = _row_scales(reference, zeros)
    for row in rows:
        if row["passed"]:  # within the tolerance, or below a branch (not judged)
            continue
        exact, scale = tensor_of(reference, row), scales.get(row["param"])
        moved = max(distance(exact, tensor_of(p, row), scale) for p in reference["perturbed"])
        level = max(moved, far[row["param"]].get(REFERENCE, 0.0))
        spread = spread_of(own_result, reference["perturbed"], row, scale, exact)
        if reference_off(far[row["param"]], spread):
            level = spread
            row["note"] = (f"NumPy's own formula in this format lands "
                           f"{far[row['param']][REFERENCE]:.1e} from float64 where rounding "
                           f"moves it by {spread:.1e}: a formula of NumPy's for this format, "
                           f"not rounding")
        bound = max(tol, SPREAD * level)
        row["reach"] = {"level": level, "bound": bound}
        if bound >= 1:
            row["note"] = (f"rounding alone moves it by {level:.1e} of its size in NumPy's own "
                           f"formula: the format cannot hold it")
        elif row["rel_err"] <= bound:
            row.update(passed=True, status="amplified",
                       note=f"within {bound:.1e} of float64: rounding's reach here is "
                            f"{level:.1e} (NumPy's formula, rounded as the format does)")
    return {(row["framework"], row["param"]): row["status"] for row in rows if row["passed"]}


def _pairs_within_reach(comparisons, reached):
    """A failing pair whose two frameworks are each within rounding's reach of float64 on
    the tensor (within_reach), one of them by that reach alone: amplified too."""
    for c in comparisons:
        both = [reached.get((fw, c["param"])) for fw in (c["a"], c["b"])]
        if not c["passed"] and c["kind"] != "state" and all(both) and "amplified" in both:
            c.update(passed=True, status="amplified",
                     note="both within rounding's reach of float64 on this tensor")


def _row_scales(reference, zeros):
    """What a row is relative to (as _rows): a gradient, its layer's largest float64 entry; a
    zero by construction, the model's largest; the loss and state, None (their own)."""
    sizes = {k: float(np.max(np.abs(g))) for k, g in reference["grads"].items()
             if k not in zeros and g.size}
    layers = {}
    for k, size in sizes.items():
        layers[_layer(k)] = max(layers.get(_layer(k), 0.0), size)
    largest = max(sizes.values(), default=0.0)
    return {k: (largest if k in zeros else layers.get(_layer(k), 0.0)) or None
            for k in reference["grads"]}


def tensor_of(result, row):
    """The row's tensor in one result; None where it has none (a loss-only framework)."""
    if row["kind"] == "loss":
        return np.asarray(result["loss"])
    return result.get("grads" if row["kind"] == "grad" else "state", {}).get(row["param"])


def distance(exact, value, scale=None):
    """|value - exact| relative to exact's largest entry (or `scale`), in float64."""
    max_abs, rel = max_errors(np.asarray(exact, np.float64), value)
    return max_abs / scale if scale else rel


# how much farther NumPy's own result must be from the wider format than its draws are from
# it, for rounding not to be what moved it: three draws of a structural zero's rounding noise
# land within a tenth of NumPy's own distance (ill-conditioned networks of tests/test_control)
APART = SPREAD ** 2


def spread_of(own, draws, row, scale, exact):
    """How far one rounding per layer moves NumPy's own checked result: the farthest of its
    draws from it, relative as the row is (to `scale`, else the wider result's largest
    entry); None without NumPy's result."""
    mine = tensor_of(own, row) if own and own.get("status") == "ok" else None
    if mine is None:
        return None
    scale = scale or float(np.max(np.abs(np.asarray(exact, np.float64)))) or None
    return max(distance(mine, tensor_of(d, row), scale) for d in draws)


def reference_off(far, spread):
    """{framework: distance} of the frameworks that show NumPy's own checked result is not
    rounding's doing, or {}: where it lands more than APART times farther from the wider
    format ({participant: distance} `far`) than its draws land from it (`spread`, rounding
    barely moves it), those SPREAD times nearer the wider format than NumPy. Then NumPy's code
    computes something else in this format, and its distance sets no level."""
    own = far.get(REFERENCE)
    if own is None or spread is None or not np.isfinite(own) or not spread * APART < own:
        return {}
    return {fw: err for fw, err in far.items() if fw != REFERENCE and err * SPREAD < own}


def branch(layers, per_layer, tol, result, reference):
    """The index of the layer where a framework's values left float64's at a kink, or None:
    every layer output within tol, and the first dL/dx beyond it, from the top down, is that
    of a layer holding a ReLU or a max (rounding moved an input across its kink: the gradient
    takes the other side; the README's float32 branches, within one step), and its dL/dx
    differs as a flipped branch does (flipped)."""
    if len(per_layer) != len(layers) or any(not r["forward_rel_err"] <= tol for r in per_layer):
        return None
    for i in reversed(range(len(per_layer))):
        err = per_layer[i]["backward_rel_err"]
        if err is not None and not err <= tol:
            name = layers[i]["name"]
            return i if _holds_kink(layers[i]) and flipped(
                layers[i], result["layer_input_grads"][name],
                reference["layer_input_grads"][name], tol) else None
    return None


def _holds_kink(layer):
    return layer["type"] in KINKS or any(_holds_kink(sub) for sub in layer.get("layers", []))


def flipped(layer, grad, exact, tol):
    """Whether dL/dx of a layer holding a kink differs from float64's as a branch taken the
    other way does, and not as a wrong gradient. A ReLU or max itself passes dy through
    where its branch is taken and 0 where not (leaky_relu: alpha dy): so every entry beyond
    tol must be one taken by one side only (0, or alpha times, against the other). A kink
    inside a block (a residual's ReLU) is not seen from outside; a flip there changes only
    the rows (examples) whose input met the kink, a few in a batch (resid_mlp's: 1 of 32),
    where a wrong gradient changes every row its ReLUs let through: at most a tenth of the
    rows, or one (see the README, "Reduced precision", for what this cannot tell apart)."""
    grad, exact = np.asarray(grad, np.float64).reshape(exact.shape), np.asarray(exact)
    beyond = np.abs(grad - exact) > tol * np.max(np.abs(exact))
    if layer["type"] in ("relu", "maxpool2d"):
        return bool(np.all((grad == 0) != (exact == 0), where=beyond))
    if layer["type"] == "leaky_relu":
        a = layer["alpha"]
        one_side = (np.abs(grad - a * exact) <= tol * np.abs(exact)) | (
            np.abs(a * grad - exact) <= tol * np.abs(grad))
        return bool(np.all(one_side, where=beyond))
    rows = beyond.reshape(len(beyond), -1).any(1)
    return int(rows.sum()) <= max(1, len(rows) // 10)


def _excuse(rows, at, against):
    """Gradient rows of layers at or below `at` that failed: "branched", not failed."""
    for row in rows:
        if row["kind"] == "grad" and not row["passed"] and int(_layer(row["param"])) <= at:
            row.update(passed=True, status="branched",
                       note=f"below layer {at}, where a kink flipped under rounding: compared "
                            f"with {against} only up to there")


def _where(layers, at):
    return {"layer": layers[at]["name"], "type": layers[at]["type"]}


def _rows(fw, result, reference, zeros, tol):
    """The loss, every gradient and state tensor of one framework against float64."""
    if "gradients" in result:  # a NumPy plugin without numpy_backward: its loss only
        tensors = [("loss", "loss", result["loss"], reference["loss"])]
    else:
        tensors = [("loss", "loss", result["loss"], reference["loss"])]
        tensors += [(k, "grad", g, reference["grads"][k]) for k, g in result["grads"].items()]
        tensors += [(k, "state", s, reference["state"][k]) for k, s in result["state"].items()]
    sizes = {k: float(np.max(np.abs(g))) for k, g in reference["grads"].items()
             if k not in zeros and g.size}
    layers = {}
    for k, size in sizes.items():
        layers[_layer(k)] = max(layers.get(_layer(k), 0.0), size)
    rows = []
    for name, kind, value, exact in tensors:
        max_abs, rel = max_errors(exact, value)
        scale = (max(sizes.values(), default=0.0) if name in zeros
                 else layers.get(_layer(name), 0.0)) if kind == "grad" else 0.0
        if scale:
            rel = max_abs / scale
        rows.append({"framework": fw, "param": name, "kind": kind, "rel_err": rel,
                     "digits": digits(rel), "tolerance": tol, "passed": bool(rel <= tol),
                     "status": "ok" if rel <= tol else "beyond"})
    return rows


def _layer(name):
    """The top-level layer of a canonical name: "3.0.W" -> "3"."""
    return name.split(".", 1)[0]


def _layer_rows(fw, layers, result, reference):
    """Each top-level layer's output and dL/dx against float64: where the digits go."""
    if "layer_outputs" not in result or "layer_outputs" not in reference:
        return []
    rows = []
    for layer in layers:
        name = layer["name"]
        grad, exact = (result["layer_input_grads"].get(name),
                       reference["layer_input_grads"].get(name))
        rows.append({"framework": fw, "layer": name, "type": layer["type"],
                     "forward_rel_err": max_errors(reference["layer_outputs"][name],
                                                   result["layer_outputs"][name])[1],
                     "backward_rel_err": None if exact is None or grad is None
                     else max_errors(exact, grad)[1]})
    return rows


def worst_digits(found):
    """The fewest digits of a framework's tensors; nan if any is not finite (min() would
    skip a nan or not, by where it stands), None if there are none."""
    if not found:
        return None
    return math.nan if any(d != d for d in found) else min(found)


def digits(rel_err):
    """Correct decimal digits: -log10 of the relative error (inf when exact, 0 when off by
    the whole size, nan when not finite)."""
    if not rel_err == rel_err or rel_err == math.inf:
        return math.nan
    return math.inf if rel_err == 0 else max(0.0, -math.log10(rel_err))
