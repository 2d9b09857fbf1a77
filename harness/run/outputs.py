"""Files a run leaves behind: --json documents and --save golden arrays, written atomically."""
import json
import math
import os
import stat
import sys

import numpy as np

from .atomic import atomic_dir, atomic_file, failures_named
from .ownership import claim_file, tool_version


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
    is written straight into (it cannot be replaced); a file is replaced whole."""
    if isinstance(document, dict):  # the stamp that lets a later run replace this file
        document = {"crossgrad": tool_version(), **document}

    def dump(f):
        json.dump(plain(document), f, indent=1, allow_nan=False)
        f.write("\n")
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
            np.savez(out / "params.npz", **inputs.params, **inputs.state)
            np.savez(out / "batch.npz", **batch_arrays(inputs, kind))
            for fw, result in results.items():
                if result.get("status") == "ok":
                    np.savez(out / f"{fw}.npz", **result_arrays(result, kind))


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
