"""Thread pinning and versions for the NumPy reference."""
import numpy as np
import scipy

__all__ = ["configure", "versions"]


_limits = []


def configure(threads):
    """BLAS threads; the environment variables were set before NumPy was imported."""
    from threadpoolctl import threadpool_limits
    _limits.append(threadpool_limits(threads))  # kept alive: the limit lasts as long as the object
    return {"blas_threads": threads}


def versions():
    return {"numpy": np.__version__, "scipy": scipy.__version__}
