"""y = gamma * x * sigmoid(beta * x), right, and wrong in the ways the harness must catch."""
import numpy as np

import crossgrad


def sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


@crossgrad.layer("scaled_swish")
class ScaledSwish:
    """y = gamma * x * sigmoid(beta * x), with a trainable beta per feature."""
    keys = {"gamma": 1.0}

    def params(self, in_shape):
        return {"beta": ((in_shape[-1],), "ones")}

    def out_shape(self, in_shape):
        return in_shape

    def numpy_forward(self, p, x):
        s = sigmoid(p["beta"] * x)
        return self.gamma * x * s, (x, s)

    def numpy_backward(self, p, cache, dy):
        x, s = cache
        ds = s * (1 - s)                                   # sigmoid'
        dx = dy * self.gamma * (s + x * p["beta"] * ds)
        dbeta = (dy * self.gamma * x * x * ds).reshape(-1, x.shape[-1]).sum(0)
        return dx, {"beta": dbeta}

    def torch(self, p, x):
        import torch
        return self.gamma * x * torch.sigmoid(p["beta"] * x)

    def tensorflow(self, p, x):
        import tensorflow as tf
        return self.gamma * x * tf.sigmoid(p["beta"] * x)

    def jax(self, p, x):
        import jax
        return self.gamma * x * jax.nn.sigmoid(p["beta"] * x)


@crossgrad.layer("swish_dropped_term")
class DroppedTerm(ScaledSwish):
    """The backward forgets the product rule's second term of dx."""

    def numpy_backward(self, p, cache, dy):
        x, s = cache
        ds = s * (1 - s)
        dx = dy * self.gamma * s                           # missing: + x * beta * ds
        dbeta = (dy * self.gamma * x * x * ds).reshape(-1, x.shape[-1]).sum(0)
        return dx, {"beta": dbeta}


@crossgrad.layer("swish_partial")
class Partial(ScaledSwish):
    """NumPy forward only, and no TensorFlow at all."""
    numpy_backward = None
    tensorflow = None


@crossgrad.layer("swish_raising")
class Raising(ScaledSwish):
    def torch(self, p, x):
        raise ValueError("torch version not written yet")


@crossgrad.layer("swish_float32")
class Float32(ScaledSwish):
    """JAX computes in float32 whatever the model's dtype."""

    def jax(self, p, x):
        import jax
        return (self.gamma * x * jax.nn.sigmoid(p["beta"] * x)).astype("float32")


@crossgrad.layer("swish_tf_off")
class TensorFlowOff(ScaledSwish):
    """TensorFlow's forward is 1 % too large: a framework wrong in its aligned run too."""

    def tensorflow(self, p, x):
        return 1.01 * super().tensorflow(p, x)


@crossgrad.layer("swish_torch_dx_5x")
class TorchDx5x(ScaledSwish):
    """torch's forward is exact, its dL/dx five times too large (x detached where it counts)."""

    def torch(self, p, x):
        import torch
        s = torch.sigmoid(p["beta"] * x)
        return self.gamma * (x.detach() * s + (x - x.detach()) * 5 * s.detach())
