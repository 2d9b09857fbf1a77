"""Each loss is an nn.Module mapping (y_hat, y) to a scalar; `penalty` adds L1/L2 on the weights.

torch.nn's own loss classes compute the canonical math, reductions included ("mean"
averages over every element for mse and the binary cross-entropies, over the batch
for softmax cross-entropy); autograd differentiates them, so nothing here has a backward.
"""
import torch
from torch import nn

from .layers import explicit_options

__all__ = ["build_loss", "penalty"]


class HalfSquaredError(nn.Module):
    """0.5 * sum_k (y_hat - y)^2 per example, then mean or sum over the batch; torch.nn has none."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, y_hat, y):
        diff = y_hat - y                                  # (B, K)
        total = 0.5 * (diff * diff).sum()
        return total / len(diff) if self.reduction == "mean" else total


class BinaryCrossEntropy(nn.Module):
    """The exact formula on probabilities. nn.BCELoss clamps each log at -100 and divides its
    gradient by max(p (1 - p), 1e-12): different numbers once a sigmoid saturates."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, p, y):
        value = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))  # (B, K)
        return value.mean() if self.reduction == "mean" else value.sum()


def build_loss(loss, native):
    """The loss module; `native` takes nn.BCELoss, clamps and all, for probabilities."""
    kind, options = loss["type"], explicit_options(loss, native, reduction="reduction")
    if kind == "softmax_cross_entropy":
        return nn.CrossEntropyLoss(**options)  # logits (B, C) and class ids (B,)
    if kind == "mse":
        return nn.MSELoss(**options)
    if kind == "binary_cross_entropy_with_logits":
        return nn.BCEWithLogitsLoss(**options)  # log-sum-exp form: never overflows
    if kind == "binary_cross_entropy":
        return nn.BCELoss(**options) if native else BinaryCrossEntropy(**options)
    return HalfSquaredError(**options)


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors; autograd takes its gradient."""
    value = 0.0
    for w in weights.values():
        value = value + l1 * w.abs().sum() + l2 * (w * w).sum()
    return value
