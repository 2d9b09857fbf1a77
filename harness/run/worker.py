"""One framework, one process: `python -m crossgrad.harness.run.worker --framework torch`.

The command line names the framework so `ps` shows who is who. The worker imports
its implementation once (TensorFlow alone takes seconds), says hello with its
versions and thread settings, then serves jobs from stdin until stdin closes.
Messages go over the original stdout; anything a framework prints is sent to
stderr instead, whose last lines the harness reports if the worker dies.

CROSSGRAD_FAULT=<framework>:<raise|segfault|kill|hang|exit>[:<model>] injects a
fault before a job, so the fault isolation of the executors can be tested for real.

`perform(impl, job)` is the worker side of a job (jobs.py builds the harness side):
it builds the model from the spec, loads the shared arrays, and returns canonical
NumPy arrays only.
"""
import argparse
import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

import numpy as np

from ..errors import one_line
from ..importers import original
from ..registry import ORIGINAL
from ..spec import plugins
from . import lockstep, lockstep_control, orphans, ownership, protocol, second_order
from .reference import each_in_format, in_format, model_in_format
from .environment import SHARED_VARIABLE, WORKER_KIND, remove_shared, worker_tempdir


def main(argv=None):
    args = _parse(argv)
    faulthandler.enable()                  # a segfault leaves a stack in the stderr tail
    scratch = args.scratch or _private_tempdir()  # what it removes as it ends, either way
    parent = args.parent or os.getppid()
    orphans.stop_with(parent, lambda: _left_behind(scratch))
    channel = os.fdopen(os.dup(1), "wb")   # protocol messages only
    os.dup2(2, 1)                          # stray prints from frameworks go to stderr
    try:
        return _serve(args, channel)
    finally:
        _remove(scratch)
        if os.getppid() != parent:  # stdin closed by the harness's death: see _left_behind
            remove_shared(os.environ.get(SHARED_VARIABLE))


def _private_tempdir():
    """-> a new temporary folder of this worker's own, made `tempfile`'s default: TensorFlow's
    AutoGraph writes the source of every function it converts to a temporary file that only
    a normal exit deletes (crossgrad's own tf.functions trace without AutoGraph; an imported
    model's may not). A worker started by the harness has one already (`--scratch`, its
    TMPDIR); this is for a worker started by hand."""
    folder = worker_tempdir()
    tempfile.tempdir = folder
    return folder


def _remove(scratch):
    """The worker's temporary folder, as the worker ends: also when its harness is gone, the
    harness that would remove it otherwise. Only a real folder carrying the marker of a
    worker's folder (environment.worker_tempdir) goes: `--scratch` names nothing else.
    Twice: a job still running may add a file meanwhile."""
    for _ in range(2 if ownership.unfinished(scratch, WORKER_KIND) else 0):
        shutil.rmtree(scratch, ignore_errors=True)


def _serve(args, channel):
    try:
        from .. import registry
        impl = registry.load(args.framework)
        settings = impl.runtime.configure(args.threads)
    except Exception as err:  # an import that fails is reported, not raised
        protocol.send(channel, {"type": "hello", "ok": False,
                                "error": f"{type(err).__name__}: {err}"})
        return 3
    # plain strings: torch.__version__ is a TorchVersion, and unpickling one in the harness
    # would import torch there (seconds, for a version number)
    versions = {name: str(version) for name, version in impl.runtime.versions().items()}
    protocol.send(channel, {"type": "hello", "ok": True, "pid": os.getpid(),
                            "versions": versions, "threads": settings,
                            "precision": impl.runtime.precision(pinned=True)})
    while (job := protocol.recv(sys.stdin.buffer)) is not None:
        try:
            _inject_fault(args.framework, job)
            result = dict(perform(impl, job), status="ok")
        except plugins.Unsupported as err:  # a plugin without this framework's method
            result = {"status": "skipped", "error": str(err), "unsupported": True}
        except Exception as err:
            result = {"status": "failed", "error": _short_error(err)}
        protocol.send(channel, result)
    return 0


def perform(impl, job):
    """Run one job against one implementation; every array returned is canonical NumPy."""
    start = time.perf_counter()
    runtime = impl.runtime  # the worker's framework, also under an original model
    if job.get("participant") == ORIGINAL:  # the imported model itself, behind the same API
        impl = original.implementation(impl, job["original"])
    used = plugins.attach(job["spec"]["layers"], job.get("plugins", ()))
    reason = plugins.unsupported(used, job["framework"], job["kind"])
    if reason:
        raise plugins.Unsupported(reason)
    if job["kind"] == "bench":  # crossgrad bench --step-time (bench/steptime.py)
        from ..bench import steptime
        return dict(steptime.measure(impl, job), seconds=time.perf_counter() - start)
    if job["kind"] == "lockstep_control":  # NumPy one format wider (compare/lockstep_control.py)
        return dict(lockstep_control.measure(impl, job), seconds=time.perf_counter() - start)
    # full-precision matmuls, or (check --matmul-precision default) the framework's own
    in_effect = runtime.precision(pinned=job.get("matmul_precision") != "default")
    try:
        model = impl.model.build_model(job["spec"], native=job["native"])
        impl.model.set_params(model, job["params"], job["state"])
        if job["kind"] == "check":
            result = dict(_check(impl, model, job, job["framework"] == "numpy"
                                 and plugins.without_backward(used)), precision=in_effect)
        else:
            curves = impl.train.train(model, job["x"], job["y"], job["batches"], job["masks"])
            params, state = impl.model.get_params(model)
            result = {"curves": curves, "params": _numpy(params), "state": _numpy(state)}
    finally:
        runtime.precision(pinned=True)
    result["seconds"] = time.perf_counter() - start
    if job.get("lockstep"):  # after the free run, and timed apart (run/lockstep.py)
        no_reference = plugins.without_backward(used)
        result["lockstep"] = ({"error": f"the reference cannot step: {no_reference}"}
                              if no_reference else lockstep.measure(impl, model, job))
    return result


def _check(impl, model, job, no_backward=None):
    """Loss and gradients on the batch, then the loss along every finite-difference probe.
    `no_backward`: why there is no gradient (a plugin without numpy_backward); the loss
    values still check the other frameworks' gradients by finite differences."""
    x, y, masks = job["x"], job["y"], job["masks"]
    if no_backward:
        loss, grads, state = impl.model.loss_value(model, x, y, masks), {}, {}
    else:
        loss, grads, state = impl.model.loss_and_gradients(model, x, y, masks)
    result = {"loss": float(loss), "grads": _numpy(grads), "state": _numpy(state),
              "fd_values": np.asarray(_probe_losses(impl, model, job))}
    if no_backward:
        result.update(gradients="skipped", gradients_reason=no_backward)
    elif job.get("layers"):  # after the probes, from the job's own params: the same bits above
        result.update(_layer_values(impl, model, job))
    if job.get("order") == 2 and job["probes"]:  # check --order 2: H v along every probe
        result.update(_second_order(impl, model, job, no_backward))
    if job.get("perturb") and not no_backward:  # the control's sensitivity (compare/control.py)
        result["perturbed"] = _perturbed(impl, job, **job["perturb"])
    return result


def _perturbed(impl, job, dtype, unit, count, seed):
    """The loss and gradients again, `count` times, in the checked format `dtype` (the job's
    arrays are widened from it: exact back), each value leaving a layer (its output, dL/dx,
    its gradients) moved by a random relative `unit`, that format's unit roundoff. Every
    draw rounds inside each layer as the format does and lands elsewhere: how far honest
    roundings of this formula fall from the wider result. NumPy's model draws the moves
    (its spec's "jitter")."""
    out = []
    for i in range(count):
        jittered = model_in_format(impl, job["spec"], job["params"], job["state"], dtype,
                                   jitter={"unit": unit, "seed": [seed, i]})
        loss, grads, state = impl.model.loss_and_gradients(
            jittered, in_format(job["x"], dtype), in_format(job["y"], dtype),
            each_in_format(job["masks"], dtype))
        out.append({"loss": float(loss), "grads": _numpy(grads), "state": _numpy(state)})
    return out


def _probe_losses(impl, model, job):
    """[[the loss at params + t * direction for each step t] for each probe]. An
    implementation's `probe_losses` sets only the probed parameter's layer for each step;
    one without it (an imported original) gets the whole moved params set each time."""
    params, state, x, y, masks = job["params"], job["state"], job["x"], job["y"], job["masks"]
    if job["probes"]:  # the batch's loss and gradients moved the running statistics
        impl.model.set_params(model, params, state)
    rows = []
    for name, direction in job["probes"]:
        values = (params[name] + t * direction for t in job["steps"])
        if hasattr(impl.model, "probe_losses"):
            rows.append(impl.model.probe_losses(model, params, x, y, masks, name, values))
            continue
        row = []
        for value in values:
            impl.model.set_params(model, dict(params, **{name: value}), state)
            row.append(impl.model.loss_value(model, x, y, masks))
        rows.append(row)
    return rows


def _second_order(impl, model, job, no_backward):
    """H v and differences of the gradient along each probe (run/second_order.py). A framework
    that cannot give them says why; its first-order results stand."""
    if no_backward:
        return {"hvp_skipped": f"no gradient to differentiate ({no_backward})"}
    try:
        return {"second_order": second_order.probe_all(impl, model, job)}
    except Exception as err:
        return {"hvp_error": _short_error(err)}


def _layer_values(impl, model, job):
    """Each top-level layer's output and dL/dx. They explain a failing check and never fail
    one: an implementation that cannot give them says why, and the check goes on."""
    impl.model.set_params(model, job["params"], job["state"])
    try:
        outputs, input_grads = impl.model.layer_values(model, job["x"], job["y"], job["masks"])
    except Exception as err:
        return {"layer_values_error": _short_error(err)}
    return {"layer_outputs": _numpy(outputs), "layer_input_grads": _numpy(input_grads)}


def _numpy(arrays):
    return {k: np.asarray(v) for k, v in arrays.items()}


def _left_behind(scratch):
    """A worker whose harness was killed with SIGKILL removes its temporary folder and the one
    the harness's workers share (SHARED_VARIABLE, any of them, whichever is first), which
    that harness cannot."""
    _remove(scratch)
    remove_shared(os.environ.get(SHARED_VARIABLE))  # its other workers end likewise


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m crossgrad.harness.run.worker")
    parser.add_argument("--framework", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent", type=int, help="the harness's pid")
    parser.add_argument("--scratch", help="a folder made for this worker alone (its TMPDIR, "
                        "with a worker folder's marker), which it removes as it ends")
    return parser.parse_args(argv)


def _short_error(err):
    """The exception and the innermost frame of the implementation or plugin that raised it
    (a plugin's wrong output, `located`, already names the plugin's method, file and line)."""
    if getattr(err, "sentence", False):  # canonical.NoForm: no error in anyone's code
        return str(err)
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "/impls/" in f.filename or plugins.is_plugin_file(f.filename)]
    if getattr(err, "located", False):
        frames = []
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{one_line(err)}{where}"


def _inject_fault(framework, job):
    spec = os.environ.get("CROSSGRAD_FAULT", "")
    target, _, rest = spec.partition(":")
    kind, _, model = rest.partition(":")
    if target != framework or (model and model != job.get("model")):
        return
    if kind == "raise":
        raise RuntimeError("injected fault")
    if kind == "segfault":
        import ctypes
        ctypes.string_at(0)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        time.sleep(10 ** 6)
    if kind == "exit":
        os._exit(3)


if __name__ == "__main__":
    code = main()
    # every answer is sent and nothing else is kept: skip the interpreter's teardown, which
    # takes TensorFlow seconds while the harness waits for the worker to go
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
