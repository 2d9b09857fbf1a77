"""The harness side of `crossgrad bench --step-time`: one job per (model, framework), run
one at a time in the framework's worker (so no other job of ours shares the cores), then
the rows of the JSON contract and the table.

JSON: {"results": [{"model", "framework", "mode" ("impl"|"plain"), "batch_size",
"step_seconds", "compile_seconds", "gflops"}], "machine": {...},
"skipped": [{"model", "batch_size", "reason"}] (a batch size not timed in any framework)}.
"""
import math
import os
import platform
import sys

import numpy as np

from .. import registry
from ..errors import InputError
from ..run.executor import LocalExecutor
from ..run.execute import check_original_asked
from ..run.jobs import Inputs
from ..spec import sizes
from ..spec.catalog import walk
from .flops import step_flops

REPEATS = 5
# spec/catalog.py's parse_batchnorm refuses a spec whose batch of one gives a batchnorm one
# value per channel; PyTorch raises there, TensorFlow and JAX normalise it to 0
ONE_VALUE_PER_CHANNEL = "batchnorm needs more than one value per channel"


def jobs(specs, frameworks, per_model):
    """Framework by framework (a worker starts once); the first job of each also probes GEMM.
    `per_model`: {model: [batch sizes]} (plan's). A model's data is drawn once and shared by
    its jobs: a batch larger than the data set repeats it, up to that many rows."""
    drawn = {}
    out = []
    for framework in frameworks:
        for spec in specs:
            sizes_here = per_model[spec.name]
            if not sizes_here:
                continue
            if spec.name not in drawn:
                inputs = Inputs(spec, steps=1)
                n = len(inputs.x)
                rows = np.arange(max(n, *sizes_here)) % n
                drawn[spec.name] = inputs, inputs.x[rows], inputs.y[rows]
            inputs, x, y = drawn[spec.name]
            out.append({"kind": "bench", "framework": framework, "model": spec.name,
                        "dtype": spec.dtype, "native": False, "spec": spec.for_impls(),
                        "plugins": spec.plugins, "params": inputs.params,
                        "state": inputs.state, "x": x, "y": y,
                        "seed": spec.seed, "batch_sizes": list(sizes_here),
                        "repeats": REPEATS,
                        "gemm": not any(j["framework"] == framework for j in out),
                        "dropout": {l["name"]: l["in_shape"] for l in spec.dropout_layers()}})
    return out


def one_value_per_channel(spec):
    """Whether a batch of one gives a batchnorm layer of the spec one value per channel."""
    return any(layer["type"] == "batchnorm" and math.prod(layer["in_shape"][:-1]) == 1
               for layer in walk(spec.layers))


def plan(specs, frameworks, batch_sizes, max_memory=None, requested=None):
    """What is refused before anything runs (exit 2), and what is skipped:
    -> ({model: batch sizes to time}, [{model, batch_size, reason}] skipped).

    - "original" named for specs none of which was imported: `check`'s refusal; named alone,
      nothing would be timed (the bench times the frameworks' implementations only);
    - batch size 1 of a model whose batchnorm it leaves one value per channel is skipped in
      every framework (one line on stderr each); a --batch-sizes that leaves nothing to time
      is refused;
    - a model at the largest batch size it is timed at estimated over the memory limit
      (`max_memory` GB, else half of the machine's), naming --batch-sizes.

    `requested`: the --frameworks given, or None for the default."""
    timed = [f for f in frameworks if f != registry.ORIGINAL]
    check_original_asked(specs, requested)
    if not timed:
        raise InputError("--frameworks", registry.ORIGINAL,
                         "bench --step-time times the implementations of "
                         f"{', '.join(registry.ORDER)}, not an imported spec's original model; "
                         "name one of those")
    per_model, skipped = {}, []
    for spec in specs:
        keep = list(batch_sizes)
        if 1 in keep and one_value_per_channel(spec):
            keep.remove(1)
            skipped.append({"model": spec.name, "batch_size": 1,
                            "reason": ONE_VALUE_PER_CHANNEL})
        per_model[spec.name] = keep
    if not any(per_model.values()):
        models = ", ".join(s["model"] for s in skipped)
        raise InputError("--batch-sizes", None,
                         f"leaves nothing to time: {models} skip{'s' * (len(skipped) == 1)} "
                         f"batch size 1 ({ONE_VALUE_PER_CHANNEL}); add a batch size above 1")
    if max_memory:
        limit, why = max_memory * 1e9, "set by --max-memory"
    else:
        limit, why = sizes.default_limit(), sizes.DEFAULT_LIMIT
    for spec in specs:
        if per_model[spec.name]:
            sizes.check_batch(spec, max(per_model[spec.name]), limit, len(timed), why=why)
    for s in skipped:
        print(f"{s['model']}: batch size {s['batch_size']} skipped: {s['reason']}",
              file=sys.stderr)
    return per_model, skipped


def measure(specs, frameworks, batch_sizes, threads=1, timeout=None, on_result=None,
            max_memory=None, requested=None):
    """-> (the JSON document, [(model, framework, error)] of jobs that failed); refuses first
    what `plan` refuses (InputError), before any data is drawn or a worker starts."""
    per_model, skipped = plan(specs, frameworks, batch_sizes, max_memory, requested)
    load = os.getloadavg()
    todo = jobs(specs, [f for f in frameworks if f != registry.ORIGINAL], per_model)
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
    return {"results": rows, "machine": machine, "skipped": skipped}, failed


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
