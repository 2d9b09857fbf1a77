"""Each pitfall proven alone: its minimal spec run native (that one pitfall on, everything
else aligned) and aligned, both measured against NumPy's hand-written reference.

All the jobs of all the pitfalls go to the executor in one batch: per pitfall, the
framework with the pitfall on and the framework aligned, and NumPy once per distinct
spec (it has no native defaults). A pitfall is reproduced when, in that very run, the
native divergence exceeds the tolerance and the aligned one is within it; a native form
listed as agreeing (pitfalls.AGREE) agrees when both are within it.
"""
import math

from ..compare.curves import CURVES, curve_errors
from ..compare.pairwise import PAIRWISE, pairwise
from ..compare.pitfalls import AGREE, CATALOG
from ..compare.zeros import structural_zeros
from ..run.execute import run_jobs
from ..run.jobs import Inputs, check_job, train_job
from ..spec.parse import parse_spec
from .cases import CASES

REFERENCE = "numpy"
TOLERANCE = {"gradients": PAIRWISE, "curves": CURVES}


def select(names=(), frameworks=None):
    """The pitfalls (and agreeing forms) named, all if none, of the given frameworks (all if
    None), in catalog order."""
    chosen = [p for p in CATALOG + AGREE if p.name in names] if names else list(CATALOG + AGREE)
    return [p for p in chosen if frameworks is None or p.framework in frameworks]


def case_spec(pitfall):
    """The pitfall's minimal spec, validated like a spec file."""
    return parse_spec(CASES[pitfall.name].spec, f"<pitfall {pitfall.name}>", pitfall.name)


def job(measure, spec, inputs, framework, native):
    """A check without finite differences or layer values, or a free-running train without
    lockstep, of one framework: what the measure reads, nothing more."""
    if measure == "gradients":
        return dict(check_job(spec, inputs, framework, native), probes=[], steps=None,
                    layers=False)
    return dict(train_job(spec, inputs, framework, native), lockstep=False)


def plan(pitfalls):
    """-> (one entry per pitfall, the jobs): every job of the ablation, cut once."""
    planned, jobs, references = [], [], {}
    for pitfall in pitfalls:
        case, spec = CASES[pitfall.name], case_spec(pitfall)
        inputs = Inputs(spec)
        if spec.hash not in references:
            references[spec.hash] = len(jobs)
            jobs.append(job(case.measure, spec, inputs, REFERENCE, False))
        planned.append((pitfall, case, spec, references[spec.hash], len(jobs)))
        jobs.append(job(case.measure, spec, inputs, pitfall.framework, [pitfall.name]))
        jobs.append(job(case.measure, spec, inputs, pitfall.framework, False))
    return planned, jobs


def run(pitfalls, executor=None, on_result=None):
    """-> one row per pitfall (see README, `crossgrad pitfalls`), in the order given."""
    return finish(*plan(pitfalls), executor, on_result)


def finish(planned, jobs, executor=None, on_result=None):
    """Run every job of plan() in one batch -> the rows."""
    results = run_jobs(jobs, executor, None, on_result)
    return [row(pitfall, case, spec, results[ref], results[at], results[at + 1])
            for pitfall, case, spec, ref, at in planned]


def row(pitfall, case, spec, reference, native, aligned):
    tolerance = TOLERANCE[case.measure][spec.dtype]
    out = {"name": pitfall.name, "framework": pitfall.framework, "what": pitfall.what,
           "source": pitfall.source, "measure": case.measure,
           "naive_divergence": divergence(case.measure, spec, reference, native, pitfall),
           "aligned_divergence": divergence(case.measure, spec, reference, aligned, pitfall),
           "tolerance": tolerance, "fix": pitfall.fix}
    failed = [r for r in (reference, native, aligned) if r.get("status") != "ok"]
    if failed:
        out["error"] = failed[0].get("error") or failed[0].get("status")
    naive, within = out["naive_divergence"], out["aligned_divergence"]
    if pitfall in AGREE:
        out["agrees"] = bool(not failed and naive <= tolerance and within <= tolerance)
    else:
        out["reproduced"] = bool(not failed and naive > tolerance and within <= tolerance)
    return out


def divergence(measure, spec, reference, result, pitfall):
    """The largest relative difference from the reference: over the loss, every gradient and
    the BatchNorm state (gradients), or over the loss curve (curves); None if a job failed.
    NaN (a curve or a gradient that is not a number on one side only) counts as infinite."""
    if reference.get("status") != "ok" or result.get("status") != "ok":
        return None
    fw = pitfall.framework
    if measure == "gradients":
        rows = pairwise({REFERENCE: reference, fw: result}, spec.dtype,
                        structural_zeros(spec.layers))
        worst = max(math.inf if math.isnan(r["rel_err"]) else r["rel_err"] for r in rows)
    else:
        errors = curve_errors({REFERENCE: reference["curves"], fw: result["curves"]},
                              REFERENCE, spec.dtype, True)
        worst = errors[fw]["max_rel_diff"]
    return math.inf if math.isnan(worst) else float(worst)
