"""Sweeps: models x seeds x optimizers x dtypes, split into independent jobs.

Every variant is a spec of its own (its name says what varies), so each job's
result is keyed, cached and compared like any other; and a digest of every array
the jobs returned tells whether two runs (two executors, two worker counts) gave
the same bits.
"""
import hashlib

import numpy as np

from .errors import InputError


def parse_seeds(text):
    """'0-9', '0,3,5' or '0-3,7' -> [0, 1, ...]."""
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise InputError("--seeds", part, "expected N, N-M or a comma list of those") from None
        if a < 0 or b < a:
            raise InputError("--seeds", part, "seeds are non-negative and ranges go up")
        seeds += range(a, b + 1)
    return sorted(set(seeds))


def variants(specs, seeds, optimizers):
    """One spec per (base spec, seed, optimizer); the optimizer keeps the base spec's lr."""
    out = []
    for spec in specs:
        for seed in seeds:
            for opt in optimizers or [None]:
                overrides = {"seed": seed, "name": f"{spec.name}-s{seed}" + (f"-{opt}" if opt else "")}
                if opt:
                    overrides["optimizer"] = {"type": opt, "lr": spec.optimizer["lr"]}
                out.append(spec.with_overrides(**overrides))
    return out


def digest(results):
    """sha256 over every array and number the jobs returned (timings, and the flags of a
    result taken from the cache or from another job, aside)."""
    h = hashlib.sha256()

    def feed(value):
        if isinstance(value, dict):
            for k in sorted(value):
                if k not in ("seconds", "cached", "shared"):
                    h.update(str(k).encode())
                    feed(value[k])
        elif isinstance(value, (list, tuple)):
            for v in value:
                feed(v)
        elif isinstance(value, np.ndarray):
            h.update(str(value.dtype).encode() + str(value.shape).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())
    for r in results:
        feed(r)
    return h.hexdigest()
