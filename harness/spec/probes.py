"""Where each worker evaluates its loss for the finite-difference checks, drawn from the seed.

For every parameter tensor: probe directions d (unit norm), every basis vector of a tiny
tensor; for a larger one two random Gaussian directions and one random entry; and the
offsets t = +-h0/4^k at which each worker evaluates its own loss at p + t d.
compare/finite_diff.py turns those values into directional derivatives.

The budget is a hard cap of 64 probes a model: each probe costs every framework 22
loss evaluations. Up to 64 tensors, every tensor gets at least one probe; beyond that,
64 tensors drawn from the seed get one probe each, and the report says how many of how
many were probed (the pairwise comparison still covers every tensor).
"""
import math
import zlib

import numpy as np

H0, RATIO, LEVELS = 0.5, 4.0, 11   # steps h0, h0/4, ..., h0/4^10 (about 5e-7)
SMALL = 3                    # tensors up to this size are probed entry by entry
BUDGET = 64                  # probes per model: one random direction per tensor, then more


def steps():
    """The offsets t at which workers evaluate the loss: [+h0, -h0, +h0/4, -h0/4, ...]."""
    hs = H0 / RATIO ** np.arange(LEVELS)
    return np.stack([hs, -hs], 1).reshape(-1)


def probes(param_shapes, seed):
    """[(param name, unit direction)] drawn from the seed; the same for every framework.

    Round 1 gives every tensor one probe (a random direction, or its first entry if tiny);
    round 2 a second random direction and round 3 one random entry, while the budget lasts.
    With more tensors than the budget, only a seeded sample of BUDGET tensors is probed."""
    param_shapes = probed_tensors(param_shapes, seed)
    picks = {name: _candidates(name, math.prod(shape), seed) for name, shape in param_shapes.items()}
    out = []
    for round_ in range(max(map(len, picks.values()), default=0)):
        for name, shape in param_shapes.items():
            if round_ < len(picks[name]) and (round_ == 0 or len(out) < BUDGET):
                out.append((name, picks[name][round_].reshape(shape)))
    return sorted(out, key=lambda p: list(param_shapes).index(p[0]))


def probed_tensors(param_shapes, seed):
    """The tensors that get probes: all of them up to BUDGET, else BUDGET drawn from the
    seed (stream 5), kept in spec order."""
    if len(param_shapes) <= BUDGET:
        return param_shapes
    names = list(param_shapes)
    chosen = np.sort(np.random.default_rng([seed, 5]).choice(len(names), BUDGET, replace=False))
    return {names[i]: param_shapes[names[i]] for i in chosen}


def _candidates(name, size, seed):
    if size <= SMALL:
        return [np.eye(size)[i] for i in range(size)]
    rng = np.random.default_rng([seed, 4, zlib.crc32(name.encode())])
    gauss = [rng.standard_normal(size) for _ in range(2)]
    return [g / np.linalg.norm(g) for g in gauss] + [np.eye(1, size, rng.integers(size)).ravel()]


def ridders(estimates, power):
    """Extrapolate difference quotients D(h_k), h_k = H0 / RATIO^k (error ~ h^p, h^(p+power),
    ...), to h -> 0: numbers, or vectors entry by entry (the error estimate is then the
    largest entry's). -> (value, error estimate)."""
    def size(a):  # a number on its own, without NumPy's reduction machinery (hot: 0.5M calls)
        if isinstance(a, float):
            return max(abs(a), 0.0)  # a NaN stays NaN, as np.max keeps it
        return float(np.max(np.abs(a), initial=0.0))

    best, err, prev = estimates[0], math.inf, []
    for k, first in enumerate(estimates):
        row = [first]
        for j in range(1, k + 1):
            fac = RATIO ** (power * j)
            row.append((fac * row[j - 1] - prev[j - 1]) / (fac - 1))
            e = max(size(row[j] - row[j - 1]), size(row[j] - prev[j - 1]))
            if e <= err:
                best, err = row[j], e
        if k and size(row[k] - prev[k - 1]) >= 2 * err:
            break  # higher orders got worse: rounding has taken over
        prev = row
    return best, err
