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
import math
import os
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np

from .atomic import OutputFailed, atomic_file, remove_stale_in
from .ownership import MARKER, read_marker, write_marker

FORMAT = 1
DOCUMENT = "result.json"


def _say(line):
    """One line on stderr in one write: the phases of `run` read the cache side by side, and
    print's text and newline, written apart, interleave two warnings on one line."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


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
        self.warn = warn or _say
        self.put_failed = False
        self.swept = False  # the folder's stale temporaries removed, once, at the first put
        self.unusable = set()  # entries said to be unusable: once each, though two phases ask

    def get(self, key, job=None):
        """The result stored under `key`, or None: none stored, or one that is unusable (one
        warning line per entry). With `job`, the result must also carry what that job's
        consumers read (`usable`)."""
        if not self.reuse:
            return None
        path = self.folder / f"{key}.npz"
        if not os.path.lexists(path):
            return None
        try:
            result = self._read(path, key)
            problem = usable(result, job)
            if problem:
                raise ValueError(problem)
            return result
        except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                RecursionError, MemoryError, OverflowError, zipfile.BadZipFile,
                UnicodeDecodeError) as err:
            reason = str(err).split(". ")[0] or type(err).__name__
            if isinstance(err, MemoryError):
                reason = "an array larger than memory"
            if path not in self.unusable:
                self.warn(f"crossgrad: cache entry {path} is unusable ({reason}); computing it "
                          f"again")
            self.unusable.add(path)
            return None

    def lookup(self, job):
        """get for a job: its key, and a result that carries what the job's consumers read."""
        return self.get(job["key"], job)

    @staticmethod
    def _read(path, key):
        """The decoded result of the entry at `path`. Only a regular file is opened (without
        blocking: a named pipe there is refused, never waited on), and every array's header
        must declare exactly the bytes the archive holds for it, so a header claiming
        10**11 elements allocates nothing."""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ValueError("not a regular file")
            if not zipfile.is_zipfile(f):
                raise ValueError("not an .npz archive")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                for info in archive.infolist():
                    _check_member(archive, info)
            f.seek(0)
            with np.load(f, allow_pickle=False) as entry:
                if DOCUMENT not in entry.files:
                    raise ValueError(f"no {DOCUMENT} in it")
                doc = json.loads(entry[DOCUMENT].tobytes())
                if not (isinstance(doc, dict) and doc.get("tool") == "crossgrad"
                        and doc.get("format") == FORMAT and doc.get("key") == key):
                    raise ValueError("not a crossgrad result for this key")
                arrays = {name: entry[name] for name in entry.files if name != DOCUMENT}
            return decode(doc["result"], arrays)

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
        claim_cache_folder(self.folder)


COMPILED = "xla"  # JAX's compiled programs (compile_cache.py), beside the results


def claim_cache_folder(folder):
    """`folder`, crossgrad's cache folder, made crossgrad's (its marker) where it is missing or
    holds nothing but what crossgrad makes there before the marker: the folder of compiled
    programs (a JAX worker's, which versions before the marker made without it) and the
    marker's own temporaries. A folder holding anything else is someone else's: OSError (the
    result cache says so once; the compile cache is then off), never taken over."""
    if read_marker(folder) is not None:
        return folder
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if any(not (entry.name == COMPILED and entry.is_dir(follow_symlinks=False)
                or entry.name.startswith(f"{MARKER}.tmp-")) for entry in os.scandir(folder)):
        raise OSError("the folder holds files and no crossgrad marker: it is not crossgrad's")
    try:
        write_marker(folder, "cache", [])
    except FileExistsError:  # another worker's start wrote it meanwhile: read it again
        pass
    if read_marker(folder) is None:
        raise OSError("the folder's .crossgrad is not crossgrad's marker")
    return folder


def _check_member(archive, info):
    """One member of an entry: an .npy array of a plain dtype whose header declares exactly
    the bytes that follow it (ValueError otherwise)."""
    if not info.filename.endswith(".npy"):
        raise ValueError(f"member {info.filename!r} is not an array")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"member {info.filename!r} has an unknown .npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds objects")
        declared = math.prod(shape) * dtype.itemsize
        if declared != info.file_size - member.tell():
            raise ValueError(f"member {info.filename!r} declares {declared} bytes of data and "
                             f"holds {info.file_size - member.tell()}")


# ---- what a job's consumers read ---------------------------------------------------------------

def _number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _arrays(value):
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, np.ndarray)
                                           for k, v in value.items())


def _curves(value):
    return isinstance(value, dict) and isinstance(value.get("loss"), list) and \
        all(_number(v) for v in value["loss"]) and isinstance(value.get("grad_norm"), list) \
        and isinstance(value.get("layer_norms"), dict)


NEEDS = {  # job kind -> {what its consumers read: whether a value will do}
    "check": {"loss": _number, "grads": _arrays, "state": _arrays,
              "fd_values": lambda v: isinstance(v, np.ndarray)},
    "train": {"curves": _curves, "params": _arrays, "state": _arrays},
}


def usable(result, job=None):
    """Why a stored result cannot stand for `job`'s (one line), or None. Only a finished
    job's result is stored: a table with status "ok" and its seconds; with the job, also
    what its consumers read of a job of its kind (a check's loss and gradients, a
    training's curves and parameters, ...)."""
    if not isinstance(result, dict):
        return f"its result is a {type(result).__name__}, not a table"
    if result.get("status") != "ok" or not _number(result.get("seconds")):
        return "its result is not a finished job's"
    job = job or {}
    for name, fits in NEEDS.get(job.get("kind"), {}).items():
        if not fits(result.get(name)):
            return f"its result has no usable {name!r} for a {job['kind']} job"
    skipped = result.get("gradients") == "skipped"
    if job.get("kind") == "check" and not skipped:
        if job.get("layers") and not (_arrays(result.get("layer_outputs"))
                                      and _arrays(result.get("layer_input_grads"))
                                      or isinstance(result.get("layer_values_error"), str)):
            return "its result has no usable layer values for a check job"
        if job.get("perturb") and not isinstance(result.get("perturbed"), list):
            return "its result has no usable 'perturbed' for a check job"
        if job.get("order") == 2 and job.get("probes") and not any(
                k in result for k in ("second_order", "hvp_skipped", "hvp_error")):
            return "its result has no second order for a check job"
    if job.get("kind") == "train" and job.get("lockstep") and \
            not isinstance(result.get("lockstep"), dict):
        return "its result has no usable 'lockstep' for a train job"
    return None


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
