"""Completed job results on disk, keyed by what determines them, for `run --resume`.

The key (jobs.job_key) covers the spec hash (and with it the content of a data file the
spec reads), framework and its version, dtype, seed, mode, steps, the worker's thread
count and crossgrad's version; a result is written atomically the moment its job
finishes, so an interrupted run keeps everything it completed. The cache lives in the
user's cache folder, `$XDG_CACHE_HOME/crossgrad` (default `~/.cache/crossgrad`), never
beside an output. One entry is one `<key>.npz`: the result's arrays, and the rest of it
as JSON in the member `result.json`. Entries are read with allow_pickle=False, so a cache
entry is data and never code; one that is corrupt or not crossgrad's is ignored with one
warning line and its job is computed again.
"""
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from .atomic import OutputFailed, atomic_file, remove_stale_in
from .ownership import read_marker, write_marker

FORMAT = 1
DOCUMENT = "result.json"


def user_cache_folder():
    """$XDG_CACHE_HOME/crossgrad, or ~/.cache/crossgrad (a relative XDG_CACHE_HOME is ignored,
    as the XDG base directory specification says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "crossgrad"


class ResultCache:
    """Always stores; hands results back only when `reuse` (crossgrad run --resume)."""

    def __init__(self, folder=None, reuse=False, warn=None):
        self.folder, self.reuse = Path(folder or user_cache_folder()), reuse
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self.put_failed = False
        self.swept = False  # the folder's stale temporaries removed, once, at the first put
        self.unusable = set()  # entries said to be unusable: once each, though two phases ask

    def get(self, key):
        if not self.reuse:
            return None
        path = self.folder / f"{key}.npz"
        if not path.exists():
            return None
        try:
            if not zipfile.is_zipfile(path):
                raise ValueError("not an .npz archive")
            with np.load(path, allow_pickle=False) as entry:
                doc = json.loads(entry[DOCUMENT].tobytes())
                if not (isinstance(doc, dict) and doc.get("tool") == "crossgrad"
                        and doc.get("format") == FORMAT and doc.get("key") == key):
                    raise ValueError("not a crossgrad result for this key")
                arrays = {name: entry[name] for name in entry.files if name != DOCUMENT}
            return decode(doc["result"], arrays)
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
                zipfile.BadZipFile) as err:
            reason = str(err).split(". ")[0] or type(err).__name__
            if path not in self.unusable:
                self.warn(f"crossgrad: cache entry {path} is unusable ({reason}); computing it "
                          f"again")
            self.unusable.add(path)
            return None

    def put(self, key, result):
        try:
            arrays = {}
            doc = {"tool": "crossgrad", "format": FORMAT, "key": key,
                   "result": encode(result, arrays)}
            body = json.dumps(doc).encode()
            self._ensure_folder()
            if not self.swept:
                remove_stale_in(self.folder)
                self.swept = True
            with atomic_file(self.folder / f"{key}.npz", "wb", swept=True) as f:
                np.savez(f, **arrays, **{DOCUMENT: np.frombuffer(body, dtype=np.uint8)})
        except (TypeError, ValueError, OutputFailed, OSError) as err:
            if not self.put_failed:  # one line, however many results follow
                self.warn(f"crossgrad: could not store results in the cache {self.folder} "
                          f"({err}); --resume will compute them again")
            self.put_failed = True

    def _ensure_folder(self):
        """The cache folder, made with crossgrad's marker. A folder there without it that holds
        anything is someone else's: OSError (put says so once), never taken over."""
        if read_marker(self.folder) is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if any(os.scandir(self.folder)):
            raise OSError("the folder holds files and no crossgrad marker: it is not crossgrad's")
        write_marker(self.folder, "cache", [])


# ---- a result as JSON + arrays --------------------------------------------------------------

def encode(value, arrays):
    """A result (dicts, lists, tuples, arrays, NumPy and Python scalars) -> JSON-able, with
    every array (and NumPy scalar, kept as a 0-d array) moved into `arrays` by name."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError("an object array cannot be stored without pickle")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"$array" if isinstance(value, np.ndarray) else "$scalar": name}
    if isinstance(value, dict):
        if not all(isinstance(k, str) and not k.startswith("$") for k in value):
            raise TypeError("result keys must be strings not starting with '$'")
        return {k: encode(v, arrays) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [encode(v, arrays) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in the cache")


def decode(value, arrays):
    if isinstance(value, dict):
        if len(value) == 1 and "$array" in value:
            return arrays[value["$array"]]
        if len(value) == 1 and "$scalar" in value:
            return arrays[value["$scalar"]][()]
        if len(value) == 1 and "$tuple" in value:
            return tuple(decode(v, arrays) for v in value["$tuple"])
        return {k: decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, arrays) for v in value]
    return value
