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

from .ablation import causes
from .compare import control, hvp, lockstep_control, precision
from .compare.pitfalls import native_is_aligned
from .compare.results import (CheckResult, TrainResult, assemble_check, assemble_train,
                              explain_branches, frame)
from .run.execute import (check_original_asked, frameworks_to_run, run_jobs, run_later,
                          run_per_model)
from .run.jobs import Inputs, check_job, keyed, train_job
from .run.reference import reference_job
from .spec.precision import REDUCED
from .spec import load_spec, zoo_names, zoo_spec
from . import registry

load, zoo = load_spec, zoo_spec


def prepare(specs, steps=None):
    """Draw every model's inputs up front: bad data files fail here, before anything runs."""
    return [(spec, Inputs(spec, steps)) for spec in specs]


def check(specs, *, frameworks=None, executor=None, on_result=None, cache=None, prepared=None,
          order=1, matmul_precision=None):
    """Loss and gradients of every spec in every framework, compared pair by pair and with
    finite differences (float64 specs); order=2 adds Hessian-vector products along the
    probes (compare/hvp.py). A spec in bfloat16 or float16 (and float32 when
    `matmul_precision` is given: "highest", or "default", each framework's own) is also
    compared with a float64 reference (compare/precision.py). Returns a CheckResult."""
    names, missing = frameworks_to_run(frameworks)
    check_original_asked(specs, frameworks)
    prepared = prepared or prepare(specs)
    def job(spec, inputs, fw):
        return keyed(dict(check_job(spec, inputs, fw), order=order,
                          matmul_precision=matmul_precision), spec, False, executor)

    per_model = run_per_model(prepared, names, job, executor, cache, on_result, frameworks)
    compared = [i for i, (spec, _) in enumerate(prepared) if needs_reference(spec, matmul_precision)]
    references = dict(zip(compared, run_jobs(  # with rounding's reach (precision.within_reach)
        [reference_job(job(*prepared[i], registry.REFERENCE),
                       perturb=control.perturbation(prepared[i][0])) for i in compared],
        executor, cache, on_result))) if compared else {}
    out = CheckResult()
    for i, ((spec, inputs), results) in enumerate(zip(prepared, per_model)):
        tol = 2 * precision.tolerance(spec.dtype, spec.layers) if spec.dtype in REDUCED else None
        out.models.append(assemble_check(spec, inputs, results, list(results), missing, tol))
        if order == 2:
            hvp.attach(out.models[-1], results, inputs.probes, spec.layers)
        if i in references:
            precision.attach(out.models[-1], spec, results, references[i], matmul_precision)
        out.saved[(spec.name, spec.dtype)] = (inputs, results)
    _controlled(out, prepared, per_model, references, job, executor, cache, on_result)
    return out


def _controlled(out, prepared, per_model, references, job, executor, cache, on_result):
    """The models with a failing pair, judged against the control (compare/control.py):
    NumPy one format wider, run for them alone, after every other job."""
    asked = [i for i, m in enumerate(out.models) if i not in references
             and m["dtype"] in control.WIDER and control.failing(m)]
    wider = {i: control.control_dtype(out.models[i]["dtype"]) for i in asked}
    runnable = [i for i in asked if wider[i]]
    ran = dict(zip(runnable, run_later(
        [reference_job(job(*prepared[i], registry.REFERENCE), wider[i],
                       control.perturbation(prepared[i][0])) for i in runnable],
        executor, cache, on_result)))
    for i in asked:
        control.attach(out.models[i], prepared[i][0], per_model[i], ran.get(i))


def train(specs, *, frameworks=None, native=False, steps=None, executor=None, on_result=None,
          cache=None, prepared=None, aligned_known=False):
    """Train every spec for `steps` (default: the spec's) in every framework, same batches.
    `aligned_known`: the caller judges the native causes against its own aligned training
    (ablation.causes.discount), and no control run is wanted."""
    names, missing = frameworks_to_run(frameworks)
    check_original_asked(specs, frameworks)
    prepared = prepared or prepare(specs, steps)

    def job(spec, inputs, fw):
        mode = native
        if native is True and fw in registry.FRAMEWORKS and native_is_aligned(spec, fw):
            mode = False  # the same run, and the same job as the aligned one: run once side
            #              by side with it (executor.JobQueue)
        return keyed(train_job(spec, inputs, fw, mode), spec, mode, executor)

    per_model = run_per_model(prepared, names, job, executor, cache, on_result, frameworks)
    out, curve_rows, norm_rows = TrainResult(), [], []
    for (spec, inputs), res in zip(prepared, per_model):
        entry, curves, norms = assemble_train(spec, inputs, res, list(res), missing, native)
        out.models.append(entry)
        curve_rows += curves
        norm_rows += norms
        out.saved[(spec.name, spec.dtype)] = (inputs, res)
    out.curves, out.grad_norms = frame(curve_rows), frame(norm_rows)
    explain_branches(out.models, out.curves)
    if native is False:
        _lockstep_controlled(out, prepared, per_model, job, executor, cache, on_result)
    if native is True:  # each parting's causes: the pitfalls in play, one at a time
        causes.confirm(out, prepared, executor, cache, on_result, controls=not aligned_known)
    return out


def _lockstep_controlled(out, prepared, per_model, job, executor, cache, on_result):
    """The aligned trainings whose lockstep parted, their failing steps judged against the
    control (compare/lockstep_control.py): NumPy one format wider, after every other job;
    first at each framework's first failing step, then at the others of those it excused."""
    parts = {i: p for i, ((spec, _), res) in enumerate(zip(prepared, per_model))
             if spec.dtype in control.WIDER
             and (p := lockstep_control.parted(out.models[i], res, spec))}

    def controlled(steps_of):  # {model index: steps} -> {model index: the job's result}
        asked = {i: steps for i, steps in steps_of.items()
                 if steps and control.control_dtype(prepared[i][0].dtype)}
        return dict(zip(asked, run_later(
            [lockstep_control.job(job(*prepared[i], registry.REFERENCE), steps, prepared[i][0])
             for i, steps in asked.items()], executor, cache, on_result)))
    first = controlled({i: lockstep_control.first_steps(p) for i, p in parts.items()})
    later = controlled({i: lockstep_control.later_steps(p, first.get(i), prepared[i][0])
                        for i, p in parts.items()})
    for i, p in parts.items():
        lockstep_control.attach(out.models[i], prepared[i][0], p, first.get(i), later.get(i))


def needs_reference(spec, matmul_precision=None):
    """Whether a check of `spec` is also compared with float64: reduced precision always,
    float32 when the matmul precision was asked for."""
    return spec.dtype in REDUCED or (spec.dtype == "float32" and matmul_precision is not None)


__all__ = ["load", "zoo", "zoo_names", "check", "train", "CheckResult", "TrainResult",
           "frameworks_to_run", "prepare"]
