"""Plumbing the four implementations share, so that what differs between their folders
is the framework's idiom only: canonical names, the penalised weights, curve records.

Canonical parameter names are "<layer>.<local>" ("3.W"), and "<block>.<j>.<local>"
inside a residual block ("3.1.b"). Nothing here imports a framework.
"""

__all__ = ["local_params", "block_key", "share", "per_sublayer", "penalised", "layer_of",
           "per_layer", "new_curves", "record"]


def local_params(params, layer):
    """{"3.W": .., "3.0.b": ..} -> the params of layer "3" by local name {"W": .., "0.b": ..}."""
    return share(params, layer["name"])


def block_key(sub, block):
    """A sub-layer's key inside its residual block: "3.1" inside "3" -> "1"."""
    return sub["name"][len(block["name"]) + 1:]


def share(values, key):
    """The entries under `key`, with the prefix dropped: share({"1.W": w}, "1") == {"W": w}."""
    prefix = key + "."
    return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}


def per_sublayer(block, values, convert):
    """A residual block's values converted sub-layer by sub-layer: convert(sub, its share)."""
    out = {}
    for sub in block["layers"]:
        j = block_key(sub, block)
        out.update({f"{j}.{k}": v for k, v in convert(sub, share(values, j)).items()})
    return out


def penalised(params):
    """The tensors L1/L2 apply to: those whose local name is exactly "W" (not biases, not U)."""
    return {k: v for k, v in params.items() if k.rsplit(".", 1)[-1] == "W"}


def layer_of(name):
    """The top-level layer a (canonical or framework) parameter name belongs to: "3.0.W" -> "3"."""
    return name.split(".", 1)[0]


def per_layer(named, measure):
    """{top-level layer: sum of measure(value)} over named values, in the values' dtype."""
    out = {}
    for name, value in named.items():
        layer = layer_of(name)
        out[layer] = out.get(layer, 0.0) + measure(value)
    return out


def new_curves():
    """What train() returns: the loss and norms before each update, and where it stopped."""
    return {"loss": [], "grad_norm": [], "layer_norms": {}, "diverged_at": None}


def record(curves, loss, norm, layer_norms):
    """Append one step's loss, global gradient norm and per-layer norms (Python floats)."""
    for layer, value in layer_norms.items():
        curves["layer_norms"].setdefault(layer, []).append(value)
    curves["loss"].append(loss)
    curves["grad_norm"].append(norm)
    return loss, norm
