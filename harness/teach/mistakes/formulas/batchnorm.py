"""Batch normalisation between the first dense layer and its sigmoid, and two wrong backwards.

xhat = (x - mean) / sqrt(var + eps), y = gamma xhat + beta, with the mean and the (biased)
variance taken over the batch, per feature. Both depend on every example, so the right
dx has three terms; with g = dy * gamma and N the batch size,
dx = 1 / (N sqrt(var + eps)) * (N g - sum g - xhat * sum(g * xhat)), sums over the batch.
"""
import numpy as np

import crossgrad

# the 3-4-2 sigmoid network of mlp_3_4_2 with a batch normalisation after its first layer
NETWORK = {"name": "mlp_3_4_2_batchnorm", "seed": 0, "input_shape": [3],
           "data": {"source": "random_classification", "classes": 2, "examples": 16},
           "layers": [{"type": "dense", "units": 4, "use_bias": False}, {"type": "batchnorm"},
                      {"type": "sigmoid"}, {"type": "dense", "units": 2}, {"type": "sigmoid"}],
           "loss": {"type": "half_squared_error"}}


@crossgrad.layer("batchnorm_right")
class BatchNorm:
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over the batch"""
    keys = {"eps": 1e-5}

    def params(self, in_shape):
        return {"gamma": ((in_shape[-1],), "ones"), "beta": ((in_shape[-1],), "zeros")}

    def numpy_forward(self, p, x):
        inv_std = 1 / np.sqrt(x.var(0) + self.eps)
        xhat = (x - x.mean(0)) * inv_std
        return p["gamma"] * xhat + p["beta"], (xhat, inv_std)

    def numpy_backward(self, p, cache, dy):
        xhat, inv_std = cache
        g, n = dy * p["gamma"], len(dy)
        dx = inv_std / n * (n * g - g.sum(0) - xhat * (g * xhat).sum(0))
        return dx, {"gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}

    def torch(self, p, x):
        mean, var = x.mean(0), x.var(0, unbiased=False)
        return p["gamma"] * (x - mean) / (var + self.eps).sqrt() + p["beta"]

    def tensorflow(self, p, x):
        import tensorflow as tf
        mean, var = tf.nn.moments(x, [0])
        return p["gamma"] * (x - mean) / tf.sqrt(var + self.eps) + p["beta"]

    def jax(self, p, x):
        import jax.numpy as jnp
        return p["gamma"] * (x - x.mean(0)) / jnp.sqrt(x.var(0) + self.eps) + p["beta"]


@crossgrad.layer("batchnorm_without_statistics_terms")
class BatchNormWithoutStatisticsTerms(BatchNorm):
    """dx = dy * gamma / sqrt(var + eps): the mean and the variance treated as constants"""
    at = 1
    why = ("The batch mean and variance are functions of every x in the batch; dropping "
           "their gradients keeps only the first of dx's three terms.")

    def numpy_backward(self, p, cache, dy):
        xhat, inv_std = cache
        dx = dy * p["gamma"] * inv_std
        return dx, {"gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


@crossgrad.layer("batchnorm_mean_without_1_over_n")
class BatchNormMeanWithout1OverN(BatchNorm):
    """dx = inv_std * (g - sum g - xhat * sum(g * xhat)): the batch means' 1/N dropped"""
    at = 1
    why = ("The mean and variance terms come from averages over the batch: each sum is "
           "divided by N, and writing sums where means belong scales them up N times.")

    def numpy_backward(self, p, cache, dy):
        xhat, inv_std = cache
        g = dy * p["gamma"]
        dx = inv_std * (g - g.sum(0) - xhat * (g * xhat).sum(0))
        return dx, {"gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}
