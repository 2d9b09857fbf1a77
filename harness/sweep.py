"""Sweeps: models x seeds x optimizers x dtypes, split into independent jobs.

Every variant is a spec of its own (its name says what varies), so each job's
result is keyed, cached and compared like any other; and a digest of every array
the jobs returned tells whether two runs (two executors, two worker counts) gave
the same bits.
"""
import hashlib

import numpy as np

from .errors import InputError
from .spec.limits import NAME_CHARS


VARIANTS = 10_000  # variants in one sweep (specs x dtypes x seeds x optimizers): each is a
                   # spec read again and 2 jobs per framework, all results held for the digest
                   # (10,000 is days of jobs); a million variants was a MemoryError on --seeds


def parse_seeds(text):
    """'0-9', '0,3,5' or '0-3,7' -> [0, 1, ...], ascending; counted from the ranges before
    any list is made, so `0-99999999999` is one line, not a MemoryError."""
    ranges = sorted(_seed_range(part) for part in text.split(",") if part.strip())
    if not ranges:
        raise InputError("--seeds", None, "names no seed; e.g. 0-9, or 0,3,5")
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        if start <= end:  # refused, as every list option refuses a value named twice
            raise InputError("--seeds", None, f"names seed {start} twice; name each seed once")
    count = sum(b - a + 1 for a, b in ranges)
    if count > VARIANTS:
        raise InputError("--seeds", None, f"names {count:,} seeds; a sweep runs at most "
                                          f"{VARIANTS:,} variants")
    return [seed for a, b in ranges for seed in range(a, b + 1)]


def _seed_range(part):
    lo, _, hi = part.strip().partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise InputError("--seeds", part, "expected N, N-M or a comma list of those") from None
    if a < 0 or b < a:
        raise InputError("--seeds", part, "seeds are non-negative and ranges go up")
    return a, b


def check_count(specs, seeds, optimizers):
    """Refuse a sweep of more than VARIANTS variants before any is made (each is a spec
    parsed again): --seeds is named, the option that multiplies the most."""
    count = len(specs) * len(seeds) * max(1, len(optimizers))
    if count > VARIANTS:
        raise InputError("--seeds", None, f"{len(seeds):,} seeds x {max(1, len(optimizers))} "
                         f"optimizer(s) x {len(specs)} spec(s) and dtype(s) = {count:,} "
                         f"variants; a sweep runs at most {VARIANTS:,}")


def variants(specs, seeds, optimizers):
    """One spec per (base spec, seed, optimizer); the optimizer keeps the base spec's lr."""
    out = []
    for spec in specs:
        for seed in seeds:
            for opt in optimizers or [None]:
                overrides = {"seed": seed, "name": _variant_name(spec.name, seed, opt)}
                if opt:
                    overrides["optimizer"] = {"type": opt, "lr": spec.optimizer["lr"]}
                out.append(spec.with_overrides(**overrides))
    return out


def _variant_name(name, seed, opt):
    """`{name}-s{seed}[-{opt}]`; one too long is the sweep's naming, said as such, not the
    spec's `name` (which fits alone), and blamed on the option whose part overflows."""
    suffix = f"-s{seed}" + (f"-{opt}" if opt else "")
    if len(name + suffix) > NAME_CHARS:
        flag, what = ("--optimizers", f"optimizer {opt}") if opt and \
            len(f"{name}-s{seed}") <= NAME_CHARS else ("--seeds", f"seed {seed}")
        raise InputError(flag, None, f"{what} makes a variant's name {name!r} + {suffix!r}, "
                                     f"{len(name + suffix)} characters; names are at most "
                                     f"{NAME_CHARS}")
    return name + suffix


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
