"""`stop_gradient` on the wrong branch: the softmax's normaliser stopped instead of its shift"""
FRAMEWORK = "jax"
NETWORK = {"name": "mlp_3_4_2_softmax", "seed": 0, "input_shape": [3],
           "data": {"source": "random_classification", "classes": 2, "examples": 16},
           "layers": [{"type": "dense", "units": 4}, {"type": "sigmoid"},
                      {"type": "dense", "units": 2}],
           "loss": {"type": "softmax_cross_entropy"}}
WHY = ("log-sum-exp may subtract any constant m for stability, so stopping m's gradient "
       "is free; the normaliser log sum exp z itself depends on every logit, and its "
       "gradient is the softmax that cross-entropy needs.")


def logits(params, x):
    import jax
    h = jax.nn.sigmoid(x @ params["0.W"] + params["0.b"])
    return h @ params["2.W"] + params["2.b"]


def wrong(params, x, y):
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        z = logits(params, x)
        m = z.max(-1, keepdims=True)
        log_norm = jax.lax.stop_gradient(m + jnp.log(jnp.exp(z - m).sum(-1, keepdims=True)))
        return (log_norm[:, 0] - jnp.take_along_axis(z, y[:, None], -1)[:, 0]).mean()
    return jax.jit(jax.grad(loss))(params, x, y)


def right(params, x, y):
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        z = logits(params, x)
        m = jax.lax.stop_gradient(z.max(-1, keepdims=True))   # the shift only
        log_norm = m + jnp.log(jnp.exp(z - m).sum(-1, keepdims=True))
        return (log_norm[:, 0] - jnp.take_along_axis(z, y[:, None], -1)[:, 0]).mean()
    return jax.jit(jax.grad(loss))(params, x, y)
