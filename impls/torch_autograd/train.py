"""The training loop: forward, loss.backward(), record, clip, optimizer.step()."""
import torch

from ..canonical import new_curves, penalised, per_layer, record
from .losses import penalty
from .model import canonical
from .optimizers import build_optimizer

__all__ = ["train"]


def train(model, x, y, batches, masks):
    """Run len(batches) steps; return the curves (loss and norms before each update)."""
    cfg = model.spec["train"]
    parameters = [p for p in model.parameters() if p.requires_grad]  # not the frozen biases
    optimizer = build_optimizer(model.spec["optimizer"], model.native)(parameters)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    curves = new_curves()
    for step, idx in enumerate(batches):
        step_masks = {name: torch.as_tensor(m[step]) for name, m in masks.items()}
        idx = torch.as_tensor(idx)
        optimizer.zero_grad()
        loss = model.loss(model(x[idx], step_masks), y[idx])
        # the penalty is on the canonical W (a view of torch's weight), so its name can be checked
        weights = penalised(canonical(model, lambda m: dict(m.named_parameters())))
        loss = loss + penalty(weights, cfg["l1"], cfg["l2"])
        loss.backward()
        # torch names: their first component ("3" in "3.0.weight") is the layer's index in
        # model.layers, the same as in the canonical name
        squares = per_layer({k: p.grad for k, p in model.layers.named_parameters()
                             if p.grad is not None}, lambda g: (g * g).sum())  # model's dtype
        norm = sum(squares.values()).sqrt()
        record(curves, loss.item(), norm.item(),
               {layer: sq.sqrt().item() for layer, sq in squares.items()})
        if not torch.isfinite(loss) or not torch.isfinite(norm):
            curves["diverged_at"] = step
            break
        if cfg["clip_norm"] is not None:
            clip(parameters, norm, cfg["clip_norm"], model.native)
        optimizer.step()
    return curves


def clip(parameters, norm, clip_norm, native):
    """g *= min(1, clip_norm / norm). clip_grad_norm_ divides by norm + 1e-6 instead."""
    if native:
        torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
        return
    scale = (clip_norm / norm).clamp(max=1.0)
    for p in parameters:
        p.grad.mul_(scale)

