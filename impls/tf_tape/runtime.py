"""Threads, determinism, logging and versions for TensorFlow.

The harness imports this module first, so the environment variables below are
read when TensorFlow itself is imported.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # C++ INFO and WARNING lines off
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")    # TensorFlow's own CPU kernels, not oneDNN's
# (whose startup notice TF_CPP_MIN_LOG_LEVEL does not silence)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["configure", "versions"]

# Each model traces its own tf.functions once; TensorFlow's "frequent retracing" warning
# counts those traces across models (same code, new closures) and would fire for nothing.
tf.get_logger().setLevel("ERROR")


def configure(threads):
    """Pin TensorFlow's thread pools; must run before the first TensorFlow op."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()
    return {"intra_op_threads": threads, "inter_op_threads": threads, "op_determinism": True,
            "onednn_opts": os.environ["TF_ENABLE_ONEDNN_OPTS"]}


def versions():
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
