"""The participant "original": the imported model itself, beside the four implementations.

A spec with an `[original]` table (spec/imported.py) came from `crossgrad import`. Its
original runs in a worker of its own framework (torch, or tensorflow for Keras) as a job
of its own; `implementation(impl, job)` gives run/worker.py the same API the four
implementations have (impls/README.md), over the original model, so a job's path is the
same for all five. On the harness side, `problem(spec)` says why the original cannot
run (its file, or a module of the user's own that the file imports, disappeared or
changed since the import), in one line.
"""
import hashlib
from pathlib import Path

WORKER = {"torch": "torch", "keras": "tensorflow"}   # [original] framework -> worker


def worker(spec):
    """The framework whose worker runs the spec's original."""
    return WORKER[spec.original["framework"]]


def problem(spec):
    """Why the spec's original cannot run, or None: its file, or a module of the user's own
    it imports (its helpers), is gone or changed."""
    original = spec.original
    path = Path(original["path"])
    if not path.is_file():
        return f"{original['file']} is gone (no such file: {path}); the original is left out"
    if _sha256(path) != original["sha256"]:
        return (f"{original['file']} changed since the import (its sha256 is not the spec's "
                f"original.sha256); the original is left out: import it again to compare it")
    for helper in original.get("helpers", ()):
        path = Path(helper["path"])
        if not path.is_file():
            return (f"{helper['file']}, which {original['file']} imports, is gone (no such "
                    f"file: {path}); the original is left out")
        if _sha256(path) != helper["sha256"]:
            return (f"{helper['file']}, which {original['file']} imports, changed since the "
                    "import (its sha256 is not the one in the spec's original.helpers); the "
                    "original is left out: import it again to compare it")
    return None


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def implementation(impl, original):
    """The implementation API over the original model; `impl` is the worker's own
    implementation, whose losses and optimizers the original trains with."""
    if original["framework"] == "torch":
        from . import original_torch as side
    else:
        from . import original_keras as side
    return side.implementation(impl, original)
