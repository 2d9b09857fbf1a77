"""The reference's lockstep steps, computed once per run and read by every worker after.

Every framework's train job replays the reference (NumPy) step by step beside its own
(lockstep.py), and the aligned and native jobs of every framework start from the same
spec, params, batches and masks, so the reference takes the same steps in each: 3 to 6
times per model in `crossgrad run`. A worker that computes them writes them, step by step
as it walks, into a folder the workers of one executor share (environment.shared_tempdir,
named by SHARED_VARIABLE in their environment), under the job's "reference_key"
(jobs.reference_key); a later job reads them instead, the same bits.

Each step is stored as a pickle whose arrays follow it raw (pickle protocol 5's
out-of-band buffers). A reader maps the file and its arrays are copy-on-write views of the
mapping: reading mnist_mlp's 406 MB of float64 steps costs what touching its pages does
(as pickles, loading took half the time of computing them), the page cache holds one copy
for every worker, and the walking worker holds one step at a time. A trajectory over LIMIT
is computed by each job, and so is one that would take the folder past BUDGET or leave the
disk with less than RESERVE free. A file is put in place whole or not at all. Without the
folder (a Ray cluster, a worker started by hand, a test in-process) every job computes its
own.
"""
import contextlib
import mmap
import os
import pickle
import shutil
import struct
import tempfile

from .environment import SHARED_KIND, SHARED_VARIABLE
from .ownership import unfinished

LIMIT = 1 << 30    # bytes of one trajectory, at most, stored
BUDGET = 2 << 30   # bytes in the shared folder, at most
RESERVE = 1 << 30  # bytes left free on its disk, at least
SUFFIX = ".steps"
ALIGN = 64         # each array starts at a multiple of this many bytes in the file
HEADER = struct.Struct("<QQ")  # a step's pickle's length, its number of arrays


def stored_path(job):
    """Where this job's reference steps are or would be stored; None if not to be shared.
    Only in a folder with the marker shared_tempdir writes: a variable left in a user's
    environment that names a folder of theirs gets nothing written into it."""
    folder, key = os.environ.get(SHARED_VARIABLE), job.get("reference_key")
    if (not folder or not key or trajectory_bytes(job) > LIMIT
            or not unfinished(folder, SHARED_KIND)):
        return None
    return os.path.join(folder, f"{key}{SUFFIX}")


def trajectory_bytes(job):
    """The bytes of the steps' records, at least: per step, the parameters, their gradients
    and the running statistics (the optimizer's slots come on top; `writing` counts them)."""
    params = sum(a.nbytes for a in job["params"].values())
    state = sum(a.nbytes for a in job["state"].values())
    return len(job["batches"]) * (2 * params + state)


def load(path):
    """The stored steps, or None: not there (yet), or unreadable (computed again)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # stays after close
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None
    try:
        return _steps(memoryview(mapped))
    except (ValueError, struct.error, pickle.UnpicklingError, EOFError, TypeError):
        return None


def _steps(view):
    """The steps laid out by `writing` in `view`: [each step's record]."""
    steps, at = [], 0
    while at < len(view):
        size, count = HEADER.unpack_from(view, at)
        at += HEADER.size
        if 8 * count > len(view) - at:
            raise ValueError("truncated")
        lengths = struct.unpack_from(f"<{count}Q", view, at)
        at += 8 * count
        record, at = _take(view, at, size)
        buffers = []
        for length in lengths:
            buffer, at = _take(view, at, length)
            buffers.append(buffer)
        steps.append(pickle.loads(record, buffers=buffers))
    if at != len(view):  # the writer pads its last array too: a cut file ends short
        raise ValueError("truncated")
    return steps


def _take(view, at, length):
    """(view[at:at + length], where the next part starts), or ValueError past the end."""
    if at + length > len(view):
        raise ValueError("truncated")
    return view[at:at + length], _aligned(at + length)


def _aligned(at):
    return -(-at // ALIGN) * ALIGN


@contextlib.contextmanager
def writing(path, job):
    """record(step) appends a step to a new file; leaving the block puts the file at `path`
    whole, unless the block raised, a write failed, or the steps passed LIMIT, BUDGET or
    RESERVE on the way: then nothing is left. `path` None: record does nothing. Two workers
    that computed the same steps side by side each rename a complete file into place."""
    folder = os.path.dirname(path) if path else None
    try:
        f = (tempfile.NamedTemporaryFile("wb", dir=folder, suffix=".partial", delete=False)
             if path and _room(folder, trajectory_bytes(job)) else None)
    except OSError:  # the folder is gone: the later jobs compute their own
        f = None
    if f is None:
        yield lambda step: None
        return
    complete, written = True, 0

    def record(step):
        nonlocal complete, written
        if complete:
            try:
                _append(f, step)
                written = f.tell()
                complete = written <= LIMIT and _room(folder, 0)
            except OSError:  # a full disk: the later jobs compute their own
                complete = False

    placed = False
    try:
        yield record
        with contextlib.suppress(OSError):  # the last flush on a full disk, the folder gone
            f.close()
            if complete and written:
                os.replace(f.name, path)
                placed = True
    finally:
        with contextlib.suppress(OSError):
            f.close()  # if the walk raised
        if not placed:  # this block's own temporary file, and nothing else
            with contextlib.suppress(OSError):
                os.unlink(f.name)


def _append(f, step):
    """One step as _steps reads it: the header and the lengths of its arrays, its pickle,
    then its arrays raw, each padded to ALIGN."""
    buffers = []
    data = pickle.dumps(step, protocol=5, buffer_callback=buffers.append)
    arrays = [b.raw() for b in buffers]  # each array's bytes, not copied
    _write(f, HEADER.pack(len(data), len(arrays))
           + struct.pack(f"<{len(arrays)}Q", *(a.nbytes for a in arrays)) + data)
    for array in arrays:
        _write(f, array)


def _write(f, part):
    """`part`, then zeros up to the next multiple of ALIGN (where _steps looks next)."""
    f.write(part)
    f.write(bytes(_aligned(f.tell()) - f.tell()))


def _room(folder, size):
    """Whether `size` more bytes fit in the folder: its files within BUDGET, and RESERVE
    bytes left free on its disk."""
    try:
        used = sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
        free = shutil.disk_usage(folder).free
    except OSError:
        return False
    return used + size <= BUDGET and free - size >= RESERVE
