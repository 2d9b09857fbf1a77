"""The seven update rules are torch.optim's own: they are the canonical ones.

One builder per optimizer type, `def <type>(optimizer, native)`, with the same name,
signature, order and first docstring line (the canonical rule) as in the other three
folders. Each returns a function of the parameters, because a torch.optim optimizer is
built around them. Every spec hyperparameter is passed and the torch-only options are
pinned to the canonical rule (they are torch's defaults too), except in native mode an
unwritten learning rate, which keeps torch's default (the pitfall torch.default_lr:
1e-3 for SGD, Adam and AdamW, the spec's 0.01); torch's other defaults equal the spec's.
`weight_decay` is coupled (wd * p added to the gradient) in all of them but AdamW,
which first shrinks p by lr * wd.
"""
from functools import partial

import torch

from ..canonical import SLOTS, by_layer, native_on, slot_key, slots_of
from .layout import from_native, to_native

__all__ = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "OPTIMIZERS",
           "build_optimizer", "get_optimizer_state", "set_optimizer_state"]

# options of the torch classes that the canonical rules fix (and that are torch's defaults)
CANONICAL = {
    "sgd": {"dampening": 0.0}, "momentum": {"dampening": 0.0}, "nesterov": {"dampening": 0.0},
    "adam": {"amsgrad": False}, "adamw": {"amsgrad": False},
    "rmsprop": {"momentum": 0.0, "centered": False},
    "adagrad": {"lr_decay": 0.0, "initial_accumulator_value": 0.0},
}


def options(optimizer, native):
    """lr (unless torch.default_lr keeps torch's), weight_decay and the options of CANONICAL."""
    keep = native_on(native, "torch.default_lr") and "lr" not in optimizer["explicit"]
    lr = {} if keep else {"lr": optimizer["lr"]}
    return {**lr, "weight_decay": optimizer["weight_decay"], **CANONICAL[optimizer["type"]]}


def sgd(optimizer, native):
    """p -= lr g, g = dL/dp + wd p

    torch.optim.SGD without momentum.
    """
    return partial(torch.optim.SGD, nesterov=False, **options(optimizer, native))


def momentum(optimizer, native):
    """v = mu v + g; p -= lr v, g = dL/dp + wd p

    torch.optim.SGD with momentum (always passed: without it torch's SGD has none).
    """
    return partial(torch.optim.SGD, nesterov=False, momentum=optimizer["momentum"],
                   **options(optimizer, native))


def nesterov(optimizer, native):
    """v = mu v + g; p -= lr (g + mu v), g = dL/dp + wd p

    torch.optim.SGD with momentum and nesterov=True.
    """
    return partial(torch.optim.SGD, nesterov=True, momentum=optimizer["momentum"],
                   **options(optimizer, native))


def adam_options(optimizer, native):
    """betas and eps (added outside sqrt(v_hat))."""
    return {**options(optimizer, native), "betas": (optimizer["beta1"], optimizer["beta2"]),
            "eps": optimizer["eps"]}


def adam(optimizer, native):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr m_hat / (sqrt(v_hat) + eps), g = dL/dp + wd p

    torch.optim.Adam.
    """
    return partial(torch.optim.Adam, **adam_options(optimizer, native))


def adamw(optimizer, native):
    """p *= 1 - lr wd; then m, v and p -= lr m_hat / (sqrt(v_hat) + eps) as Adam's, with g = dL/dp

    torch.optim.AdamW (torch's default weight_decay is 1e-2).
    """
    return partial(torch.optim.AdamW, **adam_options(optimizer, native))


def rmsprop(optimizer, native):
    """v = rho v + (1-rho) g^2; p -= lr g / (sqrt(v) + eps), g = dL/dp + wd p

    torch.optim.RMSprop, which calls rho alpha.
    """
    return partial(torch.optim.RMSprop, **options(optimizer, native), alpha=optimizer["rho"],
                   eps=optimizer["eps"])


def adagrad(optimizer, native):
    """s += g^2; p -= lr g / (sqrt(s) + eps), g = dL/dp + wd p

    torch.optim.Adagrad.
    """
    return partial(torch.optim.Adagrad, **options(optimizer, native), eps=optimizer["eps"])


OPTIMIZERS = {builder.__name__: builder for builder in (  # type -> builder of the same name
    sgd, momentum, nesterov, adam, adamw, rmsprop, adagrad)}


def build_optimizer(optimizer, native):
    """A function of the parameters -> the torch.optim optimizer for the spec's section."""
    return OPTIMIZERS[optimizer["type"]](optimizer, native)


# ---- the state in canonical form (impls/README.md, "Optimizer state") --------------------------

# torch.optim's per-parameter state entries -> canonical slots; "step" (a 0-d tensor per
# parameter) is kept by the classes listed in STEPPED; SGD keeps no count
STATE_NAMES = {torch.optim.SGD: {"momentum_buffer": "v"},
               torch.optim.Adam: {"exp_avg": "m", "exp_avg_sq": "v"},
               torch.optim.AdamW: {"exp_avg": "m", "exp_avg_sq": "v"},
               torch.optim.RMSprop: {"square_avg": "v"},
               torch.optim.Adagrad: {"sum": "s"}}
STEPPED = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad)


def trained(model):
    """[(spec layer, {torch name: parameter})] of the parameters the optimizer updates (not
    the frozen recurrent bias)."""
    return [(layer, {k: p for k, p in module.named_parameters() if p.requires_grad})
            for layer, module in zip(model.spec["layers"], model.layers)]


def get_optimizer_state(optimizer, model):
    """The optimizer's state, canonical: {"step": updates so far, "<param>/<slot>": array}.

    optimizer.state[p] holds each slot in p's layout (Linear's (out, in)), so layout.py's
    from_native turns a slot to canonical like the parameter itself.
    """
    return read_state(optimizer, trained(model))


def read_state(optimizer, layers):
    """get_optimizer_state of the parameters listed in `layers`, trained(model)'s: a run
    that reads the state at every step (train.lockstep) lists them once."""
    names, out, steps = STATE_NAMES[type(optimizer)], {}, set()
    for layer, params in layers:
        entries = [optimizer.state.get(p, {}) for p in params.values()]
        for key, slot in names.items():
            native = {k: entry[key] for k, entry in zip(params, entries)
                      if entry.get(key) is not None}
            out.update({slot_key(f"{layer['name']}.{k}", slot): v.detach().numpy().copy()
                        for k, v in from_native(layer, native).items()})
        steps |= {int(entry["step"]) for entry in entries if "step" in entry}
    if len(steps) > 1:
        raise ValueError(f"torch.optim state: parameters at different steps {sorted(steps)}")
    return {**({"step": steps.pop()} if steps else {}), **out}


def set_optimizer_state(optimizer, model, state):
    """Set the optimizer's state from canonical form; returns the optimizer.

    Each parameter's entry is replaced whole, as torch.optim creates it: the slots in the
    parameter's layout (layout.py's to_native) and, for the classes that count, "step" as
    a 0-d tensor of torch's default dtype.
    """
    return load_state(optimizer, trained(model), model.spec["optimizer"]["type"], state)


def load_state(optimizer, layers, kind, state):
    """set_optimizer_state of the parameters listed in `layers`, trained(model)'s, for the
    optimizer type `kind`: a run that sets the state at every step (train.lockstep) lists
    them once."""
    names = {key: slot for key, slot in STATE_NAMES[type(optimizer)].items()
             if slot in SLOTS[kind]}  # SGD without momentum keeps no buffer
    slots = {key: by_layer({k: torch.as_tensor(v) for k, v in slots_of(state, slot).items()})
             for key, slot in names.items()}
    for layer, params in layers:
        entries = {k: {} for k in params}
        for key, grouped in slots.items():
            for k, v in to_native(layer, grouped.get(layer["name"], {})).items():
                if k in params:
                    entries[k][key] = torch.empty_like(params[k]).copy_(v)  # p's memory layout
        for k, p in params.items():
            if isinstance(optimizer, STEPPED):
                entries[k]["step"] = torch.tensor(float(state["step"]))
            optimizer.state[p] = entries[k]
    return optimizer
