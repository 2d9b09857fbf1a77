"""Gradients that are zero by construction, named from the spec."""


def structural_zeros(layers):
    """Gradients that are exactly zero whatever the data, so that every framework returns
    rounding noise for them: name -> why. These are compared against the model's largest
    gradient entry instead of their own (noise against noise means nothing). A plugin
    layer declares its own (spec/plugins.py: shifts, cancels_shifts, zero_gradients)."""
    zeros, prev = {}, None
    for layer in layers:
        declared = layer.get("zeros") or {}
        if prev and (layer["type"] == "batchnorm" or declared.get("cancels_shifts")):
            what = "BatchNorm: the batch mean" if layer["type"] == "batchnorm" else \
                f"{layer['type']}, which (its plugin says) ignores a shift of its input,"
            zeros.update({f"{prev['name']}.{local}": f"a bias right before {what} cancels it"
                          for local in _shifts(prev)})
        if layer["type"] == "attention" and layer["use_bias"]:
            zeros[f"{layer['name']}.bk"] = ("the key bias adds q.bk to every score of a query: "
                                            "softmax cancels it")
        zeros.update({f"{layer['name']}.{local}": f"{why} (its plugin says)"
                      for local, why in declared.get("zero_gradients", {}).items()})
        zeros.update(structural_zeros(layer.get("layers", [])))
        if layer["type"] != "identity":
            prev = layer
    return zeros


def _shifts(layer):
    """A layer's parameters that only add a constant to each output feature: a dense or
    conv2d layer's bias, or what a plugin names in `shifts`."""
    if layer["type"] in ("dense", "conv2d"):
        return ["b"] if layer["use_bias"] else []
    return (layer.get("zeros") or {}).get("shifts", [])
