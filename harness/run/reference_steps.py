"""The reference's lockstep steps, computed once per run and read by every worker after.

Every framework's train job replays the reference (NumPy) step by step beside its own
(lockstep.py), and the aligned and native jobs of every framework start from the same
spec, params, batches and masks, so the reference takes the same steps in each: 3 to 6
times per model in `crossgrad run`, about 11 s of its CPU time. A worker that computes
them stores them, pickled, in a folder the workers of one executor share
(environment.shared_tempdir, named by SHARED_VARIABLE in their environment), under the
job's "reference_key" (jobs.reference_key); a later job reads them instead, the same
bits. A trajectory larger than LIMIT is computed by each job: mnist_mlp's, 430 MB in
float64, takes about as long to write and read back as to compute, and would sit in
memory while its steps are gathered (so one whose parameters and gradients alone pass
LIMIT is not gathered at all). Without the folder (a Ray cluster, a worker started
by hand, a test in-process) every job computes its own.
"""
import os
import pickle
import tempfile

from .environment import SHARED_KIND, SHARED_VARIABLE
from .ownership import unfinished

LIMIT = 64 << 20  # bytes of one trajectory, at most, stored


def stored_path(job):
    """Where this job's reference steps are or would be stored; None if not to be shared.
    Only in a folder with the marker shared_tempdir writes: a variable left in a user's
    environment that names a folder of theirs gets nothing written into it."""
    folder, key = os.environ.get(SHARED_VARIABLE), job.get("reference_key")
    if (not folder or not key or trajectory_bytes(job) > LIMIT
            or not unfinished(folder, SHARED_KIND)):
        return None
    return os.path.join(folder, f"{key}.pickle")


def trajectory_bytes(job):
    """The bytes of the steps' records, at least: per step, the parameters, their gradients
    and the running statistics (the optimizer's slots come on top; `store` counts them)."""
    params = sum(a.nbytes for a in job["params"].values())
    state = sum(a.nbytes for a in job["state"].values())
    return len(job["batches"]) * (2 * params + state)


def load(path):
    """The stored steps, or None: not there (yet), or unreadable (computed again)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError):
        return None


def store(path, steps):
    """Write the steps where `load` finds them, whole or not at all: two workers that
    computed them side by side each rename a complete file of the same steps into place."""
    data = pickle.dumps(steps, protocol=pickle.HIGHEST_PROTOCOL) if path else b""
    if not data or len(data) > LIMIT:
        return
    try:
        with tempfile.NamedTemporaryFile("wb", dir=os.path.dirname(path), suffix=".partial",
                                         delete=False) as f:
            f.write(data)
        os.replace(f.name, path)
    except OSError:  # a full disk costs the later jobs their shortcut, nothing else
        try:
            os.unlink(f.name)
        except (OSError, NameError):
            pass
