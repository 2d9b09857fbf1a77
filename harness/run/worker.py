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
import signal
import sys
import threading
import time
import traceback

import numpy as np

from . import protocol


def main(argv=None):
    args = _parse(argv)
    faulthandler.enable()                  # a segfault leaves a stack in the stderr tail
    _exit_with_parent()
    channel = os.fdopen(os.dup(1), "wb")   # protocol messages only
    os.dup2(2, 1)                          # stray prints from frameworks go to stderr
    try:
        from .. import registry
        impl = registry.load(args.framework)
        settings = impl.runtime.configure(args.threads)
    except Exception as err:  # an import that fails is reported, not raised
        protocol.send(channel, {"type": "hello", "ok": False,
                                "error": f"{type(err).__name__}: {err}"})
        return 3
    protocol.send(channel, {"type": "hello", "ok": True, "pid": os.getpid(),
                            "versions": impl.runtime.versions(), "threads": settings})
    while (job := protocol.recv(sys.stdin.buffer)) is not None:
        try:
            _inject_fault(args.framework, job)
            result = dict(perform(impl, job), status="ok")
        except Exception as err:
            result = {"status": "failed", "error": _short_error(err)}
        protocol.send(channel, result)
    return 0


def perform(impl, job):
    """Run one job against one implementation; every array returned is canonical NumPy."""
    start = time.perf_counter()
    model = impl.model.build_model(job["spec"], native=job["native"])
    impl.model.set_params(model, job["params"], job["state"])
    if job["kind"] == "check":
        result = _check(impl, model, job)
    else:
        curves = impl.train.train(model, job["x"], job["y"], job["batches"], job["masks"])
        params, state = impl.model.get_params(model)
        result = {"curves": curves, "params": _numpy(params), "state": _numpy(state)}
    result["seconds"] = time.perf_counter() - start
    return result


def _check(impl, model, job):
    """Loss and gradients on the batch, then the loss along every finite-difference probe."""
    x, y, masks = job["x"], job["y"], job["masks"]
    loss, grads, state = impl.model.loss_and_gradients(model, x, y, masks)
    fd_values = []
    for name, direction in job["probes"]:
        row = []
        for t in job["steps"]:
            moved = dict(job["params"], **{name: job["params"][name] + t * direction})
            impl.model.set_params(model, moved, job["state"])
            row.append(impl.model.loss_value(model, x, y, masks))
        fd_values.append(row)
    return {"loss": float(loss), "grads": _numpy(grads), "state": _numpy(state),
            "fd_values": np.asarray(fd_values)}


def _numpy(arrays):
    return {k: np.asarray(v) for k, v in arrays.items()}


def _exit_with_parent():
    """A harness killed with SIGKILL cannot stop its workers; they notice and stop themselves
    (a worker in the middle of a job would otherwise never read the closed stdin)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(4)
    threading.Thread(target=watch, daemon=True).start()


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m crossgrad.harness.run.worker")
    parser.add_argument("--framework", required=True)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def _short_error(err):
    """The exception and the innermost frame of the implementation that raised it."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/impls/" in f.filename]
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{where}"


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
    sys.exit(main())
