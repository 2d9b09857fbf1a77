"""A training step's arithmetic, counted from the spec: the matmul-like layers only.

Forward FLOPs per example (a multiply-add counts 2), summed over dense, conv2d, the
recurrent layers and attention; a training step counts 3 times the forward (the backward
takes one product for the input's gradient and one for the weights'). Elementwise work is
left out: GFLOP/s is a lower bound of what the step computes.
"""
import math


def forward_flops(layers):
    """Forward FLOPs per example of a spec's layers (residual blocks included)."""
    total = 0
    for layer in layers:
        total += forward_flops(layer.get("layers", []))
        kind, out_shape = layer["type"], layer["out_shape"]
        if kind == "dense":  # on the last axis, so also per time step
            total += 2 * layer["in_shape"][-1] * math.prod(out_shape)
        elif kind == "conv2d":
            kh, kw, c_in, _ = layer["params"]["W"]
            total += 2 * kh * kw * c_in * math.prod(out_shape)
        elif kind in ("rnn", "lstm", "gru"):
            time, (features, gates) = layer["in_shape"][0], layer["params"]["W"]
            total += 2 * time * (features + layer["params"]["U"][0]) * gates
        elif kind == "attention":
            time, dim = layer["in_shape"]
            inner = layer["heads"] * layer["key_dim"]
            total += 2 * time * dim * inner * 4 + 2 * 2 * time * time * inner
    return total


def step_flops(spec, batch):
    """FLOPs of one training step of `batch` examples."""
    return 3 * batch * forward_flops(spec["layers"])
