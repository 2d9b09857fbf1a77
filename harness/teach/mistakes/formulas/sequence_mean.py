"""The mean over time that turns a sequence into one vector, and its backward without 1/T.

y = (1/T) sum_t x[:, t]: every time step gets dy / T back.
"""
import numpy as np

import crossgrad

NETWORK = "attention"   # harness/spec/examples.py: attention, mean over time, dense (3)


@crossgrad.layer("sequence_mean_right")
class SequenceMean:
    """y = mean over t of x[:, t]"""

    def out_shape(self, in_shape):
        return in_shape[1:]

    def numpy_forward(self, p, x):
        return x.mean(1), x.shape[1]

    def numpy_backward(self, p, time, dy):
        return np.repeat(dy[:, None] / time, time, axis=1), {}

    def torch(self, p, x):
        return x.mean(1)

    def tensorflow(self, p, x):
        import tensorflow as tf
        return tf.reduce_mean(x, 1)

    def jax(self, p, x):
        return x.mean(1)


@crossgrad.layer("sequence_mean_without_1_over_t")
class SequenceMeanWithout1OverT(SequenceMean):
    """dx[:, t] = dy for every t: the mean's 1/T dropped, as if it were a sum"""
    at = 1
    why = ("A mean over T steps passes 1/T of dy to each step; copying dy to every step "
           "is the backward of a sum, T times too large.")

    def numpy_backward(self, p, time, dy):
        return np.repeat(dy[:, None], time, axis=1), {}
