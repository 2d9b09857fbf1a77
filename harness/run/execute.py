"""Which frameworks run, and running a batch of jobs through an executor and the cache."""
from .. import registry
from ..errors import InputError
from .executor import LocalExecutor


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


def run_jobs(jobs, executor=None, cache=None, on_result=None):
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


def run_per_model(prepared, names, make_job, executor, cache, on_result, requested=None):
    """Build one job per (model, framework), run them all, -> [{framework: result}] per model.

    A framework the user asked for by name that turns out not to import is a failure,
    not a skip: they wanted its answer."""
    jobs = [make_job(spec, inputs, fw) for spec, inputs in prepared for fw in names]
    results = run_jobs(jobs, executor, cache, on_result)
    if requested:
        results = [dict(r, status="failed", error=f"cannot be imported: {r.get('error')}")
                   if r.get("status") == "skipped" else r for r in results]
    return [dict(zip(names, results[i * len(names):(i + 1) * len(names)]))
            for i in range(len(prepared))]
