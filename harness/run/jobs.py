"""Jobs: everything one framework needs for one model, built on the harness side.

A job is a plain dict of NumPy arrays and JSON-able values, so it crosses a pipe or
a Ray cluster unchanged. `Inputs` draws the arrays of one (spec, dtype, seed) once:
params, data and the finite-difference probes; the batch order and dropout masks are
drawn step by step from their seeded streams (spec.data.BatchOrder, DropoutMasks), so a
job carries their seed and sizes, not steps x batch arrays. Every framework's job is
cut from the same Inputs. worker.py runs a job inside a worker.
"""
import hashlib
import json

from .. import registry
from ..errors import InputError
from ..importers import original
from ..registry import ORIGINAL, REFERENCE
from ..spec import probes
from ..spec.data import batch_order, dropout_masks, load_data, targets
from ..spec.initializers import init_params, init_state
from ..spec.params_file import digest
from ..spec.precision import rounded, rounded_in_range
from .ownership import tool_version


class Inputs:
    """The arrays of one (spec, dtype, seed): drawn once, shared by every framework."""

    def __init__(self, spec, steps=None):
        self.spec = spec
        data = load_data(spec.data, spec.input_shape, spec.seed, spec.file)
        n = len(data.x)
        self.batch_size = spec.data["batch_size"] or n
        if self.batch_size > n:
            raise InputError(spec.file, "data.batch_size",
                             f"is {self.batch_size} but the data set has only {n} examples")
        self.x = data.x if spec.data["input"] == "tokens" else rounded(data.x, spec.dtype)
        self.y = targets(data.labels, spec.loss["type"], spec.out_shape, spec.dtype)
        self.params, self.state = _initial(spec)
        self.steps = steps or spec.train["steps"]
        # drawn when a step asks: `check` reads step 0 only, whatever train.steps says
        self.batches = batch_order(n, self.batch_size, self.steps, spec.seed,
                                   spec.data["shuffle"])
        self.masks = dropout_masks(spec.dropout_layers(), self.batch_size, self.steps,
                                   spec.seed, spec.dtype)
        # finite differences mean nothing in float32: no probes there
        self.probes = probes.probes({k: v.shape for k, v in self.params.items()}, spec.seed) \
            if spec.dtype == "float64" else []
        # the budget is a hard cap: beyond it a seeded sample of tensors is probed (JSON, report)
        self.fd_tensors = {"probed": len({name for name, _ in self.probes}),
                           "total": len(self.params)} if spec.dtype == "float64" else None

    def first_batch(self):
        idx = self.batches[0]
        return self.x[idx], self.y[idx], {k: m[0] for k, m in self.masks.items()}


def _initial(spec):
    """Initial params and state: drawn, or a `params` file's (its missing state drawn)."""
    if spec.initial is None:
        return init_params(spec), init_state(spec)

    def given(name, values):  # the file's values: finite in float64, checked as read
        return rounded_in_range(values, spec.dtype,
                                lambda why: InputError(spec.file, "params", f"{name} {why}"))
    return ({k: given(k, spec.initial[k]) for k in spec.param_specs()},
            {k: given(k, spec.initial.get(k, v)) for k, v in init_state(spec).items()})


def job_key(kind, spec, framework, version, native, steps=None, participant=None, order=1,
            matmul_precision=None, params=None, threads=1):
    """What a cached result is keyed by: spec hash (with the data file's content), framework
    and version, dtype, seed, mode; the worker's thread count (a framework's reductions
    split by threads give other bits, README "Reproducibility") and crossgrad's own version
    (its code computes the result too); for the original, also the content of its model
    file and of the helper modules it imports; and the initial parameters themselves where
    given (the mistakes gallery checks a spec again at weights after a step: the same spec,
    another job)."""
    body = {"kind": kind, "spec": spec.hash, "framework": framework, "version": version,
            "dtype": spec.dtype, "seed": spec.seed, "native": native, "steps": steps,
            "threads": threads, "crossgrad": tool_version()}
    if params is not None:
        body["params"] = digest(params)
    if participant == ORIGINAL:
        body.update(participant=ORIGINAL, original=spec.original["sha256"])
        if spec.original.get("helpers"):  # the modules of the user's own the model imports
            body["helpers"] = [h["sha256"] for h in spec.original["helpers"]]
    if kind == "check":
        body["layers"] = True  # its results carry the per-layer values (check_job asks)
    if kind == "train":
        # and the lockstep measurements (train_job asks), with the pass values of the first
        # failing steps (run/lockstep.py's _kept): results stored before those lack them
        body["lockstep"] = "with pass values"
    if order != 1:
        body["order"] = order  # and H v along every probe (check --order 2)
    if matmul_precision == "default":
        body["matmul_precision"] = "default"  # the framework's own, not full precision
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def check_job(spec, inputs, framework, native=False):
    x, y, masks = inputs.first_batch()
    return _hosted({"kind": "check", "framework": framework, "model": spec.name,
                    "dtype": spec.dtype, "native": native, "spec": spec.for_impls(),
                    "plugins": spec.plugins, "params": inputs.params, "state": inputs.state,
                    "x": x, "y": y, "masks": masks, "probes": inputs.probes,
                    "steps": probes.steps() if inputs.probes else None,
                    "layers": True}, spec)  # each layer's output and dL/dx too (compare/layers.py)


def train_job(spec, inputs, framework, native=False):
    lockstep = framework not in (REFERENCE, ORIGINAL)
    return _hosted({"kind": "train", "framework": framework, "model": spec.name,
                    "dtype": spec.dtype, "native": native, "spec": spec.for_impls(),
                    "plugins": spec.plugins, "params": inputs.params, "state": inputs.state,
                    "x": inputs.x, "y": inputs.y, "batches": inputs.batches,
                    "masks": inputs.masks,
                    # every step also from the reference's state (run/lockstep.py); the
                    # reference itself and the imported original (its own loop) do not
                    "lockstep": lockstep,
                    "reference_key": reference_key(spec, inputs) if lockstep else None}, spec)


def keyed(job, spec, native, executor=None):
    """`job` with its cache key, job_key of what the job holds; `native` as its result is
    keyed (a native run that is its aligned run is keyed as the aligned one); the workers'
    threads are the executor's, or run_jobs' own pool's 1."""
    job["key"] = job_key(job["kind"], spec, job["framework"], registry.version(job["framework"]),
                         native, len(job["batches"]) if job["kind"] == "train" else None,
                         job.get("participant"), job.get("order", 1),
                         job.get("matmul_precision"), job["params"],
                         getattr(executor, "threads", 1))
    return job


def reference_key(spec, inputs):
    """What the reference's lockstep steps of a train job are stored under, the same for
    every framework's job of these inputs (run/reference_steps.py)."""
    return job_key("lockstep_reference", spec, REFERENCE, registry.version(REFERENCE), False,
                   inputs.steps, params=inputs.params)


def _hosted(job, spec):
    """The original's job runs in its framework's worker: "framework" names that worker."""
    if job["framework"] == ORIGINAL:
        job.update(framework=original.worker(spec), participant=ORIGINAL,
                   original=spec.original)
    return job
