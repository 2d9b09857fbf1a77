"""Float64 and thread pinning for JAX on CPU, and versions.

JAX computes in float32 unless `jax_enable_x64` is on, and an array created before
the switch keeps its 32-bit dtype: the switch is flipped here, at import, and the
package's __init__ imports this module before anything else.

XLA reads its thread settings once, when the CPU backend starts (at the first array
or the first compiled function, not at `import jax`), so `configure` must run before
anything touches an array; the implementation's modules create none at import.
"""
import os
import warnings

import jax
import jaxlib
import optax

__all__ = ["configure", "versions", "precision"]

jax.config.update("jax_enable_x64", True)
DEFAULT_PRECISION = jax.config.jax_default_matmul_precision  # JAX's own, as found at import


def configure(threads):
    """Pin XLA's CPU thread pools to `threads`; returns what was set."""
    from jax._src import xla_bridge  # no public way to ask whether the backend started
    if xla_bridge.backends_are_initialized():
        warnings.warn("the JAX backend already started: thread settings are ignored")
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "--xla_cpu_multi_thread_eigen" not in flags:
        # Eigen's matmuls and convolutions then run on the calling thread
        flags = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    os.environ["XLA_FLAGS"] = flags
    # NPROC sizes XLA's intra-op pool (xla::DefaultThreadPoolSize); without it, one
    # thread per core. (`intra_op_parallelism_threads=N`, often copied into XLA_FLAGS,
    # is a TensorFlow session option that XLA silently ignores.)
    os.environ["NPROC"] = str(threads)
    # full-precision matmuls and convolutions (precision below): the default already on
    # CPU, but on GPU/TPU the default would round float32 operands to TF32/bfloat16
    return {"XLA_FLAGS": flags, "NPROC": str(threads), "jax_enable_x64": True,
            **precision(pinned=True)}


def versions():
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__}


def precision(pinned=True):
    """Full-precision matmuls and convolutions (pinned: "highest"), or JAX's default (None:
    the backend's DEFAULT precision, which on GPU/TPU rounds float32 operands to TF32 or
    bfloat16); -> what is in effect. Functions traced afterwards use it."""
    jax.config.update("jax_default_matmul_precision", "highest" if pinned else DEFAULT_PRECISION)
    return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision or "default"}
