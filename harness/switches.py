"""The frameworks' global dtype switches that code run in this process needs, set for a call
and put back as found: crossgrad.compare runs a user's functions here, and the mistakes
gallery its idiomatic forms (the workers set their own dtypes).
"""
import contextlib


@contextlib.contextmanager
def keras_floatx(dtype):
    """floatx and the global dtype policy in `dtype`, both put back as they were found. The
    policy is kept apart from floatx: keras.config.dtype_policy() fixes it at the floatx of
    its first call, so a layer made here would pin it to `dtype` for good, and one made
    before would keep the layers made here in the caller's dtype. Its raw global (None
    until first read) is read where Keras keeps it: the public getter would set it."""
    import keras
    import tensorflow as tf
    from keras.src.backend.common import global_state
    found = keras.backend.floatx(), global_state.get_global_attribute("dtype_policy")
    keras.backend.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield tf
    finally:
        keras.backend.set_floatx(found[0])
        global_state.set_global_attribute("dtype_policy", found[1])
