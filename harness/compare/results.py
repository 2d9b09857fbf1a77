"""What `check` and `train` return: one JSON-able entry per model, built from the workers'
results, with pandas views of every table (the README's "JSON output" is the schema)."""
import math
from dataclasses import dataclass, field

import pandas as pd

from .. import registry
from . import pitfalls
from .curves import branch_step, curve_errors
from .finite_diff import finite_differences
from .pairwise import tensor_errors, pairwise, validate
from .zeros import structural_zeros


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
        return pd.DataFrame(rows)

    @property
    def comparisons(self):
        return self.frame("comparisons")

    @property
    def finite_difference(self):
        return self.frame("finite_difference")

    @property
    def frameworks(self):
        return pd.DataFrame([dict(model=m["name"], dtype=m["dtype"], framework=fw, **info)
                             for m in self.models for fw, info in m["frameworks"].items()])

    @property
    def summary(self):
        return pd.DataFrame([summary_row(m) for m in self.models])

    def to_json(self):
        return {"models": self.models}


def assemble_check(spec, inputs, results, names, missing):
    """One model's JSON entry: framework statuses, pairwise rows, finite-difference rows."""
    frameworks = {fw: {"status": "skipped", "loss": None, "error": why}
                  for fw, why in missing.items()}
    for fw in names:
        r = results.get(fw, {"status": "failed", "error": "no result"})
        if r.get("status") == "ok":
            bad = validate(r, inputs.params, inputs.state, spec.dtype)
            if bad:
                r = {"status": "failed", "error": bad}
        results[fw] = r
        frameworks[fw] = {"status": r["status"], "loss": r.get("loss"),
                          "version": registry.version(fw), "seconds": r.get("seconds")}
        if r["status"] != "ok":
            frameworks[fw]["error"] = r.get("error")
    comparisons = pairwise(results, spec.dtype, structural_zeros(spec.layers))
    fd = finite_differences(results, inputs.probes)
    failed = [fw for fw in names if frameworks[fw]["status"] == "failed"]
    passed = (not failed and all(r["passed"] for r in comparisons)
              and all(r["passed"] for r in fd))
    return {"name": spec.name, "dtype": spec.dtype, "seed": spec.seed, "spec_hash": spec.hash,
            "passed": bool(passed), "frameworks": frameworks,
            "comparisons": comparisons, "finite_difference": fd}


def summary_row(m):
    """One line per model: status per framework, worst error per pair, worst FD, pass/fail."""
    row = {"model": m["name"], "dtype": m["dtype"]}
    row.update({fw: info["status"] for fw, info in m["frameworks"].items()})
    for c in m["comparisons"]:
        pair = f"{c['a']}~{c['b']}"
        row[pair] = max(row.get(pair, 0.0), c["rel_err"])
    fd = [r["rel_err"] for r in m["finite_difference"] if r["status"] != "kink"]
    row["fd_worst"] = max(fd) if fd else math.nan
    row["kinks"] = sum(r["status"] == "kink" for r in m["finite_difference"])
    row["passed"] = m["passed"]
    return row


# ---- training ------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    models: list = field(default_factory=list)
    curves: pd.DataFrame = None       # model, dtype, mode, framework, step, loss, grad_norm, ...
    grad_norms: pd.DataFrame = None   # model, dtype, mode, framework, step, layer, norm
    saved: dict = field(default_factory=dict)

    @property
    def passed(self):
        return all(m["passed"] is not False for m in self.models)

    @property
    def summary(self):
        return pd.DataFrame([dict(model=m["name"], dtype=m["dtype"], mode=m["mode"],
                                  framework=fw, **{k: v for k, v in info.items()})
                             for m in self.models for fw, info in m["frameworks"].items()])

    def to_json(self):
        return {"models": self.models}


def explain_branches(models, curves):
    """A float32 curve that fails, while the same model's float64 curve agrees, and that left
    the reference in one jump, is marked "branched" (a kink under rounding, not a difference
    in the math): reported as such, not as a failure."""
    f64 = {(m["name"], m["mode"]): m for m in models if m["dtype"] == "float64"}
    for m in models:
        control = f64.get((m["name"], m["mode"]))
        if m["dtype"] != "float32" or m["passed"] is not False or control is None:
            continue
        for fw, info in m["frameworks"].items():
            agreed64 = control["frameworks"].get(fw, {}).get("passed")
            if info.get("passed") is not False or not agreed64:
                continue
            mine = curves[(curves["model"] == m["name"]) & (curves["dtype"] == "float32") &
                          (curves["mode"] == m["mode"]) & (curves["framework"] == fw)]
            step = branch_step(mine.sort_values("step")["rel_diff"], "float32")
            if step is not None:
                info.update(passed=True, branched_at=step)
        m["passed"] = all(i.get("passed") is not False for i in m["frameworks"].values()
                          if i["status"] == "ok") and not any(
            i["status"] == "failed" for i in m["frameworks"].values())


def assemble_train(spec, inputs, results, names, missing, native):
    mode = "native" if native else "aligned"
    frameworks = {fw: {"status": "skipped", "error": why} for fw, why in missing.items()}
    ok = {fw: r["curves"] for fw, r in results.items() if r.get("status") == "ok"}
    reference = next((fw for fw in registry.ORDER if fw in ok), None)
    errors = curve_errors(ok, reference, spec.dtype, native) if reference else {}
    curve_rows, norm_rows = [], []
    for fw in names:
        r = results.get(fw, {"status": "failed", "error": "no result"})
        info = {"status": r["status"], "version": registry.version(fw), "seconds": r.get("seconds")}
        if r["status"] != "ok":
            frameworks[fw] = dict(info, error=r.get("error"))
            continue
        c, e = r["curves"], errors[fw]
        final = _final_params_error(r, results.get(reference),
                                    structural_zeros(spec.layers))
        frameworks[fw] = dict(info, final_loss=c["loss"][-1] if c["loss"] else None,
                              diverged_at=c["diverged_at"], max_rel_diff=e["max_rel_diff"],
                              parted_at=e["parted_at"], final_params_rel_err=final,
                              passed=e["passed"])
        if native:
            frameworks[fw]["native_defaults"] = pitfalls.in_play(spec, fw)
        base = {"model": spec.name, "dtype": spec.dtype, "mode": mode, "framework": fw}
        for step, (loss, norm) in enumerate(zip(c["loss"], c["grad_norm"])):
            curve_rows.append(dict(base, step=step, loss=loss, grad_norm=norm,
                                   rel_diff=float(e["rel_diff"][step])
                                   if step < len(e["rel_diff"]) else math.nan))
        for layer, values in c["layer_norms"].items():
            norm_rows += [dict(base, step=s, layer=layer, norm=v) for s, v in enumerate(values)]
    ran = [fw for fw in names if frameworks[fw]["status"] == "ok"]
    failed = [fw for fw in names if frameworks[fw]["status"] == "failed"]
    passed = None if native else bool(not failed and all(frameworks[fw]["passed"] for fw in ran))
    entry = {"name": spec.name, "dtype": spec.dtype, "mode": mode, "seed": spec.seed,
             "spec_hash": spec.hash, "steps": inputs.steps, "reference": reference,
             "passed": passed, "frameworks": frameworks}
    return entry, curve_rows, norm_rows


def _final_params_error(result, reference, zeros):
    """Worst relative difference of the trained parameters (structural zeros: against the
    largest parameter entry, since they only ever collect rounding noise)."""
    if reference is None or reference.get("status") != "ok":
        return None
    ref = reference["params"]
    scale = max((float(abs(v).max()) for k, v in ref.items() if k not in zeros and v.size),
                default=0.0)
    errs = [tensor_errors(ref[k], v)[0] / scale if k in zeros and scale
            else tensor_errors(ref[k], v)[1]
            for k, v in result["params"].items() if k in ref]
    return max(errs) if errs else 0.0
