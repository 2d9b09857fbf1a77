"""Canonical layout <-> PyTorch layout: every conversion of a parameter is one line here.

`to_native(layer, params)` takes one layer's canonical tensors by local name ("W",
"b", ...) and returns its module's state_dict entries ("weight", "bias", ...);
`from_native` goes back. Both take torch tensors and use differentiable ops only (`.T`,
`permute`, indexing, `stack`), so `from_native` also maps gradients and, inside the
autograd graph, gives the canonical `W` the penalty is taken on. BatchNorm's running
statistics have the same names on both sides and pass through, and so do a plugin
layer's parameters: its module holds them canonical, under their local names.

Activations: images run NCHW in the torch model, canonical images are NHWC;
`image_to_native` and `image_to_canonical` are the two permutations.
"""
import torch

from ..canonical import per_sublayer

__all__ = ["to_native", "from_native", "activation_from_native"]

RECURRENT = ("rnn", "lstm", "gru")
PROJECTIONS = {"q": "query", "k": "key", "v": "value", "o": "out"}  # Attention's nn.Linear names
RUNNING = ("running_mean", "running_var")


def image_to_native(x):
    return x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def image_to_canonical(x):
    return x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)


def to_native(layer, params):
    kind, p = layer["type"], params
    if "plugin" in layer:
        return dict(p)                                 # canonical on both sides
    if kind == "residual":
        return per_sublayer(layer, p, to_native)  # "1.W" -> "1.weight", sub-layer by sub-layer
    native = {k: p[k] for k in RUNNING if k in p}
    if kind == "dense":
        native["weight"] = p["W"].T                    # (in, out) -> (out, in): y = x weight^T + b
    elif kind == "conv2d":
        native["weight"] = p["W"].permute(3, 2, 0, 1)  # (kh, kw, C_in, C_out) -> (C_out, C_in, kh, kw)
    elif kind in ("batchnorm", "layernorm"):
        native["weight"], native["bias"] = p["gamma"], p["beta"]  # the affine scale and shift
    elif kind == "embedding":
        native["weight"] = p["E"]                      # (vocab, dim) on both sides
    elif kind in RECURRENT:
        native["weight_ih_l0"] = p["W"].T              # (F, gates*H) -> (gates*H, F), same gates
        native["weight_hh_l0"] = p["U"].T              # (H, gates*H) -> (gates*H, H)
        if kind == "gru":
            native["bias_ih_l0"], native["bias_hh_l0"] = p["b"]  # input side, recurrent side
        else:
            native["bias_ih_l0"] = p["b"]              # torch adds bias_ih + bias_hh: one is b,
            native["bias_hh_l0"] = torch.zeros_like(p["b"])  # the other a zero frozen in layers.py
    elif kind == "attention":
        for w, name in PROJECTIONS.items():
            native[f"{name}.weight"] = p["W" + w].T    # (D, heads*key_dim) -> (heads*key_dim, D)
            if "b" + w in p:
                native[f"{name}.bias"] = p["b" + w]
    if kind in ("dense", "conv2d") and "b" in p:
        native["bias"] = p["b"]
    return native


def from_native(layer, native):
    """The inverse of to_native; what `native` lacks (a parameter without gradient) is skipped."""
    kind, n = layer["type"], native
    if "plugin" in layer:
        return dict(n)
    if kind == "residual":
        return per_sublayer(layer, n, from_native)
    params = {}
    if kind == "dense" and "weight" in n:
        params["W"] = n["weight"].T                    # (out, in) -> (in, out)
    elif kind == "conv2d" and "weight" in n:
        params["W"] = n["weight"].permute(2, 3, 1, 0)  # (C_out, C_in, kh, kw) -> (kh, kw, C_in, C_out)
    elif kind in ("batchnorm", "layernorm"):
        params.update(_renamed(n, {"weight": "gamma", "bias": "beta"}))
    elif kind == "embedding" and "weight" in n:
        params["E"] = n["weight"]
    elif kind in RECURRENT and "weight_ih_l0" in n:
        params["W"], params["U"] = n["weight_ih_l0"].T, n["weight_hh_l0"].T
        if kind == "gru":
            params["b"] = torch.stack([n["bias_ih_l0"], n["bias_hh_l0"]])  # (2, 3H)
        else:
            params["b"] = n["bias_ih_l0"]              # bias_hh is the frozen zero
    elif kind == "attention":
        for w, name in PROJECTIONS.items():
            if f"{name}.weight" in n:
                params["W" + w] = n[f"{name}.weight"].T  # (heads*key_dim, D) -> (D, heads*key_dim)
            if f"{name}.bias" in n:
                params["b" + w] = n[f"{name}.bias"]
    if kind in ("dense", "conv2d") and "bias" in n:
        params["b"] = n["bias"]
    params.update({k: n[k] for k in RUNNING if k in n})
    return params


def _renamed(tensors, names):
    return {new: tensors[old] for old, new in names.items() if old in tensors}


def activation_from_native(shape, value):
    """A layer's input or output (or its gradient), per-example `shape`, torch -> canonical:
    images (H, W, C) run NCHW in this model."""
    return image_to_canonical(value) if len(shape) == 3 else value
