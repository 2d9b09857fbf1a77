"""Where each worker evaluates its loss for the finite-difference checks, drawn from the seed.

For every parameter tensor: probe directions d (unit norm), every basis vector of a tiny
tensor; for a larger one two random Gaussian directions and one random entry (64 probes
a model at most, every tensor at least once); and the offsets t = +-h0/4^k at which each
worker evaluates its own loss at p + t d. compare/finite_diff.py turns those values into
directional derivatives.
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
    round 2 a second random direction and round 3 one random entry, while the budget lasts."""
    picks = {name: _candidates(name, math.prod(shape), seed) for name, shape in param_shapes.items()}
    out = []
    for round_ in range(max(map(len, picks.values()), default=0)):
        for name, shape in param_shapes.items():
            if round_ < len(picks[name]) and (round_ == 0 or len(out) < BUDGET):
                out.append((name, picks[name][round_].reshape(shape)))
    return sorted(out, key=lambda p: list(param_shapes).index(p[0]))


def _candidates(name, size, seed):
    if size <= SMALL:
        return [np.eye(size)[i] for i in range(size)]
    rng = np.random.default_rng([seed, 4, zlib.crc32(name.encode())])
    gauss = [rng.standard_normal(size) for _ in range(2)]
    return [g / np.linalg.norm(g) for g in gauss] + [np.eye(1, size, rng.integers(size)).ravel()]
