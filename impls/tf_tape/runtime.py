"""Threads, determinism, logging and versions for TensorFlow.

The harness imports this module first, so the environment variables below are
read when TensorFlow itself is imported.
"""
import os
import sys
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # C++ INFO and WARNING lines off
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")    # TensorFlow's own CPU kernels, not oneDNN's
# (whose startup notice TF_CPP_MIN_LOG_LEVEL does not silence)


@contextmanager
def held_back(*names):
    """Imports of `names` fail inside the block (ImportError), unless already imported;
    afterwards they import as usual."""
    held = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(held))  # None: "import x" raises ImportError
    try:
        yield
    finally:
        for name in held:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


# TensorFlow's TFLite converter imports JAX when it is installed (tensorflow/lite/python/
# util.py), and Keras' scikit-learn wrappers import scikit-learn and SciPy (keras/src/
# wrappers): 2.4 s of a TensorFlow worker's 7 s start, for code it never runs. Keras'
# array slicing for fit() tries pandas (0.8 s), its image-gallery plot matplotlib (0.5 s),
# and the legacy tf.keras SciPy's sparse matrices (0.2 s). Each tries the import and
# carries on without it. Where the process already has one (the harness in-process, a
# notebook), Keras gets it as before.
with held_back("jax", "sklearn", "pandas", "matplotlib", "scipy"):
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402

__all__ = ["configure", "versions", "precision"]

# Each model traces its own tf.functions once; TensorFlow's "frequent retracing" warning
# counts those traces across models (same code, new closures) and would fire for nothing.
tf.get_logger().setLevel("ERROR")
# An error raised inside a layer keeps its own one-line message (a plugin's shape check
# names the plugin); Keras' traceback filtering would wrap it in a paragraph.
keras.config.disable_traceback_filtering()
# TensorFlow's own default, as found at import
TF32_DEFAULT = tf.config.experimental.tensor_float_32_execution_enabled()


def configure(threads):
    """Pin TensorFlow's thread pools; -> what is in effect. The pools can be set only before
    the first TensorFlow op: a worker calls this first, but a process that already ran
    TensorFlow (a test session, a notebook) keeps its pools, and says so in the result."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # "cannot be modified after initialization"
        pass
    tf.config.experimental.enable_op_determinism()
    precision(pinned=True)
    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "op_determinism": True, "onednn_opts": os.environ["TF_ENABLE_ONEDNN_OPTS"]}


def versions():
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def precision(pinned=True):
    """Full float32 matmuls and convolutions (pinned: TF32 execution off), or TensorFlow's
    default (TF32 on, which rounds float32 operands to 10-bit mantissas on GPUs that have
    TF32; a CPU has none); -> what is in effect."""
    tf.config.experimental.enable_tensor_float_32_execution(False if pinned else TF32_DEFAULT)
    return {"tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled(),
            "onednn_opts": os.environ["TF_ENABLE_ONEDNN_OPTS"]}
