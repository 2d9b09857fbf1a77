"""The harness side of `crossgrad bench --step-time`: one job per (model, framework), run
one at a time in the framework's worker (so no other job of ours shares the cores), then
the rows of the JSON contract and the table.

JSON: {"results": [{"model", "framework", "mode" ("impl"|"plain"), "batch_size",
"step_seconds", "compile_seconds", "gflops"}], "machine": {...}}.
"""
import os
import platform

import numpy as np

from .. import registry
from ..run.executor import LocalExecutor
from ..run.jobs import Inputs
from .flops import step_flops

REPEATS = 5


def jobs(specs, frameworks, batch_sizes):
    """Framework by framework (a worker starts once); the first job of each also probes GEMM."""
    out = []
    for framework in frameworks:
        for spec in specs:
            inputs = Inputs(spec, steps=1)
            n = len(inputs.x)
            rows = np.arange(max(n, *batch_sizes)) % n  # a batch larger than the data repeats it
            out.append({"kind": "bench", "framework": framework, "model": spec.name,
                        "dtype": spec.dtype, "native": False, "spec": spec.for_impls(),
                        "plugins": spec.plugins, "params": inputs.params,
                        "state": inputs.state, "x": inputs.x[rows], "y": inputs.y[rows],
                        "seed": spec.seed, "batch_sizes": list(batch_sizes),
                        "repeats": REPEATS,
                        "gemm": not any(j["framework"] == framework for j in out),
                        "dropout": {l["name"]: l["in_shape"] for l in spec.dropout_layers()}})
    return out


def measure(specs, frameworks, batch_sizes, threads=1, timeout=None, on_result=None):
    """-> (the JSON document, [(model, framework, error)] of jobs that failed)."""
    load = os.getloadavg()
    todo = jobs(specs, [f for f in frameworks if f != registry.ORIGINAL], batch_sizes)
    # no compilation cache: "compile s" is what a first run pays
    with LocalExecutor(workers=1, threads=threads, timeout=timeout,
                       compile_cache=False) as executor:
        results = executor.run(todo, on_result)
        hellos = executor.hellos
    by_name = {s.name: s for s in specs}
    rows, failed, peaks = [], [], {}
    for job, result in zip(todo, results):
        if result.get("status") != "ok":
            failed.append((job["model"], job["framework"], result.get("error", "")))
            continue
        if result["gemm_seconds"]:
            peaks[job["framework"]] = 2 * result["gemm_n"] ** 3 / result["gemm_seconds"] / 1e9
        spec = by_name[job["model"]].for_impls()
        for r in result["rows"]:
            rows.append({"model": job["model"], "framework": job["framework"], "mode": r["mode"],
                         "batch_size": r["batch_size"], "step_seconds": r["step_seconds"],
                         "compile_seconds": r["compile_seconds"],
                         "gflops": step_flops(spec, r["batch_size"]) / r["step_seconds"] / 1e9,
                         "steps_per_call": r["steps"], "repeats": r["repeats"]})
    machine = {"processor": _processor(), "cores": os.cpu_count(), "threads": threads,
               "dtype": specs[0].dtype if specs else None, "gemm_n": 512,
               "gemm_gflops": peaks, "load_before": list(load), "load_after": list(os.getloadavg()),
               "versions": {f: h.get("versions") for f, h in hellos.items()},
               "python": platform.python_version()}
    return {"results": rows, "machine": machine}, failed


def ratios(document):
    """Table rows: (model, batch, framework, impl s, plain s, impl / plain, GFLOP/s, % of the
    framework's GEMM peak, compile s), in the order measured."""
    peaks = document["machine"]["gemm_gflops"]
    plain = {(r["model"], r["framework"], r["batch_size"]): r for r in document["results"]
             if r["mode"] == "plain"}
    out = []
    for r in document["results"]:
        if r["mode"] != "impl":
            continue
        p = plain.get((r["model"], r["framework"], r["batch_size"]))
        peak = peaks.get(r["framework"])
        out.append((r["model"], r["batch_size"], r["framework"], r["step_seconds"],
                    p and p["step_seconds"], p and r["step_seconds"] / p["step_seconds"],
                    r["gflops"], peak and 100 * r["gflops"] / peak, r["compile_seconds"]))
    return out


def _processor():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
