"""The Python API: `check` and `train` return results whose tables are pandas DataFrames.

    from harness import api
    result = api.check([api.zoo("digits_mlp")])
    result.comparisons            # one row per (model, pair, tensor)
    result.passed

Specs come from `load(path)` or `zoo(name)`; dtype/seed overrides are applied
with `spec.with_overrides(dtype="float32")`. Everything random was drawn by the
harness before any framework runs, so every difference is one of arithmetic.
"""
import math
from dataclasses import dataclass, field

import pandas as pd

from . import compare, pitfalls, registry
from .errors import InputError
from .executor import LocalExecutor
from .jobs import Inputs, check_job, job_key, train_job
from .spec import load_spec, zoo_names, zoo_spec

load, zoo = load_spec, zoo_spec


def frameworks_to_run(requested=None):
    """-> (names to run, {name: why skipped}). Asking for a missing framework is an error."""
    names = requested or registry.ORDER
    unknown = [n for n in names if n not in registry.FRAMEWORKS]
    if unknown:
        raise InputError("--frameworks", unknown[0],
                         f"unknown framework; choose from {', '.join(registry.ORDER)}")
    missing = {n: f"not installed (no module named '{registry.FRAMEWORKS[n].module}')"
               for n in names if not registry.installed(n)}
    if requested and missing:
        name = next(iter(missing))
        raise InputError("--frameworks", name, missing[name])
    return [n for n in names if n not in missing], missing


def prepare(specs, steps=None):
    """Draw every model's inputs up front: bad data files fail here, before anything runs."""
    return [(spec, Inputs(spec, steps)) for spec in specs]


def execute(jobs, executor=None, cache=None, on_result=None):
    """Run jobs, reusing cached results whose key matches; store the new ones."""
    executor = executor or LocalExecutor()
    results, todo = [None] * len(jobs), []
    for i, job in enumerate(jobs):
        hit = cache.get(job["key"]) if cache is not None else None
        if hit is not None:
            results[i] = dict(hit, cached=True)
            if on_result:
                on_result(job, results[i])
        else:
            todo.append(i)

    def done(job, result):
        if cache is not None and result.get("status") == "ok":
            cache.put(job["key"], result)
        if on_result:
            on_result(job, result)
    for i, result in zip(todo, executor.run([jobs[i] for i in todo], done)):
        results[i] = result
    return results


def _with_key(job, spec, native):
    job["key"] = job_key(job["kind"], spec, job["framework"],
                         registry.version(job["framework"]), native,
                         len(job["batches"]) if job["kind"] == "train" else None)
    return job


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


def check(specs, frameworks=None, executor=None, on_result=None, cache=None, prepared=None):
    """Loss and gradients of every spec in every framework, compared pair by pair and with
    finite differences (float64 specs). Returns a CheckResult."""
    names, missing = frameworks_to_run(frameworks)
    prepared = prepared or prepare(specs)
    per_model = run_per_model(prepared, names, lambda spec, inputs, fw: _with_key(
        check_job(spec, inputs, fw), spec, False), executor, cache, on_result, frameworks)
    out = CheckResult()
    for (spec, inputs), results in zip(prepared, per_model):
        out.models.append(assemble_check(spec, inputs, results, names, missing))
        out.saved[(spec.name, spec.dtype)] = (inputs, results)
    return out


def run_per_model(prepared, names, make_job, executor, cache, on_result, requested=None):
    """Build one job per (model, framework), run them all, -> [{framework: result}] per model.

    A framework the user asked for by name that turns out not to import is a failure,
    not a skip: they wanted its answer."""
    jobs = [make_job(spec, inputs, fw) for spec, inputs in prepared for fw in names]
    results = execute(jobs, executor, cache, on_result)
    if requested:
        results = [dict(r, status="failed", error=f"cannot be imported: {r.get('error')}")
                   if r.get("status") == "skipped" else r for r in results]
    return [dict(zip(names, results[i * len(names):(i + 1) * len(names)]))
            for i in range(len(prepared))]


def assemble_check(spec, inputs, results, names, missing):
    """One model's JSON entry: framework statuses, pairwise rows, finite-difference rows."""
    frameworks = {fw: {"status": "skipped", "loss": None, "error": why}
                  for fw, why in missing.items()}
    for fw in names:
        r = results.get(fw, {"status": "failed", "error": "no result"})
        if r.get("status") == "ok":
            bad = compare.validate(r, inputs.params, inputs.state, spec.dtype)
            if bad:
                r = {"status": "failed", "error": bad}
        results[fw] = r
        frameworks[fw] = {"status": r["status"], "loss": r.get("loss"),
                          "version": registry.version(fw), "seconds": r.get("seconds")}
        if r["status"] != "ok":
            frameworks[fw]["error"] = r.get("error")
    comparisons = compare.pairwise(results, spec.dtype, compare.structural_zeros(spec.layers))
    probes = check_job(spec, inputs, "numpy")["probes"] if spec.dtype == "float64" else []
    fd = compare.finite_differences(results, probes)
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


def train(specs, frameworks=None, native=False, steps=None, executor=None, on_result=None,
          cache=None, prepared=None):
    """Train every spec for `steps` (default: the spec's) in every framework, same batches."""
    names, missing = frameworks_to_run(frameworks)
    prepared = prepared or prepare(specs, steps)
    per_model = run_per_model(prepared, names, lambda spec, inputs, fw: _with_key(
        train_job(spec, inputs, fw, native), spec, native), executor, cache, on_result,
        frameworks)
    out, curve_rows, norm_rows = TrainResult(), [], []
    for (spec, inputs), res in zip(prepared, per_model):
        entry, curves, norms = assemble_train(spec, inputs, res, names, missing, native)
        out.models.append(entry)
        curve_rows += curves
        norm_rows += norms
        out.saved[(spec.name, spec.dtype)] = (inputs, res)
    out.curves, out.grad_norms = pd.DataFrame(curve_rows), pd.DataFrame(norm_rows)
    explain_branches(out.models, out.curves)
    return out


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
            step = compare.branch_step(mine.sort_values("step")["rel_diff"], "float32")
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
    errors = compare.curve_errors(ok, reference, spec.dtype, native) if reference else {}
    curve_rows, norm_rows = [], []
    for fw in names:
        r = results.get(fw, {"status": "failed", "error": "no result"})
        info = {"status": r["status"], "version": registry.version(fw), "seconds": r.get("seconds")}
        if r["status"] != "ok":
            frameworks[fw] = dict(info, error=r.get("error"))
            continue
        c, e = r["curves"], errors[fw]
        final = _final_params_error(r, results.get(reference),
                                    compare.structural_zeros(spec.layers))
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
    errs = [compare.tensor_errors(ref[k], v)[0] / scale if k in zeros and scale
            else compare.tensor_errors(ref[k], v)[1]
            for k, v in result["params"].items() if k in ref]
    return max(errs) if errs else 0.0


__all__ = ["load", "zoo", "zoo_names", "check", "train", "CheckResult", "TrainResult",
           "frameworks_to_run", "prepare"]
