"""Thread pinning, versions and the arithmetic of the NumPy reference."""
import numpy as np
import scipy

__all__ = ["configure", "versions", "precision"]


_limits = []


def configure(threads):
    """BLAS threads; the environment variables were set before NumPy was imported."""
    from threadpoolctl import threadpool_limits
    _limits.append(threadpool_limits(threads))  # kept alive: the limit lasts as long as the object
    return {"blas_threads": threads}


def versions():
    return {"numpy": np.__version__, "scipy": scipy.__version__}


def precision(pinned=True):
    """The precision of matmuls and sums, per format. NumPy has no switch for them: `pinned`
    (full precision, or the framework's defaults) changes nothing; -> what is in effect."""
    return {"float64, float32": "BLAS matmuls and pairwise sums in the array's format",
            "float16": "elementwise in float16; matmuls and sums accumulate in float32 inside "
                       "NumPy's half loops; erf (SciPy) in float64, rounded",
            "bfloat16": "not a NumPy format: computed in float32, every layer's outputs and "
                        "gradients rounded to bfloat16 (model.py)"}
