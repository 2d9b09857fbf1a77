"""What `check` and `train` return: one JSON-able entry per model, built from the workers'
results, with pandas views of every table (the README's "JSON output" is the schema)."""
import math
from dataclasses import dataclass, field

from .. import registry
from ..importers import original
from . import lockstep
from .curves import branch_step, curve_errors, verdict
from .finite_diff import finite_differences
from .layers import first_partings, layer_rows
from .pairwise import max_errors, pairwise, validate, worst, worst_by_pair
from .zeros import structural_zeros


def frame(rows):
    """A pandas DataFrame of `rows`, pandas imported when a table is first asked for: a
    command's start (the tables' import of this module) need not wait 0.4 s for it."""
    import pandas as pd
    return pd.DataFrame(rows)


# ---- gradient check ----------------------------------------------------------------------------

@dataclass
class CheckResult:
    models: list = field(default_factory=list)   # the JSON entries (see README, "JSON output")
    saved: dict = field(default_factory=dict)    # (model, dtype) -> arrays for --save

    @property
    def passed(self):
        return all(m["passed"] for m in self.models)

    def frame(self, key):
        rows = [dict(model=m["name"], dtype=m["dtype"], **row)
                for m in self.models for row in m[key]]
        return frame(rows)

    @property
    def comparisons(self):
        return self.frame("comparisons")

    @property
    def finite_difference(self):
        return self.frame("finite_difference")

    @property
    def layers(self):
        """model, dtype, layer, type, a, b, forward_rel_err, backward_rel_err."""
        return self.frame("layers")

    @property
    def frameworks(self):
        return frame([dict(model=m["name"], dtype=m["dtype"], framework=fw, **info)
                      for m in self.models for fw, info in m["frameworks"].items()])

    @property
    def summary(self):
        return frame([summary_row(m) for m in self.models])

    def to_json(self):
        return {"models": self.models}


def assemble_check(spec, inputs, results, names, missing, tol=None):
    """One model's JSON entry: framework statuses, pairwise rows, finite-difference rows.
    `tol`: the pairwise pass mark where it is not the dtype's (reduced precision)."""
    frameworks = {fw: {"status": "skipped", "loss": None, "error": why}
                  for fw, why in missing.items()}
    for fw in names:
        r = results.get(fw, {"status": "failed", "error": "no result"})
        if r.get("status") == "ok" and "gradients" not in r:  # "gradients": skipped, loss only
            bad = validate(r, inputs.params, inputs.state, spec.dtype)
            if bad:
                r = {"status": "failed", "error": bad}
        results[fw] = r
        frameworks[fw] = {"status": r["status"], "loss": r.get("loss"),
                          "version": _version(fw, spec), "seconds": r.get("seconds"),
                          **_original(fw, spec)}
        if r["status"] != "ok":
            frameworks[fw]["error"] = r.get("error")
        if "layer_values_error" in r:  # no per-layer rows for it; the check itself goes on
            frameworks[fw]["layer_values_error"] = r["layer_values_error"]
        if "gradients" in r:
            frameworks[fw].update(gradients=r["gradients"], gradients_reason=r["gradients_reason"])
    # a framework without gradients has none to pair: its loss is compared, and numpy
    # (the only one that can lack them) comes first in every pair
    zeros = structural_zeros(spec.layers)
    comparisons = pairwise(results, spec.dtype, zeros, tol)
    fd = _finite_differences(results, inputs.probes, zeros)
    layers = layer_rows(spec.layers, results)  # they explain a failure, they do not judge
    failed = [fw for fw in names if frameworks[fw]["status"] == "failed"]
    undefined = not_finite(frameworks)
    passed = (not failed and not undefined and all(r["passed"] for r in comparisons)
              and all(r["passed"] for r in fd))
    idle = unchecked(frameworks, comparisons, fd, bool(inputs.params)) if passed else None
    return {"name": spec.name, "dtype": spec.dtype, "seed": spec.seed, "spec_hash": spec.hash,
            "init_hash": spec.init_hash, "passed": bool(passed),
            **({"unchecked": idle} if idle else {}),
            **({"not_finite": undefined} if undefined else {}),
            "frameworks": frameworks,
            "comparisons": comparisons, "finite_difference": fd,
            "fd_tensors": _probed(fd, inputs.fd_tensors),
            "layers": layers,
            "first_parting": first_partings(spec.layers, layers, comparisons, spec.dtype, tol)}


def unchecked(frameworks, comparisons, fd, has_params=True):
    """Why nothing was compared, or None: no pair of frameworks ran (the others skipped) and
    no finite difference was probed (float32, or no gradient to probe); or a framework's
    gradients met neither another framework's nor a finite difference (float32, where the
    only other framework has a forward pass alone: its loss was all that was compared).
    Nothing disagreed, so the check passes (`check --frameworks numpy --dtype float32` shows
    a loss), but the table says UNCHECKED and crossgrad.testing does not let it pass an
    assertion."""
    ran = [fw for fw, info in frameworks.items() if info["status"] == "ok"]
    if not comparisons and not fd:
        return (f"nothing compared (ran: {', '.join(ran) or 'none'}; a check needs two "
                f"frameworks, or one with gradients in float64 for finite differences)")
    checked = {row[side] for row in comparisons if row["kind"] == "grad" for side in "ab"}
    checked |= {row.get("gradient_from", row["framework"]) for row in fd}
    idle = [fw for fw in ran if "gradients" not in frameworks[fw] and fw not in checked]
    if not has_params or not idle:
        return None
    return (f"the gradients of {', '.join(idle)} compared with nothing (no other framework that "
            f"ran has gradients to pair with them, and no finite difference probed them): "
            f"only the loss was compared")


def not_finite(frameworks):
    """Why nothing can be compared at these parameters, or None: the loss is nan or inf in
    every framework that ran. Every gradient is then nan or inf too, and every pair and
    probe "disagrees" on them; the check fails, but on the spec, not on a framework."""
    losses = [info["loss"] for info in frameworks.values() if info["status"] == "ok"]
    if not losses or any(loss is None or math.isfinite(loss) for loss in losses):
        return None
    ran = [fw for fw, info in frameworks.items() if info["status"] == "ok"]
    values = " or ".join(sorted({str(float(loss)) for loss in losses}))
    return (f"the loss is {values} in every framework that ran ({', '.join(ran)}): nothing "
            "can be compared at these parameters (a loss outside its domain, such as binary "
            "cross-entropy of outputs outside [0, 1], or an overflow in the forward pass)")


def _version(fw, spec):
    """The framework's version; the original's is that of the framework it runs in."""
    return registry.version(original.worker(spec) if fw == registry.ORIGINAL else fw)


def _original(fw, spec):
    """What the original participant is: its framework and model file."""
    if fw != registry.ORIGINAL:
        return {}
    return {"model_framework": spec.original["framework"], "model_file": spec.original["file"]}


def _finite_differences(results, probes, zeros):
    """Each framework's loss probed against its own gradient; a framework without gradients
    (a plugin without numpy_backward) probes its loss against the first framework's that
    has them, and its rows say whose ("gradient_from")."""
    donor = next((fw for fw in registry.ORDER if results.get(fw, {}).get("status") == "ok"
                  and "gradients" not in results[fw]), None)
    lent = {fw: dict(r, grads=results[donor]["grads"]) if donor else dict(r, status="no grads")
            for fw, r in results.items() if r.get("status") == "ok" and "gradients" in r}
    rows = finite_differences(dict(results, **lent), probes, zeros)
    for row in rows:
        if row["framework"] in lent:
            row["gradient_from"] = donor
    return rows


def _probed(fd, planned):
    """The tensors finite differences probed, of all: as planned where a framework with
    gradients ran in float64, fewer (none) where none did; None in float32."""
    if planned is None:
        return None
    return {"probed": len({row["param"] for row in fd}), "total": planned["total"]}


def summary_row(m):
    """One line per model: status per framework, worst error per pair, worst FD, pass/fail."""
    row = {"model": m["name"], "dtype": m["dtype"]}
    row.update({fw: info["status"] for fw, info in m["frameworks"].items()})
    row.update({f"{a}~{b}": err for (a, b), err in worst_by_pair(m["comparisons"]).items()})
    fd = [r["rel_err"] for r in m["finite_difference"] if r["status"] != "kink"]
    row["fd_worst"] = worst(fd) if fd else math.nan
    row["kinks"] = sum(r["status"] == "kink" for r in m["finite_difference"])
    row["passed"] = m["passed"]
    return row


# ---- training ------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    models: list = field(default_factory=list)
    curves: object = None      # a DataFrame: model, dtype, mode, framework, step, loss, ...
    grad_norms: object = None  # a DataFrame: model, dtype, mode, framework, step, layer, norm
    saved: dict = field(default_factory=dict)

    @property
    def passed(self):
        return all(m["passed"] is not False for m in self.models)

    @property
    def summary(self):
        return frame([dict(model=m["name"], dtype=m["dtype"], mode=m["mode"],
                           framework=fw, **{k: v for k, v in info.items()})
                      for m in self.models for fw, info in m["frameworks"].items()])

    def to_json(self):
        return {"models": self.models}


def explain_branches(models, curves):
    """Without lockstep (the imported original; a reference that cannot step): a float32
    curve that fails, while the same model's float64 curve agrees, and that left the
    reference in one jump, is marked "branched" (a kink under rounding, not a difference
    in the math): reported as such, not as a failure. With lockstep, curves.verdict
    has decided already."""
    f64 = {(m["name"], m["mode"]): m for m in models if m["dtype"] == "float64"}
    for m in models:
        control = f64.get((m["name"], m["mode"]))
        if m["dtype"] != "float32" or m["passed"] is not False or control is None:
            continue
        stopped = m["frameworks"].get(m.get("reference"), {}).get("diverged_at")
        for fw, info in m["frameworks"].items():
            agreed64 = control["frameworks"].get(fw, {}).get("passed")
            if info.get("passed") is not False or not agreed64 or "lockstep_parted_at" in info \
                    or info.get("diverged_at") != stopped:  # stops elsewhere: a FAIL stands
                continue
            mine = curves[(curves["model"] == m["name"]) & (curves["dtype"] == "float32") &
                          (curves["mode"] == m["mode"]) & (curves["framework"] == fw)]
            step = branch_step(mine.sort_values("step")["rel_diff"], "float32")
            if step is not None:
                info.update(passed=True, verdict="PASS*", branched_at=step)
        m["passed"] = training_passed(m["frameworks"])


def training_passed(frameworks):
    """An aligned training's verdict from its frameworks' (as judged so far): none failed
    to run, none judged failed."""
    return all(i.get("passed") is not False for i in frameworks.values()
               if i["status"] == "ok") and not any(
        i["status"] == "failed" for i in frameworks.values())


def assemble_train(spec, inputs, results, names, missing, native):
    mode = "native" if native else "aligned"
    frameworks = {fw: {"status": "skipped", "error": why} for fw, why in missing.items()}
    ok = {fw: r["curves"] for fw, r in results.items() if r.get("status") == "ok"}
    reference = next((fw for fw in registry.ORDER if fw in ok), None)
    errors = curve_errors(ok, reference, spec.dtype, native) if reference else {}
    curve_rows, norm_rows = [], []
    for fw in names:
        r = results.get(fw, {"status": "failed", "error": "no result"})
        info = {"status": r["status"], "version": _version(fw, spec), "seconds": r.get("seconds"),
                **_original(fw, spec)}
        if r["status"] != "ok":
            frameworks[fw] = dict(info, error=r.get("error"))
            continue
        c, e = r["curves"], errors[fw]
        final = _final_params_error(r, results.get(reference),
                                    structural_zeros(spec.layers))
        locked, per_step = lockstep.judge(r.get("lockstep"), spec.dtype,
                                          structural_zeros(spec.layers))
        frameworks[fw] = dict(info, final_loss=c["loss"][-1] if c["loss"] else None,
                              diverged_at=c["diverged_at"], max_rel_diff=e["max_rel_diff"],
                              parted_at=e["parted_at"], final_params_rel_err=final,
                              passed=e["passed"], **locked)
        # PASS, PASS* (branched, amplified) or FAIL, from the curve and lockstep; native runs
        # are shown, not judged (the causes of a parting: harness/ablation/causes.py)
        if not native:
            verdict(frameworks[fw], e["rel_diff"], spec.dtype, e["same_end"])
        base = {"model": spec.name, "dtype": spec.dtype, "mode": mode, "framework": fw}
        for step, (loss, norm) in enumerate(zip(c["loss"], c["grad_norm"])):
            curve_rows.append(dict(base, step=step, loss=loss, grad_norm=norm,
                                   rel_diff=float(e["rel_diff"][step])
                                   if step < len(e["rel_diff"]) else math.nan,
                                   lockstep_rel_err=float(per_step[step]) if per_step is not None
                                   and step < len(per_step) else math.nan))
        for layer, values in c["layer_norms"].items():
            norm_rows += [dict(base, step=s, layer=layer, norm=v) for s, v in enumerate(values)]
    ran = [fw for fw in names if frameworks[fw]["status"] == "ok"]
    failed = [fw for fw in names if frameworks[fw]["status"] == "failed"]
    passed = None if native else bool(not failed and all(frameworks[fw]["passed"] for fw in ran))
    idle = untrained_against(frameworks, ran) if passed else None
    entry = {"name": spec.name, "dtype": spec.dtype, "mode": mode, "seed": spec.seed,
             "spec_hash": spec.hash, "init_hash": spec.init_hash, "steps": inputs.steps,
             "reference": reference,
             "passed": passed, **({"unchecked": idle} if idle else {}),
             "diverged_at": None if failed else _diverged_alike(frameworks, ran),
             "frameworks": frameworks}
    return entry, curve_rows, norm_rows


def untrained_against(frameworks, ran):
    """Why an aligned training compared nothing, or None: one framework ran and it took no
    lockstep (the reference itself, NumPy, has no reference to step beside). As check's
    `unchecked`: it passes, and says so."""
    if len(ran) > 1 or any("lockstep_steps" in frameworks[fw] for fw in ran):
        return None
    return (f"nothing compared (ran: {', '.join(ran) or 'none'}; a training needs two "
            f"frameworks, or one beside the reference's steps in lockstep)")


def _diverged_alike(frameworks, ran):
    """The step at which every framework stopped on a non-finite loss or gradient norm, or None.
    The result then says DIVERGED (report/tables.train_result), never a bare PASS."""
    steps = {frameworks[fw]["diverged_at"] for fw in ran}
    return steps.pop() if ran and len(steps) == 1 and None not in steps else None


def _final_params_error(result, reference, zeros):
    """Worst relative difference of the trained parameters (structural zeros: against the
    largest parameter entry, since they only ever collect rounding noise)."""
    if reference is None or reference.get("status") != "ok":
        return None
    ref = reference["params"]
    scale = max((float(abs(v).max()) for k, v in ref.items() if k not in zeros and v.size),
                default=0.0)
    errs = [max_errors(ref[k], v)[0] / scale if k in zeros and scale
            else max_errors(ref[k], v)[1]
            for k, v in result["params"].items() if k in ref]
    return max(errs) if errs else 0.0
