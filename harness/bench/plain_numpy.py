"""Plain NumPy loops of the zoo's MLPs: forward and backward by hand, as fast as NumPy goes.

Every buffer is allocated once for the batch size and reused (`out=`, in place); the
softmax is fused with the cross-entropy gradient ((softmax(z) - onehot(y)) / B, never
log-probabilities on the way back); a batch of one takes each weight gradient h^T dh as
an outer product (NumPy's matmul runs a slow loop when the inner size is 1); the loss,
the global gradient norm and one norm per layer are kept in arrays and returned at the
end. The same math as the spec (softmax cross-entropy on class ids, mean; L1/L2 on the
weight matrices when the spec asks; clipping by the global norm; SGD) with simple random
initial weights: the baseline `crossgrad bench --step-time` times the NumPy
implementation against. The convolutional, recurrent and attention networks have no
plain NumPy loop here (their backward by hand is what impls/numpy_manual/layers.py is).
"""
import math

import numpy as np

NETWORKS = {"mnist_mlp": (784, 300, 100, 10), "digits_mlp": (64, 300, 100, 10)}


def build(name, spec):
    """The tanh MLP of zoo model `name` in the spec's dtype and its SGD settings."""
    if spec["optimizer"]["type"] != "sgd":
        raise NotImplementedError(f"no plain loop for optimizer {spec['optimizer']['type']}")
    sizes, dtype, rng = NETWORKS[name], np.dtype(spec["dtype"]), np.random.default_rng(0)
    weights = [(rng.normal(0, 1 / math.sqrt(a), (a, b)).astype(dtype), np.zeros(b, dtype))
               for a, b in zip(sizes, sizes[1:])]
    return {"weights": weights, "cfg": spec["train"], "lr": spec["optimizer"]["lr"],
            "dtype": dtype, "buffers": {}, "initial": [(w.copy(), b.copy()) for w, b in weights]}


def reset(plain):
    """Back to the initial weights (the step updates them in place), as every timed call of
    the implementation starts from the spec's."""
    for (w, b), (w0, b0) in zip(plain["weights"], plain["initial"]):
        np.copyto(w, w0)
        np.copyto(b, b0)


def buffers(plain, batch):
    """Activations and their gradients for one batch size, made once."""
    if batch not in plain["buffers"]:
        dtype, ws = plain["dtype"], plain["weights"]
        plain["buffers"][batch] = {
            "h": [np.empty((batch, w.shape[1]), dtype) for w, _ in ws],   # each layer's output
            "dh": [np.empty((batch, w.shape[1]), dtype) for w, _ in ws],
            "gW": [np.empty_like(w) for w, _ in ws], "gb": [np.empty_like(b) for _, b in ws],
            "tmp": [np.empty_like(w) for w, _ in ws], "rows": np.arange(batch)}
    return plain["buffers"][batch]


def step(plain, x, y, buf):
    """One SGD step in place; -> (loss, squared gradient norm per layer)."""
    ws, cfg, h, dh = plain["weights"], plain["cfg"], buf["h"], buf["dh"]
    batch, last = len(x), len(ws) - 1
    for i, (w, b) in enumerate(ws):                  # forward: h_i = tanh(h_{i-1} W_i + b_i)
        np.matmul(x if i == 0 else h[i - 1], w, out=h[i])
        h[i] += b
        if i < last:
            np.tanh(h[i], out=h[i])
    z = h[last]                                      # (B, C) logits -> softmax, in place
    rows = buf["rows"]
    z -= z.max(1, keepdims=True)
    picked = z[rows, y]                              # (B,) the true class's shifted logit
    np.exp(z, out=z)
    total = z.sum(1, keepdims=True)
    loss = (np.log(total[:, 0]) - picked).sum() / batch
    z /= total
    z[rows, y] -= 1.0                                # dL/dz = (softmax - onehot) / B
    z *= 1.0 / batch
    dh[last] = z
    for i in range(last, -1, -1):                    # backward
        a = (x if i == 0 else h[i - 1]).T            # (in, B) @ (B, out); B = 1: an outer
        (np.multiply if batch == 1 else np.matmul)(a, dh[i], out=buf["gW"][i])  # product
        dh[i].sum(0, out=buf["gb"][i])
        if i:
            np.matmul(dh[i], ws[i][0].T, out=dh[i - 1])
            dh[i - 1] *= 1.0 - h[i - 1] * h[i - 1]   # tanh' = 1 - tanh^2
    if cfg["l1"] or cfg["l2"]:
        for (w, _), g, tmp in zip(ws, buf["gW"], buf["tmp"]):
            loss += cfg["l1"] * np.abs(w).sum() + cfg["l2"] * np.vdot(w, w)
            np.sign(w, out=tmp)
            tmp *= cfg["l1"]
            g += tmp
            np.multiply(w, 2 * cfg["l2"], out=tmp)
            g += tmp
    squares = np.array([np.vdot(g, g) + np.vdot(gb, gb) for g, gb in zip(buf["gW"], buf["gb"])])
    scale = plain["lr"]
    if cfg["clip_norm"] is not None:
        scale *= min(1.0, cfg["clip_norm"] / math.sqrt(squares.sum()))
    for (w, b), g, gb in zip(ws, buf["gW"], buf["gb"]):
        g *= scale
        w -= g
        gb *= scale
        b -= gb
    return loss, squares


def train(plain, x, y, batches):
    """len(batches) steps; -> the curves."""
    losses, squares = np.empty(len(batches)), np.empty((len(batches), len(plain["weights"])))
    for k, idx in enumerate(batches):
        buf = buffers(plain, len(idx))
        losses[k], squares[k] = step(plain, x[idx], y[idx], buf)
    return {"loss": losses.tolist(), "grad_norm": np.sqrt(squares.sum(1)).tolist(),
            "layer_norms": np.sqrt(squares).T.tolist()}


def matmul(n, dtype):
    """One synchronised (n, n) @ (n, n) matmul: the GEMM probe of the machine's peak."""
    a, b = (np.random.default_rng(0).standard_normal((2, n, n))).astype(dtype)
    out = np.empty((n, n), dtype)
    return lambda: np.matmul(a, b, out=out)
