"""The training loop: forward, loss.backward(), record, clip, optimizer.step().

`train` runs free; `lockstep` starts every step from a given state (the reference's)
and yields what the step did. Both take the same step: `gradients`, then `update`.
"""
import math

import torch

from ..canonical import lockstep_record, native_on, new_curves, penalised, per_layer, record
from .losses import add_vanishing_penalty, penalty, penalty_vanishes
from .model import canonical, from_layers, held, load, names, read, to_numpy
from .optimizers import build_optimizer, load_state, read_state, trained

__all__ = ["train", "lockstep"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update).
    The per-layer norms stay tensors until the end (one sqrt over each layer's steps); the
    loss and the global norm are read every step, to stop before a diverged step's update."""
    parameters, optimizer, named, bases = start(model)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    curves, steps = new_curves(), []
    for step, idx in enumerate(batches):
        loss, norm, squares = gradients(model, optimizer, named, bases, x, y, idx,
                                        step_masks(masks, step))
        steps.append((loss.item(), norm.item(), squares))
        if not math.isfinite(steps[-1][0]) or not math.isfinite(steps[-1][1]):
            curves["diverged_at"] = step
            break
        update(model, optimizer, parameters, norm)
    layer_norms = {layer: torch.stack([sq[layer] for _, _, sq in steps]).sqrt().tolist()
                   for layer in (steps[0][2] if steps else ())}
    for k, (loss, norm, _) in enumerate(steps):
        record(curves, loss, norm, {layer: values[k] for layer, values in layer_norms.items()})
    return curves


def lockstep(model, x, y, batches, masks, starts):
    """Step k from the k-th of `starts`, (params, state, optimizer state or None: a fresh
    optimizer's), canonical; yields lockstep_record(...) of each step. What every step
    sets and reads (set_params, get_params and the optimizer's state, of the same tensors)
    is listed once, as `start` lists the parameters."""
    parameters, optimizer, named, bases = start(model)
    layers, updated, kind = held(model), trained(model), model.spec["optimizer"]["type"]
    params_names, state_names = names(model, "params"), names(model, "state")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    for step, (idx, (params, state, opt_state)) in enumerate(zip(batches, starts)):
        load(layers, params, state)
        if opt_state is not None:
            load_state(optimizer, updated, kind, opt_state)
        loss, norm, _ = gradients(model, optimizer, named, bases, x, y, idx,
                                  step_masks(masks, step))
        grads = to_numpy(from_layers(  # before clipping moves them; buffers have none
            (layer, {k: t.grad for k, t in tensors.items() if t.grad is not None})
            for layer, tensors in layers), params_names)
        loss = loss.item()  # a diverged step stops before its update:
        if math.isfinite(loss) and math.isfinite(norm.item()):
            update(model, optimizer, parameters, norm)
        yield lockstep_record(loss, grads, *read(layers, params_names, state_names),
                              read_state(optimizer, updated))


def start(model):
    """The parameters the optimizer updates (not the frozen biases), the optimizer, the
    (torch name, parameter) pairs whose gradients the norms read, and penalised_bases(model),
    listed once per run (named_parameters() walks every module)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    return (parameters, build_optimizer(model.spec["optimizer"], model.native)(parameters),
            list(model.layers.named_parameters()), penalised_bases(model))


def penalised_bases(model):
    """{canonical name: the nn.Parameter it permutes} of each penalised W (weight.T, permute),
    or None where a W is not one whole parameter. The vanishing penalty's test and its
    gradient are entrywise, so they apply to the parameter as to its canonical view."""
    bases = {}
    for name, view in penalised(canonical(model, lambda m: dict(m.named_parameters()))).items():
        base = view if view._base is None else view._base
        if not isinstance(base, torch.nn.Parameter) or base.numel() != view.numel():
            return None
        bases[name] = base
    return bases


def step_masks(masks, step):
    return {name: torch.as_tensor(m[step]) for name, m in masks.items()}


def gradients(model, optimizer, named, bases, x, y, idx, masks):
    """loss.backward() of the objective (data loss + L1/L2): every .grad, the global norm and
    the squared norm per layer."""
    cfg = model.spec["train"]
    idx = torch.as_tensor(idx)
    optimizer.zero_grad()
    loss = model.loss(model(x[idx], masks), y[idx])
    vanishes = bases is not None and penalty_vanishes(bases, cfg["l1"], cfg["l2"])
    if vanishes:  # the same bits without the penalty's nodes in the graph
        loss = loss + 0.0  # its value: a loss of -0 becomes +0 with it too
    else:
        # on the canonical W (a view of torch's weight), so its name can be checked; at zero
        # too where a weight is not finite: 0 * inf is NaN, as in every framework
        weights = penalised(canonical(model, lambda m: dict(m.named_parameters())))
        loss = loss + penalty(weights, cfg["l1"], cfg["l2"])
    loss.backward()
    if vanishes:
        add_vanishing_penalty({k: p.grad for k, p in bases.items() if p.grad is not None},
                              bases, cfg["l1"], cfg["l2"])
    # torch names: their first component ("3" in "3.0.weight") is the layer's index in
    # model.layers, the same as in the canonical name
    squares = per_layer({k: p.grad for k, p in named if p.grad is not None},
                        lambda g: (g * g).sum())  # model's dtype
    return loss, sum(squares.values()).sqrt(), squares


def update(model, optimizer, parameters, norm):
    """Clip, then optimizer.step()."""
    clip_norm = model.spec["train"]["clip_norm"]
    if clip_norm is not None:
        clip(parameters, norm, clip_norm, model.native)
    optimizer.step()


def clip(parameters, norm, clip_norm, native):
    """g *= min(1, clip_norm / norm). clip_grad_norm_ divides by norm + 1e-6 instead."""
    if native_on(native, "torch.clip_grad_norm_eps"):
        torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        return
    scale = (clip_norm / norm).clamp(max=1.0)
    for p in parameters:
        p.grad.mul_(scale)
