"""The seven update rules are torch.optim's own: they are the canonical ones.

`build_optimizer` returns a function of the parameters, because a torch.optim
optimizer is built around them. Aligned mode passes every spec hyperparameter and
pins the torch-only options to the canonical rule; native mode passes what the user
wrote and the value that defines the optimizer (momentum), torch's defaults for the rest.
"""
from functools import partial

import torch

from .layers import explicit_options

__all__ = ["build_optimizer"]

# options of the torch classes that the canonical rules fix (and that are torch's defaults)
CANONICAL = {
    "sgd": {"dampening": 0.0}, "momentum": {"dampening": 0.0}, "nesterov": {"dampening": 0.0},
    "adam": {"amsgrad": False}, "adamw": {"amsgrad": False},
    "rmsprop": {"momentum": 0.0, "centered": False},
    "adagrad": {"lr_decay": 0.0, "initial_accumulator_value": 0.0},
}


def build_optimizer(optimizer, native):
    """A function of the parameters -> the torch.optim optimizer. `weight_decay` is coupled
    (wd * p added to the gradient) in all of them but AdamW, which first shrinks p by lr * wd."""
    c, kind = optimizer, optimizer["type"]
    options = explicit_options(c, native, lr="lr", weight_decay="weight_decay")
    if not native:
        options.update(CANONICAL[kind])
    if kind in ("sgd", "momentum", "nesterov"):
        if kind != "sgd":
            options["momentum"] = c["momentum"]  # always: without it torch's SGD has none
        return partial(torch.optim.SGD, nesterov=kind == "nesterov", **options)
    if kind in ("adam", "adamw"):
        if not native or {"beta1", "beta2"} & set(c["explicit"]):
            # an unwritten beta takes the spec's default, which is also torch's
            options["betas"] = (c["beta1"], c["beta2"])
        options.update(explicit_options(c, native, eps="eps"))  # added outside sqrt(v_hat)
        return partial(torch.optim.AdamW if kind == "adamw" else torch.optim.Adam, **options)
    if kind == "rmsprop":
        options.update(explicit_options(c, native, alpha="rho", eps="eps"))  # torch calls rho alpha
        return partial(torch.optim.RMSprop, **options)
    options.update(explicit_options(c, native, eps="eps"))
    return partial(torch.optim.Adagrad, **options)
