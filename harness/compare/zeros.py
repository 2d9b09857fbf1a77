"""Gradients that are zero by construction, named from the spec."""


def structural_zeros(layers):
    """Gradients that are exactly zero whatever the data, so that every framework returns
    rounding noise for them: name -> why. These are compared against the model's largest
    gradient entry instead of their own (noise against noise means nothing)."""
    zeros, prev = {}, None
    for layer in layers:
        if layer["type"] == "batchnorm" and prev and prev["type"] in ("dense", "conv2d") \
                and prev["use_bias"]:
            zeros[f"{prev['name']}.b"] = "a bias right before BatchNorm: the batch mean cancels it"
        if layer["type"] == "attention" and layer["use_bias"]:
            zeros[f"{layer['name']}.bk"] = ("the key bias adds q.bk to every score of a query: "
                                            "softmax cancels it")
        zeros.update(structural_zeros(layer.get("layers", [])))
        if layer["type"] != "identity":
            prev = layer
    return zeros
