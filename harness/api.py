"""check() and train(): specs in, results out, every table a pandas DataFrame.

    from crossgrad.harness import api
    result = api.check([api.zoo("digits_mlp")])
    result.comparisons            # one row per (model, pair, tensor)
    result.passed

Specs come from `load(path)` or `zoo(name)`; dtype/seed overrides are applied with
`spec.with_overrides(dtype="float32")`. Everything random is drawn by the harness
(run.jobs.Inputs) before any framework runs, so every difference is one of arithmetic.
The path of a check: Inputs -> one job per framework -> executor -> worker ->
compare.results.assemble_check.
"""
import pandas as pd

from .compare.results import (CheckResult, TrainResult, assemble_check, assemble_train,
                              explain_branches)
from .run.execute import frameworks_to_run, run_per_model
from .run.jobs import Inputs, check_job, job_key, train_job
from .spec import load_spec, zoo_names, zoo_spec
from . import registry

load, zoo = load_spec, zoo_spec


def prepare(specs, steps=None):
    """Draw every model's inputs up front: bad data files fail here, before anything runs."""
    return [(spec, Inputs(spec, steps)) for spec in specs]


def check(specs, *, frameworks=None, executor=None, on_result=None, cache=None, prepared=None):
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


def train(specs, *, frameworks=None, native=False, steps=None, executor=None, on_result=None,
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


def _with_key(job, spec, native):
    job["key"] = job_key(job["kind"], spec, job["framework"],
                         registry.version(job["framework"]), native,
                         len(job["batches"]) if job["kind"] == "train" else None)
    return job


__all__ = ["load", "zoo", "zoo_names", "check", "train", "CheckResult", "TrainResult",
           "frameworks_to_run", "prepare"]
