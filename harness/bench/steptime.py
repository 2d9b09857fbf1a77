"""The worker side of `crossgrad bench --step-time`: one training step timed, the
implementation's `train` against the plain loop of the same network (plain_*.py), and the
GEMM probe that gives the machine's matmul peak in this framework.

A step's time is the wall time of a `train` call over k steps divided by the steps it took,
the median over repeats, impl and plain interleaved so both see the same load, and both
starting every call from their initial weights (a plain loop left where its last call
ended would be timed on weights the implementation never sees). Each call
returns the curves as Python floats, which synchronises every framework (JAX dispatches
asynchronously). The first call of each (its one step traced and compiled) is reported
apart: compile seconds = that call's time less one step.
"""
import importlib
import math
import statistics
import time

import numpy as np

PLAIN = {"numpy": "plain_numpy", "torch": "plain_torch", "tensorflow": "plain_tf",
         "jax": "plain_jax"}
TARGET_SECONDS = 0.2   # each timed call runs about this long (at least 3 steps)
MAX_STEPS = 2000       # and at most this many (the batches are drawn beforehand)
GEMM_N = 512


def plain_loops(framework):
    """The framework's plain-loop module (imported here: it imports the framework)."""
    return importlib.import_module(f"{__package__}.{PLAIN[framework]}")


def measure(impl, job):
    """-> {"rows": [{mode, batch_size, step_seconds, compile_seconds, steps, repeats}],
    "gemm_seconds": one GEMM_N matmul in the spec's dtype, or None}."""
    plain = plain_loops(job["framework"])
    spec, name = job["spec"], job["model"]
    model = impl.model.build_model(spec, native=False)
    loops = None
    if name in plain.NETWORKS:
        loops = plain.build(name, spec)
    rows = []
    for batch in job["batch_sizes"]:
        draw = Draws(job, batch)

        def run_impl(k):
            impl.model.set_params(model, job["params"], job["state"])  # not timed
            batches, masks = draw(k)
            return timed(lambda: impl.train.train(model, job["x"], job["y"], batches, masks))

        def run_plain(k):
            plain.reset(loops)  # not timed
            batches, _ = draw(k)
            return timed(lambda: plain.train(loops, job["x"], job["y"], batches))
        runs = {"impl": run_impl, "plain": run_plain} if loops else {"impl": run_impl}
        rows += [dict(r, batch_size=batch) for r in interleaved(runs, job["repeats"])]
    gemm = best_seconds(plain.matmul(GEMM_N, spec["dtype"]), 10) if job.get("gemm") else None
    return {"rows": rows, "gemm_seconds": gemm, "gemm_n": GEMM_N}


class Draws:
    """k steps' batch indices (without replacement within a step) and all-ones dropout masks."""

    def __init__(self, job, batch):
        self.rng, self.n, self.batch = np.random.default_rng(job["seed"]), len(job["x"]), batch
        self.masks = {name: np.ones([batch, *shape], job["dtype"])
                      for name, shape in job["dropout"].items()}

    def __call__(self, k):
        batches = [self.rng.choice(self.n, self.batch, replace=False) for _ in range(k)]
        return batches, {name: [m] * k for name, m in self.masks.items()}


def timed(call):
    """-> (seconds, steps taken: a diverged run stops early)."""
    start = time.perf_counter()
    curves = call()
    return time.perf_counter() - start, max(1, len(curves["loss"]))


def interleaved(runs, repeats):
    """Per mode: a first call of one step (compiles), calls growing until one is long enough
    to size the timed calls by (sized), then `repeats` timed calls, the modes taking turns."""
    first = {mode: run(1)[0] for mode, run in runs.items()}
    sizes = {mode: sized(run) for mode, run in runs.items()}
    per_step = {mode: [] for mode in runs}
    for _ in range(repeats):
        for mode, run in runs.items():
            seconds, steps = run(sizes[mode])
            per_step[mode].append(seconds / steps)
    out = []
    for mode, times in per_step.items():
        step = statistics.median(times)
        out.append({"mode": mode, "step_seconds": step, "steps": sizes[mode],
                    "repeats": repeats, "compile_seconds": max(0.0, first[mode] - step)})
    return out


def sized(run):
    """The steps per timed call: about TARGET_SECONDS over the step time of a call at least
    half that long. A call also pays once what its `train` sets up (the data set moved to the
    device, the optimizer's state): a call of a few steps is mostly that (JAX's mnist_mlp at
    batch 1: 2.7 ms a step over 3 steps, 0.5 ms over 100). Sized from such a call, the timed
    calls ran 0.05 to 0.07 s instead of 0.2 s, and each step carried three to four times
    its intended share of that cost."""
    run(3)  # a second trace, where a framework makes one, is seen here and not sized by
    k = 3
    while True:
        seconds, steps = run(k)
        if seconds >= TARGET_SECONDS / 2 or k >= MAX_STEPS or steps < k:
            break
        k = min(MAX_STEPS, 4 * k)
    again, taken = run(k)  # the faster of two: a one-off pause sizes nothing
    step = min(seconds / steps, again / taken)
    return min(MAX_STEPS, max(3, math.ceil(TARGET_SECONDS / step)))


def best_seconds(call, repeats):
    """The fastest of `repeats` calls after a warm-up: a peak is what the machine can do."""
    call()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)
