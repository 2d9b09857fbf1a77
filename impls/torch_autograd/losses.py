"""Each loss is an nn.Module mapping (y_hat, y) to a scalar; `penalty` adds L1/L2 on the weights.

One builder per loss type, `def <type>(loss, native)`, with the same name, signature,
order and first docstring line (the canonical formula) as in the other three folders.
torch.nn's own loss classes compute the canonical math, reductions included ("mean"
averages over every element for mse and the binary cross-entropies, over the batch
for softmax cross-entropy); autograd differentiates them, so nothing here has a backward.
`penalty_vanishes` and `add_vanishing_penalty`, outside the shared API (TensorFlow and
JAX compile the penalty into their step): the zero penalty's shortcut, the same bits.
"""
import torch
from torch import nn

from ..canonical import native_on, positive_zero, squares_fit

__all__ = ["mse", "half_squared_error", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "softmax_cross_entropy", "LOSSES", "build_loss",
           "penalty"]


def reduction(loss, native):
    """{"reduction": ...}: the spec's (torch's default, "mean", is the spec's too)."""
    return {"reduction": loss["reduction"]}


def mse(loss, native):
    """L = sum_{b,k} (y_hat - y)^2, divided by B*K for "mean": y_hat, y (B, K)

    nn.MSELoss.
    """
    return nn.MSELoss(**reduction(loss, native))


class HalfSquaredError(nn.Module):
    """0.5 * sum_k (y_hat - y)^2 per example, then mean or sum over the batch; torch.nn has none."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, y_hat, y):
        diff = y_hat - y                                  # (B, K)
        total = 0.5 * (diff * diff).sum()
        return total / len(diff) if self.reduction == "mean" else total


def half_squared_error(loss, native):
    """L = sum_b 0.5 sum_k (y_hat - y)^2, divided by B for "mean": y_hat, y (B, K)

    A module of its own (HalfSquaredError above): torch.nn has no such loss.
    """
    return HalfSquaredError(**reduction(loss, native))


class BinaryCrossEntropy(nn.Module):
    """The exact formula on probabilities. nn.BCELoss clamps each log at -100 and divides its
    gradient by max(p (1 - p), 1e-12): different numbers once a sigmoid saturates."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, p, y):
        value = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))  # (B, K)
        return value.mean() if self.reduction == "mean" else value.sum()


def binary_cross_entropy(loss, native):
    """L = -sum_{b,k} y log p + (1 - y) log(1 - p), divided by B*K for "mean": p, y (B, K)

    Aligned: BinaryCrossEntropy above, the exact formula; native (torch.bce_clamp):
    nn.BCELoss, clamps and all.
    """
    kind = nn.BCELoss if native_on(native, "torch.bce_clamp") else BinaryCrossEntropy
    return kind(**reduction(loss, native))


def binary_cross_entropy_with_logits(loss, native):
    """L = -sum_{b,k} y log s(z) + (1 - y) log(1 - s(z)), s the sigmoid, / (B*K) for "mean": z, y (B, K)

    nn.BCEWithLogitsLoss, in its log-sum-exp form: it never overflows.
    """
    return nn.BCEWithLogitsLoss(**reduction(loss, native))


def softmax_cross_entropy(loss, native):
    """L = -sum_b log softmax(z_b)[y_b], divided by B for "mean": z (B, C) logits, y (B,) class ids

    nn.CrossEntropyLoss on logits and class ids.
    """
    return nn.CrossEntropyLoss(**reduction(loss, native))


LOSSES = {builder.__name__: builder for builder in (  # loss type -> builder of the same name
    mse, half_squared_error, binary_cross_entropy, binary_cross_entropy_with_logits,
    softmax_cross_entropy)}


def build_loss(loss, native):
    """The loss module for the spec's loss section."""
    return LOSSES[loss["type"]](loss, native)


def penalty(weights, l1, l2):
    """l1 * sum|W| + l2 * sum W^2 over the given tensors; autograd takes its gradient."""
    value = 0.0
    for w in weights.values():
        value = value + l1 * w.abs().sum() + l2 * (w * w).sum()
    return value


@torch.no_grad()
def penalty_vanishes(weights, l1, l2):
    """Whether `penalty` is exactly +0 with signed zeros for its gradient: l1 = l2 = +0 and every
    tensor's W^2 sums finite (canonical.squares_fit). Then add_vanishing_penalty does
    what autograd would, without the penalty's nodes in the graph."""
    if not (positive_zero(l1) and positive_zero(l2)):
        return False
    for w in weights.values():
        if w.dtype not in (torch.float32, torch.float64):
            return False
        norm, info = float(torch.linalg.vector_norm(w)), torch.finfo(w.dtype)
        if not squares_fit(norm * norm, w.numel(), info.max, info.eps):
            return False
    return True


@torch.no_grad()
def add_vanishing_penalty(grads, weights, l1, l2):
    """grads[name] += a vanishing penalty's gradient, in place: autograd's l1 sgn(W) + l2 W +
    l2 W is -0 where W < 0 and +0 elsewhere (sgn(-0) is +0), which is 0 * sign(W)."""
    for name, g in grads.items():
        g.add_(weights[name].sign(), alpha=0.0)
