"""Files a run leaves behind: --json documents and --save golden arrays, written atomically."""
import json
import math
import os
import stat
import sys

import numpy as np

from .atomic import atomic_dir, atomic_file, failures_named
from .ownership import DIGEST, STAMP, claim_file, seal, tool_version


def plain(value):
    """JSON-able copy: NumPy scalars to Python, arrays to lists, non-finite floats to null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(target, document):
    """`target` as ownership.claim_file gave it: "-" is standard output; a device or a pipe
    is written straight into (it cannot be replaced); a file is replaced whole. A document
    that is an object starts with the stamp that lets a later run replace it while it is as
    written: the version, and the sha256 of the text (ownership.seal)."""
    stamped = isinstance(document, dict)
    if stamped:
        document = {STAMP: tool_version(), DIGEST: "", **document}
    text = json.dumps(plain(document), indent=1, allow_nan=False) + "\n"
    if stamped:
        text = seal(text)

    def dump(f):
        f.write(text)
    if str(target) == "-":
        dump(sys.stdout)
        sys.stdout.flush()
        return
    try:
        special = not stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with failures_named(target), open(target, "w") as f:
            dump(f)
        return
    # claimed again at the end: the run between the claim and now takes minutes
    with atomic_file(target, recheck=lambda: claim_file(target, "--json")) as f:
        dump(f)


def save_arrays(folder, saved, kind):
    """--save: one folder per model with params.npz, batch.npz and <framework>.npz."""
    with atomic_dir(folder, "save", "--save") as tmp:
        multi = len({dtype for _, dtype in saved}) > 1
        for (name, dtype), (inputs, results) in saved.items():
            out = tmp / name / dtype if multi else tmp / name
            out.mkdir(parents=True)
            save_npz(out / "params.npz", {**inputs.params, **inputs.state})
            save_npz(out / "batch.npz", batch_arrays(inputs, kind))
            for fw, result in results.items():
                if result.get("status") == "ok":
                    save_npz(out / f"{fw}.npz", result_arrays(result, kind))


def save_npz(path, arrays):
    """np.savez, with arrays of ml_dtypes' types (bfloat16) widened to float32, which holds
    each of their values exactly: .npy cannot name those types and records raw bytes (|V2)
    that read back as nothing usable without ml_dtypes."""
    np.savez(path, **{name: _recordable(value) for name, value in arrays.items()})


def _recordable(value):
    array = np.asarray(value)
    if array.dtype.type.__module__.split(".")[0] == "ml_dtypes":
        return array.astype(np.float32)
    return array


def batch_arrays(inputs, kind):
    """check: the batch the gradients are of; train: the whole data set and the batch order."""
    if kind == "check":
        x, y, masks = inputs.first_batch()
        return {"x": x, "y": y, **{f"mask:{k}": m for k, m in masks.items()}}
    return {"x": inputs.x, "y": inputs.y, "batches": inputs.batches,
            **{f"mask:{k}": m for k, m in inputs.masks.items()}}


def result_arrays(result, kind):
    """check: loss, one gradient per parameter (+ updated state); train: curves + final params."""
    if kind == "check":
        return {"loss": np.asarray(result["loss"]), **result["grads"], **result["state"]}
    curves = result["curves"]
    return {"loss": np.asarray(curves["loss"]), "grad_norm": np.asarray(curves["grad_norm"]),
            **result["params"], **result["state"]}
