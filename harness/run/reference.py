"""The float64 reference of a check in another format (compare/precision.py).

NumPy computes the model in float64 from the very arrays every framework was given: the
weights and data rounded once to the format (spec/precision.rounded), widened to float64,
which is exact. Its loss, gradients and layer values are those of the rounded model, to
float64's 16 digits: what the frameworks would return with exact arithmetic.
"""
import hashlib

import numpy as np

from ..registry import REFERENCE

KIND = "float64 reference"


def reference_job(job):
    """The reference's job, cut from the check job of the same model (any framework's)."""
    def wide(a):
        a = np.asarray(a)
        return a if a.dtype.kind in "iub" else a.astype(np.float64)

    return dict(job, framework=REFERENCE, dtype="float64", spec=dict(job["spec"], dtype="float64"),
                params={k: wide(v) for k, v in job["params"].items()},
                state={k: wide(v) for k, v in job["state"].items()},
                x=wide(job["x"]), y=wide(job["y"]),
                masks={k: wide(m) for k, m in job["masks"].items()},
                probes=[], steps=None, order=1, matmul_precision=None, reference=KIND,
                key=hashlib.sha256(f"{job['key']}:{KIND}".encode()).hexdigest()[:24])
