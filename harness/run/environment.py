"""Thread pinning: the environment every worker starts with, recorded in the manifest.

Results are bit-identical run to run only for a fixed thread count: a different
count splits reductions differently. The count is a setting (--threads, default 1),
never derived from the machine or the executor. Each framework's own pins live in
the registry; every worker gets all of them.
"""
import os
import shutil
import tempfile

from .. import registry
from .ownership import unfinished, write_marker

WORKER_KIND = "worker"  # the marker's kind in a worker's temporary folder


def worker_tempdir():
    """A new private folder for one worker's temporary files (its TMPDIR), with crossgrad's
    marker first (ownership.py), still being written: everything in it is the worker's, and
    the marker is what lets the worker remove it whole."""
    folder = tempfile.mkdtemp(prefix="crossgrad-worker-")
    write_marker(folder, WORKER_KIND)
    return folder


SHARED_KIND = "shared"  # the marker's kind in the folder the workers of one executor share
SHARED_VARIABLE = "CROSSGRAD_SHARED"  # names that folder in each worker's environment


def shared_tempdir():
    """A new folder the workers of one executor share (the reference's lockstep steps,
    reference_steps.py), with crossgrad's marker first: its executor removes it as it closes,
    and a worker whose harness is gone removes it too (worker._left_behind)."""
    folder = tempfile.mkdtemp(prefix="crossgrad-shared-")
    write_marker(folder, SHARED_KIND)
    return folder


def remove_shared(folder):
    """Remove a folder made by shared_tempdir, whole; nothing else (it must carry the marker)."""
    if folder and unfinished(folder, SHARED_KIND):
        shutil.rmtree(folder, ignore_errors=True)


# glibc's allocator, unless the environment sets it already: blocks up to 32 MiB from the
# heap, and up to 256 MiB of freed heap kept, not handed back. By default a training loop's
# step-sized arrays (new parameters, gradients, JAX's steps held until their records are
# read) are given back to the system when freed and faulted in again, page by page, the
# next step. Other allocators ignore the variables. The zoo's results are the same bits
# with them and without (README, Reproducibility: MKL on AMD EPYC rounds by address).
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def worker_env(threads, base=None):
    """The environment for a worker process: every framework's pins, for `threads` threads,
    and the allocator's (ALLOCATOR) where `base` has none of its own."""
    env = dict(os.environ if base is None else base)
    for framework in registry.FRAMEWORKS.values():
        env.update(framework.environment(threads, env))
    if not any(name in env for name in ALLOCATOR):
        env.update(ALLOCATOR)
    env["PYTHONHASHSEED"] = "0"
    return env


def recorded(threads):
    """What the manifest says about threads (the variables above, as set)."""
    return {"threads": threads, "environment": worker_env(threads, base={})}
