"""`jax.grad` of a loss whose batch mean was forgotten: a sum, B times too steep"""
FRAMEWORK = "jax"
NETWORK = "mlp_3_4_2"
WHY = ("jax.grad differentiates exactly the function it is given: summed over the batch "
       "instead of averaged, every gradient is B times (here 16) the mean loss's.")


def forward(params, x):
    import jax
    h = jax.nn.sigmoid(x @ params["0.W"] + params["0.b"])
    return jax.nn.sigmoid(h @ params["2.W"] + params["2.b"])


def wrong(params, x, y):
    import jax

    def loss(params, x, y):
        return (0.5 * ((forward(params, x) - y) ** 2).sum(1)).sum()     # summed over the batch
    return jax.jit(jax.grad(loss))(params, x, y)


def right(params, x, y):
    import jax

    def loss(params, x, y):
        return (0.5 * ((forward(params, x) - y) ** 2).sum(1)).mean()    # the batch mean
    return jax.jit(jax.grad(loss))(params, x, y)
