"""Completed job results on disk, keyed by what determines them, for `run --resume`.

The key (jobs.job_key) covers the spec hash, framework and its version, dtype,
seed, mode and steps; a result is written atomically the moment its job finishes,
so an interrupted run keeps everything it completed.
"""
import pickle
from pathlib import Path

from .atomic import atomic_file


class ResultCache:
    """Always stores; hands results back only when `reuse` (crossgrad run --resume)."""

    def __init__(self, folder, reuse=False):
        self.folder, self.reuse = Path(folder), reuse

    def get(self, key):
        if not self.reuse:
            return None
        path = self.folder / f"{key}.pkl"
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None

    def put(self, key, result):
        with atomic_file(self.folder / f"{key}.pkl", "wb") as f:
            pickle.dump(result, f, protocol=5)
