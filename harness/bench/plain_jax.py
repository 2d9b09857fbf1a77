"""Plain JAX loops of the zoo's networks: what a JAX user writes first.

A params pytree, a pure `forward`, one `jax.jit`-ed step (value_and_grad, the norms,
clipping, an Optax update), and a loop that keeps every recorded number on the device and
reads them once at the end. The same math as the spec (softmax cross-entropy on class ids,
mean; L1/L2 on the weight matrices when the spec asks; clipping by the global norm; the
spec's optimizer) with simple random initial weights: the baseline `crossgrad bench
--step-time` times each implementation against, not a reference for its numbers.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax


def dense(rng, n_in, n_out):
    return {"W": rng.normal(0, 1 / math.sqrt(n_in), (n_in, n_out)), "b": np.zeros(n_out)}


def layernorm_params(dim):
    return {"gamma": np.ones(dim), "beta": np.zeros(dim)}


def layernorm(p, x):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * p["gamma"] + p["beta"]


def mlp(*sizes):
    """dense-tanh-...-dense: the LeCun MLPs."""
    def init(rng):
        return {str(i): dense(rng, a, b) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))}

    def forward(params, x):
        for i in range(len(sizes) - 1):
            x = x @ params[str(i)]["W"] + params[str(i)]["b"]
            x = jnp.tanh(x) if i < len(sizes) - 2 else x
        return x
    return init, forward


def digits_cnn():
    """(conv 3x3 same, ReLU, 2x2 max-pool) twice, then dense: 8x8x1 images, NHWC."""
    def init(rng):
        return {"0": {"W": rng.normal(0, 0.1, (3, 3, 1, 8)), "b": np.full(8, 0.1)},
                "3": {"W": rng.normal(0, 0.1, (3, 3, 8, 16)), "b": np.full(16, 0.1)},
                "7": dense(rng, 64, 10)}

    def block(p, x):
        x = jax.lax.conv_general_dilated(x, p["W"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["b"]
        x = jax.nn.relu(x)
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def forward(params, x):
        x = block(params["3"], block(params["0"], x))    # (B, 2, 2, 16)
        return x.reshape(len(x), -1) @ params["7"]["W"] + params["7"]["b"]
    return init, forward


def seq_lstm(features=4, units=16, classes=3):
    """An LSTM over (B, T, F) with lax.scan, then a dense layer on its last hidden state."""
    def init(rng):
        return {"0": {"W": rng.normal(0, 0.3, (features, 4 * units)),
                      "U": rng.normal(0, 0.3, (units, 4 * units)), "b": np.zeros(4 * units)},
                "1": dense(rng, units, classes)}

    def forward(params, x):
        p = params["0"]

        def cell(carry, x_t):
            h, c = carry
            i, f, g, o = jnp.split(x_t @ p["W"] + h @ p["U"] + p["b"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None
        zeros = jnp.zeros((x.shape[0], units), x.dtype)
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))  # time first
        return h @ params["1"]["W"] + params["1"]["b"]
    return init, forward


def tiny_transformer(vocab=16, dim=16, heads=2, key_dim=8, hidden=32, classes=3):
    """Embedding, x + attention(LN(x)) (causal), x + MLP(LN(x)) (GELU), LN, mean, dense."""
    def init(rng):
        attn = {k: dense(rng, dim, heads * key_dim) for k in ("q", "k", "v")}
        attn["o"] = dense(rng, heads * key_dim, dim)
        return {"0": {"E": rng.normal(0, 0.5, (vocab, dim))},
                "1": {"norm": layernorm_params(dim), "attn": attn},
                "2": {"norm": layernorm_params(dim), "up": dense(rng, dim, hidden),
                      "down": dense(rng, hidden, dim)},
                "3": layernorm_params(dim), "5": dense(rng, dim, classes)}

    def attention(p, x):
        b, t, _ = x.shape
        q, k, v = (((x @ p[n]["W"]) + p[n]["b"]).reshape(b, t, heads, key_dim) for n in "qkv")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(key_dim)
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, -1), v).reshape(b, t, -1)
        return out @ p["o"]["W"] + p["o"]["b"]

    def forward(params, tokens):
        h = params["0"]["E"][tokens]                        # (B, T, D)
        h = h + attention(params["1"]["attn"], layernorm(params["1"]["norm"], h))
        p = params["2"]
        u = jax.nn.gelu(layernorm(p["norm"], h) @ p["up"]["W"] + p["up"]["b"], approximate=False)
        h = h + u @ p["down"]["W"] + p["down"]["b"]
        h = layernorm(params["3"], h).mean(1)
        return h @ params["5"]["W"] + params["5"]["b"]
    return init, forward


NETWORKS = {"mnist_mlp": lambda: mlp(784, 300, 100, 10),
            "digits_mlp": lambda: mlp(64, 300, 100, 10),
            "digits_cnn": digits_cnn, "seq_lstm": seq_lstm, "tiny_transformer": tiny_transformer}


def optimizer_for(spec):
    o = spec["optimizer"]
    if o["type"] == "sgd":
        return optax.sgd(o["lr"])
    if o["type"] == "adam":
        return optax.adam(o["lr"], o["beta1"], o["beta2"], o["eps"])
    if o["type"] == "adamw":
        return optax.adamw(o["lr"], o["beta1"], o["beta2"], o["eps"],
                           weight_decay=o["weight_decay"])
    raise NotImplementedError(f"no plain loop for optimizer {o['type']}")


def build(name, spec):
    """The network of zoo model `name` in the spec's dtype, its jitted step and its state."""
    init, forward = NETWORKS[name]()
    params = jax.tree.map(lambda a: jnp.asarray(a, spec["dtype"]), init(np.random.default_rng(0)))
    optimizer, cfg = optimizer_for(spec), spec["train"]

    def objective(params, x, y):
        loss = optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()
        if cfg["l1"] or cfg["l2"]:
            weights = [w for path, w in jax.tree_util.tree_leaves_with_path(params)
                       if path[-1].key == "W"]
            loss += sum(cfg["l1"] * jnp.abs(w).sum() + cfg["l2"] * (w * w).sum() for w in weights)
        return loss

    @jax.jit
    def step(params, opt_state, x, y, idx):
        loss, grads = jax.value_and_grad(objective)(params, x[idx], y[idx])
        squares = jnp.stack([sum(jnp.sum(g * g) for g in jax.tree.leaves(grads[k]))
                             for k in sorted(grads)])
        if cfg["clip_norm"] is not None:
            scale = jnp.minimum(1.0, cfg["clip_norm"] / jnp.sqrt(squares.sum()))
            grads = jax.tree.map(lambda g: g * scale, grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, squares
    opt_state = optimizer.init(params)
    return {"params": params, "opt_state": opt_state, "step": step,
            "initial": (params, opt_state)}


def reset(plain):
    """Back to the initial parameters and optimizer state (immutable: kept as they were), as
    every timed call of the implementation starts from the spec's."""
    plain["params"], plain["opt_state"] = plain["initial"]


def train(plain, x, y, batches):
    """len(batches) steps; -> the curves, read from the device once."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    params, opt_state, losses, squares = plain["params"], plain["opt_state"], [], []
    for idx in batches:
        params, opt_state, loss, per_layer = plain["step"](params, opt_state, x, y,
                                                           jnp.asarray(idx))
        losses.append(loss)
        squares.append(per_layer)
    plain["params"], plain["opt_state"] = params, opt_state
    # stacked on the host: jnp.stack would compile again for every new number of steps
    losses, squares = np.stack(jax.device_get(losses)), np.stack(jax.device_get(squares))
    return {"loss": losses.tolist(),
            "grad_norm": np.sqrt(squares.sum(1)).tolist(),
            "layer_norms": np.sqrt(squares).T.tolist()}


def matmul(n, dtype):
    """One synchronised (n, n) @ (n, n) matmul: the GEMM probe of the machine's peak."""
    a, b = jnp.asarray(np.random.default_rng(0).standard_normal((2, n, n)), dtype)
    product = jax.jit(jnp.matmul)
    return lambda: product(a, b).block_until_ready()
