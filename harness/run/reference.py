"""The float64 reference of a check in another format (compare/precision.py), and the
control of a failing pair (compare/control.py): float64 for float32, long double for float64.

NumPy computes the model in the wider format from the very arrays every framework was
given: the weights and data rounded once to the format (spec/precision.rounded), widened,
which is exact. Its loss, gradients and layer values are those of the rounded model, to
the wider format's digits: what the frameworks would return with exact arithmetic.
"""
import hashlib

import numpy as np

from ..registry import REFERENCE
from ..spec.precision import numpy_dtype

KIND = "float64 reference"


def reference_job(job, dtype="float64", perturb=None):
    """The reference's job, cut from the check job of the same model (any framework's), in
    `dtype`: float64, or long double for the control of a float64 check (compare/control.py),
    which also asks for its results at inputs moved by rounding (`perturb`, worker._perturbed)."""
    kind = KIND if dtype == "float64" else f"{dtype} reference"
    tag = f"{kind}:{sorted(perturb.items())}" if perturb else kind  # its cache key's part
    return dict(job, framework=REFERENCE, dtype=dtype, spec=dict(job["spec"], dtype=dtype),
                params=each_in_format(job["params"], dtype),
                state=each_in_format(job["state"], dtype),
                x=in_format(job["x"], dtype), y=in_format(job["y"], dtype),
                masks=each_in_format(job["masks"], dtype),
                probes=[], steps=None, order=1, matmul_precision=None, reference=kind,
                perturb=perturb,
                key=hashlib.sha256(f"{job['key']}:{tag}".encode()).hexdigest()[:24])


def in_format(a, dtype):
    """A float array in `dtype` (token ids and labels as they are; bfloat16 through
    ml_dtypes: the control's draws of a bfloat16 check are in it)."""
    a = np.asarray(a)
    return a if a.dtype.kind in "iub" else a.astype(numpy_dtype(dtype))


def each_in_format(arrays, dtype):
    """{name: array} -> the same, each float array in `dtype` (in_format)."""
    return {k: in_format(v, dtype) for k, v in arrays.items()}


def model_in_format(impl, spec, params, state, dtype, jitter=None):
    """NumPy's model of `spec` (a job's) in `dtype`, set to `params` and `state` in that
    format (exact where it is wider). `jitter` ({unit, seed}): every value leaving a layer
    also moved at random by a relative `unit`, one draw of the control's rounding level
    (the NumPy model's spec key "jitter")."""
    model = impl.model.build_model(dict(spec, dtype=dtype, **({"jitter": jitter} if jitter
                                                               else {})))
    impl.model.set_params(model, each_in_format(params, dtype), each_in_format(state, dtype))
    return model
