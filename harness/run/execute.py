"""Which frameworks run, and running a batch of jobs through an executor and the cache."""
from .. import registry
from ..errors import InputError
from ..importers import original
from .executor import LocalExecutor


def frameworks_to_run(requested=None):
    """-> (names to run, {name: why skipped}). Asking for a missing framework is an error.
    "original" (an imported spec's own model) is kept: each spec says whether it has one."""
    names = requested or registry.PARTICIPANTS
    refuse_unknown(requested)
    missing = {n: f"not installed (no module named '{registry.FRAMEWORKS[n].module}')"
               for n in names if n in registry.FRAMEWORKS and not registry.installed(n)}
    if requested and missing:
        name = next(iter(missing))
        raise InputError("--frameworks", name, missing[name])
    return [n for n in names if n not in missing], missing


def refuse_unknown(names, flag="--frameworks"):
    """Exit 2 at the first name that is no framework, naming where it was given: the command
    line's flag, or a Python argument (crossgrad.check's `frameworks`)."""
    unknown = [n for n in names or () if n not in registry.PARTICIPANTS]
    if unknown:
        raise InputError(flag, unknown[0],
                         f"unknown framework; choose from {', '.join(registry.PARTICIPANTS)}")


def run_jobs(jobs, executor=None, cache=None, on_result=None):
    """Run jobs, reusing cached results whose key matches; store the new ones."""
    executor = executor or LocalExecutor()
    seen = getattr(executor, "seen", lambda key, result: False)
    results, todo = [None] * len(jobs), []
    for i, job in enumerate(jobs):
        hit = _cached(cache, job)
        if hit is not None:  # read by another phase of the run already: "shared" (JobQueue)
            results[i] = dict(hit, **{"shared" if seen(job["key"], hit) else "cached": True})
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


def _cached(cache, job):
    """The cache's result for `job`, or None; ResultCache.lookup checks that the result
    carries what this job's consumers read (a bare get, the key's entry as stored)."""
    if cache is None:
        return None
    lookup = getattr(cache, "lookup", None)
    return lookup(job) if lookup is not None else cache.get(job["key"])


def run_later(jobs, executor=None, cache=None, on_result=None):
    """run_jobs for jobs decided during the run (the controls, the causes of native
    partings): the progress counts them in its total first."""
    if jobs and hasattr(on_result, "expect"):
        on_result.expect(len(jobs))
    return run_jobs(jobs, executor, cache, on_result) if jobs else []


def participants(spec, names):
    """-> ({participant: None to run it, or the result of one that cannot}), in pair order:
    the frameworks, then the spec's original if it has one (importers/original.py)."""
    out = {n: None for n in names if n != registry.ORIGINAL}
    if registry.ORIGINAL in names and spec.original is not None:
        host = original.worker(spec)
        why = (f"its framework is not installed (no module named "
               f"'{registry.FRAMEWORKS[host].module}')" if not registry.installed(host)
               else original.problem(spec))
        out[registry.ORIGINAL] = {"status": "skipped", "error": why} if why else None
    return out


def check_original_asked(specs, requested):
    """--frameworks naming "original" for specs none of which was imported is bad input."""
    if requested and registry.ORIGINAL in requested and not any(s.original for s in specs):
        raise InputError("--frameworks", registry.ORIGINAL,
                         "no spec here was imported (none has an [original] table; see "
                         "`crossgrad import`)")


def job_count(specs, names):
    """The jobs a check or train of `specs` runs (for the progress lines)."""
    return sum(sum(r is None for r in participants(s, names).values()) for s in specs)


def run_per_model(prepared, names, make_job, executor, cache, on_result, requested=None):
    """Build one job per (model, participant), run them all, -> [{participant: result}] per
    model, in pair order (the original after the frameworks).

    A framework the user asked for by name that turns out not to import is a failure,
    not a skip: they wanted its answer. The progress lines say so too."""
    per_model = [participants(spec, names) for spec, _ in prepared]
    jobs = [make_job(spec, inputs, fw) for (spec, inputs), model in zip(prepared, per_model)
            for fw, result in model.items() if result is None]
    settle = _import_failure if requested else (lambda result: result)
    report = (lambda job, result: on_result(job, settle(result))) if on_result else None
    results = iter([settle(r) for r in run_jobs(jobs, executor, cache, report)])
    asked = bool(requested) and registry.ORIGINAL in requested
    return [{fw: next(results) if result is None else  # an original that cannot run:
             dict(result, status="failed") if asked else result  # asked for by name, it fails
             for fw, result in model.items()} for model in per_model]


def _import_failure(result):
    if result.get("status") == "skipped" and not result.get("unsupported"):
        return dict(result, status="failed", error=f"cannot be imported: {result.get('error')}")
    return result
