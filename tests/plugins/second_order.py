"""Swish layers whose gradient is right and whose second derivative is not: the first-order
check passes them, `check --order 2` must not."""
import numpy as np

import crossgrad


def sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


@crossgrad.layer("swish_detached")
class DetachedBackward:
    """y = x * sigmoid(beta * x). PyTorch: a torch.autograd.Function whose backward is the
    right formula, computed from detached tensors, so double backward sees constants."""

    def params(self, in_shape):
        return {"beta": ((in_shape[-1],), "ones")}

    def numpy_forward(self, p, x):
        s = sigmoid(p["beta"] * x)
        return x * s, (x, s)

    def numpy_backward(self, p, cache, dy):
        x, s = cache
        ds = s * (1 - s)
        dx = dy * (s + x * p["beta"] * ds)
        dbeta = (dy * x * x * ds).reshape(-1, x.shape[-1]).sum(0)
        return dx, {"beta": dbeta}

    def torch(self, p, x):
        import torch

        class Swish(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, beta):
                ctx.save_for_backward(x, beta)
                return x * torch.sigmoid(beta * x)

            @staticmethod
            def backward(ctx, dy):
                x, beta = (t.detach() for t in ctx.saved_tensors)
                dy = dy.detach()  # the mistake: the backward's own graph is cut here
                s = torch.sigmoid(beta * x)
                ds = s * (1 - s)
                dbeta = (dy * x * x * ds).reshape(-1, x.shape[-1]).sum(0)
                return dy * (s + x * beta * ds), dbeta

        return Swish.apply(x, p["beta"])

    def tensorflow(self, p, x):
        import tensorflow as tf
        return x * tf.sigmoid(p["beta"] * x)

    def jax(self, p, x):
        import jax
        return x * jax.nn.sigmoid(p["beta"] * x)


@crossgrad.layer("swish_stopped")
class StoppedInRule(DetachedBackward):
    """JAX: a custom_jvp whose derivative rule takes its primals through stop_gradient, the
    same mistake in forward mode: the rule is right, its own derivative is zero."""

    def torch(self, p, x):
        import torch
        return x * torch.sigmoid(p["beta"] * x)

    def jax(self, p, x):
        import jax

        @jax.custom_jvp
        def swish(x, beta):
            return x * jax.nn.sigmoid(beta * x)

        @swish.defjvp
        def swish_jvp(primals, tangents):
            x, beta = (jax.lax.stop_gradient(t) for t in primals)
            dx, dbeta = tangents
            s = jax.nn.sigmoid(beta * x)
            ds = s * (1 - s)
            return swish(*primals), (s + x * beta * ds) * dx + x * x * ds * dbeta

        return swish(x, p["beta"])


@crossgrad.layer("swish_custom_vjp")
class CustomVjp(StoppedInRule):
    """JAX: a custom_vjp, right to first and second order; jax.jvp (forward mode) refuses
    custom_vjp functions, so JAX's H v (jvp of grad) fails and says so."""

    def jax(self, p, x):
        import jax

        @jax.custom_vjp
        def swish(x, beta):
            return x * jax.nn.sigmoid(beta * x)

        def forward(x, beta):
            return swish(x, beta), (x, beta)

        def backward(saved, dy):
            x, beta = saved
            s = jax.nn.sigmoid(beta * x)
            ds = s * (1 - s)
            dbeta = (dy * x * x * ds).reshape(-1, x.shape[-1]).sum(0)
            return dy * (s + x * beta * ds), dbeta

        swish.defvjp(forward, backward)
        return swish(x, p["beta"])
