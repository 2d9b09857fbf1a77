"""Thread pinning: the environment every worker starts with, recorded in the manifest.

Results are bit-identical run to run only for a fixed thread count: a different
count splits reductions differently. The count is a setting (--threads, default 1),
never derived from the machine or the executor.
"""
import os

BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def worker_env(threads, base=None):
    """The environment for a worker process: BLAS/OpenMP, TensorFlow and XLA pinned."""
    env = dict(os.environ if base is None else base)
    for name in BLAS_VARIABLES:
        env[name] = str(threads)
    env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"      # keep TensorFlow's start-up chatter out of stderr tails
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"     # oneDNN's fused kernels reorder float sums
    env["NPROC"] = str(threads)            # what sizes XLA's CPU thread pool (JAX)
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    env["PYTHONHASHSEED"] = "0"
    return env


def recorded(threads):
    """What the manifest says about threads (the variables above, as set)."""
    env = worker_env(threads, base={})
    return {"threads": threads, "environment": env}
