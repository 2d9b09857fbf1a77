"""Finite-difference checks of each framework's gradient, in float64.

For every parameter tensor the harness picks probe directions d (spec/probes.py) and
each worker evaluates its own loss at p + t d for t = +-h0/4^k;
here those values become the directional derivative by Ridders' extrapolation over
the window of steps with the smallest error estimate (its own estimate plus the
rounding noise eps*|loss|/h), and are compared with <g, d> from the gradient:

    |fd - <g, d>| <= 1e-6 * ||g|| + 3 * err(fd)
    rel_err = |fd - <g, d>| / (||g|| + 3 * err(fd) / 1e-6)

so rel_err <= 1e-6 is the pass mark, relative to the tensor's gradient norm (as
pairwise errors are relative to the tensor's largest entry). A gradient smaller
than float64 differences can resolve (the first layers of a deep sigmoid network
have ||g|| ~ 1e-14 |loss|) is judged against that resolution, not against itself;
such tensors are checked four ways pairwise, relative to their own size. A gradient that
is zero by construction (compare/zeros.py) is rounding noise in every framework: it is
judged against the largest gradient norm of the model's other tensors, as its pairwise
rows are against the model's largest gradient entry.

Kinks: where the loss is not differentiable along d (ReLU exactly at 0, tied maxima,
|w| at 0), the forward and backward one-sided derivatives differ. Such probes are
reported with status "kink" and both one-sided values, whatever the central difference
says (|w|'s gradient 0 at 0 matches it, at a kink all the same), and not judged: a
gradient there is one of many a framework may choose (each ReLU at 0 of each example
its own choice), and the directional derivatives of those choices are not bounded by the
two one-sided ones (zero weights under a ReLU: both slopes negative, every framework's
gradient 0). The pairwise comparison still checks the gradient every framework chose;
one framework alone at a kink is checked by nothing there, and the report says so.
"""

import numpy as np

from ..registry import PARTICIPANTS
from ..spec.probes import H0, LEVELS, RATIO, ridders

WINDOW = 4                   # Ridders runs on every 4 consecutive steps; the best error wins
TOLERANCE = 1e-6
EPS = np.finfo(np.float64).eps


def extrapolate(estimates, power, noise):
    """Ridders on every window of consecutive steps, so that steps too large (curvature,
    kinks nearby) and too small (rounding) are both left out. `noise[k]` is the rounding
    error of estimate k. -> (value, error estimate)."""
    runs = []
    for s in range(len(estimates) - WINDOW + 1):
        value, err = ridders(estimates[s:s + WINDOW], power)
        runs.append((value, err + noise[s + WINDOW - 1]))
    return min(runs, key=lambda r: r[1])



def estimate(loss0, values):
    """Loss values at steps() -> central, forward and backward derivatives with error bars."""
    hs = H0 / RATIO ** np.arange(LEVELS)
    plus, minus = np.asarray(values[0::2]), np.asarray(values[1::2])
    noise = 4 * EPS * max(abs(loss0), np.abs(values).max()) / hs  # Richardson amplifies a little
    central = extrapolate((plus - minus) / (2 * hs), 2, noise / 2)
    forward = extrapolate((plus - loss0) / hs, 1, noise)
    backward = extrapolate((loss0 - minus) / hs, 1, noise)
    return central, forward, backward


def check(name, direction, grad, loss0, values, norm=None):
    """One probe -> the row of the finite-difference table. `norm`: the gradient norm the
    error is relative to, where not the tensor's own (a zero by construction)."""
    (fd, fd_err), (fwd, fwd_err), (bwd, bwd_err) = estimate(loss0, values)
    fd, fd_err = consistent(fd, fd_err, fwd, fwd_err, bwd, bwd_err)
    with np.errstate(invalid="ignore"):  # an inf entry times a 0 of the direction: nan
        analytic = float((grad * direction).sum())
    if not np.isfinite(analytic) and np.isfinite(grad[direction != 0]).all():
        # an infinite entry off the probe's direction: inf * 0 is nan, its term is 0
        analytic = float((grad[direction != 0] * direction[direction != 0]).sum())
    norm = float(np.linalg.norm(grad)) if norm is None else norm
    rel = abs(fd - analytic) / max(norm + 3 * fd_err / TOLERANCE, 1e-300)
    kink = abs(fwd - bwd) > TOLERANCE * norm + 3 * (fwd_err + bwd_err)
    status = "kink" if kink else ("ok" if rel <= TOLERANCE else "mismatch")
    return {"param": name, "direction": describe(direction), "analytic": analytic,
            "numeric": fd, "numeric_err": fd_err, "forward": fwd, "backward": bwd,
            "rel_err": rel, "status": status}


def consistent(fd, fd_err, fwd, fwd_err, bwd, bwd_err):
    """The central estimate, or where it lies outside the error bars of both one-sided ones
    while they agree with each other, their mean: Ridders picks the window of steps with the
    smallest error estimate, and a window of larger steps across a kink further out (a
    random direction through thousands of ReLU inputs) can estimate a small error by
    chance (imported conv net: central 0.0171710 +- 4e-8, both one-sided 0.0171688, the
    gradient 0.0171688). The one-sided estimates use the steps that see no kink."""
    def near(a, a_err, b, b_err):
        return abs(a - b) <= 3 * (a_err + b_err)
    if near(fd, fd_err, fwd, fwd_err) or near(fd, fd_err, bwd, bwd_err) \
            or not near(fwd, fwd_err, bwd, bwd_err):
        return fd, fd_err
    return (fwd + bwd) / 2, max(fwd_err, bwd_err) + abs(fwd - bwd) / 2


def describe(direction):
    nonzero = np.flatnonzero(direction)
    if len(nonzero) == 1:
        return "entry " + str(tuple(int(i) for i in np.unravel_index(nonzero[0], direction.shape)))
    return "random"


@np.errstate(over="ignore", invalid="ignore")  # an overflowing forward: inf and nan, shown
def finite_differences(results, probes, zeros=None):
    """One row per (framework, probe), from the loss values each worker computed. `zeros`:
    the gradients zero by construction (name -> why)."""
    rows, zeros = [], zeros or {}
    for fw in PARTICIPANTS:
        result = results.get(fw, {})
        if result.get("status") != "ok" or not len(probes):
            continue
        largest = max((float(np.linalg.norm(g)) for k, g in result["grads"].items()
                       if k not in zeros), default=0.0)
        for (name, direction), values in zip(probes, result["fd_values"]):
            row = check(name, direction, result["grads"][name], result["loss"], values,
                        largest if name in zeros else None)
            if name in zeros:
                row["note"] = (f"zero by construction ({zeros[name]}); error relative to the "
                               "model's largest gradient norm")
            rows.append({"framework": fw, **row, "passed": row["status"] != "mismatch"})
    return rows
